"""Process-wide settings that only an entry point (a CLI command, a benchmark's main) may
change, each for a block and restored after it."""
from __future__ import annotations

import gc
from collections.abc import Iterator
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
