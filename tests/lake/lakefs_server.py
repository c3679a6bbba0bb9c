"""A stand-in for a lakeFS server: the REST endpoints tideline's `LakeFSLake` uses, with the
request and response shapes of lakeFS's OpenAPI spec (`api/swagger.yml`, base path `/api/v1`)
and the real server's error behaviour, storing data in the embedded `LocalLake`.

No lakeFS server can run on this machine; this lets the contract suite drive the lakeFS backend
through the real `lakefs_sdk` client, whose pydantic models validate every response. Behaviours
reproduced from lakeFS (not the embedded lake's conveniences): HTTP basic auth with 401 and
`{"message": ...}` error bodies; 400 `commit: no changes` for an empty commit and 400
`no changes` for a merge with nothing to merge; 409 for an existing branch or tag and for
merge conflicts; 400 for merging into a dirty branch; `after`/`amount` pagination with
`has_more`/`next_offset`; `two_dot` and `three_dot` ref diffs; multipart uploads named `content`.
"""
from __future__ import annotations

import base64
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

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


class LakeFSError(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status, self.message = status, message


def _page(items: Sequence[Any], key: Callable[[Any], str], after: str, amount: int,
          render: Callable[[Any], dict]) -> dict:
    """lakeFS pagination: items strictly after `after`, at most `amount`, with `has_more`."""
    amount = 100 if amount is None or amount < 0 else min(amount, 1000)
    rest = [item for item in items if key(item) > after] if after else list(items)
    chosen = rest[:amount]
    return {
        "pagination": {"has_more": len(rest) > amount,
                       "next_offset": key(chosen[-1]) if chosen and len(rest) > amount else "",
                       "results": len(chosen), "max_per_page": 1000},
        "results": [render(item) for item in chosen],
    }


def _commit(commit: Commit) -> dict:
    return {"id": commit.id, "parents": list(commit.parents), "committer": commit.committer,
            "message": commit.message, "creation_date": int(commit.created_at.timestamp()),
            "meta_range_id": "", "metadata": commit.metadata, "generation": 0, "version": 1}


def _stats(repo: str, info: ObjectInfo) -> dict:
    return {"path": info.path, "path_type": "object",
            "physical_address": f"local://{repo}/data/{info.checksum}",
            "checksum": info.checksum, "size_bytes": info.size, "mtime": int(time.time()),
            "metadata": {}, "content_type": "application/octet-stream"}


def _diff(change: Change) -> dict:
    return {"type": change.kind, "path": change.path, "path_type": "object",
            "size_bytes": change.size}


def create_app(root: Path, access_key_id: str, secret_access_key: str) -> FastAPI:
    app = FastAPI(title="lakeFS stand-in")
    repos: dict[str, dict] = {}
    expected = "Basic " + base64.b64encode(f"{access_key_id}:{secret_access_key}".encode()).decode()

    def repo(name: str) -> LocalLake:
        if name not in repos:
            raise LakeFSError(404, "repository not found")
        return repos[name]["lake"]

    @app.middleware("http")
    async def authenticate(request: Request, call_next: Callable) -> Response:
        if not secrets.compare_digest(request.headers.get("authorization", ""), expected):
            return JSONResponse({"message": "error authenticating request"}, status_code=401)
        return await call_next(request)

    @app.exception_handler(LakeFSError)
    async def lakefs_error(request: Request, exc: LakeFSError) -> JSONResponse:
        return JSONResponse({"message": exc.message}, status_code=exc.status)

    @app.exception_handler(LakeError)
    async def lake_error(request: Request, exc: LakeError) -> JSONResponse:
        status = 400
        if isinstance(exc, (RefNotFound, ObjectNotFound)):
            status = 404
        elif isinstance(exc, BranchExists):
            status = 409
        elif isinstance(exc, MergeConflict):
            return JSONResponse({"message": "conflict found"}, status_code=409)
        elif isinstance(exc, DirtyBranch):
            return JSONResponse({"message": "uncommitted changes (dirty branch)"},
                                status_code=400)
        elif isinstance(exc, (InvalidName, InvalidPath)):
            status = 400
        return JSONResponse({"message": str(exc)}, status_code=status)

    base = "/api/v1/repositories"

    # ---- repositories ----
    @app.post("/api/v1/repositories", status_code=201)
    async def create_repository(request: Request) -> dict:
        body = await request.json()
        name = body["name"]
        if name in repos:
            raise LakeFSError(409, "repository already exists")
        lake = LocalLake(root / name)
        repos[name] = {"lake": lake, "created": int(time.time()),
                       "namespace": body["storage_namespace"],
                       "default": body.get("default_branch") or "main"}
        return get_repository_body(name)

    def get_repository_body(name: str) -> dict:
        repo(name)
        meta = repos[name]
        return {"id": name, "creation_date": meta["created"], "default_branch": meta["default"],
                "storage_namespace": meta["namespace"], "read_only": False}

    @app.get(base + "/{name}")
    def get_repository(name: str) -> dict:
        return get_repository_body(name)

    # ---- branches ----
    @app.get(base + "/{name}/branches")
    def list_branches(name: str, after: str = "", amount: int = 100) -> dict:
        items = sorted(repo(name).branches().items())
        return _page(items, lambda i: i[0], after, amount,
                     lambda i: {"id": i[0], "commit_id": i[1]})

    @app.post(base + "/{name}/branches", status_code=201)
    async def create_branch(name: str, request: Request) -> PlainTextResponse:
        body = await request.json()
        commit_id = repo(name).create_branch(body["name"], body["source"])
        return PlainTextResponse(commit_id, status_code=201, media_type="text/html")

    @app.get(base + "/{name}/branches/{branch}")
    def get_branch(name: str, branch: str) -> dict:
        return {"id": branch, "commit_id": repo(name).resolve(branch)}

    @app.delete(base + "/{name}/branches/{branch}", status_code=204)
    def delete_branch(name: str, branch: str) -> Response:
        if branch == repos.get(name, {}).get("default"):
            raise LakeFSError(403, "cannot delete repository default branch")
        repo(name).delete_branch(branch)
        return Response(status_code=204)

    @app.put(base + "/{name}/branches/{branch}", status_code=204)
    async def reset_branch(name: str, branch: str, request: Request) -> Response:
        body = await request.json()
        if body.get("type") != "reset":
            raise LakeFSError(400, f"reset type {body.get('type')!r} not supported here")
        repo(name).reset(branch)
        return Response(status_code=204)

    @app.post(base + "/{name}/branches/{branch}/revert", status_code=204)
    async def revert_branch(name: str, branch: str, request: Request) -> Response:
        body = await request.json()
        if body.get("parent_number", 1) != 1:
            raise LakeFSError(400, "only parent_number 1 is supported here")
        repo(name).revert(branch, body["ref"])
        return Response(status_code=204)

    @app.get(base + "/{name}/branches/{branch}/diff")
    def diff_branch(name: str, branch: str, after: str = "", amount: int = 100) -> dict:
        return _page(repo(name).uncommitted(branch), lambda c: c.path, after, amount, _diff)

    @app.post(base + "/{name}/branches/{branch}/commits", status_code=201)
    async def commit(name: str, branch: str, request: Request) -> dict:
        body = await request.json()
        lake = repo(name)
        if not lake.uncommitted(branch) and not body.get("allow_empty"):
            raise LakeFSError(400, "commit: no changes")
        return _commit(lake.commit(branch, body["message"], body.get("metadata") or {}))

    # ---- refs ----
    @app.get(base + "/{name}/commits/{commit_id}")
    def get_commit(name: str, commit_id: str) -> dict:
        return _commit(repo(name).get_commit(commit_id))

    @app.get(base + "/{name}/refs/{ref}/commits")
    def log_commits(name: str, ref: str, after: str = "", amount: int = 100) -> dict:
        commits = repo(name).log(ref, limit=10**9)
        if after:
            ids = [c.id for c in commits]
            commits = commits[ids.index(after) + 1:] if after in ids else []
        page = _page(commits, lambda c: "", "", amount, _commit)
        if page["pagination"]["has_more"]:
            page["pagination"]["next_offset"] = commits[amount - 1].id
        return page

    @app.get(base + "/{name}/refs/{left}/diff/{right}")
    def diff_refs(name: str, left: str, right: str, after: str = "", amount: int = 100,
                  type: str = "three_dot") -> dict:  # noqa: A002 - lakeFS's parameter name
        lake = repo(name)
        if type == "three_dot":
            left = lake.merge_base(left, right) or left
        return _page(lake.diff(left, right), lambda c: c.path, after, amount, _diff)

    @app.post(base + "/{name}/refs/{source}/merge/{dest}")
    async def merge(name: str, source: str, dest: str, request: Request) -> dict:
        body = await request.json() if await request.body() else {}
        lake = repo(name)
        before = lake.resolve(dest)
        merged = lake.merge(source, dest, body.get("message") or "", body.get("metadata") or {})
        if merged.id == before and not (body.get("allow_empty") or body.get("force")):
            raise LakeFSError(400, "no changes")
        return {"reference": merged.id}

    # ---- objects ----
    @app.get(base + "/{name}/refs/{ref}/objects")
    def get_object(name: str, ref: str, path: str, request: Request) -> Response:
        data = repo(name).get(ref, path)
        wanted = request.headers.get("range")
        if not wanted:
            return Response(data, media_type="application/octet-stream")
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", wanted)
        if not match or int(match[1]) >= max(len(data), 1):
            raise LakeFSError(416, "Requested Range Not Satisfiable")
        start, end = int(match[1]), int(match[2] or len(data) - 1)
        return Response(data[start:end + 1], status_code=206,
                        media_type="application/octet-stream",
                        headers={"Content-Range": f"bytes {start}-{end}/{len(data)}"})

    @app.get(base + "/{name}/refs/{ref}/objects/stat")
    def stat_object(name: str, ref: str, path: str) -> dict:
        return _stats(name, repo(name).stat(ref, path))

    @app.get(base + "/{name}/refs/{ref}/objects/ls")
    def list_objects(name: str, ref: str, prefix: str = "", after: str = "",
                     amount: int = 100) -> dict:
        return _page(repo(name).list(ref, prefix), lambda o: o.path, after, amount,
                     lambda o: _stats(name, o))

    @app.post(base + "/{name}/branches/{branch}/objects", status_code=201)
    async def upload_object(name: str, branch: str, path: str, request: Request) -> dict:
        header = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
        message = BytesParser(policy=HTTP).parsebytes(header + await request.body())
        parts = [p for p in message.iter_parts()
                 if p.get_param("name", header="content-disposition") == "content"]
        if not parts:
            raise LakeFSError(400, "missing multipart field 'content'")
        return _stats(name, repo(name).put(branch, path, parts[0].get_payload(decode=True)))

    @app.delete(base + "/{name}/branches/{branch}/objects", status_code=204)
    def delete_object(name: str, branch: str, path: str) -> Response:
        repo(name).delete(branch, path)
        return Response(status_code=204)

    # ---- tags ----
    @app.post(base + "/{name}/tags", status_code=201)
    async def create_tag(name: str, request: Request) -> dict:
        body = await request.json()
        lake = repo(name)
        if body["id"] in lake.tags():
            raise LakeFSError(409, "tag already exists")
        return {"id": body["id"], "commit_id": lake.tag(body["id"], body["ref"])}

    @app.get(base + "/{name}/tags")
    def list_tags(name: str, after: str = "", amount: int = 100) -> dict:
        return _page(sorted(repo(name).tags().items()), lambda i: i[0], after, amount,
                     lambda i: {"id": i[0], "commit_id": i[1]})

    @app.get(base + "/{name}/tags/{tag}")
    def get_tag(name: str, tag: str) -> dict:
        tags = repo(name).tags()
        if tag not in tags:
            raise LakeFSError(404, "tag not found")
        return {"id": tag, "commit_id": tags[tag]}

    return app


@contextmanager
def serve_lakefs(root: Path, access_key_id: str, secret_access_key: str) -> Iterator[str]:
    """Serve the stand-in on a free loopback port; yield its endpoint URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(create_app(root, access_key_id, secret_access_key),
                            host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="lakefs-standin", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the lakeFS stand-in did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)

