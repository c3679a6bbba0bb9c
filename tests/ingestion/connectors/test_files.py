"""File connector: CSV/Parquet/JSON-lines through fsspec, incremental by file version,
backfill windows, and the faults a real export directory has."""
from __future__ import annotations

import io
import json
import os
import re
import uuid
from datetime import datetime
from pathlib import Path

import fsspec
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tideline.core.errors import SourceError
from tideline.ingestion.connectors import connector_for
from tideline.ingestion.connectors.files import FileConnector, read_csv, read_ragged_csv
from tideline.ingestion.rawtext import RAW_TEXT, as_raw_text
from tideline.ingestion.rawtext import landed as landed_table
from tideline.ingestion.sources import FileSource, Pull, Window

HEADER = "customer_id,email,plan,updated_at\n"
DAY1 = HEADER + (
    "C0000001,a@x.com,basic,2026-07-01T10:00:00Z\n"
    "C0000002,,plus,2026-07-01T23:59:59Z\n"
    "C0000003,NULL,premium,2026-07-02T00:00:00Z\n"
)
DAY2 = HEADER + (
    "C0000004,d@x.com,basic,2026-07-02T08:00:00Z\n"
    "C0000005,e@x.com,plus,not a date\n"
)


def source(url: str, fmt: str = "csv", **extra: object) -> FileSource:
    return FileSource(name="crm", dataset="customers", timestamp_column="updated_at", url=url,
                      format=fmt, **extra)


def round_trip(checkpoint: dict) -> dict:
    """What the lead stores in the lake commit and hands back next run."""
    return json.loads(json.dumps(checkpoint, sort_keys=True, default=str))


@pytest.fixture
def export_dir(tmp_path: Path) -> Path:
    (tmp_path / "crm").mkdir()
    (tmp_path / "crm" / "customers-2026-07-01.csv").write_text(DAY1)
    (tmp_path / "crm" / "customers-2026-07-02.csv").write_text(DAY2)
    return tmp_path / "crm"


def test_connector_for_picks_the_file_connector() -> None:
    assert isinstance(connector_for(source("x.csv")), FileConnector)


def test_reads_every_file_a_glob_matches_as_raw_text(export_dir: Path) -> None:
    pull = FileConnector().pull(source(f"{export_dir}/customers-*.csv"), None, None)
    frame = pull.to_frame()
    assert frame["customer_id"].tolist() == [f"C000000{i}" for i in range(1, 6)]
    assert all(isinstance(v, str) for v in frame["updated_at"])
    assert pd.isna(frame.loc[1, "email"])  # an empty field is null
    assert frame.loc[2, "email"] == "NULL"  # the text "NULL" is a value for validation to judge
    assert sorted(Path(p).name for p in pull.checkpoint["files"]) == [
        "customers-2026-07-01.csv", "customers-2026-07-02.csv"]
    assert pull.rejected == []


def test_incremental_pull_reads_only_new_or_changed_files(export_dir: Path) -> None:
    connector, src = FileConnector(), source(f"{export_dir}/*.csv")
    first = connector.pull(src, None, None)
    again = connector.pull(src, round_trip(first.checkpoint), None)
    assert len(first.to_frame()) == 5 and len(again.to_frame()) == 0
    assert again.checkpoint == round_trip(first.checkpoint)

    (export_dir / "customers-2026-07-03.csv").write_text(
        HEADER + "C0000006,f@x.com,plus,2026-07-03T09:00:00Z\n")
    new = connector.pull(src, round_trip(again.checkpoint), None)
    assert new.to_frame()["customer_id"].tolist() == ["C0000006"]

    changed = export_dir / "customers-2026-07-01.csv"
    changed.write_text(DAY1 + "C0000007,g@x.com,basic,2026-07-01T12:00:00Z\n")
    os.utime(changed, (1, 1_900_000_000))
    reread = connector.pull(src, round_trip(new.checkpoint), None)
    assert reread.to_frame()["customer_id"].tolist() == ["C0000001", "C0000002", "C0000003",
                                                    "C0000007"]
    assert len(reread.checkpoint["files"]) == 3


