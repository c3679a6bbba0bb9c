"""The pipeline across hosts (`tests/cluster/conftest.py`): started through the Prefect API as
a user's Run does, its feature partitions computed on both Ray workers, its feature tables the
same bytes a single process computes; then the faults a team's cluster meets: a Prefect worker
killed mid-flow, lakeFS restarted as a build commits, a worker host unplugged mid-build (last:
that host stays lost)."""
from __future__ import annotations

import json
import signal
import time
from collections import Counter
from collections.abc import Callable
from datetime import date
from typing import Any

import httpx
import pytest
from tideline.core.settings import load_settings
from tideline.demo.project import PROJECT_FILE, declared_pii
from tideline.features.definitions import load_definitions
from tideline.features.materialize import materialize_partition
from tideline.features.plan import plan_from_lake
from tideline.lake.base import MAIN
from tideline.lake.lakefs import LakeFSLake
from tideline.lake.publish import find_published

from tests.cluster.conftest import Cluster, ray_nodes
from tests.services import LAKEFS_KEYS
from tests.waiting import wait_for

pytestmark = pytest.mark.cluster

FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def run_deployment(cluster: Cluster, name: str, parameters: dict) -> str:
    """A flow run of deployment `name` (flow/deployment), as the UI's Run starts it. A 503 is
    the server's database refusing for now (its transaction rolled back): retried, as Prefect's
    own client does."""
    deployment = httpx.get(f"{cluster.api}/deployments/name/{name}", timeout=10).json()
    for attempt in range(5):
        started = httpx.post(f"{cluster.api}/deployments/{deployment['id']}/create_flow_run",
                             json={"parameters": parameters}, timeout=10)
        if started.status_code != 503:
            break
        time.sleep(2 * (attempt + 1))
    started.raise_for_status()
    return started.json()["id"]


def flow_state(cluster: Cluster, run: str) -> dict:
    return httpx.get(f"{cluster.api}/flow_runs/{run}", timeout=10).json()["state"]


class RunFailed(AssertionError):
    """A cluster run did not do what the test waited for."""


def failing(cluster: Cluster, run: str, message: str) -> RunFailed:
    """`message`, with what a reader needs to tell why: the run's state, its task runs'
    states and every host's logs."""
    tasks = httpx.post(f"{cluster.api}/task_runs/filter", timeout=10, json={
        "flow_runs": {"id": {"any_": [run]}}, "limit": 200}).json()
    states = Counter(f"{t['name'].split('[')[0]} {t['state']['type']}" for t in tasks
                     if t.get("state"))
    return RunFailed(f"{message}\nflow run {run}: {flow_state(cluster, run)}\n"
                     f"task runs: {dict(states)}\n{cluster.logs()}")


def finished(cluster: Cluster, run: str, timeout: float) -> dict:
    def final() -> dict | None:
        found = httpx.get(f"{cluster.api}/flow_runs/{run}", timeout=10).json()
        return found if found["state"]["type"] in FINAL else None

    try:
        return wait_for(f"flow run {run}", final, timeout=timeout)
    except AssertionError as exc:
        raise failing(cluster, run, str(exc)) from None


def during(cluster: Cluster, run: str, what: str, probe: Callable[[], Any],
           timeout: float) -> Any:
    """`wait_for(what, probe)` while flow run `run` goes on: a run that ends first, or a
    wait that gives up, fails with the run's states and the hosts' logs."""
    def probed() -> Any:
        if flow_state(cluster, run)["type"] not in FINAL:
            return probe()
        found = probe()  # asked after the run ended: what it did is all there is
        if not found:
            raise failing(cluster, run, f"the run ended while waiting for {what}")
        return found

    try:
        return wait_for(what, probed, timeout=timeout)
    except RunFailed:
        raise
    except AssertionError as exc:
        raise failing(cluster, run, str(exc)) from None


