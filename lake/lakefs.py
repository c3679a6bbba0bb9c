"""The `Lake` protocol on a lakeFS server, through the official generated client (`lakefs_sdk`).

lakeFS already has the protocol's semantics (branch reads see staging, three-way merges, immutable
commits). Where lakeFS answers an error for what the protocol treats as a no-op (committing or
merging with nothing to change: lakefs-spec #22, lakeFS #7528), this backend returns the current
head instead. Every HTTP failure becomes a tideline error that names the branch, ref or path.
A run id is held for its run's life by a lease in the repository (`hold_run`, see
`tideline.lake.lease`).
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, TypeVar
from urllib.parse import urlsplit

import lakefs_sdk
from lakefs_sdk.exceptions import ApiException
from tideline.core.errors import (
    BranchExists,
    ConfigError,
    DirtyBranch,
    InvalidName,
    InvalidPath,
    InvalidRef,
    LakeError,
    LakeUnavailable,
    MergeConflict,
    ObjectExpired,
    ObjectNotFound,
    RefNotFound,
)
from tideline.lake.base import (
    MAIN,
    Change,
    Commit,
    ObjectInfo,
    check_abbreviation,
    check_branch,
    check_metadata,
    check_path,
    check_prefix,
    check_readable,
    check_repository,
    check_tag,
    is_short_abbreviation,
    parse_ref,
)
from tideline.lake.lease import RUN_HOLD_TTL, RunHold
from tideline.lake.publish import run_branch_name
from urllib3.exceptions import HTTPError as Urllib3Error

T = TypeVar("T")
log = logging.getLogger(__name__)

PAGE = 1000
"""Items per listing request: lakeFS's maximum page size (`DefaultMaxPerPage`)."""

CHUNK = 8 * 1024 * 1024
"""Bytes per ranged request when streaming an object with `reader`."""

LAKEFS_METADATA_PREFIX = ".lakefs."
"""lakeFS writes its own keys into commit metadata (`.lakefs.merge.strategy` on every merge);
they are bookkeeping of the server, not tideline's metadata, so commits are returned without
them."""

_TRANSIENT = {429, 502, 503, 504}


