"""Round trips on the real lakeFS server, each in a repository of its own with an explicit
storage namespace, deleted afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import lakefs_sdk
import pytest
from tideline.core.errors import BranchExists, MergeConflict, ObjectNotFound, RefNotFound
from tideline.lake.base import MAIN, Change
from tideline.lake.lakefs import LakeFSLake
from tideline.lake.publish import publish

from tests.services import LAKEFS_KEYS


@pytest.fixture
def real_lake(lakefs_endpoint: str) -> Iterator[LakeFSLake]:
    name = f"tideline-test-{uuid.uuid4().hex[:8]}"
    yield LakeFSLake(lakefs_endpoint, *LAKEFS_KEYS, name, storage_namespace=f"local://ns/{name}")
    config = lakefs_sdk.Configuration(
        host=f"{lakefs_endpoint}/api/v1", username=LAKEFS_KEYS[0], password=LAKEFS_KEYS[1]
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
