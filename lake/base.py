"""The `Lake` protocol every backend implements, its value types, and the naming rules they share.

Semantics follow lakeFS so the embedded backend and a lakeFS server behave alike: reads from a
branch see its uncommitted writes, reads from a commit or tag see only committed data, commits and
merges with nothing to change are no-ops that return the current head.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO, Literal, Protocol, runtime_checkable

from tideline.core.errors import (
    InvalidName,
    InvalidPath,
    InvalidRef,
    LakeError,
    ObjectTooLarge,
    RefNotFound,
)

MAIN = "main"

# lakeFS's own rules (pkg/validator, graveler.ValidateTagID, catalog.MaxPathLength), so names
# valid here are valid on a lakeFS server too.
_REPOSITORY_RE = re.compile(r"^[a-z0-9][a-z0-9-]{2,62}$")
_BRANCH_RE = re.compile(r"^\w[-\w]*$", re.ASCII)
_TAG_RE = re.compile(r"^[\w][-\w.]*$", re.ASCII)
MAX_PATH_BYTES = 1024

COMMIT_ID_LENGTH = 64
MIN_ABBREVIATION = 7
"""Shortest abbreviation of a commit id that names a commit (as git's default). lakeFS resolves
any 1-64 character hex prefix of a commit id; tideline does not, on either backend, so a missing
branch called `cafe` or `2026` is "not found" instead of some commit that starts that way."""

_HEX_RE = re.compile(r"^[0-9a-fA-F]{1,64}$")
_MODIFIERS_RE = re.compile(r"(?:[~^]\d*)*")


@dataclass(frozen=True)
class Commit:
    id: str
    message: str
    metadata: dict[str, str]
    parents: tuple[str, ...]
    created_at: datetime
    committer: str = ""


@dataclass(frozen=True)
class ObjectInfo:
    path: str
    checksum: str
    size: int


@dataclass(frozen=True, order=True)
class Change:
    path: str
    kind: Literal["added", "removed", "changed"] = field(compare=False)
    size: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Sweep:
    """What a sweep of unreachable data deleted (or, in a dry run, would delete)."""

    objects: int = 0
    commits: int = 0
    temp_files: int = 0
    bytes: int = 0
    expired: int = 0
    """Commits whose data was expired (history past the retention): their records stay."""


@runtime_checkable
class Lake(Protocol):
    """Branches, objects, commits, merges, diffs, tags and history over one repository."""

    # branches and refs
    def branches(self) -> dict[str, str]: ...
    def create_branch(self, name: str, source: str = MAIN) -> str: ...
    def delete_branch(self, name: str) -> None: ...
    def resolve(self, ref: str) -> str: ...

    # objects (write to a branch; read from any ref)
    def put(self, branch: str, path: str, data: bytes) -> ObjectInfo: ...
    def writer(self, branch: str, path: str) -> AbstractContextManager[BinaryIO]: ...
    def get(self, ref: str, path: str) -> bytes: ...
    def reader(self, ref: str, path: str) -> AbstractContextManager[BinaryIO]: ...
    def stat(self, ref: str, path: str) -> ObjectInfo: ...
    def exists(self, ref: str, path: str) -> bool: ...
    def list(self, ref: str, prefix: str = "") -> list[ObjectInfo]: ...
    def delete(self, branch: str, path: str) -> None: ...

    # history
    def uncommitted(self, branch: str) -> list[Change]: ...
    def commit(
        self, branch: str, message: str, metadata: dict[str, str] | None = None
    ) -> Commit: ...
    def merge(
        self, source: str, dest: str, message: str = "", metadata: dict[str, str] | None = None
    ) -> Commit: ...
    def diff(self, left: str, right: str) -> list[Change]: ...
    def log(self, ref: str, limit: int = 50) -> list[Commit]: ...
    def get_commit(self, ref: str) -> Commit: ...
    def reset(self, branch: str) -> None: ...
    def revert(self, branch: str, ref: str) -> Commit: ...

    # tags
    def tag(self, name: str, ref: str) -> str: ...
    def tags(self) -> dict[str, str]: ...
    def delete_tag(self, name: str) -> None: ...


def check_repository(name: str) -> str:
    if not _REPOSITORY_RE.match(name):
        raise InvalidName(
            f"invalid repository name {name!r}: use 3-63 lowercase letters, digits and '-', "
            "starting with a letter or digit"
        )
    return name


def check_branch(name: str) -> str:
    if not isinstance(name, str) or not _BRANCH_RE.match(name):
        raise InvalidName(
            f"invalid branch name {name!r}: use letters, digits, '_' and '-', "
            "starting with a letter, digit or '_'"
        )
    return name


def check_tag(name: str) -> str:
    if (not isinstance(name, str) or not _TAG_RE.match(name) or name.endswith((".", ".lock"))
            or ".." in name):
        raise InvalidName(
            f"invalid tag name {name!r}: use letters, digits, '_', '-' and '.', with no '..' "
            "and not ending in '.' or '.lock'"
        )
    return name


def parse_ref(ref: str) -> tuple[str, list[tuple[str, int]]]:
    """A ref expression as its base (a branch, tag or commit id) and its modifiers: `~N` is N
    first parents back, `^N` the Nth parent (N is 1 when left out)."""
    if not isinstance(ref, str) or not ref or "/" in ref or any(ch.isspace() for ch in ref):
        raise InvalidRef(f"invalid ref {ref!r}: expected a branch, tag or commit id")
    cut = min((i for i in (ref.find("~"), ref.find("^")) if i >= 0), default=len(ref))
    base, rest = ref[:cut], ref[cut:]
    if not base or not _MODIFIERS_RE.fullmatch(rest):
        raise InvalidRef(
            f"malformed ref expression {ref!r}: write a branch, tag or commit id, optionally "
            "followed by ~N (N first parents back) or ^N (the Nth parent)"
        )
    modifiers = [(part[0], int(part[1:] or 1)) for part in re.findall(r"[~^]\d*", rest)]
    return base, modifiers


def is_commit_abbreviation(name: str) -> bool:
    """Whether a name that is not a branch or tag could name a commit by a prefix of its id."""
    return bool(_HEX_RE.match(name)) and len(name) < COMMIT_ID_LENGTH


def check_abbreviation(name: str) -> None:
    """Refuse a prefix of a commit id too short to name a commit (`MIN_ABBREVIATION`); call it
    once `name` is known to be no branch or tag."""
    if is_short_abbreviation(name):
        raise RefNotFound(
            f"no branch or tag named {name!r}, and {name!r} is too short to name a commit: "
            f"give at least {MIN_ABBREVIATION} characters of a commit id"
        )


def is_short_abbreviation(name: str) -> bool:
    """Whether `name` looks like a commit id prefix shorter than `MIN_ABBREVIATION`."""
    return is_commit_abbreviation(name) and len(name) < MIN_ABBREVIATION


def check_path(path: str) -> str:
    """Reject paths that are empty, absolute, climb with `..`, or carry control characters."""
    if not isinstance(path, str) or not path or not path.strip("/"):
        raise InvalidPath(f"invalid object path {path!r}: it is empty")
    if path.startswith("/") or re.match(r"^[A-Za-z]:[\\/]", path):
        raise InvalidPath(
            f"invalid object path {path!r}: use a path relative to the repository root"
        )
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise InvalidPath(f"invalid object path {path!r}: no '.', '..' or empty segments")
    if any(ord(ch) < 32 or ch == "\\" for ch in path):
        raise InvalidPath(f"invalid object path {path!r}: no control characters or backslashes")
    if len(path.encode()) > MAX_PATH_BYTES:
        raise InvalidPath(
            f"invalid object path {path[:60]!r}...: {len(path.encode())} bytes, over lakeFS's "
            f"limit of {MAX_PATH_BYTES}"
        )
    return path


def check_prefix(prefix: str) -> str:
    """A listing prefix: empty (everything) or a path-like string that may end in '/'."""
    if prefix:
        check_path(prefix.rstrip("/") or "/")
    return prefix


def iter_chunks(stream: BinaryIO, size: int = 8 * 1024 * 1024) -> Iterator[bytes]:
    while chunk := stream.read(size):
        yield chunk


def check_metadata(metadata: dict[str, str] | None) -> dict[str, str]:
    """Commit metadata is a flat string map (as in lakeFS); say which key breaks that."""
    metadata = dict(metadata or {})
    for key, value in metadata.items():
        if not isinstance(key, str) or not key or not isinstance(value, str):
            raise LakeError(
                f"commit metadata must map non-empty strings to strings; key {key!r} has "
                f"{type(value).__name__} value {value!r}"
            )
    return metadata


def check_readable(info: ObjectInfo, ref: str, max_read_bytes: int) -> None:
    """Refuse to read an object into memory past the configured limit, naming it."""
    if info.size > max_read_bytes:
        raise ObjectTooLarge(
            f"object {info.path!r} on {ref!r} is {info.size:,} bytes, over the "
            f"{max_read_bytes:,}-byte limit for reading into memory; stream it with reader()"
        )
