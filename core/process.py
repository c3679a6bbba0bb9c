"""Process-wide settings that only an entry point (a CLI command, a benchmark's main) may
change, each for a block and restored after it."""
from __future__ import annotations

import ctypes
import gc
import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
"""glibc's `mallopt` parameters (malloc.h)."""
_GLIBC_DEFAULTS = {_M_TRIM_THRESHOLD: 128 * 1024, _M_TOP_PAD: 128 * 1024,
                   _M_MMAP_THRESHOLD: 128 * 1024}


@contextmanager
def kept_heap() -> Iterator[None]:
    """Keep freed memory in the heap for the block instead of handing it back to the system:
    batch-at-a-time work (an ingest's audit) frees and reallocates arrays of the same sizes
    batch after batch, and glibc would return each and fault it in again, page by page. The
    heap keeps up to 1 GiB free; blocks over 32 MiB (glibc's ceiling) are still mapped apart.
    Nothing changes where the C library is not glibc."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        yield
        return
    settings = {_M_TRIM_THRESHOLD: 2**30, _M_TOP_PAD: 256 * 2**20, _M_MMAP_THRESHOLD: 32 * 2**20}
    for parameter, value in settings.items():
        mallopt(parameter, value)
    try:
        yield
    finally:
        for parameter, value in _GLIBC_DEFAULTS.items():
            mallopt(parameter, value)


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Keep the objects alive now (modules, a long-lived state) out of the cyclic collector's
    full collections for the block: a long-running loop then does not stall while it walks
    them. Restored (unfrozen) on exit."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_server(port: int) -> subprocess.Popen[bytes]:
    """Prefect's temporary API server, run as `SubprocessASGIServer` runs it (uvicorn on
    Prefect's app factory, its UI off), without that class: importing it loads the server's
    whole stack into this process first, 3 s before the server could even start. Prefect is
    not imported here at all, so the server (3 s of imports) and this process (1 s of Prefect,
    then the flows) start side by side; the server reads the settings of the environment and
    the active profile itself, settings changed in this process do not reach it."""
    package = importlib.util.find_spec("prefect")
    if package is None or package.origin is None:
        raise RuntimeError("Prefect is not installed in this environment")
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--app-dir", str(Path(package.origin).parent.parent),
         "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port",
         str(port), "--log-level", "error", "--lifespan", "on"],
        env={**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
             "PREFECT__SERVER_FINAL": "1"})


_PORT_TAKEN = 3
"""uvicorn's exit status when its port was taken meanwhile."""


def _await_server(server: subprocess.Popen[bytes], port: int,
                  timeout: float) -> tuple[subprocess.Popen[bytes], int]:
    """Wait until the server answers its health check (on another port if its own was taken
    meanwhile); the server and its port."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() == _PORT_TAKEN:
            port = _free_port()
            server = _start_server(port)
        elif server.returncode is not None:
            raise RuntimeError(f"Prefect's temporary server exited with status "
                               f"{server.returncode} before it answered")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                return server, port
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.kill()
    raise RuntimeError(f"Prefect's temporary server did not answer within {timeout:.0f} s")


def _drain_prefect_senders(timeout: float = 5.0) -> None:
    """Send the logs and events Prefect still queues for the API while it answers: at exit,
    with the server stopped, Prefect's senders would retry them for minutes."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=timeout)
    EventsWorker.drain_all(timeout=timeout)


@contextmanager
def prefect_api(alongside: Callable[[], object] | None = None) -> Iterator[str]:
    """The Prefect API this process's flows report to, named in `PREFECT_API_URL` for the block
    so that every process they start reports to it too: the configured one, else Prefect's
    temporary server, started now instead of on the client's first use and stopped at the
    block's end. Ray workers inherit the variable and receive it in each task's settings;
    without it each would start a throwaway server of its own and report there. `alongside`
    (starting Ray, say) runs while the server starts, with the variable already set.

    Unless the environment names an API, the server is started before Prefect is imported here
    (`_start_server`), and stopped unused should the active profile name one."""
    before = os.environ.get("PREFECT_API_URL")
    port = _free_port()
    server = None if before else _start_server(port)
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        temporary_settings,
    )

    configured = PREFECT_API_URL.value()
    if configured or server is None:
        if server is not None:
            _stop(server)
        if alongside is not None:
            alongside()
        yield configured
        return
    os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{port}/api"
    try:
        if alongside is not None:
            alongside()
        server, port = _await_server(server, port,
                                     PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value())
        url = f"http://127.0.0.1:{port}/api"
        os.environ["PREFECT_API_URL"] = url  # moved if the port was taken meanwhile
        # no flow-run heartbeats: they tell a lasting server that a run's process died, and this
        # one dies with it; each flow's end would wait up to 1 s for the heartbeat thread
        with temporary_settings({PREFECT_API_URL: url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            yield url
    finally:
        _drain_prefect_senders()
        _stop(server)
        if before is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:  # set, but empty
            os.environ["PREFECT_API_URL"] = before


def _stop(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    try:
        server.wait(timeout=5)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
