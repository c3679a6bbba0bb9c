"""What a task run on a Ray worker brings back when it fails unexpectedly."""
from __future__ import annotations

import functools
import os
import socket
import traceback
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from tideline.core.errors import TidelineError

P = ParamSpec("P")
R = TypeVar("R")


def worker_traceback(fn: Callable[P, R]) -> Callable[P, R]:
    """`fn`, whose unexpected exception carries the worker's traceback as a note. The
    exception reaches the driver pickled, without its frames, and a worker's log stays on
    its host, so without the note a failure names no line of code. A TidelineError explains
    itself and is left as it is."""
    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except TidelineError:
            raise
        except Exception as exc:  # the frames below this one's
            exc.add_note(f"raised in {fn.__name__} on the Ray worker {socket.gethostname()} "
                         f"(pid {os.getpid()}):\n"
                         + "".join(traceback.format_tb(exc.__traceback__.tb_next)).rstrip())
            raise
    return run
