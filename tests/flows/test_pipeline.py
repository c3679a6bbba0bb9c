"""The pipeline flow on a real (test) Prefect server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.pipeline import pipeline
from lake.local import LocalLake


@pytest.mark.slow
def test_pipeline_publishes_and_reruns_idempotently(prefect_server: None, data_dir: Path) -> None:
    first = pipeline(run_id="t1")
    lake = LocalLake(data_dir / "lake")
    assert lake.resolve("main") == first["commit"]
    manifest = json.loads(lake.get("main", "runs/t1/manifest.json"))
    assert manifest == {"run_id": "t1", "stages": ["lake"]}
    assert lake.get_commit("main").metadata["run_id"] == "t1"
    assert "run-t1" not in lake.branches()

    again = pipeline(run_id="t1")
    assert again["commit"] == first["commit"]
    assert len(lake.log("main")) == 3  # created, run commit, publish merge: nothing added
