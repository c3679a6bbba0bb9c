"""The pipeline flow on the bundled demo, on a real (test) Prefect server."""
from __future__ import annotations

from pathlib import Path

import pytest

from deployments.demo import DEFECT_RULES, injected_defects
from flows.pipeline import pipeline
from lake.local import LocalLake


@pytest.mark.slow
def test_demo_pipeline_catches_every_defect_and_reruns_idempotently(
    prefect_server: None, data_dir: Path
) -> None:
    audit = pipeline(run_id="t1")
    injected = injected_defects(data_dir / "demo")
    for outcome in audit.outcomes:
        expected = {DEFECT_RULES[outcome.dataset][kind]: count
                    for kind, count in injected[outcome.dataset].items()}
        assert outcome.failures == expected, outcome.dataset
        assert outcome.quarantined == sum(expected.values())
        assert outcome.clean + outcome.quarantined == outcome.rows
        assert outcome.gate_passed
    lake = LocalLake(data_dir / "lake")
    head = lake.resolve("main")
    assert lake.get_commit("main").metadata["run_id"] == "t1"
    assert lake.list("main", "clean/transactions/dt=")
    assert lake.exists("main", "reports/quality/t1.html")
    assert "run-t1" not in lake.branches()

    assert pipeline(run_id="t1") == audit  # the same run again: nothing new
    assert lake.resolve("main") == head

    incremental = pipeline(run_id="t2")  # a new run: every checkpoint says nothing is new
    assert {o.rows for o in incremental.outcomes} == {0}
    assert lake.get_commit("main").metadata["run_id"] == "t2"


@pytest.mark.slow
def test_backfill_replaces_its_days_without_duplicates(prefect_server: None, data_dir: Path
                                                       ) -> None:
    from datetime import date

    from flows.ingest import ingest
    from lake.tables import read_frame

    pipeline(run_id="b0")
    lake = LocalLake(data_dir / "lake")
    day = "clean/transactions/dt=2026-07-15/"

    def rows_on_day() -> int:
        return sum(len(read_frame(lake, "main", o.path)) for o in lake.list("main", day))

    before, checkpoints = rows_on_day(), lake.get("main", "checkpoints/shop-transactions.json")
    audit = ingest(run_id="b1", since=date(2026, 7, 15), until=date(2026, 7, 16))
    assert {o.dataset: o.rows > 0 for o in audit.outcomes}["transactions"]
    assert rows_on_day() == before > 0
    assert [o.path.rsplit("/", 1)[1] for o in lake.list("main", day)] == ["part-b1.parquet"]
    assert lake.get("main", "checkpoints/shop-transactions.json") == checkpoints
