"""What the command groups share: the console, short commit ids, quiet Prefect, the stores."""
# heavy imports stay inside the functions that need them, so `tideline --help` starts fast

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from tideline.core.settings import load_settings

console = Console()


def configured_lake():  # noqa: ANN202 - returns the configured Lake backend
    from tideline.lake import open_lake

    return open_lake(load_settings())


def model_registry():  # noqa: ANN202 - models.registry.ModelRegistry, imported lazily
    from tideline.models.registry import open_model_registry

    return open_model_registry(load_settings())


def short(commit_id: str) -> str:
    return commit_id[:12]


def prefect_quiet() -> None:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # the embedded server's 20 s start-up limit is too short on a busy 2-core machine
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


@contextmanager
def flow_runtime() -> Iterator[None]:
    """What a command that runs flows sets up for them: quiet Prefect, and one Prefect API that
    the Ray workers report to as well (`tideline.core.process.prefect_api`)."""
    prefect_quiet()
    from tideline.core.process import prefect_api

    with prefect_api():
        yield
