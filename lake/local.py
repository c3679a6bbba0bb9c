"""The embedded lake: content-addressed objects, immutable commits and atomically replaced refs
under one directory, with lakeFS's semantics (branches, staging, commits, three-way merges, tags).

Layout under the root::

    objects/ab/<sha256>          blob bytes and tree manifests, named by their SHA-256
    commits/<id>.json            immutable commit records
    refs/heads/<branch>          the branch's head commit id
    refs/tags/<tag>              the tag's commit id
    staging/<branch>/<key>.json  one uncommitted change per path
    locks/                       flock files: writers share a branch lock, commit/merge own it;
                                 a running run holds run-<id>.lock until it ends or dies
    tmp/                         files being written; renamed into place when complete

`sweep` (`tideline lake gc`) deletes commits, objects and temp files that no branch or tag
reaches once they are older than the retention.

Every visible change is one `os.replace`, so a process killed at any point leaves each ref at its
old or its new commit, never in between, and no half-written object is reachable.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import heapq
import io
import json
import os
import queue
import tempfile
import threading
from collections.abc import Collection, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from tideline.core.errors import (
    BranchExists,
    CorruptObject,
    DirtyBranch,
    LakeError,
    LakeFull,
    MergeConflict,
    ObjectExpired,
    ObjectNotFound,
    RefNotFound,
    RunInProgress,
)
from tideline.core.faults import failpoint
from tideline.lake.base import (
    COMMIT_ID_LENGTH,
    MAIN,
    Change,
    Commit,
    ObjectInfo,
    Sweep,
    check_abbreviation,
    check_branch,
    check_metadata,
    check_path,
    check_prefix,
    check_readable,
    check_tag,
    is_commit_abbreviation,
    iter_chunks,
    parse_ref,
)

Tree = dict[str, tuple[str, int]]

_VERIFIED: dict[str, tuple[int, int, int, int]] = {}
"""Object files this process has hashed in full, with their (inode, size, mtime, ctime) then:
shared by every LocalLake instance (a Ray worker gets a fresh one with each task), and
verified again once anything has written to the file (which moves its ctime)."""


def _signature(file: Path) -> tuple[int, int, int, int]:
    stat = file.stat()
    return stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns


class _HashingWriter(io.RawIOBase):
    """A write-only file that hashes what passes through it on its way to disk.

    Hashing and disk writes run on a helper thread (both release the GIL), so a Parquet encoder
    writing into this file keeps encoding while earlier pages are hashed and written.
    """

    INLINE_BYTES = 4 * 1024 * 1024  # small objects are hashed inline: a thread costs more

    def __init__(self, raw: BinaryIO, depth: int = 16) -> None:
        self._raw, self._hash, self.size = raw, hashlib.sha256(), 0
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def _drain(self) -> None:
        while (chunk := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._hash.update(chunk)
                    self._raw.write(chunk)
                except BaseException as exc:  # surfaced to the caller on its next write/finish
                    self._error = exc

    def _raise_pending(self) -> None:
        if self._error is not None:
            raise self._error

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self._raise_pending()
        if self._thread is None and self.size + len(data) <= self.INLINE_BYTES:
            self._hash.update(data)
            self._raw.write(data)
            self.size += len(data)
            return len(data)
        if self._thread is None:
            self._thread = threading.Thread(target=self._drain, name="lake-writer", daemon=True)
            self._thread.start()
        chunk = bytes(data)  # the caller may reuse its buffer as soon as we return
        self._queue.put(chunk)
        self.size += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self.size

    def close(self) -> None:  # the lake finishes the object itself, in finish()
        pass

    @property
    def closed(self) -> bool:
        return False

    def finish(self, *, raise_errors: bool = True) -> str:
        """Wait for every queued chunk to reach the file; return the SHA-256 of the content."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
        if raise_errors:
            self._raise_pending()
        return self._hash.hexdigest()


