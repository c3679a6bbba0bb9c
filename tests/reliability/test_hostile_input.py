"""Hostile files never crash ingestion and never lose a row: a CSV or JSON-lines file of random
bytes, the wrong encoding, lone surrogates, huge fields, NaN/inf, extreme dates, missing, extra
or repeated columns either fails with a `SourceError` naming the file, or goes through the real
path (connector → landing → validation) with every record clean or quarantined with a reason."""
from __future__ import annotations

import csv
import io
import json
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tideline.core.errors import SourceError
from tideline.ingestion.audit import validate_dataset
from tideline.ingestion.connectors.files import FileConnector
from tideline.ingestion.contracts import Contract
from tideline.ingestion.landing import land
from tideline.ingestion.sources import FileSource
from tideline.lake.local import LocalLake
from tideline.lake.tables import read_frame

from tests.reliability.conftest import Ledger

NOW = datetime(2026, 7, 1, tzinfo=UTC)
CONTRACT = Contract.from_dict({
    "dataset": "hostile",
    "key": "id",
    "columns": {
        "id": {"type": "string"},
        "amount": {"type": "float", "min": 0},
        "count": {"type": "int"},
        "ts": {"type": "timestamp", "not_in_future": True},
        "day": {"type": "date", "required": False},
        "flag": {"type": "bool", "required": False},
    },
})
COLUMNS = ["id", "amount", "count", "ts", "day", "flag", "extra", ""]
"""Header names drawn from: declared, undeclared and blank ones, any may repeat or be missing."""
# the ledger is a session-wide tally, meant to count every example
FUZZ = settings(max_examples=100, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])

HOSTILE_VALUES = st.one_of(
    st.text(max_size=20),
    st.text(alphabet=st.characters(blacklist_categories=()), max_size=8),  # lone surrogates too
    st.sampled_from(["NaN", "nan", "inf", "-inf", "Infinity", "-0", "1e400", "-1e400", "1e-400",
                     "9223372036854775808", "-9223372036854775809", "0x1F", "1_000", "١٢٣"]),
    st.sampled_from(["0001-01-01", "0001-01-01T00:00:00Z", "9999-12-31", "9999-12-31T23:59:59Z",
                     "10000-01-01", "0000-00-00", "2026-02-30", "1677-09-21T00:12:43Z",
                     "2262-04-11T23:47:17Z", "-1", "99999999999999999999", "1e20",
                     "253402300800", "-62135596801", "12/31/9999", "31.12.0001"]),
    st.sampled_from(["x" * 200_000, "é" * 50_000, "\x00" * 1_000, '"' * 501, "\r\n" * 300]),
    st.none(),
)


@dataclass
class Outcome:
    rows: int
    """Records the connector read: landed, or rejected as unparseable."""
    validated: int
    """Records validation saw: the landed rows, and the rejected ones."""
    clean: int
    quarantined: int
    """Quarantined by validation, or rejected by the connector."""


def ingest(tmp: Path, name: str, data: bytes, *, fmt: str, encoding: str) -> Outcome:
    """The file through the connector, landing and validation, as `tideline ingest` runs it."""
    path = tmp / name
    path.write_bytes(data)
    source = FileSource(name="hostile", dataset="hostile", timestamp_column="ts",
                        url=str(path), format=fmt, encoding=encoding)
    lake = LocalLake(tmp / "lake")
    try:
        pull = FileConnector().pull(source, None, None)
        record = land(lake, "main", source, pull, run_id="r1", checkpoint_before=None)
    except SourceError as exc:
        assert name in str(exc), f"the error does not name the file: {exc}"
        raise
    assert all(reason.strip() and name in reason for _, reason in pull.rejected)
    result = validate_dataset(lake, "main", CONTRACT, [record], timestamp_column="ts",
                              run_id="r1", now=NOW)
    if len(result.quarantine):
        assert result.quarantine["_reason"].str.strip().str.len().gt(0).all()
        assert result.quarantine["_rules"].notna().all()
    return Outcome(rows=record.rows + len(pull.rejected),
                   validated=result.rows + len(pull.rejected), clean=len(result.clean),
                   quarantined=len(result.quarantine) + len(pull.rejected))


def csv_bytes(header: list[str], rows: list[list[str | None]], encoding: str) -> bytes:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows([[value or "" for value in row] for row in rows])
    text = buffer.getvalue()
    return text.encode(encoding, errors="surrogatepass" if "utf" in encoding else "replace")


