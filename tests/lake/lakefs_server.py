"""A stand-in for a lakeFS server: the REST endpoints `lake.lakefs.LakeFSLake` calls, with the
paths, request and response shapes and status codes of lakeFS's OpenAPI spec (`api/swagger.yml`,
base path `/api/v1`) and the error answers of its Go server, storing data in `LocalLake`s.

No lakeFS server can run on this machine, so tests drive `LakeFSLake` through the real
`lakefs_sdk` client (whose pydantic models validate every response) against this app. Its job is
the HTTP contract and lakeFS's semantics, not storage. Reproduced from lakeFS (treeverse/lakeFS:
`pkg/api/controller.go`, `pkg/graveler/graveler.go`, `pkg/graveler/errors.go`,
`pkg/graveler/committed/{manager,compare_iterator}.go`, `pkg/httputil/range.go`):

- HTTP basic auth; 401 `error authenticating request`; every error is `{"message": ...}`.
- lakeFS's terse messages (`not found`, `branch not found`, ...), never the embedded lake's
  wording, so the client has to name refs and paths itself.
- `after`/`amount` pagination: `amount` in [-1, 1000] (400 outside), <= 0 means 100; results
  strictly after `after`; `has_more` and `next_offset` (the last id, path or commit id).
- An empty commit is 400 `no changes` (`allow_empty` is not supported here: 501).
- Dirtiness is by content (`isUncommittedEmpty`): re-staging identical bytes leaves a branch
  clean; merging into or reverting on a dirty branch is 400 `uncommitted changes (dirty branch)`.
- A merge whose source has nothing new since the merge base is 400 `no changes`; a conflicting
  merge is 409 with a `MergeResult` body (`{"reference": ""}`), not an error body; merge commits
  carry `.lakefs.merge.strategy: default` in their metadata; the default message is
  `Merge '<source>' into '<dest>'`.
- The three-dot diff is lakeFS's merge preview (`Compare`): changes the merge would apply, and
  paths both sides changed differently as type `conflict`. Two-dot diffs compare commits.
- A revert is 204; its conflicts are 409 `conflict found`; a revert changing nothing is 400.
- Branch or tag already there: 409 `branch already exists: not unique` / `tag already exists:
  not unique`; a branch named like a tag (or the reverse): 409 `... conflict found`; deleting the
  default branch: 403; deleting a missing object: 204.
- Objects: multipart `content` upload (or a raw body), 201 `ObjectStats`; a missing `content`
  part is 500; ranged reads are 206 with `Content-Range`, unsatisfiable ranges 416; `ETag`.
- Conditional upload (`UploadObject`, `apiutil.BuildConditionFromParams`): `If-None-Match: *`
  writes only if the branch has no object at the path (staged or committed; a staged delete
  frees it), checked and written under one lock as lakeFS's KV `SetIf` does, else 412 `path
  already exists`; `If-Match`, both headers, or another `If-None-Match` value is 501 `Not
  Implemented` (lakeFS has no compare-and-swap on an object's ETag).

Not reproduced (answered 501 so a test cannot pass on a guess): bare or read-only repositories,
default branches other than `main`, merge strategies and squash merges, merges or commits that
change nothing but are forced to record a commit, reverting a merge against its second parent or
a root commit, revert messages other than the embedded lake's, delimiters, presigned URLs.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from email.message import Message
from pathlib import Path
from typing import Annotated, Any

import uvicorn
from fastapi import Body, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from lake.base import Change, Commit, ObjectInfo
from lake.local import LocalLake
from tideline.errors import (
    BranchExists,
    DirtyBranch,
    InvalidName,
    InvalidPath,
    LakeError,
    MergeConflict,
    ObjectNotFound,
    RefNotFound,
)

API = "/api/v1"
JsonBody = Annotated[dict[str, Any], Body()]
MAX_PER_PAGE = 1000  # DefaultMaxPerPage
PER_PAGE = 100  # DefaultPerPage
STRATEGY_KEY = ".lakefs.merge.strategy"  # graveler.MergeStrategyMetadataKey

Tree = dict[str, tuple[str, int]]


class LakeFSError(Exception):
    """An answer of the lakeFS API other than success: status and `{"message": ...}`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _not_supported(what: str) -> LakeFSError:
    return LakeFSError(501, f"not implemented by the lakeFS stand-in: {what}")


