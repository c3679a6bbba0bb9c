"""A user's own data through `tideline run`, as the docs tell it: from a project's directory
(its `tideline.yaml`), every stage runs or says why it does not apply, and the run exits 0.
Three shapes: the payments export `tideline init` starts from; the same payments as a warehouse
writes them to Parquet (integer client ids, column names with spaces and capitals, local times
with microseconds, decimal amounts); and a subscription event log with no customer table
(docs/examples/own-subscriptions), each from a committed sample file."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from tideline.core.settings import load_settings
from tideline.models.registry import open_model_registry

from tests.waiting import CLI, ROOT

EXAMPLES = ROOT / "docs" / "examples"

WAREHOUSE = {"payment_id": "Payment ID", "client": "Client", "paid_at": "Paid At",
             "value": "Amount"}


def _as_warehouse_export(project: Path) -> None:
    """Rewrite an init project's payments as two Parquet files of a warehouse's export, and its
    tideline.yaml for them, every name a user would change changed."""
    csv = project / "data" / "payments-2026-09.csv"
    frame = pd.read_csv(csv)
    nudge = pd.to_timedelta(np.random.default_rng(1).integers(0, 10**6, len(frame)), unit="us")
    table = pa.table({
        "Payment ID": frame["payment_id"],
        "Client": frame["client"].str.removeprefix("CL").astype("int64"),
        "Paid At": (pd.to_datetime(frame["paid_at"], utc=True) + nudge).dt.tz_convert(
            "Europe/Berlin"),
        "Amount": pa.array([str(v) for v in frame["value"]]).cast(pa.decimal128(12, 2))})
    (project / "export").mkdir()
    half = len(frame) // 2
    pq.write_table(table.slice(0, half), project / "export" / "part-0.parquet")
    pq.write_table(table.slice(half), project / "export" / "part-1.parquet")
    csv.unlink()
    text = (project / "tideline.yaml").read_text()
    for old, new in WAREHOUSE.items():
        text = text.replace(f"{old},", f"{new},").replace(f"{old}]", f"{new}]").replace(
            f": {old}\n", f": {new}\n").replace(f": {old}}}", f": {new}}}")
    declared = yaml.safe_load(text)
    declared["sources"][0].update(url="export/*.parquet", format="parquet")
    declared["contracts"][0]["columns"][1]["type"] = "int"
    (project / "tideline.yaml").write_text(yaml.safe_dump(declared, sort_keys=False))


@pytest.mark.slow
@pytest.mark.parametrize("example, data, model, entities", [
    ("init", "data/payments-2026-09.csv", "payment_churn", "client"),
    ("warehouse", "export/*.parquet", "payment_churn", "Client"),
    ("own-subscriptions", "events/events-2026-09.csv", "subscription_churn", "account"),
])
def test_tideline_run_from_a_projects_directory_runs_every_stage(
        example: str, data: str, model: str, entities: str, ray_cluster: str, tmp_path: Path
) -> None:
    here = tmp_path / example
    env = {**os.environ, "TIDELINE_RAY_ADDRESS": ray_cluster}
    env.pop("TIDELINE_PROJECT")  # the suite's demo: this test's project is the directory's
    env.pop("PREFECT_API_URL", None)  # a Prefect of its own: its drift event is not the suite's
    if example in ("init", "warehouse"):
        subprocess.run([*CLI, "init", str(here)], env=env, check=True, capture_output=True)
    else:
        shutil.copytree(EXAMPLES / example, here, ignore=shutil.ignore_patterns(".tideline"))
    if example == "warehouse":
        _as_warehouse_export(here)
    done = subprocess.run([*CLI, "run", "--run-id", "own"], cwd=here, env=env,
                          capture_output=True, text=True, timeout=1200)
    out = " ".join(done.stdout.split())  # rich wraps lines at the terminal's width
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    frame = (pd.concat(pd.read_parquet(f) for f in sorted(here.glob(data)))
             if data.endswith(".parquet") else pd.read_csv(here / data))
    rows, customers = len(frame), frame[entities].nunique()
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
