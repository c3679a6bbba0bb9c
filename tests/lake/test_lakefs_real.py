"""Opt-in: a short scenario against a real lakeFS server, to check the stand-in's picture of it.

Runs when LAKEFS_ENDPOINT, LAKEFS_ACCESS_KEY_ID and LAKEFS_SECRET_ACCESS_KEY are set (optionally
LAKEFS_STORAGE_NAMESPACE_PREFIX, e.g. s3://bucket/tideline-tests; default local://). It creates a
uniquely named repository and deletes it afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import lakefs_sdk
import pytest

from lake.base import MAIN, Change
from lake.lakefs import LakeFSLake
from lake.publish import publish
from tideline.errors import BranchExists, MergeConflict, ObjectNotFound, RefNotFound

NEEDED = ("LAKEFS_ENDPOINT", "LAKEFS_ACCESS_KEY_ID", "LAKEFS_SECRET_ACCESS_KEY")

pytestmark = pytest.mark.skipif(
    not all(os.environ.get(name) for name in NEEDED),
    reason="opt-in: no real lakeFS server configured (set " + ", ".join(NEEDED) + ")",
)


@pytest.fixture
def real_lake() -> Iterator[LakeFSLake]:
    endpoint = os.environ["LAKEFS_ENDPOINT"]
    keys = os.environ["LAKEFS_ACCESS_KEY_ID"], os.environ["LAKEFS_SECRET_ACCESS_KEY"]
    name = f"tideline-test-{uuid.uuid4().hex[:8]}"
    prefix = os.environ.get("LAKEFS_STORAGE_NAMESPACE_PREFIX", "local://")
    namespace = (prefix if prefix.endswith("/") else f"{prefix}/") + name
    yield LakeFSLake(endpoint, *keys, name, storage_namespace=namespace)
    config = lakefs_sdk.Configuration(
        host=f"{endpoint.rstrip('/')}/api/v1", username=keys[0], password=keys[1]
    )
    with lakefs_sdk.ApiClient(config) as client:
        lakefs_sdk.RepositoriesApi(client).delete_repository(name)


def test_real_server_round_trip(real_lake: LakeFSLake) -> None:
    lake = real_lake
    lake.create_branch("dev")
    with pytest.raises(BranchExists, match="dev"):
        lake.create_branch("dev")
    lake.put("dev", "raw/a.txt", b"a")
    assert lake.uncommitted("dev") == [Change("raw/a.txt", "added", 1)]
    commit = lake.commit("dev", "add a", {"run_id": "real"})
    assert commit.metadata == {"run_id": "real"}
    assert lake.commit("dev", "nothing").id == commit.id  # lakeFS: 400 no changes
    merged = lake.merge("dev", MAIN, metadata={"run_id": "real"})
    assert merged.metadata == {"run_id": "real"} and len(merged.parents) == 2
    assert lake.merge("dev", MAIN).id == merged.id  # lakeFS: 400 no changes
    assert lake.diff(f"{MAIN}~1", MAIN) == [Change("raw/a.txt", "added", 1)]
    assert lake.tag("v1", MAIN) == merged.id
    assert lake.tag("v1", merged.id) == merged.id
    lake.delete_branch("dev")
    assert list(lake.branches()) == [MAIN]
    with pytest.raises(RefNotFound, match="nosuch"):
        lake.get("nosuch", "raw/a.txt")
    with pytest.raises(ObjectNotFound, match="raw/b.txt"):
        lake.get(MAIN, "raw/b.txt")


def test_real_server_conflicts_and_publish(real_lake: LakeFSLake) -> None:
    lake = real_lake
    lake.put(MAIN, "x.txt", b"0")
    lake.commit(MAIN, "x")
    lake.create_branch("dev")
    lake.put("dev", "x.txt", b"dev")
    lake.commit("dev", "dev x")
    lake.put(MAIN, "x.txt", b"main")
    lake.commit(MAIN, "main x")
    with pytest.raises(MergeConflict) as info:
        lake.merge("dev", MAIN)
    assert info.value.paths == ["x.txt"]
    with publish(lake, "real1", message="wap") as run:
        lake.put(run.branch, "raw/b.txt", b"b")
    assert lake.get(MAIN, "raw/b.txt") == b"b"
