"""Retrying an action that talks to another system (a mail server, the Prefect API) with
exponential backoff, and reporting how it went instead of raising."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def with_retries(action: Callable[[], T], errors: tuple[type[BaseException], ...],
                 attempts: int, backoff: float) -> tuple[T | None, int, str]:
    """Call `action` up to `attempts` times, sleeping `backoff * 2**k` after the k-th failure
    of `errors`: its result (None when every attempt failed), the attempts made and the last
    error (`Type: message`, empty on success)."""
    detail = ""
    for attempt in range(1, attempts + 1):
        try:
            return action(), attempt, ""
        except errors as exc:
            detail = f"{type(exc).__name__}: {exc}"
            if attempt < attempts:
                time.sleep(backoff * 2 ** (attempt - 1))
    return None, attempts, detail
