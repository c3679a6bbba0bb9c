"""Process-wide settings that only an entry point (a CLI command, a benchmark's main) may
change, each for a block and restored after it."""
from __future__ import annotations

import ctypes
import gc
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

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


@contextmanager
def prefect_api(alongside: Callable[[], object] | None = None) -> Iterator[str]:
    """The Prefect API this process's flows report to, named in `PREFECT_API_URL` for the block
    so that every process they start reports to it too: the configured one, else Prefect's
    embedded server, started now instead of on the client's first use. Ray workers inherit
    the variable and receive it in each task's settings; without it each would start a
    throwaway server of its own and report there. `alongside` (starting Ray, say) runs while
    the server starts, with the variable already set."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    configured = PREFECT_API_URL.value()
    if configured:
        if alongside is not None:
            alongside()
        yield configured
        return
    from prefect.server.api.server import SubprocessASGIServer  # the server's stack: on need

    server = SubprocessASGIServer()
    if server.port is None:  # its address, before it starts, for what starts alongside
        server.port = server.find_available_port()
    before = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = server.api_url
    with ThreadPoolExecutor(1) as pool:  # the server starts in a process of its own
        starting = pool.submit(server.start)
        try:
            if alongside is not None:
                alongside()
        finally:
            starting.result()
    os.environ["PREFECT_API_URL"] = server.api_url  # moved if the port was taken meanwhile
    try:
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            yield server.api_url
    finally:
        if before is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = before
