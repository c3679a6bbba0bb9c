"""Process-wide settings of the entry points."""
from __future__ import annotations

import ctypes
import os

import numpy as np
import pytest
from tideline.core.process import kept_heap

MIB = 2**20


def resident() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def freed(size: int) -> int:
    """How much the resident set shrinks when an array of `size` bytes, just written, is freed."""
    array = np.ones(size // 8)
    before = resident()
    del array
    return before - resident()


def test_the_heap_keeps_freed_batches_inside_the_block_only() -> None:
    try:
        ctypes.CDLL("libc.so.6").mallopt  # noqa: B018 - glibc's, or nothing to test
    except (OSError, AttributeError):
        pytest.skip("not glibc: kept_heap changes nothing")
    with kept_heap():
        assert freed(24 * MIB) < 4 * MIB  # kept for the next batch
    assert freed(24 * MIB) > 20 * MIB  # glibc's defaults again: handed back
