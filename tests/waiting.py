"""Polling helpers for tests that drive servers and subprocesses."""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CLI = [sys.executable, "-m", "tideline.deployments.cli"]
"""The `tideline` command, run by this interpreter."""
ROOT = Path(__file__).resolve().parents[1]
"""The project root (where prefect.yaml is)."""


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 120.0) -> Any:
    """Call `probe` every second until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(1)
    raise AssertionError(f"gave up waiting for {what} after {timeout:.0f} s")
