"""Ray workers report to the flow's Prefect API, the embedded server included: a flow fanned
out on Ray, in a process with no PREFECT_API_URL, shows its task runs through the driver's API,
and no worker starts a server of its own (Ray keeps each worker's output in its session's
log files). Without `prefect_api` every worker does: the check can tell."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.waiting import ROOT

SCRIPT = """
import json, os, sys
import ray
from prefect import flow, get_client, task
from prefect.client.schemas.filters import FlowRunFilter
from prefect.runtime import flow_run
from prefect_ray import RayTaskRunner
from tideline.core.process import prefect_api
from tideline.core.ray_runtime import LOCAL_RAY


@task
def where(k: int) -> int:
    return os.getpid()


@flow(task_runner=RayTaskRunner(init_kwargs={**LOCAL_RAY, "num_cpus": 2}))
def fan() -> tuple[str, list[int], str]:
    pids = [f.result() for f in where.map(range(4))]
    return flow_run.id, pids, ray._private.worker._global_node.get_session_dir_path()


def run() -> dict:
    run_id, pids, session = fan()
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [run_id]}))
    return {"pids": pids, "session": session, "driver": os.getpid(),
            "states": sorted(r.state.type.value for r in runs)}


if sys.argv[1] == "api":
    with prefect_api():
        print(json.dumps(run()))
else:
    print(json.dumps(run()))
"""


def fan_out(tmp_path: Path, mode: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(PREFECT_HOME=str(tmp_path / mode), PYTHONPATH=str(ROOT), RAY_ADDRESS="",
               PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180")
    done = subprocess.run([sys.executable, "-c", SCRIPT, mode], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def servers_started(session: str) -> int:
    logs = Path(session, "logs")
    return sum(path.read_text(errors="replace").count("Starting temporary server")
               for path in logs.glob("worker-*"))


@pytest.mark.slow
def test_ray_workers_report_to_the_drivers_embedded_api(tmp_path: Path) -> None:
    run = fan_out(tmp_path, "api")
    assert run["driver"] not in run["pids"]  # the tasks ran on Ray's workers
    assert run["states"] == ["COMPLETED"] * 4
    assert servers_started(run["session"]) == 0


@pytest.mark.slow
def test_without_it_each_worker_starts_a_server_of_its_own(tmp_path: Path) -> None:
    run = fan_out(tmp_path, "plain")
    assert run["driver"] not in run["pids"]
    assert servers_started(run["session"]) >= 1