def partitions_artifact(cluster: Cluster, run_id: str) -> list[dict]:
    """The rows of the feature build's partition table for tideline run `run_id`."""
    found = httpx.post(f"{cluster.api}/artifacts/filter", timeout=10, json={
        "artifacts": {"key": {"any_": ["feature-partitions"]}}, "sort": "CREATED_DESC"}).json()
    mine = [a for a in found if run_id in (a.get("description") or "")]
    assert mine, f"no feature-partitions artifact for run {run_id}"
    data = mine[0]["data"]
    return json.loads(data) if isinstance(data, str) else data


def lake_of(cluster: Cluster) -> LakeFSLake:
    return LakeFSLake(cluster.lakefs.endpoint, *LAKEFS_KEYS,
                      cluster.env["TIDELINE_LAKEFS_REPOSITORY"], create=False)


def single_host_tables(lake: LakeFSLake, run_id: str) -> dict[str, bytes]:
    """The feature tables of `run_id`'s build, computed again here in one process without
    Ray, from the same source commit into a scratch branch: path -> bytes."""
    manifest = json.loads(lake.get(MAIN, f"features/_runs/{run_id}.json"))
    views = load_definitions(str(PROJECT_FILE))
    plan = plan_from_lake(views, lake, manifest["source_commit"],
                          declared_pii(load_settings(project=PROJECT_FILE)))
    scratch = f"single-host-{run_id}"
    lake.create_branch(scratch, manifest["source_commit"])
    days = [date.fromisoformat(day) for day in manifest["as_of"]]
    count = len(manifest["partitions"])
    paths = [path for k in range(count) for path in materialize_partition(
        lake, manifest["source_commit"], scratch, plan, days, k, count).paths]
    tables = {path: lake.get(scratch, path) for path in paths}
    lake.delete_branch(scratch)
    return tables


def test_pipeline_runs_across_hosts_as_a_single_host_would(cluster: Cluster) -> None:
    run = run_deployment(cluster, "pipeline/pipeline", {"run_id": "across"})
    state = finished(cluster, run, timeout=900)
    assert state["state"]["type"] == "COMPLETED", f"{state['state']}\n{cluster.logs()}"

    hosts = {node[:12]: host for node, host in ray_nodes(cluster.net).items()}
    rows = partitions_artifact(cluster, "across")
    placed = Counter(hosts[row["ray node"]] for row in rows)
    print(f"feature partitions per host: {dict(placed)}; per partition: " + ", ".join(
        f"{row['partition']} on {hosts[row['ray node']]} {row['entities']} entities "
        f"{row['rows']} rows {row['seconds']} s" for row in rows))
    assert set(placed) == {"w1", "w2"}, rows

    lake = lake_of(cluster)
    assert find_published(lake, "across-features") is not None
    published = {path: lake.get(MAIN, path) for row in json.loads(lake.get(
        MAIN, "features/_runs/across.json"))["partitions"] for path in row["paths"]}
    reference = single_host_tables(lake, "across")
    assert sorted(published) == sorted(reference)
    assert all(published[path] == reference[path] for path in published)
    print(f"{len(published)} feature tables equal a single host's, byte for byte")


def task_runs(cluster: Cluster, run: str, name_prefix: str, states: tuple[str, ...]
              ) -> list[dict]:
    """The task runs of flow run `run` whose name starts with `name_prefix`, in `states`."""
    found = httpx.post(f"{cluster.api}/task_runs/filter", timeout=10, json={
        "flow_runs": {"id": {"any_": [run]}},
        "task_runs": {"state": {"type": {"any_": list(states)}}}, "limit": 200}).json()
    return [t for t in found if t["name"].startswith(name_prefix)]


def merges(lake: LakeFSLake, run_id: str) -> int:
    """How many merges into main published `run_id`."""
    return sum(1 for c in lake.log(MAIN, 1000)
               if c.metadata.get("run_id") == run_id and len(c.parents) == 2)


def build(cluster: Cluster, run_id: str, partitions: int) -> str:
    return run_deployment(cluster, "build-features/build-features",
                          {"run_id": run_id, "partitions": partitions})


