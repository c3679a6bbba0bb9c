"""A user's own data through `tideline run`, as the docs tell it: from a project's directory
(its `tideline.yaml`), every stage runs or says why it does not apply, and the run exits 0.
Two shapes: the payments export `tideline init` starts from, and a subscription event log with
no customer table (docs/examples/own-subscriptions), each with its committed sample file."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from tideline.core.settings import load_settings
from tideline.models.registry import open_model_registry

from tests.waiting import CLI, ROOT

EXAMPLES = ROOT / "docs" / "examples"


@pytest.mark.slow
@pytest.mark.parametrize("example, data, model, entities", [
    ("init", "data/payments-2026-09.csv", "payment_churn", "client"),
    ("own-subscriptions", "events/events-2026-09.csv", "subscription_churn", "account"),
])
def test_tideline_run_from_a_projects_directory_runs_every_stage(
        example: str, data: str, model: str, entities: str, ray_cluster: str, tmp_path: Path
) -> None:
    here = tmp_path / example
    env = {**os.environ, "TIDELINE_RAY_ADDRESS": ray_cluster}
    env.pop("TIDELINE_PROJECT")  # the suite's demo: this test's project is the directory's
    env.pop("PREFECT_API_URL", None)  # a Prefect of its own: its drift event is not the suite's
    if example == "init":
        subprocess.run([*CLI, "init", str(here)], env=env, check=True, capture_output=True)
    else:
        shutil.copytree(EXAMPLES / example, here, ignore=shutil.ignore_patterns(".tideline"))
    done = subprocess.run([*CLI, "run", "--run-id", "own"], cwd=here, env=env,
                          capture_output=True, text=True, timeout=1200)
    out = " ".join(done.stdout.split())  # rich wraps lines at the terminal's width
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    rows = len(pd.read_csv(here / data))
    customers = pd.read_csv(here / data)[entities].nunique()
    assert f"{rows:,} │ {rows:,} │ 0 │" in out  # every row clean, none quarantined
    assert f"features for {customers:,} entities" in out
    assert "online store:" in out and "rows written" in out
    assert f"{model}:v1 is the champion" in out
    assert f"{model}:v1 scored" in out and "features drifted" in out
    assert "features kept of" in out  # discovery over the event table alone
    assert "skipped real-time: the live events are the demo's" in out
    assert "skipped feature discovery" not in out

    registry = open_model_registry(load_settings(data_dir=here / ".tideline"))
    trained = registry.get(model, 1)
    assert trained.metrics["roc_auc"] > 0.72
    assert trained.metrics["roc_auc"] > trained.baseline_metrics["roc_auc"]
