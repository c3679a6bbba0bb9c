"""Opt-in: the same short scenario against a real lakeFS server, when one is configured with
LAKEFS_ENDPOINT, LAKEFS_ACCESS_KEY_ID and LAKEFS_SECRET_ACCESS_KEY (and optionally
LAKEFS_STORAGE_NAMESPACE, e.g. s3://bucket/prefix; default local://<repository>)."""
from __future__ import annotations

import os
import uuid

import pytest

from lake.base import MAIN
from lake.lakefs import LakeFSLake
from lake.publish import publish

NEEDED = ("LAKEFS_ENDPOINT", "LAKEFS_ACCESS_KEY_ID", "LAKEFS_SECRET_ACCESS_KEY")

pytestmark = pytest.mark.skipif(
    not all(os.environ.get(name) for name in NEEDED),
    reason="no real lakeFS server configured (set " + ", ".join(NEEDED) + ")",
)


def test_real_server_round_trip() -> None:
    name = f"tideline-test-{uuid.uuid4().hex[:8]}"
    lake = LakeFSLake(
        os.environ["LAKEFS_ENDPOINT"], os.environ["LAKEFS_ACCESS_KEY_ID"],
        os.environ["LAKEFS_SECRET_ACCESS_KEY"], name,
        storage_namespace=os.environ.get("LAKEFS_STORAGE_NAMESPACE", f"local://{name}"),
    )
    lake.create_branch("dev")
    lake.put("dev", "raw/a.txt", b"a")
    commit = lake.commit("dev", "add a", {"run_id": "real"})
    assert lake.commit("dev", "nothing").id == commit.id
    merged = lake.merge("dev", MAIN)
    assert lake.merge("dev", MAIN).id == merged.id
    assert [c.kind for c in lake.diff(f"{MAIN}~1", MAIN)] == ["added"]
    lake.tag("v1", MAIN)
    lake.delete_branch("dev")
    with publish(lake, "real1", message="wap") as run:
        lake.put(run.branch, "raw/b.txt", b"b")
    assert lake.get(MAIN, "raw/b.txt") == b"b"
