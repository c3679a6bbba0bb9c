"""One whole `tideline run` of the demo, through the CLI, with the lake on the real lakeFS server:
every stage publishes to the repository's main by write-audit-publish, nothing is left staged
or branched, and the lineage names lakeFS commits."""
from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest
from tideline.lake.base import MAIN
from tideline.lake.lakefs import LakeFSLake
from tideline.lake.lease import HOLDS_BRANCH
from tideline.lake.publish import find_published

from tests.services import LAKEFS_KEYS
from tests.waiting import CLI


@pytest.mark.slow
@pytest.mark.service("lakefs")
def test_the_demo_runs_end_to_end_on_lakefs(
    lakefs_endpoint: str, ray_cluster: str, tmp_path: Path
) -> None:
    repository = f"demo-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "TIDELINE_DATA_DIR": str(tmp_path / "data"),
           "TIDELINE_LAKE_BACKEND": "lakefs", "TIDELINE_LAKEFS_ENDPOINT": lakefs_endpoint,
           "TIDELINE_LAKEFS_ACCESS_KEY_ID": LAKEFS_KEYS[0],
           "TIDELINE_LAKEFS_SECRET_ACCESS_KEY": LAKEFS_KEYS[1],
           "TIDELINE_LAKEFS_REPOSITORY": repository, "TIDELINE_RAY_ADDRESS": ray_cluster}
    env.pop("PREFECT_API_URL", None)  # a Prefect of its own: its drift event is not the suite's
    done = subprocess.run([*CLI, "run", "--run-id", "lk1"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "quality score" in done.stdout and "churn:v1" in done.stdout

    lake = LakeFSLake(lakefs_endpoint, *LAKEFS_KEYS, repository, create=False)
    # every run branch merged and gone; the live stream's checkpoints keep a branch of their own
    assert set(lake.branches()) == {MAIN, HOLDS_BRANCH, "stream-demo-live"}
    assert lake.uncommitted(MAIN) == [] and lake.uncommitted(HOLDS_BRANCH) == []
    ingested, built = find_published(lake, "lk1"), find_published(lake, "lk1-features")
    assert ingested.metadata["stage"] == "ingest" and built.parents[0] == ingested.id
    assert built.metadata["source_commit"] == ingested.id
    stages = [c.metadata.get("stage") for c in lake.log(MAIN, limit=40)
              if len(c.parents) == 2]  # main moves only by merges of run branches
    assert stages[:8] == ["discovery", "alerts", "monitor", "scores", "model", "training-set",
                          "features", "features"]
    assert lake.list(MAIN, "clean/transactions/dt=") and lake.exists(
        MAIN, "reports/quality/lk1.html")
    assert lake.exists(MAIN, "models/churn/v1/model.txt")
