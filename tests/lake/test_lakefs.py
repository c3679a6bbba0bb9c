"""What only the lakeFS backend has: credentials, an unreachable server, paging, lakeFS's own
answers for empty commits and merges (exercised through the stand-in and the real client)."""
from __future__ import annotations

import socket
import uuid

import lakefs_sdk
import pytest

import lake.lakefs as lakefs_module
from lake.base import MAIN
from lake.lakefs import LakeFSLake
from tests.conftest import LAKEFS_KEYS
from tideline.errors import LakeError, LakeUnavailable


def test_wrong_credentials_are_named_without_the_secret(lakefs_endpoint: str) -> None:
    with pytest.raises(LakeError, match="refused the credentials") as info:
        LakeFSLake(lakefs_endpoint, LAKEFS_KEYS[0], "not-the-secret", "creds-test")
    assert "not-the-secret" not in str(info.value)


def test_unreachable_server_is_named() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(LakeUnavailable, match=f"127.0.0.1:{port}"):
        LakeFSLake(f"http://127.0.0.1:{port}", *LAKEFS_KEYS, "offline")


def test_listing_follows_pages(lakefs_lake: LakeFSLake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lakefs_module, "PAGE", 2)
    for i in range(5):
        lakefs_lake.put(MAIN, f"p/{i}.txt", b"x")
        lakefs_lake.commit(MAIN, f"c{i}")
        lakefs_lake.create_branch(f"b{i}")
        lakefs_lake.tag(f"t{i}", MAIN)
    assert [o.path for o in lakefs_lake.list(MAIN, "p/")] == [f"p/{i}.txt" for i in range(5)]
    assert len(lakefs_lake.branches()) == 6 and len(lakefs_lake.tags()) == 5
    assert len(lakefs_lake.log(MAIN, limit=4)) == 4 and len(lakefs_lake.log(MAIN)) == 6
    assert len(lakefs_lake.diff(f"{MAIN}~5", MAIN)) == 5


def test_the_server_refuses_empty_commits_and_merges(lakefs_lake: LakeFSLake,
                                                     lakefs_endpoint: str) -> None:
    """The stand-in answers like lakeFS (400 'no changes'), which the backend turns into no-ops."""
    config = lakefs_sdk.Configuration(host=f"{lakefs_endpoint}/api/v1",
                                      username=LAKEFS_KEYS[0], password=LAKEFS_KEYS[1])
    client = lakefs_sdk.ApiClient(config)
    with pytest.raises(lakefs_sdk.ApiException) as empty_commit:
        lakefs_sdk.CommitsApi(client).commit(lakefs_lake.repository, MAIN,
                                             lakefs_sdk.CommitCreation(message="empty"))
    assert empty_commit.value.status == 400 and "no changes" in empty_commit.value.body
    lakefs_lake.create_branch("dev")
    with pytest.raises(lakefs_sdk.ApiException) as empty_merge:
        lakefs_sdk.RefsApi(client).merge_into_branch(lakefs_lake.repository, "dev", MAIN)
    assert empty_merge.value.status == 400
    head = lakefs_lake.resolve(MAIN)
    assert lakefs_lake.commit(MAIN, "empty").id == head
    assert lakefs_lake.merge("dev", MAIN).id == head


def test_repository_name_is_checked_before_any_request() -> None:
    with pytest.raises(LakeError, match="invalid repository name"):
        LakeFSLake("http://127.0.0.1:1", *LAKEFS_KEYS, "Bad_Name")


def test_existing_repository_is_reused(lakefs_endpoint: str) -> None:
    name = f"reuse-{uuid.uuid4().hex[:8]}"
    first = LakeFSLake(lakefs_endpoint, *LAKEFS_KEYS, name)
    first.put(MAIN, "a.txt", b"a")
    first.commit(MAIN, "a")
    again = LakeFSLake(lakefs_endpoint, *LAKEFS_KEYS, name)
    assert again.get(MAIN, "a.txt") == b"a"
