"""The deployment of `docs/deployment.md` across four hosts on this machine (`tests/cluster/
hosts.py`): `lake` runs lakeFS, PostgreSQL and Redis; `head` runs the Ray head (no CPUs of its
own: nothing is computed there) and the Prefect server with the deployments registered for the
`tideline` work pool; `w1` and `w2` each run a Ray worker and a Prefect process worker. The
hosts share the code and the project file (the same image), never a data directory: the lake
is lakeFS over the bridge and the registries are PostgreSQL on `lake`."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from tideline.core.ray_runtime import RAY_NODE_ENVIRONMENT
from tideline.demo.project import PROJECT_FILE

from tests.cluster.hosts import Host, Network, network
from tests.services import LAKEFS_KEYS, LakeFS, Postgres, Redis, skip_or_fail, start_or_skip
from tests.waiting import CLI, wait_for

BIN = Path(CLI[0]).parent
RAY_PORT, RAY_CLIENT_PORT, PREFECT_PORT = 6379, 10001, 4200
WORKERS = ("w1", "w2")
LOST_RUNS = {
    "name": "crash-lost-flow-runs", "enabled": True,
    "description": "A running flow run whose heartbeats stop (its worker or host died) is "
                   "marked crashed (Prefect's recipe for zombie flow runs)",
    "trigger": {"type": "event", "posture": "Proactive", "threshold": 1, "within": 90,
                "after": ["prefect.flow-run.heartbeat"],
                "expect": ["prefect.flow-run.heartbeat", "prefect.flow-run.Completed",
                           "prefect.flow-run.Failed", "prefect.flow-run.Cancelled",
                           "prefect.flow-run.Crashed"],
                "match": {"prefect.resource.id": ["prefect.flow-run.*"]},
                "for_each": ["prefect.resource.id"]},
    "actions": [{"type": "change-flow-run-state", "state": "CRASHED",
                 "message": "no heartbeat for 90 s: its worker is gone"}]}
"""The automation of the deployment recipe (docs/deployment.md) that marks lost runs crashed."""


@dataclass
class Cluster:
    """The running hosts, the settings every tideline process there gets, and the API."""

    net: Network
    env: dict[str, str]
    api: str
    project: Path
    lakefs: LakeFS
    postgres: Postgres
    prefect_workers: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start_prefect_worker(self, name: str) -> subprocess.Popen:
        """A Prefect process worker on the `tideline` pool on host `name`, polling every
        second; its flow runs inherit the host's environment (its own data directory)."""
        worker = self.net[name].start(
            "prefect-worker", [str(BIN / "prefect"), "worker", "start", "--pool", "tideline",
                               "--type", "process", "--name", f"worker-{name}"],
            {**self.env, "PREFECT_WORKER_QUERY_SECONDS": "1",
             "PREFECT_WORKER_PREFETCH_SECONDS": "1"}, cwd=self.project)
        self.prefect_workers[name] = worker
        return worker

    def kill_prefect_worker(self, name: str, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop host `name`'s Prefect worker: `sig` to its process group, the flow runs it
        started included (SIGTERM: stopped; SIGKILL: lost, as when its host dies)."""
        worker = self.prefect_workers.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, sig)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()

    @contextmanager
    def only_worker(self, name: str) -> Iterator[None]:
        """Only host `name`'s Prefect worker polls the pool for the block (the flow runs
        there); the others start again after it."""
        others = [other for other in WORKERS if other != name and other in self.prefect_workers]
        for other in others:
            self.kill_prefect_worker(other)
        try:
            yield
        finally:
            for other in others:
                self.start_prefect_worker(other)

    def logs(self) -> str:
        """The tail of every host's logs, for a failure message: its processes' own and the
        errors of the Ray client servers that ran the flows' drivers on the head."""
        tails = []
        for host in self.net.hosts.values():
            client_servers = host.root.glob("tmp/ray/session_latest/logs/ray_client_server*.err")
            for log in [*sorted(host.root.glob("*.log")), *sorted(client_servers)]:
                text = log.read_text(errors="replace").strip()
                if text:
                    tails.append(f"--- {host.name}/{log.name}\n{text[-2500:]}")
        return "\n".join(tails)


def _ray(host: Host, *args: str) -> subprocess.Popen:
    # a worker node takes the head's temporary directory unless told its own
    return host.start("ray", [str(BIN / "ray"), "start", "--block", "--disable-usage-stats",
                              f"--node-ip-address={host.address}",
                              f"--temp-dir={host.root / 'tmp' / 'ray'}",
                              "--object-store-memory=200000000", *args], RAY_NODE_ENVIRONMENT)


def ray_nodes(net: Network, alive: bool = True) -> dict[str, str]:
    """The live Ray nodes (all it has known with `alive=False`), asked on the head: node id
    -> the host it runs on (none while the head does not answer)."""
    head = net["head"]
    try:
        done = head.run([str(BIN / "python"), "-c",
                         f"import json, ray; ray.init(address='{head.address}:{RAY_PORT}', "
                         "log_to_driver=False); "
                         "print(json.dumps({n['NodeID']: n['NodeManagerAddress'] "
                         f"for n in ray.nodes() if n['Alive'] or not {alive}}}))"],
                        RAY_NODE_ENVIRONMENT, timeout=120)
    except subprocess.TimeoutExpired:
        return {}
    if done.returncode or not done.stdout.strip():
        return {}
    hosts = {host.address: host.name for host in net.hosts.values()}
    return {node: hosts[address] for node, address in
            json.loads(done.stdout.strip().splitlines()[-1]).items()}


