"""What only the lakeFS backend has, on a real lakeFS server: credentials, an unreachable server,
paging, lakeFS's own answers (empty commits and merges, conflicts, dirty branches, 404s that do
not say what is missing), checked on the wire through the `lakefs_sdk` client and through
`LakeFSLake`."""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import lakefs_sdk
import pytest
import tideline.lake.lakefs as lakefs_module
import urllib3
from lakefs_sdk.exceptions import ApiException
from tideline.core.errors import (
    BranchExists,
    ConfigError,
    DirtyBranch,
    InvalidRef,
    LakeError,
    LakeUnavailable,
    MergeConflict,
    ObjectNotFound,
    RefNotFound,
    RunInProgress,
)
from tideline.lake.base import MAIN, Change
from tideline.lake.lakefs import LakeFSLake
from tideline.lake.lease import HOLDS_BRANCH, RunHold
from tideline.lake.publish import find_published, publish

from tests.services import LAKEFS_KEYS, LakeFS


@pytest.fixture
def client(lakefs_endpoint: str) -> Iterator[lakefs_sdk.ApiClient]:
    """The generated client itself, to see the server's answers before `LakeFSLake` maps them."""
    config = lakefs_sdk.Configuration(
        host=f"{lakefs_endpoint}/api/v1", username=LAKEFS_KEYS[0], password=LAKEFS_KEYS[1]
    )
    with lakefs_sdk.ApiClient(config) as api_client:
        yield api_client


def raw(endpoint: str, method: str, path: str, **kwargs: Any) -> urllib3.BaseHTTPResponse:
    """A request the generated client cannot make (a malformed upload, a bad parameter)."""
    token = base64.b64encode(":".join(LAKEFS_KEYS).encode()).decode()
    headers = {"Authorization": f"Basic {token}", **kwargs.pop("headers", {})}
    return urllib3.request(method, f"{endpoint}/api/v1{path}", headers=headers, **kwargs)


def committed(lake: LakeFSLake, branch: str, files: dict[str, bytes]) -> str:
    for path, data in files.items():
        lake.put(branch, path, data)
    return lake.commit(branch, "c").id


def error_of(call: Any) -> tuple[int, dict]:
    with pytest.raises(ApiException) as info:
        call()
    return info.value.status, json.loads(info.value.body)


# ---- connection and credentials -------------------------------------------------------------


def test_wrong_credentials_are_refused_and_the_secret_never_shown(lakefs_endpoint: str) -> None:
    reply = raw(lakefs_endpoint, "GET", "/repositories/x", headers={"Authorization": "Basic eDp5"})
    assert reply.status == 401 and reply.json() == {"message": "error authenticating request"}
    with pytest.raises(LakeError, match="refused the credentials") as info:
        LakeFSLake(lakefs_endpoint, LAKEFS_KEYS[0], "not-the-secret", "creds-test")
    assert "not-the-secret" not in str(info.value)
    lake = LakeFSLake(lakefs_endpoint, *LAKEFS_KEYS, f"creds-{uuid.uuid4().hex[:8]}")
    assert LAKEFS_KEYS[1] not in repr(lake) and LAKEFS_KEYS[1] not in str(vars(lake))


def test_unreachable_server_is_named() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(LakeUnavailable, match=f"127.0.0.1:{port}"):
        LakeFSLake(f"http://127.0.0.1:{port}", *LAKEFS_KEYS, "offline")


@pytest.mark.service("lakefs")
def test_a_server_that_goes_away_is_named() -> None:
    server = LakeFS.create()  # a second server of this test's own, stopped under the lake
    try:
        lake = LakeFSLake(server.endpoint, *LAKEFS_KEYS, "short-lived")
    finally:
        server.close()
    with pytest.raises(LakeUnavailable, match=server.endpoint):
        lake.branches()


