"""Ray faults: a cluster address whose head does not answer is a clear error naming the address
within seconds (Ray's own `ray.init` retries for many minutes), for the feature build's task
runner and for every stage that joins Ray itself. A Ray worker killed while it writes a
partition is covered by `test_kill.py` (the `feature-write` failpoint: Ray retries, the tables
match an uninterrupted build)."""
from __future__ import annotations

import socket
import time

import pytest
import ray
from tideline.core.errors import RayUnavailable
from tideline.core.ray_runtime import (
    LOCAL_RAY,
    check_reachable,
    ensure_ray,
    init_kwargs,
)
from tideline.core.settings import Settings
from tideline.flows.build_features import ray_task_runner

from tests.reliability.conftest import Ledger
from tests.waiting import ROOT


def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_an_unreachable_head_fails_fast_and_names_the_address(
    scheme: str, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The build's task runner and `ensure_ray` refuse an address with no head behind it, in
    seconds, with the address and what to do; Ray is never asked to join it."""
    address = f"{scheme}127.0.0.1:{closed_port()}"
    ledger.fault()
    started = time.monotonic()
    with pytest.raises(RayUnavailable, match=rf"no Ray head answers at {address}.*ray start"):
        ray_task_runner(Settings(ray_address=address))
    monkeypatch.setenv("TIDELINE_RAY_ADDRESS", address)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as in a process yet to join
    with pytest.raises(RayUnavailable, match=address):
        ensure_ray()
    assert time.monotonic() - started < 10


def test_a_malformed_address_is_named() -> None:
    with pytest.raises(RayUnavailable, match="'head-without-port' is not host:port"):
        check_reachable("head-without-port")


def test_a_reachable_head_is_joined_with_the_project_shipped() -> None:
    """An address that answers gets Ray's arguments for joining it, the project's code as the
    job's working directory; no address means a new local Ray."""
    with socket.socket() as head:
        head.bind(("127.0.0.1", 0))
        head.listen()
        address = f"ray://127.0.0.1:{head.getsockname()[1]}"
        kwargs = init_kwargs(address)
    assert kwargs["address"] == address
    assert kwargs["runtime_env"]["working_dir"] == str(ROOT)  # this source checkout
    assert (ROOT / "flows" / "build_features.py").is_file()
    assert ".venv/" in kwargs["runtime_env"]["excludes"]
    assert init_kwargs(None) == LOCAL_RAY