def quiet_schedules(api: str) -> None:
    """Every deployment's schedules off and their scheduled runs gone: only the runs a test
    starts run (the hourly ingest would otherwise start in the middle of one)."""
    for deployment in httpx.post(f"{api}/deployments/filter", json={}, timeout=10).json():
        for schedule in deployment["schedules"]:
            httpx.patch(f"{api}/deployments/{deployment['id']}/schedules/{schedule['id']}",
                        json={"active": False}, timeout=10).raise_for_status()
    scheduled = httpx.post(f"{api}/flow_runs/filter", timeout=10, json={
        "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}, "limit": 200}).json()
    for run in scheduled:
        httpx.delete(f"{api}/flow_runs/{run['id']}", timeout=10).raise_for_status()


def _requirements() -> None:
    if os.geteuid() != 0:
        skip_or_fail("the cluster scenario makes network namespaces: it needs root")
    if shutil.which("ip") is None:
        skip_or_fail("the cluster scenario needs iproute2's `ip`")


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    _requirements()
    root = Path(tempfile.mkdtemp(prefix="tl"))  # short: Ray's socket paths live under it
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, root, True)
        net = stack.enter_context(network(["lake", "head", *WORKERS], root))
        lake, head = net["lake"], net["head"]
        where = {"host": lake.address, "netns": lake.netns}
        postgres = start_or_skip("postgres", lambda: Postgres.create(**where))
        stack.callback(postgres.close)
        redis = start_or_skip("redis", lambda: Redis.create(**where))
        stack.callback(redis.close)
        lakefs = start_or_skip("lakefs", lambda: LakeFS.create(**where))
        stack.callback(lakefs.close)

        # the same image on every host: the code (this checkout's venv) and the project file
        project = root / "project"
        project.mkdir()
        shutil.copyfile(PROJECT_FILE, project / "tideline.yaml")
        api = f"http://{head.address}:{PREFECT_PORT}/api"
        env = {"TIDELINE_PROJECT": str(project / "tideline.yaml"),
               "TIDELINE_LAKE_BACKEND": "lakefs", "TIDELINE_LAKEFS_ENDPOINT": lakefs.endpoint,
               "TIDELINE_LAKEFS_ACCESS_KEY_ID": LAKEFS_KEYS[0],
               "TIDELINE_LAKEFS_SECRET_ACCESS_KEY": LAKEFS_KEYS[1],
               "TIDELINE_LAKEFS_REPOSITORY": f"cluster-{uuid.uuid4().hex[:8]}",
               "TIDELINE_REGISTRY_URL": postgres.url, "TIDELINE_ONLINE_STORE": "redis",
               "TIDELINE_REDIS_URL": redis.url, "TIDELINE_FEATURE_PARTITIONS": "4",
               "TIDELINE_RAY_ADDRESS": f"ray://{head.address}:{RAY_CLIENT_PORT}",
               "PREFECT_API_URL": api,
               "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
               # flow runs beat, so the server can tell a lost one (LOST_RUNS); a lost run's
               # lease on its run id expires soon after, for its re-run
               "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30", "TIDELINE_LAKEFS_RUN_HOLD_TTL": "20"}

        # flows reach Ray through the head's client port, as docs/deployment.md says: the
        # Ray driver then runs on the head, the Prefect flow run on w1 or w2
        _ray(head, "--head", f"--port={RAY_PORT}", f"--ray-client-server-port={RAY_CLIENT_PORT}",
             "--num-cpus=0", "--include-dashboard=false")
        # the Prefect server's database on PostgreSQL, as the docs say for more than one
        # writing host: SQLite's single writer answered workers and automations with 503s
        prefect = head.start("prefect-server", [
            str(BIN / "prefect"), "server", "start", "--host", head.address,
            "--port", str(PREFECT_PORT), "--no-ui"],
            {**env, "PREFECT_API_DATABASE_CONNECTION_URL": postgres.database("prefect").replace(
                "+psycopg", "+asyncpg")})
        wait_for("the Ray head", lambda: ray_nodes(net), timeout=120)
        for name in WORKERS:
            _ray(net[name], f"--address={head.address}:{RAY_PORT}", "--num-cpus=1")

        def healthy() -> bool:
            if prefect.poll() is not None:
                raise AssertionError(f"the Prefect server exited:\n{head.log('prefect-server')}")
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{api}/health", timeout=2).status_code == 200
            return False

        wait_for("the Prefect server", healthy, timeout=180)
        deployed = head.run([*CLI, "deploy"], env, cwd=project, timeout=300)
        assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
        httpx.post(f"{api}/automations/", json=LOST_RUNS, timeout=10).raise_for_status()
        quiet_schedules(api)
        wait_for("both Ray workers", lambda: sorted(ray_nodes(net).values()) == [
            "head", *WORKERS], timeout=120)
        made = Cluster(net, env, api, project, lakefs, postgres)
        for name in WORKERS:
            made.start_prefect_worker(name)
        wait_for("both Prefect workers", lambda: len(httpx.post(
            f"{api}/work_pools/tideline/workers/filter", json={}, timeout=5).json()) == 2)
        yield made
