"""REST sources through httpx: a paged JSON API (page numbers or cursors) read incrementally
from the largest `cursor_column` value seen, with retries for what a later attempt can fix.

Checkpoint: ``{"cursor": <the cursor_column value of the newest record, as the API wrote it>}``,
sent back as `since_param` on the next pull. Records at or before the checkpoint are dropped even
if the API returns them (an inclusive `since` filter would otherwise land them twice).

Page paging (`page=1, 2, ...`) ends at the first empty page, not at a short one, which may only
be the API capping `page_size`; cursor paging ends when `next_key` is empty.

A pull is all or nothing: if any page fails for good (a 4xx, retries exhausted, a body that is
not JSON), the pull raises `SourceError` naming the URL and page, nothing is returned, and the
checkpoint stays where it was. Keeping the earlier pages would need the API to return records in
cursor order, which paged APIs rarely promise; re-reading them next run costs little.
"""
from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Iterator
from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import numpy as np
import pandas as pd
from tideline.core.errors import SourceError, SourceUnavailable
from tideline.ingestion.connectors.windows import as_utc, filter_window, parse_timestamps
from tideline.ingestion.rawtext import records_frame
from tideline.ingestion.sources import Pull, RestSource, Window

log = logging.getLogger(__name__)

_SECRET_PARAMS = ("token", "key", "secret", "password", "signature", "sig")
WINDOW_MARGIN = timedelta(days=1)


class RestConnector:
    """Pages through a `RestSource`'s API. Backoff before retry n (0-based) is
    `backoff_seconds * 2**n`, capped at `max_backoff_seconds`, times a random factor in
    [0.5, 1); a 429 waits at least its `Retry-After` (up to `max_retry_after_seconds`)."""

    def __init__(
        self, *, backoff_seconds: float = 0.5, max_backoff_seconds: float = 30.0,
        max_retry_after_seconds: float = 300.0,
    ) -> None:
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.max_retry_after_seconds = max_retry_after_seconds

    def pull(
        self, source: RestSource, checkpoint: dict[str, Any] | None, window: Window | None
    ) -> Pull:
        since = None if window is not None else (checkpoint or {}).get("cursor")
        if window is not None and window.since is not None and (
            source.timestamp_column == source.cursor_column
        ):
            # the API can only narrow by its cursor; the window is applied exactly below
            since = (as_utc(window.since) - WINDOW_MARGIN).isoformat()
        records: list[dict[str, Any]] = []
        rejected: list[tuple[str, str]] = []
        pages = 0
        with httpx.Client(timeout=source.timeout_seconds, headers=auth_headers(source),
                          follow_redirects=True) as client:
            for page, url, items in self.pages(client, source, since):
                pages += 1
                for item in items:
                    if isinstance(item, dict):
                        records.append(item)
                    else:
                        rejected.append((json.dumps(item), f"{url} (page {page}): expected a "
                                         f"JSON object, got {type(item).__name__}"))
        frame = records_frame(records)
        log.info("source %s: %d page(s), %d record(s), %d rejected", source.name, pages,
                 len(frame), len(rejected))
        if window is not None:
            return Pull(frame=filter_window(frame, source.timestamp_column, window, source.name),
                        checkpoint=dict(checkpoint or {}))
        frame, newest = after_cursor(frame, source, since)
        after = {"cursor": newest} if newest is not None else dict(checkpoint or {})
        return Pull(frame=frame, checkpoint=after, rejected=rejected)

    def acknowledge(self, source: RestSource, pull: Pull) -> None:
        """Nothing to do: the checkpoint committed with the data is the acknowledgement."""

    def pages(
        self, client: httpx.Client, source: RestSource, since: Any
    ) -> Iterator[tuple[int, str, list[Any]]]:
        """(page number, URL, records) for every page of the pull, in order."""
        params: dict[str, Any] = {"page_size": source.page_size}
        if since is not None:
            params[source.since_param] = since
        page, cursor, previous = 1, None, None
        while True:
            asked = dict(params)
            if source.paging == "page":
                asked["page"] = page
            elif cursor is not None:
                asked["cursor"] = cursor
            url, body = self.get_json(client, source, asked, page)
            items = body.get(source.records_key) if isinstance(body, dict) else None
            if not isinstance(items, list):
                raise SourceError(source.name, f"{url} (page {page}) has no list under "
                                  f"{source.records_key!r}; check `records_key`")
            if items and items == previous:
                raise SourceError(source.name, f"{url} (page {page}) repeats the page before "
                                  "it; the API ignores the `page` parameter")
            yield page, url, items
            if not items:
                return
            if source.paging == "page":
                # only an empty page ends: a short one may just be the API's own size cap
                previous = items
            else:
                following = body.get(source.next_key)
                if not following:
                    return
                if following == cursor:
                    raise SourceError(source.name, f"{url} (page {page}) returned its own "
                                      f"cursor as {source.next_key!r}; paging would not end")
                cursor = following
            page += 1

    def get_json(
        self, client: httpx.Client, source: RestSource, params: dict[str, Any], page: int
    ) -> tuple[str, Any]:
        """GET one page, retrying server errors, timeouts, dropped connections and 429s."""
        url = shown_url(source.url, params)
        for attempt in range(source.max_retries + 1):
            wait = None
            try:
                response = client.get(source.url, params=params)
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc or 'no detail'}"
            else:
                status = response.status_code
                if status < 400:
                    return url, decode_page(response, source, url, page)
                problem = f"HTTP {status} {response.reason_phrase}"
                if status == 429:
                    wait = retry_after(response.headers.get("Retry-After"))
                    if wait is not None and wait > self.max_retry_after_seconds:
                        raise SourceUnavailable(source.name, f"GET {url} (page {page}): rate "
                                                f"limited, the API asks to wait {wait:g} s")
                elif status < 500:
                    raise SourceError(source.name, client_error(response, source, url, page))
            if attempt == source.max_retries:
                break
            delay = self.backoff(attempt)
            if wait is not None:
                delay = max(delay, wait)
            log.warning("source %s: GET %s (page %d) failed (%s); retry %d of %d in %.2f s",
                        source.name, url, page, problem, attempt + 1, source.max_retries, delay)
            time.sleep(delay)
        raise SourceUnavailable(source.name, f"GET {url} (page {page}) failed after "
                                f"{source.max_retries + 1} attempt(s), last: {problem}")

    def backoff(self, attempt: int) -> float:
        ceiling = min(self.max_backoff_seconds, self.backoff_seconds * 2**attempt)
        return ceiling * random.uniform(0.5, 1.0)


