"""Raw landing: partitions, text fidelity, checkpoints that move only with a commit, backfills."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from ingestion.landing import land, read_checkpoint, read_landed
from ingestion.sources import FileSource, Pull, Window
from lake.local import LocalLake
from lake.publish import publish
from lake.tables import read_frame
from tideline.errors import IngestionError

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