def test_settings_problems_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="TIDELINE_LAKEFS_ENDPOINT"):
        LakeFSLake("localhost:8000", *LAKEFS_KEYS, "repo")
    with pytest.raises(ConfigError, match="TIDELINE_LAKEFS_SECRET_ACCESS_KEY"):
        LakeFSLake("http://localhost:8000", LAKEFS_KEYS[0], "", "repo")
    with pytest.raises(ConfigError, match="user information") as info:
        LakeFSLake("http://admin:hunter2@localhost:8000", *LAKEFS_KEYS, "repo")
    assert "hunter2" not in str(info.value)
    with pytest.raises(LakeError, match="invalid repository name"):
        LakeFSLake("http://127.0.0.1:1", *LAKEFS_KEYS, "Bad_Name")


# ---- repositories ---------------------------------------------------------------------------


def test_existing_repository_is_reused_and_a_missing_one_created_only_on_request(
    lakefs_endpoint: str,
) -> None:
    name = f"reuse-{uuid.uuid4().hex[:8]}"
    with pytest.raises(LakeError, match=f"no repository '{name}'"):
        LakeFSLake(lakefs_endpoint, *LAKEFS_KEYS, name, create=False)
    first = LakeFSLake(lakefs_endpoint, *LAKEFS_KEYS, name)
    committed(first, MAIN, {"a.txt": b"a"})
    again = LakeFSLake(lakefs_endpoint, *LAKEFS_KEYS, name, create=False)
    assert again.get(MAIN, "a.txt") == b"a"


def test_a_storage_namespace_in_use_is_refused(lakefs_endpoint: str) -> None:
    one, two, namespace = (f"ns-{uuid.uuid4().hex[:8]}" for _ in range(3))
    LakeFSLake(lakefs_endpoint, *LAKEFS_KEYS, one, storage_namespace=f"local://{namespace}")
    with pytest.raises(LakeError, match="storage namespace already in use"):
        LakeFSLake(lakefs_endpoint, *LAKEFS_KEYS, two, storage_namespace=f"local://{namespace}")


def test_the_default_namespace_is_the_servers_prefix_and_a_refused_one_names_the_setting(
    lakefs_endpoint: str, client: lakefs_sdk.ApiClient
) -> None:
    name = f"ns-{uuid.uuid4().hex[:8]}"
    LakeFSLake(lakefs_endpoint, *LAKEFS_KEYS, name)
    repository = lakefs_sdk.RepositoriesApi(client).get_repository(name)
    assert repository.storage_namespace == f"local://{name}"  # the server's prefix: local://
    other = f"ns-{uuid.uuid4().hex[:8]}"
    with pytest.raises(ConfigError, match="TIDELINE_LAKEFS_STORAGE_NAMESPACE") as caught:
        LakeFSLake(lakefs_endpoint, *LAKEFS_KEYS, other, storage_namespace=f"s3://bucket/{other}")
    message = str(caught.value)
    assert f"'s3://bucket/{other}'" in message and "local blockstore" in message
    assert f"local://example-bucket/{other}" in message
    assert error_of(lambda: lakefs_sdk.RepositoriesApi(client).get_repository(other))[0] == 404


def open_at_once(endpoint: str, name: str, clients: int) -> tuple[list[str], list[Exception]]:
    """`clients` threads open repository `name` at the same moment: their heads of main, and
    what they raised."""
    opened: list[str] = []
    failures: list[Exception] = []
    start = threading.Barrier(clients)

    def open_it() -> None:
        start.wait()
        try:
            opened.append(LakeFSLake(endpoint, *LAKEFS_KEYS, name).resolve(MAIN))
        except Exception as exc:  # noqa: BLE001 - the test reports it
            failures.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return opened, failures


def test_clients_creating_one_repository_at_once_all_open_it(lakefs_endpoint: str) -> None:
    """lakeFS answers the losers of that race with 409, or with 400 "storage namespace already
    in use" when the winner's namespace marker came first: every client opens the repository."""
    for _ in range(4):
        opened, failures = open_at_once(lakefs_endpoint, f"race-{uuid.uuid4().hex[:8]}", 6)
        assert failures == [] and len(opened) == 6 and len(set(opened)) == 1