def test_backfill_returns_exactly_the_window_whatever_the_checkpoint(export_dir: Path) -> None:
    connector, src = FileConnector(), source(f"{export_dir}/*.csv")
    done = connector.pull(src, None, None).checkpoint
    window = Window(since=datetime(2026, 7, 2), until=datetime(2026, 7, 3))
    pull = connector.pull(src, round_trip(done), window)
    assert pull.to_frame()["customer_id"].tolist() == ["C0000003", "C0000004"]
    assert pull.checkpoint == round_trip(done)  # a backfill does not move the checkpoint
    open_start = connector.pull(src, None, Window(until=datetime(2026, 7, 2)))
    assert open_start.to_frame()["customer_id"].tolist() == ["C0000001", "C0000002"]


def test_missing_path_and_empty_glob_name_what_was_looked_for(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"crm.*file not found.*nowhere\.csv"):
        FileConnector().pull(source(str(tmp_path / "nowhere.csv")), None, None)
    with pytest.raises(SourceError, match=r"no files match .*customers-\*\.csv"):
        FileConnector().pull(source(str(tmp_path / "customers-*.csv")), None, None)


def test_wrong_encoding_names_the_file_and_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes(("name,updated_at\nJosé Müller,2026-07-01\n").encode("latin-1"))
    with pytest.raises(SourceError) as caught:
        FileConnector().pull(source(str(path)), None, None).to_frame()
    assert "latin.csv" in str(caught.value) and "encoding:" in str(caught.value)
    pull = FileConnector().pull(source(str(path), encoding="latin-1"), None, None)
    assert pull.to_frame()["name"].tolist() == ["José Müller"]


def test_truncated_last_line_is_rejected_and_the_rest_kept(tmp_path: Path) -> None:
    path = tmp_path / "cut.csv"
    path.write_text(DAY1 + "C0000009,i@x.com,ba")
    pull = FileConnector().pull(source(str(path)), None, None)
    assert pull.to_frame()["customer_id"].tolist() == ["C0000001", "C0000002", "C0000003"]
    assert pull.rejected == [("C0000009,i@x.com,ba",
                              f"{path}: truncated last record (the file ends mid-record: "
                              "3 of 4 fields)")]
    # a complete last row without its final newline is not truncated
    whole = tmp_path / "whole.csv"
    whole.write_text(DAY1.rstrip("\n"))
    assert len(FileConnector().pull(source(str(whole)), None, None).to_frame()) == 3


def test_rows_with_too_many_fields_are_rejected_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_text(HEADER + "C1,a@x.com,basic,2026-07-01,EXTRA\nC2,b@x.com,plus,2026-07-01\n")
    pull = FileConnector().pull(source(str(path)), None, None)
    assert pull.to_frame()["customer_id"].tolist() == ["C2"]
    assert pull.rejected[0][0] == "C1,a@x.com,basic,2026-07-01,EXTRA"
    assert "expected 4 fields, saw 5" in pull.rejected[0][1]


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_a_declared_delimiter_splits_regular_and_ragged_files(tmp_path: Path,
                                                              delimiter: str) -> None:
    def written(name: str, rows: list[list[str]]) -> str:
        path = tmp_path / name
        path.write_text("".join(delimiter.join(row) + "\n" for row in rows))
        return str(path)

    header = HEADER.strip().split(",")
    rows = [line.split(",") for line in DAY1.strip().splitlines()[1:]]
    rows[0][2] = f'"basic{delimiter}, yearly"'  # quoted: the delimiter is a value's
    frame = FileConnector().pull(source(written("regular.csv", [header, *rows]),
                                        delimiter=delimiter), None, None).to_frame()
    assert list(frame.columns) == header
    assert frame["plan"].tolist() == [f"basic{delimiter}, yearly", "plus", "premium"]
    extra = ["C9", "i@x.com", "basic", "2026-07-01", "EXTRA"]
    pull = FileConnector().pull(source(written("ragged.csv", [header, *rows, extra, ["C10"]]),
                                       delimiter=delimiter), None, None)
    assert pull.to_frame()["customer_id"].tolist() == [f"C000000{i}" for i in (1, 2, 3)] + [
        "C10"]
    assert pull.rejected[0][0] == delimiter.join(extra)


def test_a_delimiter_is_one_character() -> None:
    with pytest.raises(ValueError, match="delimiter"):
        source("x.csv", delimiter=";;")


