"""Session-wide fixtures: lake backends for the contract suite (the embedded lake and a real
lakeFS server), the Prefect test server, Ray, and the suite's own PostgreSQL, Redis and NATS
JetStream (`tests/services`), started once per session on free ports. A test marked
`@pytest.mark.service("postgres")` (or redis, nats, lakefs) starts that server; where it
cannot start here (not installed, no Go to build lakeFS) the test skips with the reason, and
under `CI=true` it fails instead."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# the suite's project is the bundled demo's file, wherever a test runs from; a test of another
# project (its own `tideline.yaml`, `tideline init`) sets or removes the variable itself
os.environ.setdefault("TIDELINE_PROJECT", str(Path(__file__).resolve().parent.parent / "demo"
                                              / "tideline.yaml"))

from tideline.lake.base import Lake  # noqa: E402
from tideline.lake.local import LocalLake  # noqa: E402

from tests.services import (  # noqa: E402
    LAKEFS_KEYS,
    LakeFS,
    Nats,
    Postgres,
    Redis,
    S,
    start_or_skip,
)

LAKE_BACKENDS = ["local", "lakefs"]


@pytest.fixture(params=LAKE_BACKENDS)
def lake(request: pytest.FixtureRequest, tmp_path: Path) -> Lake:
    """Every backend in turn: the contract suite runs once per backend."""
    if request.param == "local":
        return LocalLake(tmp_path / "lake")
    return request.getfixturevalue("lakefs_lake")


STARTED: list[str] = []
"""The servers this session started, named at its end (CI's log says which lakeFS ran)."""


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if STARTED:
        terminalreporter.write_sep("-", "servers started for this session")
        for line in STARTED:
            terminalreporter.write_line(line)


def _serve(name: str, create: Callable[[], S], described: Callable[[S], str]) -> Iterator[S]:
    """A session's server: started (or skipped), named in the summary, closed at the end."""
    server = start_or_skip(name, create)
    STARTED.append(described(server))
    yield server
    server.close()


@pytest.fixture(scope="session")
def lakefs_server() -> Iterator[LakeFS]:
    """One real lakeFS server for the session, built from its Go module."""
    yield from _serve("lakefs", LakeFS.create, lambda s: f"lakeFS {s.version} at {s.endpoint}")


@pytest.fixture(scope="session")
def lakefs_endpoint(lakefs_server: LakeFS) -> str:
    return lakefs_server.endpoint


@pytest.fixture
def lakefs_lake(lakefs_endpoint: str) -> Lake:
    """A fresh repository on the real lakeFS server, driven through the lakefs_sdk client."""
    from tideline.lake.lakefs import LakeFSLake

    return LakeFSLake(lakefs_endpoint, *LAKEFS_KEYS, f"test-{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    yield from _serve("postgres", Postgres.create, lambda s: f"postgres at {s.url}")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Redis]:
    yield from _serve("redis", Redis.create, lambda s: f"redis at {s.url}")


@pytest.fixture(scope="session")
def nats_server() -> Iterator[Nats]:
    yield from _serve("nats", Nats.create, lambda s: f"nats at {s.url}")


@pytest.fixture
def nats_url(nats_server: Nats) -> str:
    return nats_server.url


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """One Prefect test server for the whole session (it takes ~20 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the settings at a fresh data directory, as a new user's project would have."""
    monkeypatch.setenv("TIDELINE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "data"


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """One two-node Ray cluster for the session (`ray.cluster_utils.Cluster`), connected to;
    Prefect's RayTaskRunner reuses the connection instead of starting its own Ray."""
    import ray
    from ray.cluster_utils import Cluster

    node = {"num_cpus": 1, "object_store_memory": 200 * 1024**2}
    cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    cluster.add_node(**node)
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        yield cluster.address
    finally:
        ray.shutdown()
        cluster.shutdown()

@pytest.fixture(scope="module")
def postgres_database(postgres_server: Postgres) -> Iterator[str]:
    """A fresh database on the suite's PostgreSQL for this module, dropped afterwards."""
    name = f"tideline_test_{uuid.uuid4().hex[:8]}"
    try:
        yield postgres_server.database(name)
    finally:
        postgres_server.drop_database(name)


SERVICES = ("postgres", "redis", "nats", "lakefs")


@pytest.fixture(autouse=True)
def _require_services(request: pytest.FixtureRequest) -> None:
    """Start the servers a test's `service` markers name (once per session)."""
    for marker in request.node.iter_markers("service"):
        name = marker.args[0]
        if name not in SERVICES:
            pytest.fail(f"unknown service {name!r}; known: {', '.join(SERVICES)}")
        request.getfixturevalue(f"{name}_server")


@pytest.fixture(scope="session")
def monitored(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - tests.champion.Monitored
    """The demo lake drifting from 2 September, its churn features and a champion trained on
    it (`tests/champion.py`): built once, read by the monitoring and streaming tests."""
    from tests.champion import build_monitored

    return build_monitored(tmp_path_factory.mktemp("monitored"))