def test_a_deleted_repositorys_namespace_is_not_reused_silently(
    lakefs_endpoint: str, client: lakefs_sdk.ApiClient
) -> None:
    name = f"gone-{uuid.uuid4().hex[:8]}"
    committed(LakeFSLake(lakefs_endpoint, *LAKEFS_KEYS, name), MAIN, {"a.txt": b"a"})
    repositories = lakefs_sdk.RepositoriesApi(client)
    repositories.delete_repository(name)
    deadline = time.monotonic() + 30  # lakeFS's repository cache serves it for a few seconds
    while time.monotonic() < deadline:
        try:
            repositories.get_repository(name)
        except ApiException:
            break
        time.sleep(0.25)
    with pytest.raises(LakeError, match="TIDELINE_LAKEFS_STORAGE_NAMESPACE to a fresh location"):
        LakeFSLake(lakefs_endpoint, *LAKEFS_KEYS, name)
    again = LakeFSLake(lakefs_endpoint, *LAKEFS_KEYS, name,
                       storage_namespace=f"local://{name}-again")
    assert again.list(MAIN) == []


# ---- errors lakeFS reports tersely, named by the backend ------------------------------------


def test_what_lakefs_resolves_but_tideline_refuses(
    lakefs_lake: LakeFSLake, client: lakefs_sdk.ApiClient
) -> None:
    """lakeFS reads any 1-64 character hex prefix of a commit id as that commit, and answers a
    malformed ref expression or a parent a commit lacks with 500: tideline names both."""
    commits = lakefs_sdk.CommitsApi(client)
    repo = lakefs_lake.repository
    head = lakefs_lake.resolve(MAIN)
    assert commits.get_commit(repo, head[:1]).id == head
    with pytest.raises(RefNotFound, match="too short to name a commit"):
        lakefs_lake.resolve(head[:1])
    assert error_of(lambda: commits.get_commit(repo, "main~x"))[0] == 500
    assert error_of(lambda: commits.get_commit(repo, "main^3"))[0] == 500
    with pytest.raises(InvalidRef, match="a parent the commit does not have"):
        lakefs_lake.resolve("main^3")


def test_404_names_the_missing_ref_or_object(
    lakefs_lake: LakeFSLake, client: lakefs_sdk.ApiClient
) -> None:
    objects = lakefs_sdk.ObjectsApi(client)
    repo = lakefs_lake.repository
    # the server says only "not found", for a missing object and a missing ref alike
    assert error_of(lambda: objects.stat_object(repo, MAIN, "nope.txt")) == (
        404,
        {"message": "not found"},
    )
    assert error_of(lambda: objects.stat_object(repo, "nosuch", "nope.txt"))[0] == 404
    with pytest.raises(ObjectNotFound, match="no object 'nope.txt' on 'main'"):
        lakefs_lake.get(MAIN, "nope.txt")
    with pytest.raises(RefNotFound, match="no branch, tag or commit named 'nosuch'"):
        lakefs_lake.get("nosuch", "nope.txt")
    with pytest.raises(RefNotFound, match="nosuch"):
        lakefs_lake.exists("nosuch", "nope.txt")
    with pytest.raises(RefNotFound, match="no branch named 'nosuch'"):
        lakefs_lake.put("nosuch", "a.txt", b"x")
    with (
        pytest.raises(RefNotFound, match="no branch named 'nosuch'"),
        lakefs_lake.writer("nosuch", "a.txt"),
    ):
        pytest.fail("the branch is checked before anything is written")
    with pytest.raises(RefNotFound, match="'main~5'"):
        lakefs_lake.resolve("main~5")
    with pytest.raises(RefNotFound, match="invalid ref"):
        lakefs_lake.resolve("a/b")


def test_existing_names_are_409_and_named(
    lakefs_lake: LakeFSLake, client: lakefs_sdk.ApiClient
) -> None:
    branches = lakefs_sdk.BranchesApi(client)
    repo = lakefs_lake.repository
    lakefs_lake.create_branch("dev")
    creation = lakefs_sdk.BranchCreation(name="dev", source=MAIN)
    assert error_of(lambda: branches.create_branch(repo, creation)) == (
        409,
        {"message": "branch already exists: not unique"},
    )
    with pytest.raises(BranchExists, match="branch 'dev' exists already"):
        lakefs_lake.create_branch("dev")
    # lakeFS keeps branch and tag names apart
    lakefs_lake.tag("v1", MAIN)
    with pytest.raises(BranchExists, match="a tag has that name"):
        lakefs_lake.create_branch("v1")
    with pytest.raises(BranchExists, match="a branch has that name"):
        lakefs_lake.tag("dev", MAIN)


