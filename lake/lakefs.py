"""The `Lake` protocol on a lakeFS server, through the official generated client (`lakefs_sdk`).

lakeFS's own semantics already match the protocol (branch reads see staging, three-way merges,
immutable commits). Where lakeFS answers an error for something the protocol treats as a no-op —
committing or merging with nothing to change (lakefs-spec #22, lakeFS #7528) — this backend
returns the current head instead. Uploads go through the API in one request: the generated
client holds each object in memory while sending it (no multipart upload; see `writer`).
"""
from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import lakefs_sdk
from lakefs_sdk.exceptions import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error

from lake.base import (
    MAIN,
    Change,
    Commit,
    ObjectInfo,
    check_branch,
    check_metadata,
    check_path,
    check_prefix,
    check_repository,
    check_tag,
)
from tideline.errors import (
    BranchExists,
    DirtyBranch,
    LakeError,
    LakeUnavailable,
    MergeConflict,
    ObjectNotFound,
    ObjectTooLarge,
    RefNotFound,
)

T = TypeVar("T")
PAGE = 1000
CHUNK = 8 * 1024 * 1024


class LakeFSLake:
    """One lakeFS repository. Names and paths are checked locally before any request."""

    def __init__(
        self,
        endpoint: str,
        access_key_id: str,
        secret_access_key: str,
        repository: str,
        *,
        max_read_bytes: int = 2 * 1024**3,
        storage_namespace: str | None = None,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.repository = check_repository(repository)
        self.max_read_bytes = max_read_bytes
        config = lakefs_sdk.Configuration(
            host=f"{self.endpoint}/api/v1", username=access_key_id, password=secret_access_key
        )
        client = lakefs_sdk.ApiClient(config)
        self._branches = lakefs_sdk.BranchesApi(client)
        self._commits = lakefs_sdk.CommitsApi(client)
        self._objects = lakefs_sdk.ObjectsApi(client)
        self._refs = lakefs_sdk.RefsApi(client)
        self._tags = lakefs_sdk.TagsApi(client)
        self._repositories = lakefs_sdk.RepositoriesApi(client)
        self._ensure_repository(storage_namespace or f"local://{repository}")

    def __repr__(self) -> str:
        return f"LakeFSLake({self.endpoint!r}, repository={self.repository!r})"

    # ---- requests and errors -----------------------------------------------------------------

    def _call(self, what: str, request: Callable[[], T], *, missing: type[LakeError] = RefNotFound
              ) -> T:
        """Run one API request; turn HTTP failures into tideline errors that name `what`."""
        try:
            return request()
        except ApiException as exc:
            raise self._translate(what, exc, missing) from None
        except (Urllib3Error, OSError) as exc:
            raise LakeUnavailable(f"{what}: cannot reach lakeFS at {self.endpoint} "
                                  f"({type(exc).__name__})") from None

    def _translate(self, what: str, exc: ApiException,
                   missing: type[LakeError] = RefNotFound) -> LakeError:
        message = _message(exc)
        if exc.status == 404:
            return missing(f"{what}: not found ({message})")
        if exc.status in (401, 403):
            return LakeError(f"{what}: lakeFS at {self.endpoint} refused the credentials "
                             f"({message})")
        if exc.status == 409:
            return BranchExists(f"{what}: {message}")
        return LakeError(f"{what}: lakeFS answered {exc.status}: {message}")

    def _ensure_repository(self, storage_namespace: str) -> None:
        try:
            self._repositories.get_repository(self.repository)
        except ApiException as exc:
            if exc.status != 404:
                self._call(f"repository {self.repository!r}",
                           lambda: self._repositories.get_repository(self.repository))
            self._call(f"create repository {self.repository!r}",
                       lambda: self._repositories.create_repository(
                           lakefs_sdk.RepositoryCreation(name=self.repository,
                                                         storage_namespace=storage_namespace,
                                                         default_branch=MAIN)))
        except (Urllib3Error, OSError) as exc:
            raise LakeUnavailable(f"cannot reach lakeFS at {self.endpoint} "
                                  f"({type(exc).__name__})") from None

    def _pages(self, what: str, fetch: Callable[[str], Any]) -> Iterator[Any]:
        after = ""
        while True:
            page = self._call(what, lambda after=after: fetch(after))
            yield from page.results
            if not page.pagination.has_more:
                return
            after = page.pagination.next_offset

    # ---- branches ----------------------------------------------------------------------------

    def branches(self) -> dict[str, str]:
        refs = self._pages("list branches", lambda after: self._branches.list_branches(
            self.repository, after=after, amount=PAGE))
        return {ref.id: ref.commit_id for ref in sorted(refs, key=lambda r: r.id)}

    def create_branch(self, name: str, source: str = MAIN) -> str:
        check_branch(name)
        commit_id = self.resolve(source)
        self._call(f"create branch {name!r}", lambda: self._branches.create_branch(
            self.repository, lakefs_sdk.BranchCreation(name=name, source=commit_id)))
        return commit_id

    def delete_branch(self, name: str) -> None:
        check_branch(name)
        if name == MAIN:
            raise LakeError(f"refusing to delete the default branch {MAIN!r}")
        self._call(f"branch {name!r}",
                   lambda: self._branches.delete_branch(self.repository, name))

    def resolve(self, ref: str) -> str:
        return self.get_commit(ref).id

    # ---- objects -----------------------------------------------------------------------------

    def put(self, branch: str, path: str, data: bytes) -> ObjectInfo:
        with self.writer(branch, path) as sink:
            sink.write(data)
        return self.stat(branch, path)

    @contextmanager
    def writer(self, branch: str, path: str) -> Iterator[BinaryIO]:
        """Spool to a local temp file, then upload it in one request when the block ends
        cleanly; nothing is uploaded if it raises. The generated client uploads from a file path
        and reads the whole file into memory to send it, so an object is bounded by memory."""
        check_branch(branch)
        check_path(path)
        with tempfile.TemporaryDirectory(prefix="tideline-upload-") as spool_dir:
            spool = Path(spool_dir) / "content"
            with open(spool, "wb") as sink:
                yield sink  # type: ignore[misc]
            self._call(f"write {path!r} to branch {branch!r}",
                       lambda: self._objects.upload_object(self.repository, branch, path,
                                                           content=str(spool)))

    def stat(self, ref: str, path: str) -> ObjectInfo:
        check_path(path)
        return _info(self._call(f"object {path!r} on {ref!r}",
                                lambda: self._objects.stat_object(self.repository, ref, path),
                                missing=ObjectNotFound))

    def exists(self, ref: str, path: str) -> bool:
        try:
            self.stat(ref, path)
        except ObjectNotFound:
            self.resolve(ref)  # an unknown ref is an error, not "absent"
            return False
        return True

    def get(self, ref: str, path: str) -> bytes:
        info = self.stat(ref, path)
        if info.size > self.max_read_bytes:
            raise ObjectTooLarge(
                f"object {path!r} on {ref!r} is {info.size:,} bytes, over the "
                f"{self.max_read_bytes:,}-byte limit for reading into memory; "
                "stream it with reader()"
            )
        return bytes(self._call(f"object {path!r} on {ref!r}",
                                lambda: self._objects.get_object(self.repository, ref, path),
                                missing=ObjectNotFound))

    @contextmanager
    def reader(self, ref: str, path: str) -> Iterator[BinaryIO]:
        """Download in ranged requests of `CHUNK` bytes into a local temp file, so memory stays
        bounded whatever the object's size."""
        info = self.stat(ref, path)
        with tempfile.TemporaryFile() as spool:
            for start in range(0, info.size, CHUNK):
                end = min(start + CHUNK, info.size) - 1
                spool.write(self._call(
                    f"object {path!r} on {ref!r}",
                    lambda start=start, end=end: self._objects.get_object(
                        self.repository, ref, path, range=f"bytes={start}-{end}"),
                    missing=ObjectNotFound))
            spool.seek(0)
            yield spool  # type: ignore[misc]

    def list(self, ref: str, prefix: str = "") -> list[ObjectInfo]:
        check_prefix(prefix)
        return [_info(stats) for stats in self._pages(
            f"list {prefix!r} on {ref!r}", lambda after: self._objects.list_objects(
                self.repository, ref, prefix=prefix, after=after, amount=PAGE))]

    def delete(self, branch: str, path: str) -> None:
        check_branch(branch)
        check_path(path)
        self._call(f"object {path!r} on {branch!r}",
                   lambda: self._objects.delete_object(self.repository, branch, path),
                   missing=ObjectNotFound)

    # ---- history -----------------------------------------------------------------------------

    def uncommitted(self, branch: str) -> list[Change]:
        check_branch(branch)
        diffs = self._pages(f"uncommitted changes on {branch!r}",
                            lambda after: self._branches.diff_branch(
                                self.repository, branch, after=after, amount=PAGE))
        return sorted(_change(diff) for diff in diffs)

    def commit(self, branch: str, message: str, metadata: dict[str, str] | None = None) -> Commit:
        check_branch(branch)
        metadata = check_metadata(metadata)
        if not self.uncommitted(branch):
            return self.get_commit(branch)
        try:
            created = self._commits.commit(
                self.repository, branch,
                lakefs_sdk.CommitCreation(message=message, metadata=metadata))
        except ApiException as exc:
            if exc.status == 400 and "no changes" in _message(exc):  # raced with another commit
                return self.get_commit(branch)
            raise self._translate(f"commit on {branch!r}", exc) from None
        return _commit(created)

    def merge(
        self, source: str, dest: str, message: str = "", metadata: dict[str, str] | None = None
    ) -> Commit:
        check_branch(dest)
        metadata = check_metadata(metadata)
        if self.uncommitted(dest):
            raise DirtyBranch(f"branch {dest!r} has uncommitted changes; commit or reset it first")
        before = self.resolve(dest)
        body = lakefs_sdk.Merge(message=message or f"Merge '{source}' into '{dest}'",
                                metadata=metadata)
        try:
            self._refs.merge_into_branch(self.repository, source, dest, merge=body)
        except ApiException as exc:
            text = _message(exc)
            if exc.status == 409:
                raise MergeConflict(source, dest, self._conflicts(source, dest)) from None
            if exc.status == 400 and "no changes" in text:
                return self.get_commit(before)
            raise self._translate(f"merge {source!r} into {dest!r}", exc) from None
        return self.get_commit(dest)

    def _conflicts(self, source: str, dest: str) -> list[str]:
        """Paths both sides changed since their merge base, differently."""
        theirs = {c.path for c in self._diff(dest, source, "three_dot")}
        ours = {c.path for c in self._diff(source, dest, "three_dot")}
        return sorted(path for path in theirs & ours
                      if self._checksum(source, path) != self._checksum(dest, path))

    def _checksum(self, ref: str, path: str) -> str | None:
        try:
            return self.stat(ref, path).checksum
        except ObjectNotFound:
            return None

    def _diff(self, left: str, right: str, kind: str) -> list[Change]:
        diffs = self._pages(f"diff {left!r}..{right!r}", lambda after: self._refs.diff_refs(
            self.repository, left, right, after=after, amount=PAGE, type=kind))
        return sorted(_change(diff) for diff in diffs)

    def diff(self, left: str, right: str) -> list[Change]:
        return self._diff(self.resolve(left), self.resolve(right), "two_dot")

    def log(self, ref: str, limit: int = 50) -> list[Commit]:
        commits = []
        for commit in self._pages(f"log of {ref!r}", lambda after: self._refs.log_commits(
                self.repository, ref, after=after, amount=min(limit, PAGE))):
            if len(commits) >= limit:
                break
            commits.append(_commit(commit))
        return commits

    def get_commit(self, ref: str) -> Commit:
        if not isinstance(ref, str) or not ref or "/" in ref:
            raise RefNotFound(f"invalid ref {ref!r}")
        # the log of any ref expression starts at the commit it names
        page = self._call(f"no branch, tag or commit named {ref!r}",
                          lambda: self._refs.log_commits(self.repository, ref, amount=1))
        return _commit(page.results[0])

    def reset(self, branch: str) -> None:
        check_branch(branch)
        self._call(f"reset branch {branch!r}", lambda: self._branches.reset_branch(
            self.repository, branch, lakefs_sdk.ResetCreation(type="reset")))

    def revert(self, branch: str, ref: str) -> Commit:
        check_branch(branch)
        target = self.get_commit(ref)
        if not target.parents:
            raise LakeError(f"cannot revert {ref!r}: it is the first commit")
        if self.uncommitted(branch):
            raise DirtyBranch(f"branch {branch!r} has uncommitted changes; commit or reset it "
                              "first")
        try:
            self._branches.revert_branch(
                self.repository, branch,
                lakefs_sdk.RevertCreation(ref=target.id, parent_number=1))
        except ApiException as exc:
            if exc.status == 409:
                raise MergeConflict(f"revert of {target.id[:12]}", branch,
                                    [c.path for c in self._diff(target.id, branch, "two_dot")]
                                    ) from None
            raise self._translate(f"revert {ref!r} on {branch!r}", exc) from None
        return self.get_commit(branch)

    # ---- tags --------------------------------------------------------------------------------

    def tag(self, name: str, ref: str) -> str:
        check_tag(name)
        commit_id = self.resolve(ref)
        try:
            self._tags.create_tag(self.repository, lakefs_sdk.TagCreation(id=name, ref=commit_id))
        except ApiException as exc:
            if exc.status != 409:
                raise self._translate(f"tag {name!r}", exc) from None
            existing = self._call(f"tag {name!r}",
                                  lambda: self._tags.get_tag(self.repository, name)).commit_id
            if existing != commit_id:
                raise BranchExists(f"tag {name!r} exists already, pointing at {existing}") from None
        return commit_id

    def tags(self) -> dict[str, str]:
        refs = self._pages("list tags", lambda after: self._tags.list_tags(
            self.repository, after=after, amount=PAGE))
        return {ref.id: ref.commit_id for ref in sorted(refs, key=lambda r: r.id)}


def _message(exc: ApiException) -> str:
    import json

    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except (ValueError, AttributeError):
        return str(exc.reason)


def _info(stats: Any) -> ObjectInfo:
    return ObjectInfo(stats.path, stats.checksum, int(stats.size_bytes or 0))


def _change(diff: Any) -> Change:
    kind = diff.type if diff.type in ("added", "removed", "changed") else "changed"
    return Change(diff.path, kind, diff.size_bytes)


def _commit(commit: Any) -> Commit:
    return Commit(
        id=commit.id, message=commit.message, metadata=dict(commit.metadata or {}),
        parents=tuple(commit.parents),
        created_at=datetime.fromtimestamp(commit.creation_date, UTC),
        committer=commit.committer,
    )