def test_jsonl_keeps_good_lines_and_rejects_malformed_ones(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"id": 1, "updated_at": "2026-07-01T00:00:00Z", "v": null}\n'
                    '{"id": 2, "updated_at": \n'
                    "\n"
                    "[1, 2]\n"
                    '{"id": 3, "updated_at": "2026-07-02T00:00:00Z", "v": "x"}\n')
    pull = FileConnector().pull(source(str(path), "jsonl"), None, None)
    assert pull.to_frame()["id"].tolist() == [1, 3]
    assert pull.to_frame()["v"].isna().tolist() == [True, False]
    assert [raw for raw, _ in pull.rejected] == ['{"id": 2, "updated_at": ', "[1, 2]"]
    assert "line 2: invalid JSON" in pull.rejected[0][1]
    assert "line 4: expected a JSON object" in pull.rejected[1][1]
    backfill = FileConnector().pull(source(str(path), "jsonl"), None,
                                    Window(since=datetime(2026, 7, 2)))
    # no time, no window
    assert backfill.to_frame()["id"].tolist() == [3] and backfill.rejected == []


def test_jsonl_nested_objects_become_dotted_columns_and_arrays_json_text(
        tmp_path: Path) -> None:
    path = tmp_path / "payments.jsonl"
    path.write_text('{"id": 1, "client": {"id": "C7", "tier": {"name": "gold"}}, '
                    '"tags": ["a", "é"], "updated_at": "2026-07-01T00:00:00Z"}\n'
                    '{"id": 2, "client": {"id": "C8"}, "updated_at": "2026-07-02T00:00:00Z"}\n')
    frame = FileConnector().pull(source(str(path), "jsonl"), None, None).to_frame()
    assert sorted(frame.columns) == ["client.id", "client.tier.name", "id", "tags",
                                     "updated_at"]
    assert frame["client.id"].tolist() == ["C7", "C8"]
    assert frame["client.tier.name"].tolist()[0] == "gold"
    landed = as_raw_text(landed_table(frame, typed=False))
    assert landed["tags"].tolist()[0] == '["a", "é"]'  # JSON, not Python's repr
    assert landed["tags"].isna().tolist() == [False, True]


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".xz", ".zip"])
def test_compressed_exports_read_as_their_names_say(tmp_path: Path, suffix: str) -> None:
    """`.csv.gz` and its kin read as the plain file (CSV through Arrow and, for a ragged row,
    the csv module; JSON lines); one named so but not, or cut short, is refused by name."""
    import bz2
    import gzip
    import lzma
    import zipfile

    def packed(name: str, text: str) -> Path:
        path = tmp_path / (name + suffix)
        if suffix == ".zip":
            with zipfile.ZipFile(path, "w") as archive:
                archive.writestr(name, text)
        else:
            opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}[suffix]
            with opener(path, "wt") as handle:
                handle.write(text)
        return path

    csv_pull = FileConnector().pull(source(str(packed("day1.csv", DAY1 + "C9,x,y,z,EXTRA\n"))),
                                    None, None)
    assert csv_pull.to_frame()["customer_id"].tolist() == ["C0000001", "C0000002", "C0000003"]
    assert [raw for raw, _ in csv_pull.rejected] == ["C9,x,y,z,EXTRA"]
    lines = '{"id": 1, "updated_at": "2026-07-01T00:00:00Z"}\n'
    jsonl = FileConnector().pull(source(str(packed("events.jsonl", lines)), "jsonl"), None, None)
    assert jsonl.to_frame()["id"].tolist() == [1]

    fake = tmp_path / ("fake.csv" + suffix)
    fake.write_text(DAY1)
    cut = tmp_path / ("cut.csv" + suffix)
    cut.write_bytes(packed("whole.csv", DAY1 * 50).read_bytes()[:60])
    for broken in (fake, cut):
        with pytest.raises(SourceError, match=re.escape(f"'{broken}'")) as refused:
            FileConnector().pull(source(str(broken)), None, None).to_frame()
        if (suffix, broken) != (".bz2", fake):  # bz2 says only "Invalid data stream"
            assert "is not a whole" in str(refused.value) and "as its name says" in str(
                refused.value)


def test_parquet_keeps_the_source_types(tmp_path: Path) -> None:
    frame = pd.DataFrame({"id": [1, 2], "amount": [1.5, None],
                          "updated_at": pd.to_datetime(["2026-07-01", "2026-07-02"], utc=True)})
    frame.to_parquet(tmp_path / "part-0.parquet")
    pull = FileConnector().pull(source(str(tmp_path / "*.parquet"), "parquet"), None, None)
    pd.testing.assert_frame_equal(pull.to_frame(), frame.astype({"id": "Int64"}))
    assert pull.typed
    window = Window(since=datetime(2026, 7, 2))
    assert FileConnector().pull(source(str(tmp_path), "parquet"), None,
                                window).to_frame()["id"].tolist() == [2]
    (tmp_path / "part-1.parquet").write_bytes(b"PAR1 but not really")
    with pytest.raises(SourceError, match="part-1.parquet.*not a readable Parquet"):
        FileConnector().pull(source(str(tmp_path / "*.parquet"), "parquet"), None,
                             None).to_frame()