class LakeFSLake:
    """One lakeFS repository. Names, refs and paths are checked locally before any request.

    The repository is created on first use (with default branch `main` and `storage_namespace`;
    unless given, the server's default namespace prefix and the repository's name) when `create`
    is true; otherwise a missing repository is an error.
    """

    def __init__(
        self,
        endpoint: str,
        access_key_id: str,
        secret_access_key: str,
        repository: str,
        *,
        max_read_bytes: int = 2 * 1024**3,
        storage_namespace: str | None = None,
        create: bool = True,
        run_hold_ttl: float = RUN_HOLD_TTL,
    ) -> None:
        if not endpoint.startswith(("http://", "https://")):
            raise ConfigError(
                f"lakeFS endpoint {endpoint!r} is not an http(s) URL; set TIDELINE_LAKEFS_ENDPOINT "
                "to e.g. http://localhost:8000"
            )
        if "@" in urlsplit(endpoint).netloc:  # not echoed: the URL may hold a password
            raise ConfigError(
                "the lakeFS endpoint URL contains user information; give the keys as "
                "TIDELINE_LAKEFS_ACCESS_KEY_ID and TIDELINE_LAKEFS_SECRET_ACCESS_KEY instead"
            )
        if not access_key_id or not secret_access_key:
            raise ConfigError(
                "lakeFS credentials are missing; set TIDELINE_LAKEFS_ACCESS_KEY_ID and "
                "TIDELINE_LAKEFS_SECRET_ACCESS_KEY"
            )
        self.endpoint = endpoint.rstrip("/").removesuffix("/api/v1")
        self.repository = check_repository(repository)
        self.max_read_bytes = max_read_bytes
        self.run_hold_ttl = run_hold_ttl
        self._holds: dict[str, RunHold] = {}  # run branch -> this process's live hold of it
        config = lakefs_sdk.Configuration(
            host=f"{self.endpoint}/api/v1", username=access_key_id, password=secret_access_key
        )
        client = self._client = lakefs_sdk.ApiClient(config)
        self._branches = lakefs_sdk.BranchesApi(client)
        self._commits = lakefs_sdk.CommitsApi(client)
        self._objects = lakefs_sdk.ObjectsApi(client)
        self._refs = lakefs_sdk.RefsApi(client)
        self._tags = lakefs_sdk.TagsApi(client)
        self._repositories = lakefs_sdk.RepositoriesApi(client)
        self._open_repository(storage_namespace, create)

    def __repr__(self) -> str:
        return f"LakeFSLake({self.endpoint!r}, repository={self.repository!r})"

    # ---- requests and errors -----------------------------------------------------------------

    def _request(
        self,
        what: str,
        call: Callable[[], T],
        *,
        missing: Callable[[], LakeError] | None = None,
        exists: Callable[[], LakeError] | None = None,
    ) -> T:
        """Run one API request. `missing` and `exists` build the errors for 404 and 409, which
        only the caller can name well; other failures are translated by `_error`."""
        try:
            return call()
        except ApiException as exc:
            failure = exc
        except (Urllib3Error, ConnectionError, TimeoutError) as exc:
            raise self._unreachable(what, exc) from None
        # outside the except block: the callbacks may make requests of their own
        if failure.status == 404 and missing is not None:
            raise missing()
        if failure.status == 409 and exists is not None:
            raise exists()
        raise self._error(what, failure)

    def _unreachable(self, what: str, exc: BaseException) -> LakeUnavailable:
        reason = getattr(exc, "reason", None) or exc
        return LakeUnavailable(
            f"{what}: cannot reach lakeFS at {self.endpoint} ({type(reason).__name__}); "
            "check that the server is running and TIDELINE_LAKEFS_ENDPOINT points at it"
        )

    def _error(self, what: str, exc: ApiException) -> LakeError:
        status, message = exc.status, _message(exc)
        if status == 0:  # the client could not complete the exchange (TLS failure)
            return LakeUnavailable(f"{what}: cannot reach lakeFS at {self.endpoint} ({message})")
        if status == 401:
            return LakeError(
                f"{what}: lakeFS at {self.endpoint} refused the credentials ({message}); check "
                "TIDELINE_LAKEFS_ACCESS_KEY_ID and TIDELINE_LAKEFS_SECRET_ACCESS_KEY"
            )
        if status == 403:
            return LakeError(
                f"{what}: lakeFS at {self.endpoint} does not allow it ({message}); check the "
                "user's policies and the repository's branch protection"
            )
        if status == 410:
            return ObjectExpired(f"{what}: lakeFS's garbage collection expired it under the "
                                 f"repository's retention rules ({message})")
        if status == 400 and "dirty branch" in message:
            return DirtyBranch(f"{what}: the branch has uncommitted changes; commit or reset it")
        # what lakeFS validates that tideline checks first too (lake.base): kept as a fallback
        # for a server whose rules are stricter than the ones tideline knows
        if status == 400 and "argument tagID" in message:
            return InvalidName(f"{what}: lakeFS refuses the tag name ({message})")
        if status == 400 and "argument path" in message:
            return InvalidPath(f"{what}: lakeFS refuses the path ({message})")
        if status == 500 and "ref: invalid value" in message:  # lakeFS's ErrInvalidRef
            return InvalidRef(
                f"{what}: lakeFS cannot resolve it ({message}): a malformed ref expression, or "
                "a parent the commit does not have"
            )
        if status == 404:
            return RefNotFound(f"{what}: not found ({message})")
        if status == 409:
            return BranchExists(f"{what}: {message}")
        if status in _TRANSIENT or (status == 500 and "try again" in message):
            return LakeUnavailable(
                f"{what}: lakeFS at {self.endpoint} is busy ({status}: {message}); retry later"
            )
        return LakeError(f"{what}: lakeFS at {self.endpoint} answered {status}: {message}")

    def _open_repository(self, storage_namespace: str | None, create: bool) -> None:
        what = f"repository {self.repository!r}"
        found = self._find_repository()
        if found is None:
            if not create:
                raise LakeError(
                    f"no repository {self.repository!r} on lakeFS at {self.endpoint}; create it "
                    "or open it with create=True"
                )
            found = self._create_repository(storage_namespace or self._default_namespace())
        if found.default_branch != MAIN:
            raise LakeError(
                f"{what} on lakeFS has default branch {found.default_branch!r}; tideline "
                f"publishes to {MAIN!r}, so use a repository whose default branch is {MAIN!r}"
            )

    def _find_repository(self) -> Any:
        """The repository, or None if lakeFS has none of that name."""
        try:
            return self._request(f"repository {self.repository!r}",
                                 lambda: self._repositories.get_repository(self.repository))
        except RefNotFound:
            return None

    def _storage(self) -> Any:
        return self._request("storage configuration",
                             lambda: lakefs_sdk.ConfigApi(self._client).get_config()).storage_config

    def _default_namespace(self) -> str:
        """The server's default namespace prefix and the repository's name (`local://tideline`
        on a local blockstore); without a prefix, the setting is needed."""
        storage = self._storage()
        prefix = storage.default_namespace_prefix or ""
        if not prefix:
            raise ConfigError(
                f"lakeFS at {self.endpoint} has no default storage namespace for new "
                f"repositories ({storage.blockstore_type} blockstore); set "
                "TIDELINE_LAKEFS_STORAGE_NAMESPACE to where repository "
                f"{self.repository!r} should keep its data, e.g. "
                f"{storage.blockstore_namespace_example}{self.repository}"
            )
        if prefix.endswith("://"):  # a scheme alone: `local://`
            return f"{prefix}{self.repository}"
        return f"{prefix.rstrip('/')}/{self.repository}"

    def _create_repository(self, storage_namespace: str) -> Any:
        """Create the repository, or take the one another client is creating at the same time:
        lakeFS answers that race with 409, or with 400 "storage namespace already in use" when
        the other client wrote its namespace marker first."""
        creation = lakefs_sdk.RepositoryCreation(
            name=self.repository, storage_namespace=storage_namespace, default_branch=MAIN
        )
        what = f"create repository {self.repository!r} at {storage_namespace!r}"
        try:
            return self._repositories.create_repository(creation)
        except ApiException as exc:
            failure = exc
        except (Urllib3Error, ConnectionError, TimeoutError) as exc:
            raise self._unreachable(what, exc) from None
        message = _message(failure)
        raced = failure.status == 409 or (failure.status == 400 and "already in use" in message)
        if not raced:
            if failure.status == 400 and "namespace" in message:
                storage = self._storage()
                raise ConfigError(
                    f"lakeFS at {self.endpoint} refused storage namespace {storage_namespace!r} "
                    f"for repository {self.repository!r} ({message}); set "
                    "TIDELINE_LAKEFS_STORAGE_NAMESPACE to a location its "
                    f"{storage.blockstore_type} blockstore accepts, e.g. "
                    f"{storage.blockstore_namespace_example}{self.repository}"
                )
            raise self._error(what, failure)
        deadline = time.monotonic() + 10
        while (found := self._find_repository()) is None and time.monotonic() < deadline:
            time.sleep(0.2)  # the other client's creation has not finished yet
        if found is not None:
            return found
        if failure.status == 409:
            raise LakeError(
                f"{what}: lakeFS still holds a repository of that name (being deleted?); "
                "wait for its deletion to finish, or choose another TIDELINE_LAKEFS_REPOSITORY"
            )
        raise LakeError(
            f"{what}: the storage namespace already in use holds another repository's data (or "
            "a deleted repository's); set TIDELINE_LAKEFS_STORAGE_NAMESPACE to a fresh location"
        )

    def _pages(self, what: str, fetch: Callable[[str], Any], **errors: Any) -> Iterator[Any]:
        """Every result of a paginated listing, following `after` = `next_offset`."""
        after = ""
        while True:
            page = self._request(what, lambda after=after: fetch(after), **errors)
            yield from page.results
            if not page.pagination.has_more:
                return
            after = page.pagination.next_offset

    def _check_ref(self, ref: str) -> str:
        """Check a ref before it goes into a URL (`parse_ref`), and refuse what lakeFS resolves
        but tideline does not (`MIN_ABBREVIATION`): a short hex name that is no branch or tag,
        which lakeFS would read as the start of some commit id."""
        base, _ = parse_ref(ref)
        if is_short_abbreviation(base) and not self._names_branch_or_tag(base):
            check_abbreviation(base)
        return ref

    def _names_branch_or_tag(self, name: str) -> bool:
        for lookup in (self._branches.get_branch, self._tags.get_tag):
            try:
                self._request(f"ref {name!r}", lambda lookup=lookup: lookup(self.repository, name))
                return True
            except RefNotFound:
                continue
        return False

    def _no_ref(self, ref: str) -> Callable[[], LakeError]:
        return lambda: RefNotFound(f"no branch, tag or commit named {ref!r}")

    def _no_branch(self, branch: str) -> Callable[[], LakeError]:
        return lambda: RefNotFound(f"no branch named {branch!r}")

    def _object_missing(self, ref: str, path: str) -> Callable[[], LakeError]:
        """lakeFS answers 404 alike for a missing object and a missing ref: tell them apart."""

        def missing() -> LakeError:
            self.resolve(ref)  # raises RefNotFound naming the ref when that is what is missing
            return ObjectNotFound(f"no object {path!r} on {ref!r}")

        return missing

    # ---- branches and refs -------------------------------------------------------------------

    def _ref_map(self, what: str, lister: Callable[..., Any]) -> dict[str, str]:
        refs = self._pages(
            what, lambda after: lister(self.repository, after=after, amount=PAGE)
        )
        return {ref.id: ref.commit_id for ref in sorted(refs, key=lambda r: r.id)}

    def branches(self) -> dict[str, str]:
        return self._ref_map("list branches", self._branches.list_branches)

    def create_branch(self, name: str, source: str = MAIN) -> str:
        check_branch(name)
        self._check_ref(source)

        def exists() -> LakeError:
            if name in self.branches():
                return BranchExists(f"branch {name!r} exists already")
            if name in self.tags():
                return BranchExists(f"cannot create branch {name!r}: a tag has that name")
            return BranchExists(f"cannot create branch {name!r}: a commit has that id")

        response = self._request(
            f"create branch {name!r} from {source!r}",
            lambda: self._branches.create_branch_with_http_info(
                self.repository, lakefs_sdk.BranchCreation(name=name, source=source)
            ),
            missing=lambda: RefNotFound(
                f"cannot create branch {name!r}: no branch, tag or commit named {source!r}"
            ),
            exists=exists,
        )
        # the body is the commit id as text; read it raw, not through the client's JSON parsing
        return str(response.raw_data or response.data).strip()

    def delete_branch(self, name: str) -> None:
        check_branch(name)
        if name == MAIN:
            raise LakeError(f"refusing to delete the default branch {MAIN!r}")
        self._request(
            f"delete branch {name!r}",
            lambda: self._branches.delete_branch(self.repository, name),
            missing=self._no_branch(name),
        )

    def resolve(self, ref: str) -> str:
        return self.get_commit(ref).id

    @contextmanager
    def hold_run(self, run_id: str) -> Iterator[None]:
        """Hold `run_id` for the block, or raise `RunInProgress` if a live process holds it.

        The hold is a lease on `lease.HOLDS_BRANCH`, renewed while the block runs and released when
        it ends. A holder that dies stops renewing, so its re-run starts once the lease expires
        (`run_hold_ttl` seconds at most). A holder that could not renew in time (the lease was
        taken over, or lakeFS was unreachable past its expiry) is refused further writes,
        commits and the merge of its run branch.
        """
        check_branch(run_id)
        hold = RunHold(self, run_id, self.run_hold_ttl)
        hold.take()
        branch = run_branch_name(run_id)
        self._holds[branch] = hold
        try:
            yield
        finally:
            if self._holds.get(branch) is hold:
                del self._holds[branch]
            hold.release()

    def run_held(self, run_id: str) -> bool:
        """Whether a live process holds `run_id` now, read without taking a hold."""
        check_branch(run_id)
        return RunHold(self, run_id, self.run_hold_ttl).held()

    def uncommitted_since(self, branch: str, cutoff: datetime) -> bool:
        """Whether `branch` has an uncommitted object written at or after `cutoff` (lakeFS keeps
        no time for a staged deletion, so those do not count)."""
        for diff in self._staged(branch):
            if diff.type == "removed":
                continue
            stats = self._request(
                f"object {diff.path!r} on {branch!r}",
                lambda path=diff.path: self._objects.stat_object(self.repository, branch, path),
                missing=self._object_missing(branch, diff.path),
            )
            if stats.mtime >= cutoff.timestamp():
                return True
        return False

    def gc_rules(self) -> dict[str, int] | None:
        """The repository's garbage-collection rules as retention days by branch (`""` for the
        default), or None when it has none."""
        try:
            rules = self._request(f"garbage-collection rules of {self.repository!r}",
                                  lambda: self._repositories.get_gc_rules(self.repository))
        except RefNotFound:
            return None
        return {"": rules.default_retention_days,
                **{rule.branch_id: rule.retention_days for rule in rules.branches}}

    def set_gc_rules(self, default_days: int, branches: dict[str, int]) -> None:
        """Set the repository's garbage-collection rules: commits older than a branch's
        retention days (`default_days` for other branches and deleted ones) expire, and
        lakeFS's garbage-collection job deletes the objects only expired commits reference."""
        rules = lakefs_sdk.GarbageCollectionRules(
            default_retention_days=default_days,
            branches=[lakefs_sdk.GarbageCollectionRule(branch_id=name, retention_days=days)
                      for name, days in sorted(branches.items())],
        )
        self._request(f"set garbage-collection rules of {self.repository!r}",
                      lambda: self._repositories.set_gc_rules(self.repository, rules))

    def _check_hold(self, branch: str, what: str, *, renew: bool = False) -> None:
        """Refuse `what` on a run branch whose hold this process has lost (`RunHold.check`)."""
        hold = self._holds.get(branch)
        if hold is not None:
            hold.check(what, renew=renew)

    def get_commit(self, ref: str) -> Commit:
        self._check_ref(ref)
        # lakeFS dereferences any ref expression here: branch, tag, commit id, `ref~N`
        return _commit(
            self._request(
                f"commit {ref!r}",
                lambda: self._commits.get_commit(self.repository, ref),
                missing=self._no_ref(ref),
            )
        )

    # ---- objects -----------------------------------------------------------------------------

    def _upload(self, branch: str, path: str, spool: Path) -> ObjectInfo:
        self._check_hold(branch, f"write {path!r} to branch {branch!r}")
        stats = self._request(
            f"write {path!r} to branch {branch!r}",
            lambda: self._objects.upload_object(self.repository, branch, path, content=str(spool)),
            missing=self._no_branch(branch),
        )
        return _info(stats)

    def create_object(
        self, branch: str, path: str, data: bytes, *, timeout: float | None = None
    ) -> bool:
        """Write `data` at `path` only if nothing is there (lakeFS's `If-None-Match: *` upload,
        checked and written atomically by the server): true if written, false if an object was
        there already (412). `timeout` bounds the request in seconds."""
        check_branch(branch)
        check_path(path)
        with _spooled(data) as spool:

            def upload() -> bool:
                try:
                    self._objects.upload_object(
                        self.repository, branch, path, if_none_match="*", content=str(spool),
                        _request_timeout=timeout,
                    )
                except ApiException as exc:
                    if exc.status == 412:
                        return False
                    raise
                return True

            return self._request(f"create {path!r} on branch {branch!r}", upload,
                                 missing=self._no_branch(branch))

    def put(self, branch: str, path: str, data: bytes) -> ObjectInfo:
        check_branch(branch)
        check_path(path)
        with _spooled(data) as spool:
            return self._upload(branch, path, spool)

    @contextmanager
    def writer(self, branch: str, path: str) -> Iterator[BinaryIO]:
        """A local temp file; uploaded in one request when the block ends cleanly, discarded if
        it raises. The branch is checked first, so a long write is not wasted on a typo.

        The generated client takes the upload as a file path, reads the whole file into memory
        and sends it as one multipart request (it has no multipart-upload API), so an object
        needs about twice its size in memory while it is sent.
        """
        check_branch(branch)
        check_path(path)
        self._request(
            f"branch {branch!r}",
            lambda: self._branches.get_branch(self.repository, branch),
            missing=self._no_branch(branch),
        )
        with tempfile.TemporaryDirectory(prefix="tideline-upload-") as spool_dir:
            spool = Path(spool_dir) / "content"
            with open(spool, "wb") as sink:
                yield sink  # type: ignore[misc]
            self._upload(branch, path, spool)

    def stat(self, ref: str, path: str) -> ObjectInfo:
        check_path(path)
        self._check_ref(ref)
        stats = self._request(
            f"object {path!r} on {ref!r}",
            lambda: self._objects.stat_object(self.repository, ref, path),
            missing=self._object_missing(ref, path),
        )
        return _info(stats)

    def exists(self, ref: str, path: str) -> bool:
        try:
            self.stat(ref, path)
        except ObjectNotFound:
            return False
        return True

    def get(self, ref: str, path: str) -> bytes:
        info = self.stat(ref, path)
        check_readable(info, ref, self.max_read_bytes)
        data = self._request(
            f"object {path!r} on {ref!r}",
            lambda: self._objects.get_object(self.repository, ref, path),
            missing=self._object_missing(ref, path),
        )
        return bytes(data)

    @contextmanager
    def reader(self, ref: str, path: str) -> Iterator[BinaryIO]:
        """Download into a local temp file in ranged requests of `CHUNK` bytes, so memory stays
        bounded whatever the object's size (the generated client buffers each response whole).
        Every range must carry the ETag the object had when the download began; if a writer
        replaced the object on the branch meanwhile, the read fails rather than mixing versions.
        """
        info = self.stat(ref, path)
        what = f"object {path!r} on {ref!r}"
        with tempfile.TemporaryFile(prefix="tideline-download-") as spool:
            for start in range(0, info.size, CHUNK):
                end = min(start + CHUNK, info.size) - 1
                response = self._request(
                    what,
                    lambda start=start, end=end: self._objects.get_object_with_http_info(
                        self.repository, ref, path, range=f"bytes={start}-{end}"
                    ),
                    missing=self._object_missing(ref, path),
                )
                etag = (response.headers or {}).get("ETag", "").strip('"')
                if etag and etag != info.checksum:
                    raise LakeError(f"{what} changed while it was being read; read it again")
                spool.write(response.data)
            spool.seek(0)
            yield spool  # type: ignore[misc]

    def list(self, ref: str, prefix: str = "") -> list[ObjectInfo]:
        check_prefix(prefix)
        self._check_ref(ref)
        objects = self._pages(
            f"list {prefix!r} on {ref!r}",
            lambda after: self._objects.list_objects(
                self.repository, ref, prefix=prefix, after=after, amount=PAGE
            ),
            missing=self._no_ref(ref),
        )
        return [_info(stats) for stats in objects if stats.path_type == "object"]

    def _discard(self, branch: str, path: str) -> None:
        """Delete `path` on `branch` whether or not it is there (lakeFS answers 204 alike)."""
        self._request(
            f"delete {path!r} on {branch!r}",
            lambda: self._objects.delete_object(self.repository, branch, path),
            missing=self._no_branch(branch),
        )

    def delete(self, branch: str, path: str) -> None:
        check_branch(branch)
        # lakeFS deletes a missing path silently (204); the protocol names it, as the local lake
        self.stat(branch, path)
        self._check_hold(branch, f"delete {path!r} on {branch!r}")
        self._discard(branch, path)

    # ---- history -----------------------------------------------------------------------------

    def _staged(self, branch: str) -> Iterator[Any]:
        """lakeFS's entries of the uncommitted changes on `branch`, page by page."""
        check_branch(branch)
        return self._pages(
            f"uncommitted changes on {branch!r}",
            lambda after: self._branches.diff_branch(
                self.repository, branch, after=after, amount=PAGE
            ),
            missing=self._no_branch(branch),
        )

    def uncommitted(self, branch: str) -> list[Change]:
        return sorted(_change(diff) for diff in self._staged(branch))

    def commit(self, branch: str, message: str, metadata: dict[str, str] | None = None) -> Commit:
        check_branch(branch)
        metadata = check_metadata(metadata)
        self._check_hold(branch, f"commit on branch {branch!r}")
        try:
            created = self._commits.commit(
                self.repository,
                branch,
                lakefs_sdk.CommitCreation(message=message, metadata=metadata),
            )
        except ApiException as exc:
            if exc.status == 400 and "no changes" in _message(exc):
                return self.get_commit(branch)  # nothing to commit: the head is the answer
            if exc.status == 404:
                raise self._no_branch(branch)() from None
            raise self._error(f"commit on branch {branch!r}", exc) from None
        except (Urllib3Error, ConnectionError, TimeoutError) as exc:
            raise self._unreachable(f"commit on branch {branch!r}", exc) from None
        return _commit(created)

    def _compare(self, dest: str, source: str, *, amount: int | None = None) -> list[Any]:
        """What merging `source` into `dest` would change: lakeFS's three-dot diff, whose
        entries of type `conflict` are the paths both sides changed differently. With `amount`,
        only that many entries (one request)."""

        def missing() -> LakeError:
            self.resolve(source)
            return RefNotFound(f"no branch named {dest!r}")

        def fetch(after: str) -> Any:
            return self._refs.diff_refs(
                self.repository, dest, source, after=after, amount=amount or PAGE, type="three_dot"
            )

        what = f"compare {source!r} with {dest!r}"
        if amount is not None:
            return self._request(what, lambda: fetch(""), missing=missing).results
        return list(self._pages(what, fetch, missing=missing))

    def merge(
        self, source: str, dest: str, message: str = "", metadata: dict[str, str] | None = None
    ) -> Commit:
        """Merge `source` into the branch `dest`.

        One preview request first: if merging would change nothing (nothing new on `source`,
        or `dest` already has its changes), this is a no-op returning the head of `dest`, as in
        the embedded lake; lakeFS itself answers `no changes` for the first case and records an
        empty merge commit for the second. Conflicts are named from the full preview.
        """
        check_branch(dest)
        self._check_ref(source)
        metadata = check_metadata(metadata)
        self._check_hold(source, f"merge {source!r} into {dest!r}", renew=True)
        if not self._compare(dest, source, amount=1):
            # the embedded lake's order of checks: a dirty branch is refused even then
            if self.uncommitted(dest):
                raise DirtyBranch(
                    f"branch {dest!r} has uncommitted changes; commit or reset it first"
                )
            return self.get_commit(dest)
        body = lakefs_sdk.Merge(
            message=message or f"Merge '{source}' into '{dest}'", metadata=metadata
        )
        what = f"merge {source!r} into {dest!r}"
        try:
            result = self._refs.merge_into_branch(self.repository, source, dest, merge=body)
        except ApiException as exc:
            text = _message(exc)
            if exc.status == 409:  # lakeFS's body is an empty MergeResult: list them ourselves
                conflicts = [d.path for d in self._compare(dest, source) if d.type == "conflict"]
                raise MergeConflict(source, dest, conflicts) from None
            if exc.status == 400 and "no changes" in text:  # the branches moved meanwhile
                return self.get_commit(dest)
            if exc.status == 400 and "dirty branch" in text:
                raise DirtyBranch(
                    f"branch {dest!r} has uncommitted changes; commit or reset it first"
                ) from None
            if exc.status == 404:
                raise self._no_branch(dest)() from None
            raise self._error(what, exc) from None
        except (Urllib3Error, ConnectionError, TimeoutError) as exc:
            raise self._unreachable(what, exc) from None
        return self.get_commit(result.reference)

    def _diff(self, left: str, right: str) -> list[Change]:
        def missing() -> LakeError:
            self.resolve(left)
            self.resolve(right)
            return RefNotFound(f"diff {left!r}..{right!r}: not found")

        diffs = self._pages(
            f"diff {left!r}..{right!r}",
            lambda after: self._refs.diff_refs(
                self.repository, left, right, after=after, amount=PAGE, type="two_dot"
            ),
            missing=missing,
        )
        return sorted(_change(diff) for diff in diffs)

    def diff(self, left: str, right: str) -> list[Change]:
        # two-dot, committed data only: lakeFS adds staging only for a `branch$` ref
        self._check_ref(left)
        self._check_ref(right)
        return self._diff(left, right)

    def log(self, ref: str, limit: int = 50) -> list[Commit]:
        self._check_ref(ref)
        commits: list[Commit] = []
        if limit <= 0:
            return commits
        pages = self._pages(
            f"log of {ref!r}",
            lambda after: self._refs.log_commits(
                self.repository, ref, after=after, amount=min(limit, PAGE)
            ),
            missing=self._no_ref(ref),
        )
        for commit in pages:
            commits.append(_commit(commit))
            if len(commits) >= limit:
                break
        return commits

    def reset(self, branch: str) -> None:
        check_branch(branch)
        self._request(
            f"reset branch {branch!r}",
            lambda: self._branches.reset_branch(
                self.repository, branch, lakefs_sdk.ResetCreation(type="reset")
            ),
            missing=self._no_branch(branch),
        )

    def revert(self, branch: str, ref: str) -> Commit:
        check_branch(branch)
        target = self.get_commit(ref)
        if not target.parents:
            raise LakeError(f"cannot revert {ref!r}: it is the first commit")
        # the embedded lake's message and metadata, so both backends record a revert alike
        body = lakefs_sdk.RevertCreation(
            ref=target.id,
            parent_number=1,
            commit_overrides=lakefs_sdk.CommitOverrides(
                message=f"Revert {target.id}", metadata={"reverted_commit": target.id}
            ),
        )
        what = f"revert {ref!r} on {branch!r}"
        try:
            self._branches.revert_branch(self.repository, branch, body)
        except ApiException as exc:
            text = _message(exc)
            if exc.status == 409:
                raise MergeConflict(
                    f"revert of {target.id[:12]}", branch, self._revert_conflicts(target, branch)
                ) from None
            if exc.status == 400 and "dirty branch" in text:
                raise DirtyBranch(
                    f"branch {branch!r} has uncommitted changes; commit or reset it first"
                ) from None
            if exc.status == 400 and "no changes" in text:
                return self.get_commit(branch)  # its changes are undone already
            if exc.status == 404:
                raise self._no_branch(branch)() from None
            raise self._error(what, exc) from None
        except (Urllib3Error, ConnectionError, TimeoutError) as exc:
            raise self._unreachable(what, exc) from None
        return self.get_commit(branch)

    def _revert_conflicts(self, target: Commit, branch: str) -> list[str]:
        """Paths the reverted commit changed that the branch changed again since, differently
        from the state the revert would restore (lakeFS does not list them)."""
        parent = target.parents[0]
        undone = {c.path for c in self._diff(target.id, parent)}
        redone = {c.path for c in self._diff(target.id, branch)}
        return sorted(
            path
            for path in undone & redone
            if self._entry(parent, path) != self._entry(branch, path)
        )

    def _entry(self, ref: str, path: str) -> tuple[str, int] | None:
        try:
            info = self.stat(ref, path)
        except ObjectNotFound:
            return None
        return info.checksum, info.size

    # ---- tags --------------------------------------------------------------------------------

    def tag(self, name: str, ref: str) -> str:
        check_tag(name)
        self._check_ref(ref)
        what = f"create tag {name!r} at {ref!r}"
        try:
            return self._tags.create_tag(
                self.repository, lakefs_sdk.TagCreation(id=name, ref=ref)
            ).commit_id
        except ApiException as exc:
            if exc.status == 404:
                raise RefNotFound(
                    f"cannot tag {name!r}: no branch, tag or commit named {ref!r}"
                ) from None
            if exc.status != 409:
                raise self._error(what, exc) from None
        except (Urllib3Error, ConnectionError, TimeoutError) as exc:
            raise self._unreachable(what, exc) from None
        # 409: lakeFS refuses an existing tag whatever it points at, and a tag named like a
        # branch or a commit id; the protocol accepts the same tag at the same commit again
        existing = self._request(
            f"tag {name!r}",
            lambda: self._tags.get_tag(self.repository, name),
            missing=lambda: BranchExists(
                f"cannot create tag {name!r}: a "
                + ("branch has that name" if name in self.branches() else "commit has that id")
            ),
        ).commit_id
        if existing != self.resolve(ref):
            raise BranchExists(f"tag {name!r} exists already, pointing at {existing}")
        return existing

    def tags(self) -> dict[str, str]:
        return self._ref_map("list tags", self._tags.list_tags)

    def delete_tag(self, name: str) -> None:
        check_tag(name)
        self._request(f"delete tag {name!r}",
                      lambda: self._tags.delete_tag(self.repository, name),
                      missing=lambda: RefNotFound(f"no tag named {name!r}"))


def _message(exc: ApiException) -> str:
    """The `message` of lakeFS's JSON error body, or the HTTP reason."""
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        body = None
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return str(exc.reason or "no details")


def _info(stats: Any) -> ObjectInfo:
    return ObjectInfo(stats.path, stats.checksum, int(stats.size_bytes or 0))


def _change(diff: Any) -> Change:
    kind = diff.type if diff.type in ("added", "removed", "changed") else "changed"
    return Change(diff.path, kind, diff.size_bytes)


@contextmanager
def _spooled(data: bytes) -> Iterator[Path]:
    """`data` in a local temp file, for the generated client, which uploads from a path."""
    with tempfile.TemporaryDirectory(prefix="tideline-upload-") as spool_dir:
        spool = Path(spool_dir) / "content"
        spool.write_bytes(data)
        yield spool


def _commit(commit: Any) -> Commit:
    metadata = {
        key: value
        for key, value in (commit.metadata or {}).items()
        if not key.startswith(LAKEFS_METADATA_PREFIX)
    }
    return Commit(
        id=commit.id,
        message=commit.message,
        metadata=metadata,
        parents=tuple(commit.parents),
        created_at=datetime.fromtimestamp(commit.creation_date, UTC),
        committer=commit.committer,
    )
