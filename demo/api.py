"""A real local HTTP API over a JSON-lines file of records, for the demo's helpdesk source and
for the REST connector's tests: page and cursor paging, an `updated_since` filter, bearer-token
auth, and faults injected on demand (server errors, rate limits, slow and malformed answers).

    with serve_records("tickets.jsonl", token="t") as base_url:
        httpx.get(f"{base_url}/tickets", params={"page_size": 100},
                  headers={"Authorization": "Bearer t"})

The records are served at `/<file stem>`, ordered by `updated_at` (file order among equals;
records whose `updated_at` is unreadable come first), re-read whenever the file changes.
"""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response

log = logging.getLogger(__name__)

MAX_PAGE_SIZE = 1000
_EARLIEST = datetime.min.replace(tzinfo=UTC)


@dataclass
class Faults:
    """Faults to inject, by request number (1-based, counting every request the server gets).
    The server also records each request in `requests`, so tests can see what a client did."""

    fail_first: int = 0
    """The first N requests answer HTTP 500."""
    rate_limit_first: int = 0
    """The N requests after those answer HTTP 429 with `Retry-After: retry_after`."""
    retry_after: float = 1
    slow_first: int = 0
    """The first N requests wait `delay_seconds` before answering (client timeouts)."""
    delay_seconds: float = 0.0
    malformed_page: int | None = None
    """This page (1-based, in either paging style) answers a body that is not valid JSON."""
    requests: list[dict[str, Any]] = field(default_factory=list)
    """One entry per request received: `at` (monotonic time), `params`, `authorization`."""


class _Records:
    """The file's records, sorted for paging, re-read when the file's size or mtime changes."""

    def __init__(self, path: Path, updated_field: str) -> None:
        self.path, self.updated_field = path, updated_field
        self._stamp: tuple[int, int] | None = None
        self._rows: list[tuple[datetime | None, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def rows(self) -> list[tuple[datetime | None, dict[str, Any]]]:
        stat = self.path.stat()
        with self._lock:
            if self._stamp != (stat.st_size, stat.st_mtime_ns):
                self._rows = self._load()
                self._stamp = (stat.st_size, stat.st_mtime_ns)
            return self._rows

    def _load(self) -> list[tuple[datetime | None, dict[str, Any]]]:
        rows = []
        for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                log.warning("%s: line %d is not JSON; not served", self.path, number)
                continue
            rows.append((parse_time(record.get(self.updated_field)), record))
        rows.sort(key=lambda row: row[0] or _EARLIEST)
        return rows


def parse_time(value: Any) -> datetime | None:
    """An ISO-8601 time as an aware datetime (naive = UTC), or None if unreadable."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def decode_cursor(cursor: str) -> int | None:
    try:
        offset = json.loads(base64.urlsafe_b64decode(cursor.encode()))["offset"]
    except (ValueError, KeyError, TypeError):
        return None
    return offset if isinstance(offset, int) and offset >= 0 else None


def build_app(
    path: Path, *, token: str | None = None, faults: Faults | None = None,
    updated_field: str = "updated_at",
) -> FastAPI:
    """The API as a FastAPI app (served by `serve_records`, or mounted by a test client)."""
    records = _Records(path, updated_field)
    faults = faults if faults is not None else Faults()
    collection = path.stem
    app = FastAPI(title=f"tideline demo API: {collection}", openapi_url=None)

    @app.get("/{name}")
    async def page_of_records(
        request: Request,
        name: str,
        page: int | None = Query(None, ge=1),
        cursor: str | None = None,
        page_size: int = Query(100, ge=1, le=MAX_PAGE_SIZE),
        updated_since: str | None = None,
    ) -> Response:
        faults.requests.append({"at": time.monotonic(), "params": dict(request.query_params),
                                "authorization": request.headers.get("authorization")})
        number = len(faults.requests)
        if number <= faults.slow_first and faults.delay_seconds:
            await asyncio.sleep(faults.delay_seconds)
        if number <= faults.fail_first:
            return JSONResponse({"detail": "injected server error"}, status_code=500)
        if number <= faults.fail_first + faults.rate_limit_first:
            return JSONResponse({"detail": "slow down"}, status_code=429,
                                headers={"Retry-After": f"{faults.retry_after:g}"})
        if token is not None:
            given = request.headers.get("authorization")
            if given is None:
                return JSONResponse({"detail": "missing bearer token"}, status_code=401,
                                    headers={"WWW-Authenticate": "Bearer"})
            if given != f"Bearer {token}":
                return JSONResponse({"detail": "invalid bearer token"}, status_code=403)
        if name != collection:
            return JSONResponse({"detail": f"no collection {name!r}"}, status_code=404)
        rows = records.rows()
        if updated_since is not None:
            since = parse_time(updated_since)
            if since is None:
                return JSONResponse({"detail": f"updated_since {updated_since!r} is not an "
                                     "ISO-8601 time"}, status_code=400)
            rows = [row for row in rows if row[0] is not None and row[0] > since]
        if page is not None:
            offset = (page - 1) * page_size
        elif cursor is not None:
            decoded = decode_cursor(cursor)
            if decoded is None:
                return JSONResponse({"detail": "invalid cursor"}, status_code=400)
            offset = decoded
        else:
            offset = 0
        items = [record for _, record in rows[offset:offset + page_size]]
        more = offset + page_size < len(rows)
        if faults.malformed_page == offset // page_size + 1:
            whole = json.dumps({"data": items})
            return Response(whole[: len(whole) // 2], media_type="application/json")
        if page is not None:
            body = {"data": items, "page": page, "page_size": page_size, "total": len(rows),
                    "next_page": page + 1 if more else None}
        else:
            body = {"data": items, "next_cursor": encode_cursor(offset + page_size) if more
                    else None}
        return JSONResponse(body)

    return app


@contextmanager
def serve_records(
    path: str | Path, token: str | None = None, faults: Faults | None = None,
    updated_field: str = "updated_at",
) -> Iterator[str]:
    """Serve the JSON-lines file at `path` on 127.0.0.1 (a free port) from a background thread
    for the duration of the block; yields the base URL (records are at `<base>/<file stem>`)."""
    import uvicorn

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no records file at {path}")
    app = build_app(path, token=token, faults=faults, updated_field=updated_field)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name=f"demo-api-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError(f"the demo API did not start on 127.0.0.1:{port}")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