def test_deleting_the_default_branch_is_forbidden_by_the_server(
    lakefs_lake: LakeFSLake, client: lakefs_sdk.ApiClient
) -> None:
    branches = lakefs_sdk.BranchesApi(client)
    assert error_of(lambda: branches.delete_branch(lakefs_lake.repository, MAIN)) == (
        403,
        {"message": "cannot delete repository default branch"},
    )
    with pytest.raises(LakeError, match="default branch"):
        lakefs_lake.delete_branch(MAIN)


def test_deleting_a_missing_object_is_204_on_lakefs_but_named_here(
    lakefs_lake: LakeFSLake, client: lakefs_sdk.ApiClient
) -> None:
    lakefs_sdk.ObjectsApi(client).delete_object(lakefs_lake.repository, MAIN, "never.txt")
    with pytest.raises(ObjectNotFound, match="never.txt"):
        lakefs_lake.delete(MAIN, "never.txt")


def test_bad_requests_get_lakefs_error_bodies(
    lakefs_lake: LakeFSLake, lakefs_endpoint: str
) -> None:
    base = f"/repositories/{lakefs_lake.repository}"
    reply = raw(lakefs_endpoint, "GET", f"{base}/refs/main/objects/ls?amount=1001")
    assert reply.status == 400 and "at most 1000" in reply.json()["message"]
    reply = raw(
        lakefs_endpoint,
        "POST",
        f"{base}/branches/main/objects?path=a.txt",
        fields={"not-content": ("a.txt", b"a")},
    )
    assert reply.status == 500 and "missing key 'content'" in reply.json()["message"]
    reply = raw(lakefs_endpoint, "GET", "/no/such/route")
    assert reply.status == 404 and "message" in reply.json()


# ---- pagination -----------------------------------------------------------------------------