def test_a_run_whose_worker_is_killed_crashes_and_its_rerun_publishes_once(
        cluster: Cluster) -> None:
    lake = lake_of(cluster)
    with cluster.only_worker("w1"):
        run = build(cluster, "orphan", partitions=8)
        during(cluster, run, "partitions computing", lambda: task_runs(
            cluster, run, "features[", ("COMPLETED",)), timeout=300)
        cluster.kill_prefect_worker("w1", signal.SIGKILL)
        state = finished(cluster, run, timeout=180)
        print(f"worker killed mid-flow: the run is {state['state']['type']}")
        assert state["state"]["type"] == "CRASHED", state["state"]
        assert merges(lake, "orphan-features") == 0
        cluster.start_prefect_worker("w1")
        again = finished(cluster, build(cluster, "orphan", partitions=8), timeout=600)
    assert again["state"]["type"] == "COMPLETED", f"{again['state']}\n{cluster.logs()}"
    assert merges(lake, "orphan-features") == 1
    print("re-run with the same run id: completed, published once")


def test_a_lakefs_restart_during_the_commit_never_half_publishes(cluster: Cluster) -> None:
    lake = lake_of(cluster)
    before = lake.resolve(MAIN)
    run = build(cluster, "restarted", partitions=4)
    during(cluster, run, "the build's record, before its commit", lambda: task_runs(
        cluster, run, "record-feature-build", ("COMPLETED",)), timeout=600)
    cluster.lakefs.restart()
    state = finished(cluster, run, timeout=600)
    outcome = state["state"]["type"]
    print(f"lakeFS restarted during the commit: the run is {outcome}")
    assert outcome in ("COMPLETED", "FAILED"), state["state"]
    published = merges(lake, "restarted-features")
    assert lake.uncommitted(MAIN) == []
    if outcome == "FAILED":  # cleanly: main as before, and a re-run publishes
        assert published == 0 and lake.resolve(MAIN) == before
        again = build(cluster, "restarted", partitions=4)
        if finished(cluster, again, timeout=600)["state"]["type"] != "COMPLETED":
            raise failing(cluster, again, "the re-run after lakeFS's restart did not complete")
        published = merges(lake, "restarted-features")
    assert published == 1
    manifest = json.loads(lake.get(MAIN, "features/_runs/restarted.json"))
    assert all(lake.exists(MAIN, path) for part in manifest["partitions"]
               for path in part["paths"])


def test_a_worker_host_lost_mid_build_moves_its_partitions(cluster: Cluster) -> None:
    lake = lake_of(cluster)
    before = lake.resolve(MAIN)
    with cluster.only_worker("w1"):  # the flow itself runs on w1: w2 only computes
        run = build(cluster, "unplugged", partitions=12)
        during(cluster, run, "partitions done", lambda: len(task_runs(
            cluster, run, "features[", ("COMPLETED",))) >= 2, timeout=300)

        def running() -> set[str]:  # one CPU per worker: of two running, one runs on w2
            names = {t["name"] for t in task_runs(cluster, run, "features[", ("RUNNING",))}
            return names if len(names) == 2 else set()

        in_flight = during(cluster, run, "a partition running on each worker", running,
                           timeout=120)
        cluster.net.unplug("w2")
        unplugged = time.monotonic()
        state = finished(cluster, run, timeout=600)
        took = time.monotonic() - unplugged
    assert state["state"]["type"] == "COMPLETED", f"{state['state']}\n{cluster.logs()}"
    hosts = {node[:12]: host for node, host in ray_nodes(cluster.net, alive=False).items()}
    placed = {f"features[{row['partition']}/12]": hosts[row["ray node"]]
              for row in partitions_artifact(cluster, "unplugged")}
    print(f"w2 unplugged with {sorted(in_flight)} in flight; the run completed {took:.0f} s "
          f"later; partitions per host: {dict(Counter(placed.values()))}")
    # Ray's default keepalive (RAY_NODE_ENVIRONMENT) would hold w2's partition 5-7 minutes
    assert took < 300, f"w2's partition waited for gRPC's keepalive: {took:.0f} s"
    assert len(placed) == 12
    assert {placed[name] for name in in_flight} == {"w1"}  # w2's own moved to w1
    assert merges(lake, "unplugged-features") == 1
    assert lake.get_commit(MAIN).parents[0] == before  # main moved exactly once