class LocalLake:
    """One repository on the local file system. Safe for concurrent processes."""

    def __init__(
        self, root: Path | str, *, fsync: bool = False, max_read_bytes: int = 2 * 1024**3
    ) -> None:
        self.root = Path(root)
        self.fsync = fsync
        self.max_read_bytes = max_read_bytes
        self._commits: dict[str, Commit] = {}
        self._trees: dict[str, Tree] = {}
        for sub in ("objects", "commits", "expired", "refs/heads", "refs/tags", "staging",
                    "locks", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        if not self._ref_file("heads", MAIN).exists():
            with self._lock("repository", exclusive=True):
                if not self._ref_file("heads", MAIN).exists():
                    first = self._write_commit({}, (), "Repository created", {})
                    self._write_ref(self._ref_file("heads", MAIN), first)

    def __repr__(self) -> str:
        return f"LocalLake({str(self.root)!r})"

    # ---- files, locks and atomic replacement -------------------------------------------------

    @contextmanager
    def _lock(self, name: str, *, exclusive: bool) -> Iterator[None]:
        with open(self.root / "locks" / f"{name}.lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _branch_lock(self, branch: str, *, exclusive: bool) -> AbstractContextManager[None]:
        return self._lock(f"branch-{branch}", exclusive=exclusive)

    @contextmanager
    def hold_run(self, run_id: str) -> Iterator[None]:
        """Hold `run_id` for the block, or raise `RunInProgress` if a live process holds it.
        The kernel drops a flock when its holder dies, so a crashed run never blocks its re-run."""
        with open(self.root / "locks" / f"run-{check_branch(run_id)}.lock", "a+b") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunInProgress(run_id) from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def run_held(self, run_id: str) -> bool:
        """Whether a live process holds `run_id` now (`hold_run`), without holding it."""
        try:
            with self.hold_run(run_id):
                return False
        except RunInProgress:
            return True

    @contextmanager
    def _space_for(self, what: str) -> Iterator[None]:
        """A full disk while writing `what`, as a LakeFull naming it (the write's temp file is
        gone by then, and nothing was staged or moved)."""
        try:
            yield
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise LakeFull(f"no space left for {what} in the lake at {self.root}: nothing of it "
                           f"was committed; free some space and run again") from exc

    def _atomic_write(self, path: Path, data: bytes) -> None:
        with self._space_for(str(path.relative_to(self.root))):
            fd, tmp = tempfile.mkstemp(dir=self.root / "tmp")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    if self.fsync:
                        handle.flush()
                        os.fsync(handle.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        if self.fsync:
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def _object_file(self, checksum: str) -> Path:
        return self.root / "objects" / checksum[:2] / checksum[2:]

    def _present(self, dest: Path) -> bool:
        """Whether an object file exists; if so its time is made now, so `sweep` (which deletes
        only files older than its cutoff, holding the objects lock exclusively) keeps it for
        the writer about to reference it. Call holding the objects lock shared."""
        try:
            os.utime(dest)
        except FileNotFoundError:
            return False
        return True

    def _adopt(self, tmp: Path, checksum: str) -> None:
        """Move a finished temp file to its content address (a no-op if the content exists)."""
        dest = self._object_file(checksum)
        with self._lock("objects", exclusive=False):
            if self._present(dest):
                tmp.unlink()
                return
            dest.parent.mkdir(exist_ok=True)
            os.replace(tmp, dest)

    def _store(self, data: bytes) -> tuple[str, int]:
        checksum = hashlib.sha256(data).hexdigest()
        dest = self._object_file(checksum)
        with self._lock("objects", exclusive=False):
            if not self._present(dest):
                dest.parent.mkdir(exist_ok=True)
                self._atomic_write(dest, data)
        return checksum, len(data)

    # ---- refs, commits and trees -------------------------------------------------------------

    def _ref_file(self, kind: str, name: str) -> Path:
        return self.root / "refs" / kind / name

    def _write_ref(self, path: Path, commit_id: str) -> None:
        self._atomic_write(path, commit_id.encode())

    def _read_ref(self, kind: str, name: str) -> str | None:
        try:
            return self._ref_file(kind, name).read_text().strip()
        except FileNotFoundError:
            return None

    def _head(self, branch: str) -> str:
        check_branch(branch)
        head = self._read_ref("heads", branch)
        if head is None:
            raise RefNotFound(
                f"no branch named {branch!r} (branches: {', '.join(self.branches())})"
            )
        return head

    def _write_commit(
        self, tree: Tree, parents: tuple[str, ...], message: str, metadata: dict[str, str]
    ) -> str:
        tree_id, _ = self._store(json.dumps(tree, sort_keys=True).encode())
        record = {
            "tree": tree_id,
            "parents": list(parents),
            "message": message,
            "metadata": metadata,
            "created_at": datetime.now(UTC).isoformat(),
            "committer": os.environ.get("USER", "tideline"),
        }
        body = json.dumps(record, sort_keys=True).encode()
        commit_id = hashlib.sha256(body).hexdigest()
        self._atomic_write(self.root / "commits" / f"{commit_id}.json", body)
        return commit_id

    def _commit_record(self, commit_id: str) -> dict:
        try:
            return json.loads((self.root / "commits" / f"{commit_id}.json").read_bytes())
        except FileNotFoundError:
            raise RefNotFound(f"no commit {commit_id!r}") from None

    def _tree(self, commit_id: str) -> Tree:
        if commit_id not in self._trees:
            tree_id = self._commit_record(commit_id)["tree"]
            try:
                raw = json.loads(self._read_object(tree_id, f"<tree of commit {commit_id}>"))
            except FileNotFoundError:
                marker = self.root / "expired" / commit_id
                if not marker.exists():
                    raise
                raise ObjectExpired(
                    f"commit {commit_id[:12]} was expired by `tideline lake gc` on "
                    f"{marker.read_text().strip()}: it was replaced more than the retention "
                    "ago, so its data is gone (its message and metadata remain); read a newer "
                    "commit, or tag a commit to keep it") from None
            self._trees[commit_id] = {path: (entry[0], entry[1]) for path, entry in raw.items()}
        return self._trees[commit_id]

    def get_commit(self, ref: str) -> Commit:
        commit_id = self.resolve(ref)
        if commit_id not in self._commits:
            record = self._commit_record(commit_id)
            self._commits[commit_id] = Commit(
                id=commit_id,
                message=record["message"],
                metadata=record["metadata"],
                parents=tuple(record["parents"]),
                created_at=datetime.fromisoformat(record["created_at"]),
                committer=record["committer"],
            )
        return self._commits[commit_id]

    def resolve(self, ref: str) -> str:
        """A branch, a tag, a commit id or an abbreviation of one (`MIN_ABBREVIATION` hex
        characters or more, matching one commit), then `~N` / `^N` modifiers (`parse_ref`)."""
        base, modifiers = parse_ref(ref)
        commit_id = self._read_ref("heads", base) if _is_name(base) else None
        if commit_id is None and _is_name(base):
            commit_id = self._read_ref("tags", base)
        if commit_id is None:
            commit_id = self._commit_by_id(base)
        for kind, number in modifiers:
            if kind == "~":
                for _ in range(number):
                    commit_id = self._parent(ref, commit_id, 1)
            elif number:  # `^0` is the commit itself
                commit_id = self._parent(ref, commit_id, number)
        return commit_id

    def _parent(self, ref: str, commit_id: str, number: int) -> str:
        parents = self.get_commit(commit_id).parents
        if number > len(parents):
            raise RefNotFound(f"ref {ref!r} goes back past commit {commit_id[:12]}, which has "
                              f"{len(parents)} parent(s)")
        return parents[number - 1]

    def _commit_by_id(self, name: str) -> str:
        """The commit `name` is the id of, or the only commit whose id starts with it."""
        if len(name) == COMMIT_ID_LENGTH and (self.root / "commits" / f"{name}.json").exists():
            return name
        check_abbreviation(name)
        if is_commit_abbreviation(name):
            found = [p.stem for p in (self.root / "commits").glob(f"{name.lower()}*.json")]
            if len(found) == 1:
                return found[0]
            if found:
                raise RefNotFound(f"{name!r} is the start of {len(found)} commit ids: give more "
                                  "of the one you mean")
        raise RefNotFound(f"no branch, tag or commit named {name!r}")

    # ---- staging -----------------------------------------------------------------------------

    def _staging_dir(self, branch: str) -> Path:
        return self.root / "staging" / branch

    def _staging_file(self, branch: str, path: str) -> Path:
        return self._staging_dir(branch) / f"{hashlib.sha1(path.encode()).hexdigest()}.json"

    def _stage(self, branch: str, path: str, entry: tuple[str, int] | None) -> None:
        self._staging_dir(branch).mkdir(exist_ok=True)
        record = {
            "path": path,
            "checksum": entry[0] if entry else None,
            "size": entry[1] if entry else 0,
        }
        self._atomic_write(self._staging_file(branch, path), json.dumps(record).encode())

    def _staged(self, branch: str) -> dict[str, tuple[str, int] | None]:
        staged: dict[str, tuple[str, int] | None] = {}
        try:
            files = list(os.scandir(self._staging_dir(branch)))
        except FileNotFoundError:
            return staged
        for item in files:
            record = json.loads(Path(item.path).read_bytes())
            staged[record["path"]] = (
                (record["checksum"], record["size"]) if record["checksum"] else None
            )
        return staged

    def _clear_staging(self, branch: str) -> None:
        staging = self._staging_dir(branch)
        for item in list(os.scandir(staging)) if staging.exists() else []:
            os.unlink(item.path)

    def _view(self, ref: str) -> Tree:
        """What a reader of `ref` sees: a commit's tree, or a branch's head plus its staging."""
        branch_head = self._read_ref("heads", ref) if _is_name(ref) else None
        if branch_head is None:
            return self._tree(self.resolve(ref))
        with self._branch_lock(ref, exclusive=False):
            tree = dict(self._tree(self._head(ref)))
            return _apply(tree, self._staged(ref))

    # ---- branches ----------------------------------------------------------------------------

    def branches(self) -> dict[str, str]:
        heads = self.root / "refs" / "heads"
        return {
            path.name: path.read_text().strip()
            for path in sorted(heads.iterdir())
            if not path.name.startswith(".")
        }

    def _check_new_ref(self, kind: str, name: str) -> None:
        """A branch and a tag never share a name, and neither takes a commit's id (lakeFS: 409)."""
        if self._read_ref("tags" if kind == "branch" else "heads", name) is not None:
            other = "tag" if kind == "branch" else "branch"
            raise BranchExists(f"cannot create {kind} {name!r}: a {other} has that name")
        if len(name) == COMMIT_ID_LENGTH and (self.root / "commits" / f"{name}.json").exists():
            raise BranchExists(f"cannot create {kind} {name!r}: a commit has that id")

    def create_branch(self, name: str, source: str = MAIN) -> str:
        check_branch(name)
        commit_id = self.resolve(source)
        self._check_new_ref("branch", name)
        if not _create_exclusive(self._ref_file("heads", name), commit_id, self.root / "tmp"):
            raise BranchExists(
                f"branch {name!r} exists already (at {self._read_ref('heads', name)})"
            )
        return commit_id

    def delete_branch(self, name: str) -> None:
        self._head(name)
        if name == MAIN:
            raise LakeError(f"refusing to delete the default branch {MAIN!r}")
        with self._branch_lock(name, exclusive=True):
            self._clear_staging(name)
            self._ref_file("heads", name).unlink(missing_ok=True)

    # ---- objects -----------------------------------------------------------------------------

    def put(self, branch: str, path: str, data: bytes) -> ObjectInfo:
        with self.writer(branch, path) as handle:
            handle.write(data)
        return self.stat(branch, path)

    @contextmanager
    def writer(self, branch: str, path: str) -> Iterator[BinaryIO]:
        check_path(path)
        self._head(branch)
        with self._space_for(f"{path!r} on {branch!r}"):
            fd, tmp = tempfile.mkstemp(dir=self.root / "tmp")
            try:
                with os.fdopen(fd, "wb") as raw:
                    stream = _HashingWriter(raw)
                    try:
                        yield stream  # type: ignore[misc]
                    except BaseException:
                        stream.finish(raise_errors=False)
                        raise
                    checksum = stream.finish()
                    raw.flush()
                    if self.fsync:
                        os.fsync(raw.fileno())
                self._adopt(Path(tmp), checksum)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        with self._branch_lock(branch, exclusive=False):
            self._head(branch)
            self._stage(branch, path, (checksum, stream.size))

    def _entry(self, ref: str, path: str) -> tuple[str, int] | None:
        """One path's entry as a reader of `ref` sees it, without building the whole view."""
        if not (_is_name(ref) and self._read_ref("heads", ref) is not None):
            return self._tree(self.resolve(ref)).get(path)
        with self._branch_lock(ref, exclusive=False):
            try:
                record = json.loads(self._staging_file(ref, path).read_bytes())
            except FileNotFoundError:
                return self._tree(self._head(ref)).get(path)
        return (record["checksum"], record["size"]) if record["checksum"] else None

    def stat(self, ref: str, path: str) -> ObjectInfo:
        check_path(path)
        entry = self._entry(ref, path)
        if entry is None:
            raise ObjectNotFound(f"no object {path!r} on {ref!r}")
        return ObjectInfo(path, entry[0], entry[1])

    def exists(self, ref: str, path: str) -> bool:
        check_path(path)
        return self._entry(ref, path) is not None

    def _read_object(self, checksum: str, label: str) -> bytes:
        data = self._object_file(checksum).read_bytes()
        if hashlib.sha256(data).hexdigest() != checksum:
            raise CorruptObject(
                f"object {label!r} is corrupt: its bytes no longer match {checksum}"
            )
        return data

    def get(self, ref: str, path: str) -> bytes:
        info = self.stat(ref, path)
        check_readable(info, ref, self.max_read_bytes)
        return self._read_object(info.checksum, f"{path} on {ref}")

    @contextmanager
    def reader(self, ref: str, path: str) -> Iterator[BinaryIO]:
        info = self.stat(ref, path)
        file = self._object_file(info.checksum)
        signature = _signature(file)
        if _VERIFIED.get(str(file)) != signature:
            digest = hashlib.sha256()
            with open(file, "rb") as handle:
                for chunk in iter_chunks(handle):
                    digest.update(chunk)
            if digest.hexdigest() != info.checksum:
                raise CorruptObject(f"object {path!r} on {ref!r} is corrupt: checksum mismatch")
            _VERIFIED[str(file)] = signature
        with open(file, "rb") as handle:
            yield handle

    def list(self, ref: str, prefix: str = "") -> list[ObjectInfo]:
        check_prefix(prefix)
        tree = self._view(ref)
        return [ObjectInfo(p, c, s) for p, (c, s) in sorted(tree.items()) if p.startswith(prefix)]

    def delete(self, branch: str, path: str) -> None:
        if not self.exists(branch, path):
            raise ObjectNotFound(f"no object {path!r} on {branch!r} to delete")
        with self._branch_lock(branch, exclusive=False):
            self._stage(branch, path, None)

    # ---- history -----------------------------------------------------------------------------

    def uncommitted(self, branch: str) -> list[Change]:
        with self._branch_lock(branch, exclusive=False):
            head_tree = self._tree(self._head(branch))
            staged = self._staged(branch)
        return _changes(head_tree, _apply(dict(head_tree), staged))

    def commit(self, branch: str, message: str, metadata: dict[str, str] | None = None) -> Commit:
        metadata = check_metadata(metadata)
        with self._branch_lock(branch, exclusive=True):
            head = self._head(branch)
            staged = self._staged(branch)
            tree = self._tree(head)
            new_tree = _apply(dict(tree), staged)
            if new_tree != tree:
                head = self._write_commit(new_tree, (head,), message, metadata)
                self._write_ref(self._ref_file("heads", branch), head)
            self._clear_staging(branch)
        return self.get_commit(head)

    def _ancestors(self, commit_id: str) -> set[str]:
        seen, todo = set(), [commit_id]
        while todo:
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                todo.extend(self.get_commit(current).parents)
        return seen

    def merge_base(self, left: str, right: str) -> str | None:
        """The nearest common ancestor of two refs, searching from `left` newest first."""
        right_ancestors = self._ancestors(self.resolve(right))
        for commit in self._walk(self.resolve(left)):
            if commit.id in right_ancestors:
                return commit.id
        return None

    def merge(
        self, source: str, dest: str, message: str = "", metadata: dict[str, str] | None = None
    ) -> Commit:
        metadata = check_metadata(metadata)
        source_id = self.resolve(source)
        with self._branch_lock(dest, exclusive=True):
            dest_id = self._head(dest)
            if self._staged(dest):
                raise DirtyBranch(
                    f"branch {dest!r} has uncommitted changes; commit or reset it first"
                )
            base_id = self.merge_base(source_id, dest_id)
            base = self._tree(base_id) if base_id else {}
            ours, theirs = self._tree(dest_id), self._tree(source_id)
            merged, conflicts = _three_way(base, ours, theirs)
            if conflicts:
                raise MergeConflict(source, dest, conflicts)
            if base_id == source_id or merged == ours:
                return self.get_commit(dest_id)
            message = message or f"Merge '{source}' into '{dest}'"
            head = self._write_commit(merged, (dest_id, source_id), message, metadata)
            failpoint("lake-commit")  # the merge commit is stored; `dest` has not moved
            self._write_ref(self._ref_file("heads", dest), head)
        return self.get_commit(head)

    def diff(self, left: str, right: str) -> list[Change]:
        return _changes(self._tree(self.resolve(left)), self._tree(self.resolve(right)))

    def _walk(self, commit_id: str) -> Iterator[Commit]:
        """Commits reachable from `commit_id`, newest first, equal times by the larger id first:
        lakeFS's log order (`ref.CommitIterator`)."""

        def key(commit: Commit) -> tuple[float, int, str]:
            return -commit.created_at.timestamp(), -int(commit.id, 16), commit.id

        start = self.get_commit(commit_id)
        heap, seen = [key(start)], {start.id}
        while heap:
            current = heapq.heappop(heap)[-1]
            commit = self.get_commit(current)
            yield commit
            for parent in commit.parents:
                if parent not in seen:
                    seen.add(parent)
                    heapq.heappush(heap, key(self.get_commit(parent)))

    def log(self, ref: str, limit: int = 50) -> list[Commit]:
        commits = []
        for commit in self._walk(self.resolve(ref)):
            if len(commits) >= limit:
                break
            commits.append(commit)
        return commits

    def reset(self, branch: str) -> None:
        with self._branch_lock(branch, exclusive=True):
            self._head(branch)
            self._clear_staging(branch)

    def revert(self, branch: str, ref: str) -> Commit:
        target = self.get_commit(ref)
        if not target.parents:
            raise LakeError(f"cannot revert {ref!r}: it is the first commit")
        with self._branch_lock(branch, exclusive=True):
            head = self._head(branch)
            if self._staged(branch):
                raise DirtyBranch(
                    f"branch {branch!r} has uncommitted changes; commit or reset it first"
                )
            merged, conflicts = _three_way(
                self._tree(target.id), self._tree(head), self._tree(target.parents[0])
            )
            if conflicts:
                raise MergeConflict(f"revert of {target.id[:12]}", branch, conflicts)
            head = self._write_commit(
                merged, (head,), f"Revert {target.id}", {"reverted_commit": target.id}
            )
            self._write_ref(self._ref_file("heads", branch), head)
        return self.get_commit(head)

    # ---- retention ---------------------------------------------------------------------------

    def uncommitted_since(self, branch: str, cutoff: datetime) -> bool:
        """Whether `branch` has an uncommitted change staged at or after `cutoff`."""
        self._head(branch)
        stamp = cutoff.timestamp()
        try:
            files = list(os.scandir(self._staging_dir(branch)))
        except FileNotFoundError:
            return False
        return any(_mtime(item.path) >= stamp for item in files)

    def sweep(
        self, cutoff: datetime, *, ignore_branches: Collection[str] = (), dry_run: bool = False,
        expire_history: bool = False, keep: Collection[str] = (),
    ) -> Sweep:
        """Delete what no branch or tag reaches and nothing wrote since `cutoff`: commits not in
        any ref's history, the objects (data and trees) that no remaining commit and no staged
        change references, and abandoned temp files. A dry run deletes nothing and counts the
        same, treating `ignore_branches` as deleted already.

        With `expire_history`, a branch's history past the retention goes too, as lakeFS's
        garbage collection expires it: a commit that its branch replaced before `cutoff` (its
        successor on the branch's first-parent line, and the commit itself, are older) is
        expired unless it is a branch head, a tag, or in `keep` (the commits registered models
        name). An expired commit keeps its record (log, message, metadata) but its objects go,
        unless a kept commit references them; reading it raises `ObjectExpired`. This is what
        erases rows `tideline forget` removed from main's older commits.

        Every kept commit stays readable: an object goes only if no kept commit references it.
        Nothing younger than `cutoff` goes, so a writer that has stored an object but not yet
        staged or committed it keeps it (storing refreshes an existing object's time).
        """
        stamp = cutoff.timestamp()
        # staging before refs: a commit moves its staged entries into a tree and moves its
        # branch's ref before it clears staging, so every entry is seen in one or the other
        live: set[str] = set()
        for item in list(os.scandir(self.root / "staging")):
            if item.name not in ignore_branches:
                live.update(e[0] for e in self._staged(item.name).values() if e is not None)
        heads = [head for name, head in self.branches().items() if name not in ignore_branches]
        tags = list(self.tags().values())
        from_heads: set[str] = set()
        for head in heads:
            if head not in from_heads:
                from_heads |= self._ancestors(head)
        reachable = set(from_heads)
        for tag in tags:
            if tag not in reachable:
                reachable |= self._ancestors(tag)
        marked = {path.name for path in (self.root / "expired").iterdir()}
        expired = self._past_retention(heads, from_heads, {*heads, *tags, *keep}, cutoff
                                       ) - marked if expire_history else set()
        old_commits, trees = [], set()
        for item in list(os.scandir(self.root / "commits")):
            commit_id = item.name.removesuffix(".json")
            if commit_id not in reachable and _mtime(item.path) < stamp:
                old_commits.append((commit_id, Path(item.path)))
            elif commit_id not in expired and commit_id not in marked:
                trees.add(self._commit_record(commit_id)["tree"])
        for tree_id in trees:
            live.add(tree_id)
            tree = json.loads(self._read_object(tree_id, f"<tree {tree_id}>"))
            live.update(entry[0] for entry in tree.values())
        old_objects = [
            Path(item.path)
            for folder in list(os.scandir(self.root / "objects")) if folder.is_dir()
            for item in list(os.scandir(folder.path))
            if folder.name + item.name not in live and _mtime(item.path) < stamp
        ]
        old_temp = [Path(item.path) for item in list(os.scandir(self.root / "tmp"))
                    if _mtime(item.path) < stamp]
        if dry_run:
            return Sweep(len(old_objects), len(old_commits), len(old_temp),
                         sum(_size(p) for p in [*old_objects, *old_temp,
                                                *(path for _, path in old_commits)]),
                         len(expired))
        today = datetime.now(UTC).isoformat(timespec="seconds")
        for commit_id in expired:  # marked before their objects go: a reader learns why
            self._atomic_write(self.root / "expired" / commit_id, today.encode())
            self._trees.pop(commit_id, None)
        freed = commits = objects = temps = 0
        for commit_id, path in old_commits:  # commits first: no kept commit loses an object
            freed, commits = freed + _unlink(path), commits + 1
            self._commits.pop(commit_id, None)
            self._trees.pop(commit_id, None)
        with self._lock("objects", exclusive=True):
            for path in old_objects:
                if path.exists() and _mtime(path) < stamp:  # not stored again meanwhile
                    freed, objects = freed + _unlink(path), objects + 1
        for path in old_temp:
            if path.exists() and _mtime(path) < stamp:
                freed, temps = freed + _unlink(path), temps + 1
        return Sweep(objects, commits, temps, freed, len(expired))

    def _past_retention(self, heads: Collection[str], reachable: set[str],
                        kept: Collection[str], cutoff: datetime) -> set[str]:
        """The commits of the branches' histories (`reachable` from `heads`) that their branch
        replaced before `cutoff`, but for `kept`: walking each head's first-parent line, a
        commit stays while it or its successor is younger than `cutoff`; every other reachable
        commit older than `cutoff` (second parents: merged run branches) is past the retention
        too."""
        young: set[str] = set(kept)
        for head in heads:
            successor = None
            current: str | None = head
            while current is not None:
                commit = self.get_commit(current)
                if successor is None or successor >= cutoff or commit.created_at >= cutoff:
                    young.add(current)
                successor = commit.created_at
                current = commit.parents[0] if commit.parents else None
        return {commit_id for commit_id in reachable - young
                if self.get_commit(commit_id).created_at < cutoff}

    # ---- tags --------------------------------------------------------------------------------

    def tag(self, name: str, ref: str) -> str:
        check_tag(name)
        commit_id = self.resolve(ref)
        self._check_new_ref("tag", name)
        if not _create_exclusive(self._ref_file("tags", name), commit_id, self.root / "tmp"):
            existing = self._read_ref("tags", name)
            if existing != commit_id:
                raise BranchExists(f"tag {name!r} exists already, pointing at {existing}")
        return commit_id

    def tags(self) -> dict[str, str]:
        tags = self.root / "refs" / "tags"
        return {path.name: path.read_text().strip() for path in sorted(tags.iterdir())}

    def delete_tag(self, name: str) -> None:
        check_tag(name)
        try:
            self._ref_file("tags", name).unlink()
        except FileNotFoundError:
            raise RefNotFound(f"no tag named {name!r}") from None


def _mtime(path: str | Path) -> float:
    try:
        return os.stat(path).st_mtime
    except FileNotFoundError:
        return float("inf")  # gone meanwhile: nothing to delete


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _unlink(path: Path) -> int:
    """Delete a file; its size, or 0 if another process deleted it first."""
    size = _size(path)
    try:
        path.unlink()
    except FileNotFoundError:
        return 0
    return size


def _is_name(ref: str) -> bool:
    return "/" not in ref and ref not in ("", ".", "..")


def _create_exclusive(path: Path, commit_id: str, tmp_dir: Path) -> bool:
    """Create a ref file only if absent, atomically: a complete temp file hard-linked into place."""
    fd, tmp = tempfile.mkstemp(dir=tmp_dir)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(commit_id.encode())
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)


def _apply(tree: Tree, staged: dict[str, tuple[str, int] | None]) -> Tree:
    for path, entry in staged.items():
        if entry is None:
            tree.pop(path, None)
        else:
            tree[path] = entry
    return tree


def _changes(left: Tree, right: Tree) -> list[Change]:
    changes = [Change(p, "removed", left[p][1]) for p in left.keys() - right.keys()]
    changes += [Change(p, "added", right[p][1]) for p in right.keys() - left.keys()]
    changes += [
        Change(p, "changed", right[p][1]) for p in left.keys() & right.keys() if left[p] != right[p]
    ]
    return sorted(changes)


def _three_way(base: Tree, ours: Tree, theirs: Tree) -> tuple[Tree, list[str]]:
    """Object-level three-way merge: take each side's change; both changing a path differently
    is a conflict."""
    merged, conflicts = dict(ours), []
    for path in base.keys() | ours.keys() | theirs.keys():
        b, o, t = base.get(path), ours.get(path), theirs.get(path)
        if t in (b, o):
            continue
        if o == b:
            if t is None:
                merged.pop(path, None)
            else:
                merged[path] = t
        else:
            conflicts.append(path)
    return merged, conflicts