# ---- validation (pkg/validator, pkg/graveler/validate.go) ------------------------------------

_REPOSITORY_ID = re.compile(r"^[a-z0-9][a-z0-9-]{2,62}$")
_BRANCH_ID = re.compile(r"^\w[-\w]*$")
_REF = re.compile(r"^[^\s]+$")


def _check_ref(ref: str, argument: str = "ref") -> None:
    if not _REF.match(ref):
        raise LakeFSError(400, f"argument {argument}: ref: invalid value: validation error")


def _check_branch_id(branch: str, argument: str = "branch") -> None:
    if not _BRANCH_ID.match(branch):
        raise LakeFSError(
            400,
            f"argument {argument}: branch id: invalid value: validation error: branch id must "
            "consist of letters, digits, underscores and dashes, and cannot start with a dash",
        )


def _check_tag_id(tag: str) -> None:
    bad = (
        not tag
        or tag == "@"
        or tag.endswith((".", ".lock"))
        or any(part in tag for part in ("..", "/", "@{"))
        or any(ch in "^:?*[\\" or ord(ch) <= 0x20 for ch in tag)
    )
    if bad:
        raise LakeFSError(400, "argument tagID: tag id: invalid value: validation error")


def _amount(amount: int | None) -> int:
    """swagger's PaginationAmount (minimum -1, maximum 1000), then `paginationAmount`."""
    if amount is None:
        return PER_PAGE
    if amount < -1 or amount > MAX_PER_PAGE:
        bound = "least -1" if amount < -1 else f"most {MAX_PER_PAGE}"
        raise LakeFSError(
            400, f'parameter "amount" in query has an error: number must be at {bound}'
        )
    return PER_PAGE if amount <= 0 else amount


def _page(
    items: Sequence[Any],
    key: Callable[[Any], str],
    after: str,
    amount: int | None,
    render: Callable[[Any], dict],
) -> dict:
    """One page of a sorted listing, as `paginationFor` builds it."""
    size = _amount(amount)
    rest = [item for item in items if key(item) > after] if after else list(items)
    chosen, has_more = rest[:size], len(rest) > size
    return {
        "pagination": {
            "has_more": has_more,
            "next_offset": key(chosen[-1]) if chosen and has_more else "",
            "results": len(chosen),
            "max_per_page": MAX_PER_PAGE,
        },
        "results": [render(item) for item in chosen],
    }


# ---- response bodies (swagger components/schemas) --------------------------------------------


def _commit_body(commit: Commit) -> dict:
    return {
        "id": commit.id,
        "parents": list(commit.parents),
        "committer": commit.committer,
        "message": commit.message,
        "creation_date": int(commit.created_at.timestamp()),
        "meta_range_id": "",
        "metadata": commit.metadata,
        "version": 1,
    }


def _stats_body(namespace: str, info: ObjectInfo, content_type: str) -> dict:
    return {
        "path": info.path,
        "path_type": "object",
        "physical_address": f"{namespace.rstrip('/')}/data/{info.checksum}",
        "checksum": info.checksum,
        "size_bytes": info.size,
        "mtime": int(time.time()),
        "metadata": {},
        "content_type": content_type,
    }


def _diff_body(kind: str, path: str, size: int | None) -> dict:
    return {"type": kind, "path": path, "path_type": "object", "size_bytes": size}


def _change_body(change: Change) -> dict:
    return _diff_body(change.kind, change.path, change.size)


# ---- lakeFS semantics over the embedded lake -------------------------------------------------