def test_listing_objects_pages_with_after_and_amount(
    lakefs_lake: LakeFSLake, client: lakefs_sdk.ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = [f"p/{i:02}.txt" for i in range(7)]
    for path in paths:
        lakefs_lake.put(MAIN, path, b"x")
    lakefs_lake.put(MAIN, "q.txt", b"outside the prefix")
    objects = lakefs_sdk.ObjectsApi(client)
    first = objects.list_objects(lakefs_lake.repository, MAIN, prefix="p/", amount=3)
    assert [o.path for o in first.results] == paths[:3]
    assert first.pagination.has_more and first.pagination.next_offset == paths[2]
    last = objects.list_objects(lakefs_lake.repository, MAIN, prefix="p/", after=paths[5], amount=3)
    assert [o.path for o in last.results] == paths[6:] and not last.pagination.has_more
    assert last.pagination.next_offset == ""

    requests: list[str] = []
    real = objects.list_objects

    def counted(*args: Any, **kwargs: Any) -> Any:
        requests.append(kwargs.get("after", ""))
        return real(*args, **kwargs)

    monkeypatch.setattr(lakefs_lake._objects, "list_objects", counted)
    monkeypatch.setattr(lakefs_module, "PAGE", 3)
    assert [o.path for o in lakefs_lake.list(MAIN, "p/")] == paths
    assert requests == ["", paths[2], paths[5]]


def test_every_listing_follows_pages(
    lakefs_lake: LakeFSLake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lakefs_module, "PAGE", 2)
    for i in range(5):
        lakefs_lake.put(MAIN, f"p/{i}.txt", b"x")
        lakefs_lake.commit(MAIN, f"c{i}")
        lakefs_lake.create_branch(f"b{i}")
        lakefs_lake.tag(f"t{i}", MAIN)
    for i in range(5):
        lakefs_lake.put(MAIN, f"u/{i}.txt", b"y")
    assert len(lakefs_lake.uncommitted(MAIN)) == 5
    assert len(lakefs_lake.branches()) == 6 and len(lakefs_lake.tags()) == 5
    assert [c.message for c in lakefs_lake.log(MAIN, limit=3)] == ["c4", "c3", "c2"]
    assert len(lakefs_lake.log(MAIN)) == 6
    assert len(lakefs_lake.diff(f"{MAIN}~5", MAIN)) == 5


# ---- lakeFS's answers for nothing to do -----------------------------------------------------


def test_an_empty_commit_is_an_error_on_lakefs_and_a_no_op_here(
    lakefs_lake: LakeFSLake, client: lakefs_sdk.ApiClient
) -> None:
    commits = lakefs_sdk.CommitsApi(client)
    empty = lakefs_sdk.CommitCreation(message="empty")
    assert error_of(lambda: commits.commit(lakefs_lake.repository, MAIN, empty)) == (
        400,
        {"message": "commit: no changes"},
    )
    head = lakefs_lake.resolve(MAIN)
    assert lakefs_lake.commit(MAIN, "empty").id == head
    first = committed(lakefs_lake, MAIN, {"a.txt": b"1"})
    lakefs_lake.put(MAIN, "a.txt", b"1")  # the same bytes: staged, but no visible change
    assert lakefs_lake.uncommitted(MAIN) == []
    assert lakefs_lake.commit(MAIN, "again").id == first


def test_an_empty_merge_is_an_error_on_lakefs_and_a_no_op_here(
    lakefs_lake: LakeFSLake, client: lakefs_sdk.ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    refs = lakefs_sdk.RefsApi(client)
    lakefs_lake.create_branch("dev")
    assert error_of(lambda: refs.merge_into_branch(lakefs_lake.repository, "dev", MAIN)) == (
        400,
        {"message": "update branch main: no changes"},
    )
    head = lakefs_lake.resolve(MAIN)
    assert lakefs_lake.merge("dev", MAIN).id == head
    # if the branches move between the preview and the merge, the server's answer decides
    stale = [lakefs_sdk.Diff(type="added", path="a.txt", path_type="object")]
    monkeypatch.setattr(lakefs_lake, "_compare", lambda dest, source, amount=None: stale)
    assert lakefs_lake.merge("dev", MAIN).id == head


def test_a_change_made_on_both_sides_alike_is_nothing_to_merge(lakefs_lake: LakeFSLake) -> None:
    lakefs_lake.create_branch("dev")
    committed(lakefs_lake, "dev", {"same.txt": b"s"})
    head = committed(lakefs_lake, MAIN, {"same.txt": b"s"})
    assert lakefs_lake.merge("dev", MAIN).id == head  # as the embedded lake: no empty commit


# ---- merges ---------------------------------------------------------------------------------


def test_merge_commits_hide_lakefs_bookkeeping(
    lakefs_lake: LakeFSLake, client: lakefs_sdk.ApiClient
) -> None:
    lakefs_lake.create_branch("dev")
    committed(lakefs_lake, "dev", {"a.txt": b"1"})
    merge = lakefs_lake.merge("dev", MAIN, metadata={"run_id": "r"})
    stored = lakefs_sdk.CommitsApi(client).get_commit(lakefs_lake.repository, merge.id)
    assert stored.metadata == {"run_id": "r", ".lakefs.merge.strategy": "default"}
    assert stored.message == "Merge 'dev' into 'main'"
    assert merge.metadata == {"run_id": "r"} and len(merge.parents) == 2


def test_a_conflict_is_409_with_a_merge_result_and_the_paths_come_from_the_preview(
    lakefs_lake: LakeFSLake, client: lakefs_sdk.ApiClient
) -> None:
    refs = lakefs_sdk.RefsApi(client)
    repo = lakefs_lake.repository
    committed(lakefs_lake, MAIN, {"x.txt": b"0", "gone.txt": b"g"})
    lakefs_lake.create_branch("dev")
    committed(lakefs_lake, "dev", {"x.txt": b"dev", "new.txt": b"n"})
    lakefs_lake.delete("dev", "gone.txt")
    lakefs_lake.commit("dev", "rm")
    main_head = committed(lakefs_lake, MAIN, {"x.txt": b"main", "gone.txt": b"changed"})
    assert error_of(lambda: refs.merge_into_branch(repo, "dev", MAIN)) == (
        409,
        {"reference": ""},
    )
    preview = refs.diff_refs(repo, MAIN, "dev", type="three_dot").results
    assert {(d.path, d.type) for d in preview} == {
        ("gone.txt", "conflict"),
        ("new.txt", "added"),
        ("x.txt", "conflict"),
    }
    with pytest.raises(MergeConflict) as info:
        lakefs_lake.merge("dev", MAIN)
    assert info.value.paths == ["gone.txt", "x.txt"]
    assert lakefs_lake.resolve(MAIN) == main_head


def test_a_dirty_destination_is_400_and_identical_bytes_are_not_dirt(
    lakefs_lake: LakeFSLake, client: lakefs_sdk.ApiClient
) -> None:
    refs = lakefs_sdk.RefsApi(client)
    committed(lakefs_lake, MAIN, {"a.txt": b"1"})
    lakefs_lake.create_branch("dev")
    committed(lakefs_lake, "dev", {"b.txt": b"b"})
    lakefs_lake.put(MAIN, "wip.txt", b"w")
    assert error_of(lambda: refs.merge_into_branch(lakefs_lake.repository, "dev", MAIN)) == (
        400,
        {"message": "uncommitted changes (dirty branch)"},
    )
    with pytest.raises(DirtyBranch, match="'main'"):
        lakefs_lake.merge("dev", MAIN)
    lakefs_lake.reset(MAIN)
    lakefs_lake.put(MAIN, "a.txt", b"1")  # re-staged, unchanged
    assert lakefs_lake.get(lakefs_lake.merge("dev", MAIN).id, "b.txt") == b"b"


# ---- reverts --------------------------------------------------------------------------------


def test_revert_records_what_it_undid_and_names_conflicts(lakefs_lake: LakeFSLake) -> None:
    committed(lakefs_lake, MAIN, {"a.txt": b"1"})
    bad = committed(lakefs_lake, MAIN, {"a.txt": b"2", "b.txt": b"b"})
    revert = lakefs_lake.revert(MAIN, bad)
    assert revert.message == f"Revert {bad}" and revert.metadata == {"reverted_commit": bad}
    assert lakefs_lake.get(MAIN, "a.txt") == b"1" and not lakefs_lake.exists(MAIN, "b.txt")
    assert lakefs_lake.revert(MAIN, bad).id == revert.id  # undone already: nothing to do
    again = committed(lakefs_lake, MAIN, {"a.txt": b"3"})
    lakefs_lake.put(MAIN, "a.txt", b"4")
    lakefs_lake.commit(MAIN, "edit a again")
    with pytest.raises(MergeConflict) as info:
        lakefs_lake.revert(MAIN, again)
    assert info.value.paths == ["a.txt"]


# ---- objects --------------------------------------------------------------------------------


def test_reader_streams_in_ranges(
    lakefs_lake: LakeFSLake, client: lakefs_sdk.ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = bytes(range(256)) * 40 + b"\r\n--tail\r\n"
    info = lakefs_lake.put(MAIN, "big.bin", data)
    assert info.size == len(data)
    objects = lakefs_sdk.ObjectsApi(client)
    part = objects.get_object_with_http_info(
        lakefs_lake.repository, MAIN, "big.bin", range="bytes=10-19"
    )
    assert part.status_code == 206 and part.data == data[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    assert part.headers["ETag"] == f'"{info.checksum}"'
    status, body = error_of(
        lambda: objects.get_object(lakefs_lake.repository, MAIN, "big.bin", range="bytes=99999-")
    )
    assert status == 416 and body == {"message": "Requested Range Not Satisfiable"}
    monkeypatch.setattr(lakefs_module, "CHUNK", 1000)
    with lakefs_lake.reader(MAIN, "big.bin") as stream:
        assert stream.read() == data


def test_reader_refuses_an_object_replaced_mid_read(
    lakefs_lake: LakeFSLake, monkeypatch: pytest.MonkeyPatch
) -> None:
    lakefs_lake.put(MAIN, "big.bin", b"a" * 3000)
    monkeypatch.setattr(lakefs_module, "CHUNK", 1000)
    real = lakefs_lake._objects.get_object_with_http_info

    def replaced_after_first_range(*args: Any, **kwargs: Any) -> Any:
        response = real(*args, **kwargs)
        lakefs_lake.put(MAIN, "big.bin", b"b" * 3000)
        return response

    monkeypatch.setattr(
        lakefs_lake._objects, "get_object_with_http_info", replaced_after_first_range
    )
    with (
        pytest.raises(LakeError, match="changed while it was being read"),
        lakefs_lake.reader(MAIN, "big.bin"),
    ):
        pass


def test_empty_and_binary_objects_round_trip(lakefs_lake: LakeFSLake) -> None:
    lakefs_lake.put(MAIN, "empty.bin", b"")
    assert lakefs_lake.get(MAIN, "empty.bin") == b""
    with lakefs_lake.reader(MAIN, "empty.bin") as stream:
        assert stream.read() == b""
    tricky = b"--boundary\r\n\r\n\x00\xff" * 100
    with lakefs_lake.writer(MAIN, "tricky.bin") as sink:
        sink.write(tricky)
    assert lakefs_lake.get(MAIN, "tricky.bin") == tricky
    assert lakefs_lake.uncommitted(MAIN) == [
        Change("empty.bin", "added", 0),
        Change("tricky.bin", "added", len(tricky)),
    ]


# ---- conditional uploads and the run hold ---------------------------------------------------


def test_a_create_only_upload_is_412_when_the_path_is_taken(
    lakefs_lake: LakeFSLake, client: lakefs_sdk.ApiClient, tmp_path: Path
) -> None:
    objects = lakefs_sdk.ObjectsApi(client)
    repo = lakefs_lake.repository
    one, two = tmp_path / "one", tmp_path / "two"  # the client uploads a file by its path
    one.write_bytes(b"one")
    two.write_bytes(b"2")
    stats = objects.upload_object(repo, MAIN, "lease.json", if_none_match="*", content=str(one))
    assert stats.path == "lease.json" and stats.size_bytes == 3

    def again(**conditions: str) -> tuple[int, dict]:
        return error_of(
            lambda: objects.upload_object(repo, MAIN, "lease.json", content=str(two), **conditions)
        )

    assert again(if_none_match="*") == (412, {"message": "path already exists"})
    assert lakefs_lake.get(MAIN, "lease.json") == b"one"
    lakefs_lake.commit(MAIN, "c")  # committed counts as there too
    assert again(if_none_match="*")[0] == 412
    lakefs_lake.delete(MAIN, "lease.json")  # a staged delete frees the path
    assert lakefs_lake.create_object(MAIN, "lease.json", b"three")
    assert not lakefs_lake.create_object(MAIN, "lease.json", b"four")
    assert lakefs_lake.get(MAIN, "lease.json") == b"three"
    # lakeFS has no compare-and-swap on an ETag (501), so the lease relies on create-only
    etag = lakefs_lake.stat(MAIN, "lease.json").checksum
    not_implemented = (501, {"message": "Not Implemented"})
    assert again(if_match=etag) == again(if_none_match=etag) == not_implemented
    assert again(if_match=etag, if_none_match="*") == (412, {"message": "path already exists"})
    with pytest.raises(RefNotFound, match="no branch named 'nosuch'"):
        lakefs_lake.create_object("nosuch", "lease.json", b"x")


def test_the_run_hold_is_a_lease_on_its_own_branch(lakefs_lake: LakeFSLake) -> None:
    """The hold lives on HOLDS_BRANCH, never on main or the run's branch; while held it names
    its owner and expiry; released, one small record of it stays."""
    lakefs_lake.run_hold_ttl = 30
    with lakefs_lake.hold_run("r1"):
        [lease] = lakefs_lake.list(HOLDS_BRANCH, "runs/r1/")
        record = json.loads(lakefs_lake.get(HOLDS_BRANCH, lease.path))
        host, pid, owner = record["owner"].split("/")
        assert (host, int(pid)) == (socket.gethostname(), os.getpid()) and len(owner) == 32
        assert 25 < record["expires_at"] - time.time() <= 30 and not record["released"]
    [lease] = lakefs_lake.list(HOLDS_BRANCH, "runs/r1/")
    assert json.loads(lakefs_lake.get(HOLDS_BRANCH, lease.path))["released"]
    assert lakefs_lake.list(MAIN) == [] and lakefs_lake.uncommitted(MAIN) == []


def test_released_holds_leave_nothing_staged(lakefs_lake: LakeFSLake) -> None:
    """A release commits the holds branch, so deleted generations do not pile up as staged
    tombstones: what a listing walks stays one record per run id, whatever the history."""
    for run in range(12):
        with lakefs_lake.hold_run(f"r{run}"):
            pass
    assert lakefs_lake.uncommitted(HOLDS_BRANCH) == []
    leases = lakefs_lake.list(HOLDS_BRANCH, "runs/")
    assert sorted(lease.path.split("/")[1] for lease in leases) == sorted(
        f"r{run}" for run in range(12))
    assert lakefs_lake.log(HOLDS_BRANCH, limit=1)[0].metadata == {"run_id": "r11"}


def test_takers_racing_for_an_expired_lease_get_it_once(lakefs_lake: LakeFSLake) -> None:
    """Eight clients finding the same dead holder's lease expired: exactly one takes it over
    (the next generation is created with If-None-Match: *), the others get RunInProgress."""
    dead = RunHold(lakefs_lake, "r2", 0.3)
    dead.take()
    dead._stop.set()  # the holder dies: no more renewals, no release
    time.sleep(0.5)
    clients = [
        LakeFSLake(lakefs_lake.endpoint, *LAKEFS_KEYS, lakefs_lake.repository, run_hold_ttl=30)
        for _ in range(8)
    ]
    start, release = threading.Barrier(len(clients)), threading.Event()
    outcomes: list[str] = []

    def take(client: LakeFSLake) -> None:
        start.wait()
        try:
            with client.hold_run("r2"):
                outcomes.append("held")
                release.wait(30)
        except RunInProgress:
            outcomes.append("refused")

    threads = [threading.Thread(target=take, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while len(outcomes) < len(clients) - 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    release.set()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["held"] + ["refused"] * (len(clients) - 1)


def test_a_stalled_holder_whose_lease_was_taken_over_cannot_publish(
    lakefs_lake: LakeFSLake,
) -> None:
    """A run that stops renewing (a stalled process) past its TTL loses the run id to a re-run;
    when it wakes, its writes, commit and merge on the run branch (now the re-run's) are refused
    naming the lost hold, and main gets the re-run's objects only."""
    lakefs_lake.run_hold_ttl = rival_ttl = 0.5
    rival = LakeFSLake(lakefs_lake.endpoint, *LAKEFS_KEYS, lakefs_lake.repository,
                       run_hold_ttl=rival_ttl)
    lost = "run 'r3' lost its hold .*another process took it over"
    with ExitStack() as rivals:
        with (pytest.raises(LakeError, match=lost),
              publish(lakefs_lake, "r3", message="stalled") as run):
            lakefs_lake.put(run.branch, "clean/stale.csv", b"stale\n")
            lakefs_lake._holds[run.branch]._stop.set()  # its heartbeat stalls
            time.sleep(0.8)
            again = rivals.enter_context(publish(rival, "r3", message="re-run"))
            rival.put(again.branch, "clean/fresh.csv", b"fresh\n")
            with pytest.raises(LakeError, match=lost):
                lakefs_lake.put(run.branch, "clean/late.csv", b"late\n")
            with pytest.raises(LakeError, match=lost):
                lakefs_lake.merge(run.branch, MAIN)
        assert [o.path for o in rival.list(again.branch)] == ["clean/fresh.csv"]
    assert [o.path for o in lakefs_lake.list(MAIN)] == ["clean/fresh.csv"]
    assert find_published(lakefs_lake, "r3").message == "Publish run r3: re-run"
