"""How tideline starts or joins Ray: a new local Ray by default, the cluster `ray_address`
names otherwise (checked before Ray is asked to join it), with the project's code shipped."""
from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tideline.core.errors import RayUnavailable

log = logging.getLogger(__name__)

RAY_INIT = {"include_dashboard": False, "log_to_driver": False}
LOCAL_RAY = {**RAY_INIT, **({} if os.environ.get("RAY_ADDRESS") else {"address": "local"})}
"""Without an address (ours or Ray's own RAY_ADDRESS), a new local Ray: never the cluster a
leftover /tmp/ray/ray_current_cluster names, whose head may be long gone (`ray.init()` would
wait minutes for it)."""

RAY_NODE_ENVIRONMENT = {"RAY_grpc_client_keepalive_time_ms": "10000",
                        "RAY_grpc_client_keepalive_timeout_ms": "10000"}
"""The environment of every Ray process of a cluster (`ray start` on each host, a driver joining
with host:port). Ray retries a task whose node is lost only once its owner's call to the worker
running it fails; a host whose link goes down drops packets without a reset, so that call waits
for gRPC's keepalive, which Ray sets to a ping after 5 minutes of silence and 2 more minutes for
its answer. With these a call to a lost host fails within about 20 s. Every process needs the
same values: a Ray server refuses pings more frequent than its own setting and closes the
connection."""


CLIENT_SERVER_STARTS = 3
"""Tries of a connection through a head's client port (`ray://`) whose server the head fails
to start."""


def start_ray(address: str | None) -> None:
    """Start (or join) Ray for this process now: flows' `RayTaskRunner`s then use it instead of
    each starting and stopping their own, and a command can start it while other things
    start. Stopped when the process exits (or by `ray.shutdown()`)."""
    connect(init_kwargs(address))


def connect(kwargs: dict[str, Any]) -> None:
    """`ray.init(**kwargs)`. Through a head's client port, tried again when the head fails to
    start this client's server (Ray's "Starting Ray client server failed": the server process
    the head starts for each client exited at start, now and then in `make test-cluster`); a
    new connection gets a new server. Other failures are raised at once."""
    import ray

    for attempt in range(1, CLIENT_SERVER_STARTS + 1):
        try:
            ray.init(**kwargs)
            return
        except ConnectionAbortedError as exc:
            if attempt == CLIENT_SERVER_STARTS or "client server failed" not in str(exc):
                raise
            log.warning("the Ray head at %s failed to start this client's server (%s); "
                        "connecting again", kwargs.get("address"),
                        str(exc).strip().splitlines()[-1])
            time.sleep(2.0 * attempt)


def ray_cpus() -> int:
    """The CPUs of the Ray cluster this process is connected to (this machine's when none):
    how many tasks run at once."""
    import ray  # only once Ray is in use: importing it costs a second

    if ray.is_initialized():
        return max(1, int(ray.cluster_resources().get("CPU", 1)))
    return os.cpu_count() or 1


SHIPPED_EXCLUDES = [".venv/", ".tideline/", ".git/", "**/__pycache__/", "*.egg-info/",
                    "benchmarks/", "tests/"]
REACH_SECONDS = 5.0


def init_kwargs(address: str | None) -> dict[str, Any]:
    """`ray.init`'s arguments: a new local Ray without an address; else the cluster at
    `address` (`host:port` or `ray://host:port`), once its head answers, with the project's
    code travelling with the job (Ray's `working_dir` runtime environment; the workers need its
    dependencies installed, the same image as the driver)."""
    if address is None:
        return LOCAL_RAY
    check_reachable(address)
    return {**RAY_INIT, "address": address, "runtime_env": shipped_code()}


def shipped_code() -> dict[str, Any]:
    """tideline's code for a cluster's workers: a source checkout as Ray's `working_dir` (its
    `tideline` package finds the others beside it), an installed package as a `py_module`."""
    import tideline

    if len(tideline.__path__) > 1:  # a source checkout: see tideline/__init__.py
        checkout = Path(tideline.__path__[-1])
        return {"working_dir": str(checkout), "excludes": SHIPPED_EXCLUDES}
    return {"py_modules": [tideline.__path__[0]]}


def check_reachable(address: str, timeout: float = REACH_SECONDS) -> None:
    """Fail within `timeout` when no Ray head listens at `address`: `ray.init` would retry
    for many minutes, logging only Ray's own warnings."""
    if address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise RayUnavailable(f"TIDELINE_RAY_ADDRESS {address!r} is not host:port or "
                             "ray://host:port")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise RayUnavailable(
            f"no Ray head answers at {address} ({exc.strerror or exc}); start the cluster "
            "(`ray start --head`) or point TIDELINE_RAY_ADDRESS at its head, or unset it to "
            "compute on a local Ray") from None


def ensure_ray() -> None:
    """Ray for this process: the instance it is connected to, else the configured cluster or
    a new local Ray."""
    import ray
    from tideline.core.settings import load_settings

    if not ray.is_initialized():
        start_ray(load_settings().ray_address)


@contextmanager
def ray_session() -> Iterator[None]:
    """Ray up for the block, started (or joined) once and shut down after if this started it:
    the pipeline's stages share it (Prefect's RayTaskRunner uses a Ray already initialised)
    instead of each starting and stopping its own."""
    import ray

    started = not ray.is_initialized()
    ensure_ray()
    try:
        yield
    finally:
        if started:
            ray.shutdown()
