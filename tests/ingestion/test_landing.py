"""Raw landing: partitions, text fidelity, checkpoints that move only with a commit, backfills."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tideline.core.errors import IngestionError
from tideline.ingestion import landing
from tideline.ingestion.contracts import Column
from tideline.ingestion.landing import land, partition_dates, read_checkpoint, read_landed
from tideline.ingestion.rawtext import RAW_TEXT
from tideline.ingestion.sources import FileSource, Pull, Window
from tideline.lake.local import LocalLake
from tideline.lake.publish import publish
from tideline.lake.tables import read_frame

SOURCE = FileSource(name="shop-tx", dataset="transactions", timestamp_column="ts",
                    url="unused.csv", format="csv")


def pull_of(rows: list[dict], checkpoint: dict, rejected: list | None = None) -> Pull:
    return Pull(frame=pd.DataFrame(rows), checkpoint=checkpoint, rejected=rejected or [])


ROWS = [
    {"id": 1, "ts": "2026-07-01T10:00:00Z", "amount": 12.5},
    {"id": 2, "ts": "2026-07-02T09:00:00Z", "amount": "12,5O"},
    {"id": 3, "ts": "not a date", "amount": None},
]


@pytest.fixture
def lake(tmp_path: Path) -> LocalLake:
    return LocalLake(tmp_path / "lake")


def test_lands_text_by_source_and_day_with_a_record(lake: LocalLake) -> None:
    record = land(lake, "main", SOURCE, pull_of(ROWS, {"cursor": 3}, [("{bad", "malformed")]),
                  run_id="r1", checkpoint_before=None)
    assert record.rows == 3 and record.rejected == 1
    assert list(record.parts) == [
        "raw/source=shop-tx/dt=2026-07-01/part-r1.parquet",
        "raw/source=shop-tx/dt=2026-07-02/part-r1.parquet",
        "raw/source=shop-tx/dt=unknown/part-r1.parquet",
        "raw/source=shop-tx/rejected/part-r1.parquet",
    ]
    day2 = read_frame(lake, "main", record.parts[1])
    assert day2.to_dict("records") == [{"id": "2", "ts": "2026-07-02T09:00:00Z", "amount": "12,5O"}]
    assert read_frame(lake, "main", record.parts[3])["reason"].tolist() == ["malformed"]
    assert lake.exists("main", "raw/source=shop-tx/_runs/r1.json")
    landed = read_landed(lake, "main", record)
    assert sorted(landed["id"]) == ["1", "2", "3"] and landed["amount"].isna().sum() == 1


@pytest.mark.parametrize(("declared", "values"), [
    ({"type": "timestamp", "format": "unix_ms"}, ["1782900000000", 1782986399999, None, "x"]),
    ({"type": "timestamp", "format": "%d.%m.%Y %H:%M"},
     ["01.07.2026 10:00", "02.07.2026 23:59", None, "2026-07-01"]),
])
def test_a_declared_format_picks_each_records_day(lake: LocalLake, declared: dict,
                                                  values: list) -> None:
    """Epoch numbers and other formats land on their UTC day, read as the contract reads them
    (they would otherwise be nanoseconds of 1970, or a guess)."""
    column = Column(name="ts", **declared)
    rows = [{"id": k, "ts": value} for k, value in enumerate(values)]
    record = land(lake, "main", SOURCE, pull_of(rows, {}), run_id="r1", checkpoint_before=None,
                  timestamp=column)
    assert [part.split("/")[2] for part in record.parts] == [
        "dt=2026-07-01", "dt=2026-07-02", "dt=unknown"]
    assert read_frame(lake, "main", record.parts[2])["id"].tolist() == ["2", "3"]


def test_checkpoint_reaches_main_only_with_the_merge(lake: LocalLake) -> None:
    with pytest.raises(RuntimeError), publish(lake, "r1", message="ingest") as run:
        land(lake, run.branch, SOURCE, pull_of(ROWS, {"cursor": 3}), run_id="r1",
             checkpoint_before=None)
        raise RuntimeError("validation crashed")
    assert read_checkpoint(lake, "main", "shop-tx") is None
    with publish(lake, "r1", message="ingest") as run:
        land(lake, run.branch, SOURCE, pull_of(ROWS, {"cursor": 3}), run_id="r1",
             checkpoint_before=read_checkpoint(lake, run.branch, "shop-tx"))
    assert read_checkpoint(lake, "main", "shop-tx") == {"cursor": 3}


def test_rerun_of_a_run_id_rewrites_instead_of_adding(lake: LocalLake) -> None:
    for _ in range(2):
        land(lake, "main", SOURCE, pull_of(ROWS, {"cursor": 3}), run_id="r1",
             checkpoint_before=None)
        lake.commit("main", "ingest")
    assert len(lake.log("main")) == 2  # the second landing changed nothing
    assert len(lake.list("main", "raw/source=shop-tx/dt=")) == 3


def test_backfill_replaces_its_days_and_keeps_the_checkpoint(lake: LocalLake) -> None:
    land(lake, "main", SOURCE, pull_of(ROWS, {"cursor": 3}), run_id="r1", checkpoint_before=None)
    window = Window(datetime(2026, 7, 1), datetime(2026, 7, 2))
    again = [{"id": 1, "ts": "2026-07-01T10:00:00Z", "amount": 13.0}]
    record = land(lake, "main", SOURCE, pull_of(again, {"cursor": 99}), run_id="b1",
                  checkpoint_before={"cursor": 3}, window=window)
    day1 = lake.list("main", "raw/source=shop-tx/dt=2026-07-01/")
    assert [o.path for o in day1] == ["raw/source=shop-tx/dt=2026-07-01/part-b1.parquet"]
    assert record.replaced == ("raw/source=shop-tx/dt=2026-07-01/part-r1.parquet",)
    assert lake.exists("main", "raw/source=shop-tx/dt=2026-07-02/part-r1.parquet")
    assert read_checkpoint(lake, "main", "shop-tx") == {"cursor": 3}
    assert record.checkpoint_after == {"cursor": 3}


@pytest.mark.parametrize("window", [Window(datetime(2026, 7, 1, 12), None),
                                    Window(datetime(2026, 7, 2), datetime(2026, 7, 1))])
def test_bad_backfill_windows_are_named(lake: LocalLake, window: Window) -> None:
    with pytest.raises(IngestionError, match="backfill"):
        land(lake, "main", SOURCE, pull_of(ROWS, {}), run_id="b", checkpoint_before=None,
             window=window)


def test_window_of_days_is_utc_midnights() -> None:
    from datetime import UTC, date

    assert Window.of_days(None, None) is None
    window = Window.of_days(date(2026, 7, 1), None)
    assert window == Window(datetime(2026, 7, 1, tzinfo=UTC), None)


DRIVER_VALUES = {
    "ints": [1, None, -3, 2**70],  # the last one beyond int64
    "int64": np.array([7, -8], dtype=np.int64),
    "nullable": pd.array([1, None], dtype="Int64"),
    "floats": [0.1, 1e16, None, 100.0],
    "decimals": [Decimal("1.50"), Decimal("-0.00"), None],
    "bools": [True, False, None],
    "stamps": [datetime(2026, 7, 1, 10, tzinfo=UTC), None,
               datetime(2026, 7, 1, 10, 30, 0, 5, tzinfo=timezone(timedelta(hours=2)))],
    "mixed": [1, "a", 2.5, b"x"],
}


@pytest.mark.parametrize("name", DRIVER_VALUES)
def test_raw_text_is_what_str_makes_of_each_value(lake: LocalLake, name: str) -> None:
    """Whichever way a column is converted (in one pass or value by value), each value lands
    as `str` writes it (ISO 8601 for datetimes), nulls as nulls."""
    values = pd.Series(DRIVER_VALUES[name])
    expected = [None if pd.isna(v) else v.isoformat() if isinstance(v, datetime) else str(v)
                for v in values.astype(object)]
    frame = pd.DataFrame({"ts": "2026-07-01T00:00:00Z", "value": values})
    record = land(lake, "main", SOURCE, Pull(frame=frame, checkpoint={}), run_id="r1",
                  checkpoint_before=None)
    landed = read_landed(lake, "main", record)["value"]
    assert landed.dtype == RAW_TEXT
    assert [None if pd.isna(v) else v for v in landed] == expected


STAMPS = st.one_of(
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2040, 1, 1),
                 timezones=st.sampled_from([UTC, timezone(timedelta(hours=-7)),
                                            timezone(timedelta(hours=5, minutes=30))])
                 ).map(lambda d: d.isoformat().replace("+00:00", "Z")),
    st.dates(min_value=datetime(1900, 1, 1).date()).map(str),
    st.sampled_from(["not a date", "", "2026-02-30T00:00:00Z", "07/01/2026 23:30",
                     "2026-07-01 23:30:00", "3000-01-01T00:00:00Z"]),
)


@settings(max_examples=80, deadline=None)
@given(values=st.lists(STAMPS | st.none(), min_size=1, max_size=12))
def test_dt_is_the_utc_day_pandas_reads(values: list[str | None]) -> None:
    """Arrow reads the usual ISO 8601 column; anything else goes to pandas: the day is the
    same either way, and an unreadable time lands under `unknown`."""
    frame = pd.DataFrame({"ts": pd.Series(values, dtype=object)})
    stamps = pd.to_datetime(frame["ts"], errors="coerce", utc=True, format="mixed")
    assert partition_dates(frame, "ts").tolist() == stamps.dt.strftime("%Y-%m-%d").fillna(
        "unknown").tolist()


def test_each_day_keeps_its_rows_in_input_order_across_batches(
    lake: LocalLake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(landing, "SPLIT_ROWS", 7)  # many batches, each holding several days
    rng = np.random.default_rng(3)
    days = rng.integers(1, 6, 100)
    frame = pd.DataFrame({"id": np.arange(100),
                          "ts": [f"2026-07-0{d}T12:00:00Z" for d in days]}).astype(RAW_TEXT)
    record = land(lake, "main", SOURCE, Pull(frame=frame, checkpoint={}), run_id="r1",
                  checkpoint_before=None)
    assert [p.split("/")[2] for p in record.parts] == [f"dt=2026-07-0{d}" for d in range(1, 6)]
    landed = read_landed(lake, "main", record)
    expected = frame.assign(day=days).sort_values("day", kind="stable").drop(columns="day")
    pd.testing.assert_frame_equal(landed, expected.reset_index(drop=True))
