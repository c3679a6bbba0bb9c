"""REST connector against the real local demo API: both paging styles, bearer auth,
incremental pulls, backfill windows, retries with backoff, Retry-After, timeouts, and the
all-or-nothing answer to a malformed page."""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tideline.core.errors import SourceError, SourceUnavailable
from tideline.demo.api import Faults, serve_records
from tideline.ingestion.connectors import connector_for
from tideline.ingestion.connectors.rest import RestConnector, after_cursor
from tideline.ingestion.sources import RestSource, Window

TOKEN = "t0ken-for-tests"


def ticket(i: int) -> dict:
    """Ticket i is created on July (i // 4 + 1) and last updated i minutes past Jul 10."""
    return {"ticket_id": i, "customer_id": f"C{i:07d}", "created_at": f"2026-07-0{i // 4 + 1}"
            f"T09:00:00Z", "priority": "high" if i % 3 else None,
            "updated_at": f"2026-07-10T00:{i:02d}:00Z"}


def append(path: Path, ids: range) -> None:
    with path.open("a") as out:
        out.writelines(json.dumps(ticket(i)) + "\n" for i in ids)


def source(base: str, **extra: object) -> RestSource:
    spec = {"url": f"{base}/tickets", "cursor_column": "updated_at", "page_size": 4,
            "token_env": "TEST_API_TOKEN", "max_retries": 3, "timeout_seconds": 2.0, **extra}
    return RestSource(name="support-tickets", dataset="tickets", timestamp_column="created_at",
                      **spec)


def fast() -> RestConnector:
    return RestConnector(backoff_seconds=0.01, max_backoff_seconds=0.05)


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_API_TOKEN", TOKEN)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One server for the tests that do not need faults or a changing file."""
    path = tmp_path_factory.mktemp("api") / "tickets.jsonl"
    append(path, range(1, 11))
    with serve_records(path, token=TOKEN) as base:
        yield base


@pytest.fixture
def tickets(tmp_path: Path) -> Path:
    path = tmp_path / "tickets.jsonl"
    append(path, range(1, 11))
    return path


def test_connector_for_picks_the_rest_connector(api: str) -> None:
    assert isinstance(connector_for(source(api)), RestConnector)


@pytest.mark.parametrize("paging", ["cursor", "page"])
def test_pulls_every_page_with_the_bearer_token(api: str, paging: str) -> None:
    pull = fast().pull(source(api, paging=paging), None, None)
    assert pull.frame["ticket_id"].tolist() == list(range(1, 11))
    assert pull.frame["priority"].isna().sum() == 3  # JSON nulls stay null
    assert pull.checkpoint == {"cursor": "2026-07-10T00:10:00Z"}
    assert pull.rejected == []


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(page_size=st.integers(1, 12), paging=st.sampled_from(["cursor", "page"]))
def test_page_size_never_changes_what_is_read(api: str, page_size: int, paging: str) -> None:
    pull = fast().pull(source(api, page_size=page_size, paging=paging), None, None)
    assert pull.frame["ticket_id"].tolist() == list(range(1, 11))


def test_incremental_pull_asks_only_for_newer_records(tickets: Path) -> None:
    faults = Faults()
    with serve_records(tickets, token=TOKEN, faults=faults) as base:
        first = fast().pull(source(base), None, None)
        checkpoint = json.loads(json.dumps(first.checkpoint))
        nothing = fast().pull(source(base), checkpoint, None)
        assert nothing.frame.empty and nothing.checkpoint == checkpoint
        append(tickets, range(11, 14))
        new = fast().pull(source(base, paging="page"), checkpoint, None)
    assert new.frame["ticket_id"].tolist() == [11, 12, 13]
    assert new.checkpoint == {"cursor": "2026-07-10T00:13:00Z"}
    assert faults.requests[-1]["params"]["updated_since"] == "2026-07-10T00:10:00Z"
    assert {r["authorization"] for r in faults.requests} == {f"Bearer {TOKEN}"}


def test_records_at_or_before_the_checkpoint_are_dropped_even_if_served() -> None:
    frame = pd.DataFrame({"id": [1, 2, 3], "updated_at": ["2026-07-10T00:01:00Z",
                                                          "2026-07-10T00:02:00+00:00", "junk"]})
    kept, newest = after_cursor(frame, source("http://x"), "2026-07-10T00:01:00Z")
    assert kept["id"].tolist() == [2, 3] and newest == "2026-07-10T00:02:00+00:00"