def auth_headers(source: RestSource) -> dict[str, str]:
    headers = {"Accept": "application/json"}
    if source.token_env is not None:
        token = os.environ.get(source.token_env)
        if not token:
            raise SourceError(source.name, f"environment variable {source.token_env} is not "
                              "set; it must hold the API's bearer token")
        headers["Authorization"] = f"Bearer {token}"
    return headers


def decode_page(response: httpx.Response, source: RestSource, url: str, page: int) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SourceError(
            source.name,
            f"GET {url} (page {page}) answered a body that is not valid JSON ({exc}); the "
            "whole pull is abandoned and the checkpoint is unchanged, so the next run reads "
            "these pages again",
        ) from exc


def client_error(response: httpx.Response, source: RestSource, url: str, page: int) -> str:
    status = response.status_code
    detail = response.text.strip().replace("\n", " ")[:200]
    token = os.environ.get(source.token_env) if source.token_env else None
    if token:
        detail = detail.replace(token, "***")
    hint = ""
    if status in (401, 403):
        hint = (f"; check the token in {source.token_env}" if source.token_env else
                "; the API wants credentials: set `token_env`")
    elif status == 404:
        hint = "; check `url`"
    return (f"GET {url} (page {page}) answered HTTP {status} {response.reason_phrase}"
            f"{': ' + detail if detail else ''}{hint}")


def retry_after(value: str | None) -> float | None:
    """`Retry-After` in seconds: a number of seconds, or an HTTP date."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (moment - pd.Timestamp.now(tz="UTC").to_pydatetime()).total_seconds())


def shown_url(url: str, params: dict[str, Any]) -> str:
    """The URL with its query, for messages; values of secret-looking parameters masked."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query) + [(k, str(v)) for k, v in params.items()]
    masked = [(k, "***" if any(s in k.lower() for s in _SECRET_PARAMS) else v) for k, v in query]
    return urlunsplit(parts._replace(query=urlencode(masked)))


def cursor_order(values: pd.Series) -> pd.Series:
    """Cursor values as something orderable: numbers as numbers, anything else as a time."""
    if pd.api.types.is_numeric_dtype(values):
        return values.astype(float)
    return parse_timestamps(values)


def after_cursor(
    frame: pd.DataFrame, source: RestSource, since: Any
) -> tuple[pd.DataFrame, Any]:
    """The records past `since` (records whose cursor cannot be read are kept) and the cursor
    value of the newest record, as the API wrote it (None if there is none)."""
    if frame.empty or source.cursor_column not in frame.columns:
        return frame, None
    order = cursor_order(frame[source.cursor_column])
    if since is not None:
        bound = cursor_order(pd.Series([since]))
        if len(bound.dropna()):
            old = order.notna() & (order <= bound.iloc[0])
            if old.any():
                log.info("source %s: dropped %d record(s) at or before the checkpoint %s",
                         source.name, int(old.sum()), since)
            frame, order = frame[~old].reset_index(drop=True), order[~old].reset_index(drop=True)
    if order.notna().sum() == 0:
        return frame, None
    newest = frame.at[order.idxmax(), source.cursor_column]
    return frame, newest.item() if isinstance(newest, np.generic) else newest
