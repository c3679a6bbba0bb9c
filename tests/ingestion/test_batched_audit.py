"""The audit in batches against the audit of whole datasets, on the demo's data and contracts
(their defects: duplicates, repeated keys, orphans, bad values, outliers): the same verdicts,
counts, scores, anomalies, quarantine and clean rows, however small the batches."""
from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tideline.demo.generator import DemoSpec, generate
from tideline.demo.project import PROJECT_FILE
from tideline.ingestion.audit import audit
from tideline.ingestion.contracts import Contract
from tideline.ingestion.landing import land
from tideline.ingestion.project import Project, load_project
from tideline.ingestion.rawtext import as_text
from tideline.ingestion.sources import FileSource, Pull
from tideline.lake.local import LocalLake
from tideline.lake.tables import read_frame

NOW = datetime(2026, 10, 1, tzinfo=UTC)
DATASETS = {"customers": "updated_at", "transactions": "ts", "tickets": "created_at",
            "events": "ts"}


@pytest.fixture(scope="module")
def demo() -> tuple[Project, dict[str, pd.DataFrame]]:
    data = generate(replace(DemoSpec(), customers=600))
    contracts = tuple(unique_emails(contract) for contract in load_project(
        PROJECT_FILE, demo_dir="", demo_api="http://unused",
        validation_time=NOW.isoformat()).contracts)
    sources = tuple(FileSource(name=name, dataset=name, timestamp_column=ts, url="x.csv",
                               format="csv") for name, ts in DATASETS.items())
    frames = {name: as_text(getattr(data, name)) for name in DATASETS}
    return Project(sources=sources, contracts=contracts, validation_time=NOW), frames


def unique_emails(contract: Contract) -> Contract:
    """The contract, with customers' e-mails declared unique: the demo repeats some (its
    duplicate rows), so the `unique` rule has failures to find across batches too."""
    columns = [column.model_copy(update={"unique": column.name == "email"})
               for column in contract.columns]
    return contract.model_copy(update={"columns": tuple(columns)})


def run(tmp_path: Path, name: str, demo: tuple[Project, dict[str, pd.DataFrame]],
        batch_bytes: int) -> tuple[LocalLake, dict]:
    project, frames = demo
    lake = LocalLake(tmp_path / name)
    records = [land(lake, "main", source, Pull(frames[source.dataset], {}), run_id="r1",
                    checkpoint_before=None, batch_bytes=batch_bytes)
               for source in project.sources]
    result = audit(lake, "main", project, records, run_id="r1", report_dir=tmp_path / name,
                   batch_bytes=batch_bytes)
    return lake, {o.dataset: o for o in result.outcomes}


def read_all(lake: LocalLake, prefix: str, order: list[str]) -> pd.DataFrame:
    frames = [read_frame(lake, "main", info.path) for info in lake.list("main", prefix)]
    frame = pd.concat(frames, ignore_index=True)
    return frame.sort_values(order, kind="stable").reset_index(drop=True)


def test_batches_give_the_whole_datasets_verdicts(
        tmp_path: Path, demo: tuple[Project, dict[str, pd.DataFrame]]) -> None:
    whole_lake, whole = run(tmp_path, "whole", demo, 2**30)
    small_lake, small = run(tmp_path, "small", demo, 1)  # batches of the fewest rows
    assert small == whole
    rows = {name: len(frame) for name, frame in demo[1].items()}
    assert all(rows[name] > 256 for name in DATASETS)  # batches of 256 rows: two or more
    failures = {rule for outcome in whole.values() for rule in outcome.failures}
    assert {"duplicate", "duplicate_key:event_id", "reference:customer_id", "unique:email"
            } <= failures
    for name, contract in {c.dataset: c for c in demo[0].contracts}.items():
        quarantined = read_all(small_lake, f"quarantine/{name}/part-", ["_row"])
        pd.testing.assert_frame_equal(
            quarantined, read_all(whole_lake, f"quarantine/{name}/part-", ["_row"]))
        key = list(contract.key)
        clean = read_all(small_lake, f"clean/{name}/", key)
        pd.testing.assert_frame_equal(clean, read_all(whole_lake, f"clean/{name}/", key))
        assert len(clean) == whole[name].clean
        assert sorted(p.path.split("/")[2] for p in small_lake.list("main", f"clean/{name}/")
                      ) == sorted(p.path.split("/")[2]
                                  for p in whole_lake.list("main", f"clean/{name}/"))
    stats = [read_frame(lake, "main", "quarantine/transactions/part-r1.parquet")["_reason"]
             for lake in (small_lake, whole_lake)]
    assert np.array_equal(stats[0].sort_values().to_numpy(), stats[1].sort_values().to_numpy())
