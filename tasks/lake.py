"""Tasks that record a run in the lake."""

from __future__ import annotations

import json

from prefect import task

from lake.base import Lake


def write_run_manifest(lake: Lake, branch: str, run_id: str, stages: list[str]) -> str:
    """Record which stages a run went through, at `runs/<run_id>/manifest.json` on its branch.

    The content depends only on the run's inputs, so a re-run writes identical bytes.
    """
    path = f"runs/{run_id}/manifest.json"
    lake.put(branch, path, json.dumps({"run_id": run_id, "stages": stages}, indent=2).encode())
    return path


record_run = task(write_run_manifest, name="record-run", retries=2, retry_delay_seconds=1)
