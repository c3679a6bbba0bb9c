"""Process-wide settings that only an entry point (a CLI command, a benchmark's main) may
change, each for a block and restored after it."""
from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager


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
    before = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = server.api_url
    with ThreadPoolExecutor(1) as pool:  # the server starts in a process of its own
        starting = pool.submit(server.start)
        try:
            if alongside is not None:
                alongside()
        finally:
            starting.result()
    try:
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            yield server.api_url
    finally:
        if before is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = before
