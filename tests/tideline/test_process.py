"""Process-wide settings of the entry points."""
from __future__ import annotations

import ctypes
import json
import subprocess
import sys

import pytest

# in a fresh process: a long-running one's heap is fragmented, and a freed block in its middle
# is kept whatever the settings
MEASURE = """
import json, os
import numpy as np
from tideline.core.process import kept_heap

def resident():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

def freed(size):
    array = np.ones(size // 8)
    before = resident()
    del array
    return before - resident()

with kept_heap():
    inside = freed(24 * 2**20)
print(json.dumps({"inside": inside, "after": freed(24 * 2**20)}))
"""
MIB = 2**20


def test_the_heap_keeps_freed_batches_inside_the_block_only() -> None:
    try:
        ctypes.CDLL("libc.so.6").mallopt  # noqa: B018 - glibc's, or nothing to test
    except (OSError, AttributeError):
        pytest.skip("not glibc: kept_heap changes nothing")
    shrunk = json.loads(subprocess.run([sys.executable, "-c", MEASURE], check=True,
                                       capture_output=True, text=True).stdout)
    assert shrunk["inside"] < 4 * MIB  # kept for the next batch
    assert shrunk["after"] > 20 * MIB  # glibc's defaults again: handed back
