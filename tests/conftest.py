"""Session-wide fixtures: lake backends for the contract suite, the Prefect test server, Ray,
and `@pytest.mark.service("postgres")` and friends, which skip when the service is not listening
(with the reason) but fail under `CI=true`, where it must be."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

from lake.base import Lake  # noqa: E402
from lake.local import LocalLake  # noqa: E402

LAKE_BACKENDS = ["local", "lakefs"]


@pytest.fixture(params=LAKE_BACKENDS)
def lake(request: pytest.FixtureRequest, tmp_path: Path) -> Lake:
    """Every backend in turn: the contract suite runs once per backend."""
    if request.param == "local":
        return LocalLake(tmp_path / "lake")
    return request.getfixturevalue("lakefs_lake")


LAKEFS_KEYS = ("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")


@pytest.fixture(scope="session")
def lakefs_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One lakeFS stand-in server for the session (see tests/lake/lakefs_server.py)."""
    from tests.lake.lakefs_server import serve_lakefs

    with serve_lakefs(tmp_path_factory.mktemp("lakefs"), *LAKEFS_KEYS) as endpoint:
        yield endpoint


@pytest.fixture
def lakefs_lake(lakefs_endpoint: str) -> Lake:
    """A fresh repository on the stand-in, driven through the real lakefs_sdk client."""
    from lake.lakefs import LakeFSLake

    return LakeFSLake(lakefs_endpoint, *LAKEFS_KEYS, f"test-{uuid.uuid4().hex[:12]}")


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

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/"


@pytest.fixture(scope="module")
def postgres_database() -> Iterator[str]:
    """A fresh database on the local PostgreSQL for this module, dropped afterwards."""
    import sqlalchemy as sa

    name = f"tideline_test_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(POSTGRES + "postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f"CREATE DATABASE {name}"))
    try:
        yield POSTGRES + name
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f"DROP DATABASE {name} WITH (FORCE)"))
        admin.dispose()


SERVICES = {
    "postgres": ("127.0.0.1", 5432),
    "nats": ("127.0.0.1", 4222),
    "redis": ("127.0.0.1", 6379),
}


def service_listening(name: str) -> bool:
    host, port = SERVICES[name]
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(autouse=True)
def _require_services(request: pytest.FixtureRequest) -> None:
    for marker in request.node.iter_markers("service"):
        name = marker.args[0]
        if name not in SERVICES:
            pytest.fail(f"unknown service {name!r}; known: {', '.join(SERVICES)}")
        if service_listening(name):
            continue
        host, port = SERVICES[name]
        reason = f"{name} is not listening on {host}:{port}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}, and CI=true requires it")
        pytest.skip(f"{reason} (start it to run this test)")


@pytest.fixture(scope="session")
def monitored(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - tests.champion.Monitored
    """The demo lake drifting from 2 September, its churn features and a champion trained on
    it (`tests/champion.py`): built once, read by the monitoring and streaming tests."""
    from tests.champion import build_monitored

    return build_monitored(tmp_path_factory.mktemp("monitored"))