def ingest_or_error(ledger: Ledger, name: str, data: bytes, *, fmt: str, encoding: str,
                    expected_rows: int | None) -> None:
    """The file refused with a `SourceError` naming it, or its rows reconciled: the records
    written (`expected_rows`, when the test knows them; else those the connector read) against
    the rows clean, quarantined or rejected."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            outcome = ingest(Path(tmp), name, data, fmt=fmt, encoding=encoding)
        except SourceError:
            ledger.fuzz("files refused with a SourceError naming them")
            return
    rows_in = outcome.rows if expected_rows is None else expected_rows
    ledger.reconcile(f"{name} ({encoding})", rows_in, outcome.clean + outcome.quarantined)
    assert outcome.rows == outcome.validated == outcome.clean + outcome.quarantined
    assert outcome.rows == rows_in
    ledger.fuzz("files ingested, every row clean or quarantined")


@FUZZ
@given(data=st.binary(max_size=4_000), fmt=st.sampled_from(["csv", "jsonl"]),
       encoding=st.sampled_from(["utf-8", "latin-1", "utf-16"]))
def test_random_bytes_never_crash(ledger: Ledger, data: bytes, fmt: str, encoding: str) -> None:
    ingest_or_error(ledger, f"random.{fmt}", data, fmt=fmt, encoding=encoding,
                    expected_rows=None)


@FUZZ
@given(header=st.lists(st.sampled_from(COLUMNS), min_size=1, max_size=9),
       data=st.data(),
       written=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1"]),
       declared=st.sampled_from(["utf-8", "utf-16", "latin-1"]))
def test_hostile_csv_is_clean_quarantined_or_a_named_error(
    ledger: Ledger, header: list[str], data: st.DataObject, written: str, declared: str
) -> None:
    rows = data.draw(st.lists(st.lists(HOSTILE_VALUES, min_size=len(header),
                                       max_size=len(header)), max_size=12))
    ingest_or_error(ledger, "hostile.csv", csv_bytes(header, rows, written), fmt="csv",
                    encoding=declared, expected_rows=len(rows) if written == declared else None)


JSON_VALUES = st.one_of(
    HOSTILE_VALUES,
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 10**30, -(10**30), True, 0.0]),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def json_line(pairs: list[tuple[str, object]]) -> str:
    """An object written by hand, so that a key may repeat as it can in a hostile file."""
    return "{" + ", ".join(f"{json.dumps(key)}: {json.dumps(value)}"
                           for key, value in pairs) + "}"


@FUZZ
@given(records=st.lists(st.one_of(
    st.lists(st.tuples(st.sampled_from(COLUMNS + ["_row", "_reason", "_rules"]), JSON_VALUES),
             max_size=8).map(json_line),
    st.sampled_from(['{"id": "1"', "[1, 2]", '"text"', "null", "{'id': 1}", "{}"]),
), max_size=12), encoding=st.sampled_from(["utf-8", "utf-16"]))
def test_hostile_jsonl_is_clean_quarantined_or_a_named_error(
    ledger: Ledger, records: list[str], encoding: str
) -> None:
    data = "\n".join(records).encode(encoding, errors="surrogatepass")
    ingest_or_error(ledger, "hostile.jsonl", data, fmt="jsonl", encoding=encoding,
                    expected_rows=len(records))


def test_a_file_in_the_wrong_encoding_names_the_file_and_the_fix(tmp_path: Path) -> None:
    data = "id,amount\nré,1\n".encode("latin-1")
    with pytest.raises(SourceError, match=r"wrong\.csv.*not valid utf-8.*encoding: latin-1"):
        ingest(tmp_path, "wrong.csv", data, fmt="csv", encoding="utf-8")


def test_input_columns_named_like_the_bookkeeping_keep_their_values(tmp_path: Path) -> None:
    data = b'{"id": "a", "amount": "x", "_row": "mine", "_reason": "theirs"}\n'
    ingest(tmp_path, "bookkeeping.jsonl", data, fmt="jsonl", encoding="utf-8")
    quarantine = read_frame(LocalLake(tmp_path / "lake"), "main",
                            "quarantine/hostile/part-r1.parquet")
    row = quarantine.iloc[0]
    assert (row["_row.input"], row["_reason.input"], row["_row"]) == ("mine", "theirs", 0)
    assert "amount: 'x' is not a float" in row["_reason"]


def test_duplicate_headers_keep_both_columns_and_every_row(tmp_path: Path) -> None:
    data = b"id,amount,amount,ts\na,1,2,2026-06-01T00:00:00Z\nb,-1,x,0001-01-01\n"
    outcome = ingest(tmp_path, "dup.csv", data, fmt="csv", encoding="utf-8")
    assert (outcome.rows, outcome.clean, outcome.quarantined) == (2, 1, 1)