def _compare(dest: Tree, source: Tree, base: Tree) -> list[dict]:
    """`committed.NewCompareIterator`: the diff from `dest` to `source`, keeping what merging
    `source` into `dest` (relative to `base`) would change and marking both-sided changes as
    conflicts."""
    out = []
    for path in sorted(dest.keys() | source.keys()):
        d, s, b = dest.get(path), source.get(path), base.get(path)
        if d == s:
            continue
        if d is None:  # added on source relative to dest
            if b is None:
                out.append(_diff_body("added", path, s[1]))  # type: ignore[index]
            elif b != s:  # removed on dest, changed on source
                out.append(_diff_body("conflict", path, s[1]))  # type: ignore[index]
        elif s is None:  # exists on dest only
            if b is not None:
                kind = "removed" if b == d else "conflict"  # changed on dest, removed on source
                out.append(_diff_body(kind, path, d[1]))
        elif b is None or (b != s and b != d):  # added on both, or changed on both, differently
            out.append(_diff_body("conflict", path, s[1]))
        elif b != s:  # changed on source only (b == s: changed on dest only)
            out.append(_diff_body("changed", path, s[1]))
    return out


def _range(spec: str, length: int) -> tuple[int, int]:
    """`httputil.ParseRange`; ValueError for a bad or unsatisfiable range."""
    if not spec.startswith("bytes=") or "," in spec:
        raise ValueError(spec)
    first, sep, last = spec.removeprefix("bytes=").partition("-")
    first, last = first.strip(), last.strip()
    if not sep or (not first and not last):
        raise ValueError(spec)
    if not first:
        suffix = int(last)
        if suffix <= 0:
            raise ValueError(spec)
        return max(length - suffix, 0), length - 1
    start = int(first)
    end = int(last) if last else length - 1
    if start < 0 or end < start or start > length - 1:
        raise ValueError(spec)
    return start, min(end, length - 1)


def _multipart_content(content_type: str, body: bytes) -> tuple[bytes, str] | None:
    """The first part named `content` of a multipart/form-data body, with its content type."""
    header = Message()
    header["content-type"] = content_type
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str):
        raise LakeFSError(500, "http: no multipart boundary param in Content-Type")
    for part in (b"\r\n" + body).split(b"\r\n--" + boundary.encode())[1:]:
        if part.startswith(b"--"):
            break
        head, _, payload = part.partition(b"\r\n\r\n")
        fields = Message()
        for line in head.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            fields[name.strip()] = value.strip()
        if fields.get_param("name", header="content-disposition") == "content":
            return payload, fields.get("content-type", "application/octet-stream")
    return None