def test_any_fsspec_url_works_memory_included() -> None:
    root = f"memory://tideline-{uuid.uuid4().hex}"
    fs = fsspec.filesystem("memory")
    fs.pipe(f"{root}/a.csv", DAY1.encode())
    src = source(f"{root}/*.csv")
    first = FileConnector().pull(src, None, None)
    assert len(first.to_frame()) == 3
    fs.pipe(f"{root}/b.csv", DAY2.encode())
    second = FileConnector().pull(src, round_trip(first.checkpoint), None)
    assert second.to_frame()["customer_id"].tolist() == ["C0000004", "C0000005"]
    fs.rm(root, recursive=True)


@settings(max_examples=60, deadline=None)
@given(cut=st.integers(min_value=len(HEADER), max_value=len(DAY1) - 1))
def test_a_file_cut_anywhere_loses_no_complete_row(cut: int) -> None:
    """Every complete row survives a cut; the row being cut is kept only if it still has every
    field, otherwise it is rejected, whole, with its text."""
    original = pd.read_csv(io.StringIO(DAY1), dtype=str).astype(RAW_TEXT)
    text = DAY1[:cut]
    frame, rejected = csv_records(text.encode(), "cut.csv", source("cut.csv"))
    complete = text.count("\n") - 1
    assert frame.iloc[:complete].equals(original.iloc[:complete])
    assert len(frame) + len(rejected) == complete + (0 if text.endswith("\n") else 1)
    for raw, _ in rejected:
        assert text.endswith(raw)


def csv_records(raw: bytes, path: str, src: FileSource) -> tuple[pd.DataFrame,
                                                               list[tuple[str, str]]]:
    rejected: list[tuple[str, str]] = []
    batches = read_csv(lambda: io.BytesIO(raw), path, src, rejected)
    return Pull(None, {}, batches=batches).to_frame(), rejected


FIELDS = st.text(alphabet=st.sampled_from('ab,"\n \u00e9'), max_size=5)


def csv_text(rows: list[list[str]]) -> str:
    """Rows as a CSV exporter writes them: a field quoted when it holds a comma, quote or
    newline (or, at random here, anyway), quotes doubled."""
    def field(value: str) -> str:
        if any(char in value for char in ',"\n') or value.startswith(" "):
            return '"' + value.replace('"', '""') + '"'
        return value
    return "".join(",".join(map(field, row)) + "\n" for row in rows)


@settings(max_examples=150, deadline=None)
@given(width=st.integers(1, 4), data=st.data())
def test_arrow_reads_a_regular_file_as_the_csv_module_does(width: int, data: st.DataObject
                                                          ) -> None:
    """Quoted commas, quotes and newlines, empty fields, repeated header names: the fast path
    (Arrow) and the record-by-record one agree on every file whose rows all fit the header."""
    header = data.draw(st.lists(st.sampled_from(["a", "b", "a"]), min_size=width,
                                max_size=width))
    rows = data.draw(st.lists(st.lists(FIELDS, min_size=width, max_size=width), max_size=6))
    rows = [row for row in rows if row != [""]]  # a lone empty field is a blank line
    text = csv_text([header, *rows])
    frame, rejected = csv_records(text.encode(), "f.csv", source("f.csv"))
    expected, _ = read_ragged_csv(text, "f.csv")
    assert rejected == []
    pd.testing.assert_frame_equal(frame, expected)


def test_short_rows_are_padded_in_place_and_headers_made_unique(tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_bytes("\ufeffid,name,name,\n1,x,y,z\n2,only\n3,\"multi\nline\",,\n".encode())
    pull = FileConnector().pull(source(str(path)), None, None)
    assert list(pull.to_frame().columns) == ["id", "name", "name.1", "unnamed_3"]
    assert pull.to_frame().astype(object).where(pull.to_frame().notna(), None).values.tolist() == [
        ["1", "x", "y", "z"], ["2", "only", None, None], ["3", "multi\nline", None, None]]
    assert pull.rejected == []
