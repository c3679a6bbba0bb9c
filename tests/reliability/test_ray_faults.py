"""Ray faults: a cluster address whose head does not answer is a clear error naming the address
within seconds (Ray's own `ray.init` retries for many minutes), for the feature build's task
runner and for every stage that joins Ray itself. A bug on a worker comes back with its frames.
A Ray worker killed while it writes a partition is covered by `test_kill.py` (the
`feature-write` failpoint: Ray retries, the tables match an uninterrupted build). A head that
fails to start a client's server is asked again."""
from __future__ import annotations

import socket
import time

import pytest
import ray
from prefect import flow, task
from tideline.core import ray_runtime
from tideline.core.errors import RayUnavailable
from tideline.core.ray_runtime import (
    CLIENT_SERVER_STARTS,
    LOCAL_RAY,
    check_reachable,
    connect,
    ensure_ray,
    init_kwargs,
)
from tideline.core.settings import Settings
from tideline.flows.build_features import ConfiguredRayTaskRunner, ray_task_runner
from tideline.tasks.remote import worker_traceback

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


CLIENT_SERVER_FAILED = ConnectionAbortedError(
    "Initialization failure from server:\nTraceback (most recent call last):\n  File \"proxier.py\""
    ", line 772, in Datapath\nRuntimeError: Starting Ray client server failed. See "
    "ray_client_server_23001.err for detailed logs.")
"""What `ray.init("ray://…")` raises when the head's client server exits at its start (seen in
`make test-cluster`): Ray's own error, raised here by a stand-in for `ray.init`, since a
real head fails so only now and then."""


def test_a_client_server_the_head_fails_to_start_is_asked_for_again(
        ledger: Ledger, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[dict] = []

    def init_failing(times: int, error: Exception) -> None:
        """`ray.init` raising `error` for the first `times` calls."""
        def init(**kwargs: object) -> None:
            calls.append(kwargs)
            if len(calls) <= times:
                raise error

        calls.clear()
        monkeypatch.setattr(ray, "init", init)

    monkeypatch.setattr(ray_runtime.time, "sleep", lambda seconds: None)
    init_failing(CLIENT_SERVER_STARTS - 1, CLIENT_SERVER_FAILED)
    ledger.fault(CLIENT_SERVER_STARTS - 1)
    connect({"address": "ray://head:10001"})
    assert len(calls) == CLIENT_SERVER_STARTS  # joined at the last try
    assert ("failed to start this client's server (RuntimeError: Starting Ray client server "
            "failed.") in caplog.text

    init_failing(CLIENT_SERVER_STARTS, CLIENT_SERVER_FAILED)  # every time: the last error
    with pytest.raises(ConnectionAbortedError, match="Starting Ray client server failed"):
        connect({"address": "ray://head:10001"})
    assert len(calls) == CLIENT_SERVER_STARTS

    init_failing(1, ConnectionAbortedError("version mismatch"))  # any other refusal: at once
    with pytest.raises(ConnectionAbortedError, match="version mismatch"):
        connect({"address": "ray://head:10001"})
    assert len(calls) == 1


@task(retries=0)
@worker_traceback
def _reciprocal(n: int) -> float:
    return 1 / n


@flow(task_runner=ConfiguredRayTaskRunner())
def _reciprocals(n: int) -> float:
    return _reciprocal.submit(n).result()


def test_an_unexpected_failure_on_a_worker_names_its_line(
        ray_cluster: str, prefect_server: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in code run on a Ray worker reaches the flow's caller with the worker's frames
    (the exception comes back pickled without them, and the worker's log stays there)."""
    monkeypatch.setenv("TIDELINE_RAY_ADDRESS", ray_cluster)
    with pytest.raises(ZeroDivisionError) as caught:
        _reciprocals(0)
    (note,) = caught.value.__notes__
    assert note.startswith("raised in _reciprocal on the Ray worker ")
    assert "test_ray_faults.py" in note and "return 1 / n" in note
    assert "remote.py" not in note  # the wrapper is no part of the story