class _Repositories:
    """One `LocalLake` per repository under `root`, with what lakeFS keeps about it. Changes to
    one repository are serialised, as lakeFS serialises branch updates."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lakes: dict[str, LocalLake] = {}
        self._locks: dict[str, threading.RLock] = {}
        self._guard = threading.Lock()

    def _meta_file(self, name: str) -> Path:
        return self.root / name / "repository.json"

    def meta(self, name: str) -> dict:
        try:
            return json.loads(self._meta_file(name).read_text())
        except FileNotFoundError:
            raise LakeFSError(404, "repository not found") from None

    def lake(self, name: str) -> LocalLake:
        self.meta(name)
        with self._guard:
            if name not in self._lakes:
                self._lakes[name] = LocalLake(self.root / name / "lake")
            return self._lakes[name]

    def lock(self, name: str) -> threading.RLock:
        with self._guard:
            return self._locks.setdefault(name, threading.RLock())

    def create(self, name: str, namespace: str) -> dict:
        with self._guard:
            if self._meta_file(name).exists():
                raise LakeFSError(409, "error creating repository: not unique")
            if not namespace.startswith("local://"):
                raise LakeFSError(
                    400, "failed to match required regex ^local://: invalid namespace"
                )
            for other in self.root.glob("*/repository.json"):
                if json.loads(other.read_text())["storage_namespace"] == namespace:
                    raise LakeFSError(
                        400, "failed to create repository: storage namespace already in use"
                    )
            if not _REPOSITORY_ID.match(name):
                raise LakeFSError(
                    400,
                    "error creating repository: argument name: repository id: invalid value: "
                    "validation error",
                )
            self._lakes[name] = LocalLake(self.root / name / "lake")
            meta = {
                "id": name,
                "creation_date": int(time.time()),
                "default_branch": "main",
                "storage_id": "",
                "storage_namespace": namespace,
                "read_only": False,
            }
            self._meta_file(name).write_text(json.dumps(meta))
            return meta


def _tree(lake: LocalLake, commit_id: str) -> Tree:
    return {info.path: (info.checksum, info.size) for info in lake.list(commit_id)}


def _head(lake: LocalLake, branch: str, message: str = "branch not found") -> str:
    head = lake.branches().get(branch)
    if head is None:
        raise LakeFSError(404, message)
    return head


def _deref(lake: LocalLake, ref: str, prefix: str = "") -> str:
    _check_ref(ref)
    try:
        return lake.resolve(ref)
    except RefNotFound:
        raise LakeFSError(404, f"{prefix}not found") from None


def _require_clean(lake: LocalLake, branch: str) -> None:
    """`prepareForCommitIDUpdate`: dirty means a visible uncommitted change. Staged entries
    identical to the committed ones do not count, so they are dropped here: the embedded lake
    would otherwise call the branch dirty where lakeFS does not."""
    if lake.uncommitted(branch):
        raise LakeFSError(400, "uncommitted changes (dirty branch)")
    lake.reset(branch)


def _body_fields(body: dict[str, Any], *required: str) -> None:
    for field in required:
        if field not in body:
            raise LakeFSError(
                400,
                f'request body has an error: doesn\'t match schema: property "{field}" is missing',
            )


# ---- the app -------------------------------------------------------------------------------


def create_app(root: Path, access_key_id: str, secret_access_key: str) -> FastAPI:
    """The stand-in's ASGI app; repositories live under `root`."""
    root.mkdir(parents=True, exist_ok=True)
    repos = _Repositories(root)
    app = FastAPI(title="lakeFS stand-in", openapi_url=None, docs_url=None, redoc_url=None)
    expected = "Basic " + base64.b64encode(f"{access_key_id}:{secret_access_key}".encode()).decode()

    @app.middleware("http")
    async def authenticate(request: Request, call_next: Callable) -> Response:
        if not secrets.compare_digest(request.headers.get("authorization", ""), expected):
            return JSONResponse({"message": "error authenticating request"}, status_code=401)
        return await call_next(request)

    @app.exception_handler(LakeFSError)
    async def lakefs_error(request: Request, exc: LakeFSError) -> JSONResponse:
        return JSONResponse({"message": exc.message}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        return JSONResponse({"message": f"request has an error: {problems}"}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"message": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(LakeError)
    async def storage_error(request: Request, exc: LakeError) -> JSONResponse:
        # a safety net: handlers check lakeFS's conditions first, in lakeFS's words
        if isinstance(exc, (RefNotFound, ObjectNotFound)):
            return JSONResponse({"message": "not found"}, status_code=404)
        if isinstance(exc, BranchExists):
            return JSONResponse({"message": "not unique"}, status_code=409)
        if isinstance(exc, MergeConflict):
            return JSONResponse({"message": "conflict found"}, status_code=409)
        if isinstance(exc, DirtyBranch):
            return JSONResponse({"message": "uncommitted changes (dirty branch)"}, 400)
        if isinstance(exc, (InvalidName, InvalidPath)):
            return JSONResponse({"message": f"validation error: {exc}"}, status_code=400)
        return JSONResponse({"message": str(exc)}, status_code=500)

    repo_path = API + "/repositories/{repository}"

    # ---- repositories ----

    @app.post(API + "/repositories", status_code=201)
    def create_repository(body: JsonBody, bare: bool = False) -> dict:
        _body_fields(body, "name", "storage_namespace")
        if bare or body.get("read_only") or body.get("sample_data"):
            raise _not_supported("bare, read-only or sample-data repositories")
        if body.get("default_branch") not in (None, "", "main"):
            raise _not_supported("default branches other than main")
        return repos.create(body["name"], body["storage_namespace"])

    @app.get(repo_path)
    def get_repository(repository: str) -> dict:
        return repos.meta(repository)

    # ---- branches ----

    @app.get(repo_path + "/branches")
    def list_branches(
        repository: str, prefix: str = "", after: str = "", amount: int | None = None
    ) -> dict:
        items = [
            (n, c) for n, c in repos.lake(repository).branches().items() if n.startswith(prefix)
        ]
        return _page(
            items, lambda i: i[0], after, amount, lambda i: {"id": i[0], "commit_id": i[1]}
        )

    @app.post(repo_path + "/branches", status_code=201)
    def create_branch(repository: str, body: JsonBody) -> Response:
        _body_fields(body, "name", "source")
        name, source = body["name"], body["source"]
        _check_branch_id(name)
        _check_ref(source)
        if body.get("hidden"):
            raise _not_supported("hidden branches")
        lake = repos.lake(repository)
        with repos.lock(repository):
            if name in lake.tags():
                raise LakeFSError(409, f"tag ID {name}: conflict found")
            commit_id = _deref(lake, source, f"source reference '{source}': ")
            if name in lake.branches():
                raise LakeFSError(409, "branch already exists: not unique")
            lake.create_branch(name, commit_id)
        # io.WriteString after WriteHeader(201): Go sniffs the type as text/plain
        return Response(commit_id, status_code=201, media_type="text/plain; charset=utf-8")

    @app.get(repo_path + "/branches/{branch}")
    def get_branch(repository: str, branch: str) -> dict:
        return {"id": branch, "commit_id": _head(repos.lake(repository), branch)}

    @app.delete(repo_path + "/branches/{branch}", status_code=204)
    def delete_branch(repository: str, branch: str) -> Response:
        lake = repos.lake(repository)
        if branch == repos.meta(repository)["default_branch"]:
            raise LakeFSError(403, "cannot delete repository default branch")
        with repos.lock(repository):
            _head(lake, branch)
            lake.delete_branch(branch)
        return Response(status_code=204)

    @app.put(repo_path + "/branches/{branch}", status_code=204)
    def reset_branch(repository: str, branch: str, body: JsonBody) -> Response:
        _body_fields(body, "type")
        if body["type"] in ("object", "common_prefix"):
            raise _not_supported(f"reset type {body['type']!r}")
        if body["type"] != "reset":
            raise LakeFSError(400, "unknown reset type")
        lake = repos.lake(repository)
        with repos.lock(repository):
            _head(lake, branch)
            lake.reset(branch)
        return Response(status_code=204)

    @app.get(repo_path + "/branches/{branch}/diff")
    def diff_branch(
        repository: str,
        branch: str,
        prefix: str = "",
        after: str = "",
        amount: int | None = None,
        delimiter: str = "",
    ) -> dict:
        if delimiter:
            raise _not_supported("delimiter")
        lake = repos.lake(repository)
        _head(lake, branch)
        changes = [c for c in lake.uncommitted(branch) if c.path.startswith(prefix)]
        return _page(changes, lambda c: c.path, after, amount, _change_body)

    @app.post(repo_path + "/branches/{branch}/commits", status_code=201)
    def commit(
        repository: str,
        branch: str,
        body: JsonBody,
        source_metarange: str | None = None,
    ) -> dict:
        _body_fields(body, "message")
        if source_metarange is not None or body.get("date") is not None:
            raise _not_supported("source_metarange or date")
        lake = repos.lake(repository)
        with repos.lock(repository):
            _head(lake, branch)
            if not lake.uncommitted(branch):
                if body.get("allow_empty"):
                    raise _not_supported("allow_empty commits")
                raise LakeFSError(400, "no changes")
            return _commit_body(lake.commit(branch, body["message"], body.get("metadata") or {}))

    @app.post(repo_path + "/branches/{branch}/revert", status_code=204)
    def revert_branch(repository: str, branch: str, body: JsonBody) -> Response:
        _body_fields(body, "ref", "parent_number")
        lake = repos.lake(repository)
        with repos.lock(repository):
            target = lake.get_commit(
                _deref(lake, body["ref"], f"get commit from ref {body['ref']}: ")
            )
            parent_number = body["parent_number"]
            if len(target.parents) > 1 and parent_number <= 0:
                raise LakeFSError(
                    409, "must specify 1-based parent number for reverting merge commit"
                )
            if parent_number > len(target.parents):
                raise LakeFSError(
                    400,
                    f"given commit does not have the given parent number: parent {parent_number}",
                )
            if not target.parents or parent_number > 1:
                raise _not_supported("reverting a root commit or against a second parent")
            overrides = body.get("commit_overrides") or {}
            wanted = {"message": f"Revert {target.id}", "metadata": {"reverted_commit": target.id}}
            if {k: overrides.get(k) for k in wanted} != wanted:
                raise _not_supported(f"revert commits other than {wanted} (commit_overrides)")
            head = _head(lake, branch)
            _require_clean(lake, branch)
            parent = _tree(lake, target.parents[0])
            changes = _compare(_tree(lake, head), parent, _tree(lake, target.id))
            if any(change["type"] == "conflict" for change in changes):
                raise LakeFSError(409, "conflict found")
            if not changes:
                raise LakeFSError(400, "no changes")
            lake.revert(branch, target.id)
        return Response(status_code=204)

    # ---- commits and refs ----

    @app.get(repo_path + "/commits/{commit_id}")
    def get_commit(repository: str, commit_id: str) -> dict:
        lake = repos.lake(repository)
        return _commit_body(lake.get_commit(_deref(lake, commit_id)))

    @app.get(repo_path + "/refs/{ref}/commits")
    def log_commits(
        repository: str,
        ref: str,
        request: Request,
        after: str = "",
        amount: int | None = None,
    ) -> dict:
        unsupported = {"objects", "prefixes", "first_parent", "since", "stop_at"}
        if unsupported & set(request.query_params):
            raise _not_supported("log filters")
        lake = repos.lake(repository)
        commits = lake.log(_deref(lake, ref, "ref: "), limit=2**62)
        if after:
            start = _deref(lake, after, "from ref: ")
            ids = [c.id for c in commits]
            commits = commits[ids.index(start) + 1 :] if start in ids else []
        size = _amount(amount)
        chosen, has_more = commits[:size], len(commits) > size
        return {
            "pagination": {
                "has_more": has_more,
                "next_offset": chosen[-1].id if chosen and has_more else "",
                "results": len(chosen),
                "max_per_page": MAX_PER_PAGE,
            },
            "results": [_commit_body(c) for c in chosen],
        }

    @app.get(repo_path + "/refs/{left}/diff/{right}")
    def diff_refs(
        repository: str,
        left: str,
        right: str,
        after: str = "",
        amount: int | None = None,
        prefix: str = "",
        delimiter: str = "",
        diff_type: Annotated[str, Query(alias="type")] = "three_dot",
    ) -> dict:
        if diff_type not in ("two_dot", "three_dot"):
            raise LakeFSError(
                400,
                'parameter "type" in query has an error: value is not one of the allowed values',
            )
        if delimiter:
            raise _not_supported("delimiter")
        lake = repos.lake(repository)
        left_id, right_id = _deref(lake, left), _deref(lake, right)
        if diff_type == "two_dot":
            changes = [_change_body(c) for c in lake.diff(left_id, right_id)]
        else:  # Compare: what merging right into left would change
            base = lake.merge_base(right_id, left_id)
            base_tree = _tree(lake, base) if base else {}
            changes = _compare(_tree(lake, left_id), _tree(lake, right_id), base_tree)
        changes = [c for c in changes if c["path"].startswith(prefix)]
        return _page(changes, lambda c: c["path"], after, amount, lambda c: c)

    @app.post(repo_path + "/refs/{source}/merge/{dest}", response_model=None)
    def merge_into_branch(
        repository: str,
        source: str,
        dest: str,
        body: Annotated[dict[str, Any] | None, Body()] = None,
    ) -> dict | JSONResponse:
        body = body or {}
        _check_branch_id(dest, "destination")
        _check_ref(source, "source")
        strategy = body.get("strategy") or ""
        if strategy in ("dest-wins", "source-wins") or body.get("squash_merge"):
            raise _not_supported("merge strategies and squash merges")
        if strategy:
            raise LakeFSError(400, "invalid merge strategy")
        lake = repos.lake(repository)
        message = body.get("message") or f"Merge '{source}' into '{dest}'"
        metadata = {**(body.get("metadata") or {}), STRATEGY_KEY: "default"}
        with repos.lock(repository):
            head = _head(lake, dest)
            _require_clean(lake, dest)
            source_id = _deref(lake, source)
            base = lake.merge_base(source_id, head)
            base_tree = _tree(lake, base) if base else {}
            source_tree = _tree(lake, source_id)
            forced = body.get("allow_empty") or body.get("force")
            if source_tree == base_tree and not forced:
                raise LakeFSError(400, "no changes")
            changes = _compare(_tree(lake, head), source_tree, base_tree)
            if any(change["type"] == "conflict" for change in changes):
                return JSONResponse({"reference": ""}, status_code=409)
            if not changes:
                raise _not_supported("a merge commit that changes nothing (lakeFS records one)")
            merged = lake.merge(source_id, dest, message, metadata)
        return {"reference": merged.id}

    # ---- objects ----

    @app.get(repo_path + "/refs/{ref}/objects", response_model=None)
    def get_object(
        repository: str, ref: str, path: str, request: Request, presign: bool = False
    ) -> Response:
        if presign:
            raise _not_supported("presigned URLs")
        lake = repos.lake(repository)
        _check_ref(ref)
        info = lake.stat(ref, path)
        etag = f'"{info.checksum}"'
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304)
        headers = {
            "ETag": etag,
            "Last-Modified": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()),
            "Content-Disposition": "attachment",
            "Cache-Control": "no-store, must-revalidate",
        }
        spec, status = request.headers.get("range"), 200
        start, end = 0, info.size - 1
        if spec:
            try:
                start, end = _range(spec, info.size)
            except ValueError:
                return JSONResponse(
                    {"message": "Requested Range Not Satisfiable"},
                    status_code=416,
                    headers={"Content-Range": f"bytes */{info.size}"},
                )
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{info.size}"
        with lake.reader(ref, path) as source:
            source.seek(start)
            data = source.read(max(end - start + 1, 0))
        return Response(data, status, headers, media_type="application/octet-stream")

    @app.get(repo_path + "/refs/{ref}/objects/stat")
    def stat_object(repository: str, ref: str, path: str, presign: bool = False) -> dict:
        if presign:
            raise _not_supported("presigned URLs")
        _check_ref(ref)
        info = repos.lake(repository).stat(ref, path)
        namespace = repos.meta(repository)["storage_namespace"]
        return _stats_body(namespace, info, "application/octet-stream")

    @app.get(repo_path + "/refs/{ref}/objects/ls")
    def list_objects(
        repository: str,
        ref: str,
        prefix: str = "",
        after: str = "",
        amount: int | None = None,
        delimiter: str = "",
        presign: bool = False,
    ) -> dict:
        if delimiter or presign:
            raise _not_supported("delimiter or presigned URLs")
        lake = repos.lake(repository)
        _deref(lake, ref)
        namespace = repos.meta(repository)["storage_namespace"]
        objects = [o for o in lake.list(ref) if o.path.startswith(prefix)]
        return _page(
            objects,
            lambda o: o.path,
            after,
            amount,
            lambda o: _stats_body(namespace, o, "application/octet-stream"),
        )

    @app.post(repo_path + "/branches/{branch}/objects", status_code=201)
    async def upload_object(repository: str, branch: str, path: str, request: Request) -> dict:
        if request.query_params.get("storageClass"):
            raise _not_supported("storageClass")
        meta, lake = repos.meta(repository), repos.lake(repository)
        if branch not in lake.branches():
            raise LakeFSError(404, f"branch '{branch}' not found")
        # apiutil.BuildConditionFromParams: only `If-None-Match: *`; If-Match, both, or any
        # other If-None-Match is ErrNotImplemented, answered 501 by handleAPIError
        if_none_match = request.headers.get("if-none-match")
        if request.headers.get("if-match") is not None or if_none_match not in (None, "*"):
            raise LakeFSError(501, "Not Implemented")
        body = await request.body()
        content_type = request.headers.get("content-type") or "application/octet-stream"
        if content_type.split(";")[0].strip().lower() == "multipart/form-data":
            content = _multipart_content(content_type, body)
            if content is None:
                raise LakeFSError(500, "multipart upload missing key 'content': http: no such file")
            body, content_type = content

        def store() -> dict:
            with repos.lock(repository):
                if if_none_match == "*" and lake.exists(branch, path):
                    raise LakeFSError(412, "path already exists")
                info = lake.put(branch, path, body)
            return _stats_body(meta["storage_namespace"], info, content_type)

        return await run_in_threadpool(store)

    @app.delete(repo_path + "/branches/{branch}/objects", status_code=204)
    def delete_object(repository: str, branch: str, path: str) -> Response:
        lake = repos.lake(repository)
        with repos.lock(repository):
            _head(lake, branch)
            if lake.exists(branch, path):  # a missing object is not an error (204)
                lake.delete(branch, path)
        return Response(status_code=204)

    # ---- tags ----

    @app.post(repo_path + "/tags", status_code=201)
    def create_tag(repository: str, body: JsonBody) -> dict:
        _body_fields(body, "id", "ref")
        tag, ref = body["id"], body["ref"]
        _check_tag_id(tag)
        lake = repos.lake(repository)
        with repos.lock(repository):
            if tag in lake.branches():
                raise LakeFSError(409, f"branch name {tag}: conflict found")
            commit_id = _deref(lake, ref)
            if tag in lake.tags():
                raise LakeFSError(409, "tag already exists: not unique")
            lake.tag(tag, commit_id)
        return {"id": tag, "commit_id": commit_id}

    @app.get(repo_path + "/tags")
    def list_tags(
        repository: str, prefix: str = "", after: str = "", amount: int | None = None
    ) -> dict:
        items = [(n, c) for n, c in repos.lake(repository).tags().items() if n.startswith(prefix)]
        return _page(
            items, lambda i: i[0], after, amount, lambda i: {"id": i[0], "commit_id": i[1]}
        )

    @app.get(repo_path + "/tags/{tag}")
    def get_tag(repository: str, tag: str) -> dict:
        commit_id = repos.lake(repository).tags().get(tag)
        if commit_id is None:
            raise LakeFSError(404, "tag not found")
        return {"id": tag, "commit_id": commit_id}

    return app


@contextmanager
def serve_lakefs(root: Path, access_key_id: str, secret_access_key: str) -> Iterator[str]:
    """Serve the stand-in on a free loopback port in a background thread; yield its endpoint URL
    (without `/api/v1`, as a lakeFS endpoint is configured)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(root, access_key_id, secret_access_key), log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="lakefs-standin", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            sock.close()
            raise RuntimeError("the lakeFS stand-in did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