def test_backfill_returns_the_window_and_keeps_the_checkpoint(api: str) -> None:
    checkpoint = {"cursor": "2026-07-10T00:10:00Z"}
    window = Window(since=datetime(2026, 7, 2), until=datetime(2026, 7, 3))
    pull = fast().pull(source(api), checkpoint, window)
    assert pull.frame["ticket_id"].tolist() == [4, 5, 6, 7]
    assert pull.checkpoint == checkpoint


def test_server_errors_are_retried_with_growing_backoff(tickets: Path) -> None:
    faults = Faults(fail_first=3)
    with serve_records(tickets, token=TOKEN, faults=faults) as base:
        connector = RestConnector(backoff_seconds=0.05, max_backoff_seconds=1.0)
        pull = connector.pull(source(base), None, None)
    assert len(pull.frame) == 10
    at = [request["at"] for request in faults.requests]
    gaps = [later - earlier for earlier, later in zip(at[:3], at[1:4], strict=True)]
    # retry n waits in [0.5, 1) x 0.05 x 2**n: the waits grow, each within its bounds
    for n, gap in enumerate(gaps):
        assert 0.5 * 0.05 * 2**n <= gap < 0.05 * 2**n + 0.5


def test_retries_run_out_with_the_url_named(tickets: Path) -> None:
    with serve_records(tickets, token=TOKEN, faults=Faults(fail_first=100)) as base, \
            pytest.raises(SourceUnavailable) as caught:
        fast().pull(source(base, max_retries=2), None, None)
    message = str(caught.value)
    assert f"{base}/tickets" in message and "page 1" in message
    assert "3 attempt(s)" in message and "HTTP 500" in message


def test_rate_limit_waits_at_least_retry_after(tickets: Path) -> None:
    faults = Faults(rate_limit_first=1, retry_after=1)
    with serve_records(tickets, token=TOKEN, faults=faults) as base:
        pull = fast().pull(source(base), None, None)
    assert len(pull.frame) == 10
    assert faults.requests[1]["at"] - faults.requests[0]["at"] >= 1.0


def test_a_slow_answer_times_out_and_is_retried(tickets: Path) -> None:
    faults = Faults(slow_first=1, delay_seconds=1.0)
    with serve_records(tickets, token=TOKEN, faults=faults) as base:
        started = time.monotonic()
        pull = fast().pull(source(base, timeout_seconds=0.2), None, None)
        assert time.monotonic() - started < 1.0  # it did not wait for the slow answer
    assert len(pull.frame) == 10


def test_unreachable_api_gives_up_after_its_retries() -> None:
    with pytest.raises(SourceUnavailable, match=r"127\.0\.0\.1:1/tickets.*ConnectError"):
        fast().pull(source("http://127.0.0.1:1", max_retries=1), None, None)


@pytest.mark.parametrize("paging", ["cursor", "page"])
def test_a_malformed_page_fails_the_whole_pull_naming_url_and_page(
    tickets: Path, paging: str
) -> None:
    with serve_records(tickets, token=TOKEN, faults=Faults(malformed_page=2)) as base, \
            pytest.raises(SourceError) as caught:
        fast().pull(source(base, paging=paging), {"cursor": "2026-07-01T00:00:00Z"}, None)
    message = str(caught.value)
    assert f"{base}/tickets" in message and "(page 2)" in message and "not valid JSON" in message
    assert not isinstance(caught.value, SourceUnavailable)  # not retried: it is not transient


def test_client_errors_name_url_and_status_without_the_token(tickets: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    with serve_records(tickets, token=TOKEN) as base:
        monkeypatch.setenv("TEST_API_TOKEN", "wrong-token")
        with pytest.raises(SourceError, match=r"/tickets.*HTTP 403.*TEST_API_TOKEN") as caught:
            fast().pull(source(base), None, None)
        assert "wrong-token" not in str(caught.value)
        monkeypatch.setenv("TEST_API_TOKEN", TOKEN)
        with pytest.raises(SourceError, match=r"/nothing-here.*HTTP 404"):
            fast().pull(source(base, url=f"{base}/nothing-here"), None, None)
        monkeypatch.delenv("TEST_API_TOKEN")
        with pytest.raises(SourceError, match="TEST_API_TOKEN is not set"):
            fast().pull(source(base), None, None)
