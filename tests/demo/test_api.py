"""The local demo API is a real HTTP server: paging both ways, `updated_since`, bearer auth, a
file that grows while served, and each injectable fault."""
from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from tideline.demo.api import Faults, serve_records


def write_records(path: Path, ids: range) -> None:
    with path.open("a") as out:
        for i in ids:
            out.write(json.dumps({"ticket_id": i, "updated_at": f"2026-07-10T00:{i:02d}:00Z"})
                      + "\n")


@pytest.fixture
def tickets(tmp_path: Path) -> Path:
    path = tmp_path / "tickets.jsonl"
    # out of order in the file: the API serves them by updated_at
    write_records(path, range(7, 11))
    write_records(path, range(1, 7))
    return path


def ids(body: dict) -> list[int]:
    return [record["ticket_id"] for record in body["data"]]


def test_pages_by_number_and_by_cursor_cover_every_record_once(tickets: Path) -> None:
    with serve_records(tickets) as base, httpx.Client(base_url=base) as client:
        pages = [client.get("/tickets", params={"page": n, "page_size": 4}).json()
                 for n in (1, 2, 3)]
        assert [ids(p) for p in pages] == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]
        assert pages[0]["total"] == 10 and pages[2]["next_page"] is None
        seen, params = [], {"page_size": 3}
        while True:
            body = client.get("/tickets", params=params).json()
            seen += ids(body)
            if not body["next_cursor"]:
                break
            params["cursor"] = body["next_cursor"]
        assert seen == list(range(1, 11))


def test_updated_since_is_strictly_after_and_growth_is_served(tickets: Path) -> None:
    with serve_records(tickets) as base, httpx.Client(base_url=base) as client:
        since = {"updated_since": "2026-07-10T00:08:00+00:00", "page_size": 50}
        assert ids(client.get("/tickets", params=since).json()) == [9, 10]
        write_records(tickets, range(11, 13))
        assert ids(client.get("/tickets", params=since).json()) == [9, 10, 11, 12]
        assert client.get("/tickets", params={"updated_since": "yesterday"}).status_code == 400
        assert client.get("/tickets", params={"cursor": "!!"}).status_code == 400
        assert client.get("/other").status_code == 404


def test_bearer_token_is_required_when_set(tickets: Path) -> None:
    with serve_records(tickets, token="s3cret") as base:
        assert httpx.get(f"{base}/tickets").status_code == 401
        bad = httpx.get(f"{base}/tickets", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 403
        good = httpx.get(f"{base}/tickets", headers={"Authorization": "Bearer s3cret"})
        assert good.status_code == 200 and len(good.json()["data"]) == 10


def test_faults_come_in_order_then_the_api_recovers(tickets: Path) -> None:
    faults = Faults(fail_first=1, rate_limit_first=1, retry_after=2, malformed_page=2)
    with serve_records(tickets, faults=faults) as base, httpx.Client(base_url=base) as client:
        assert client.get("/tickets").status_code == 500
        limited = client.get("/tickets")
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "2"
        assert ids(client.get("/tickets", params={"page": 1, "page_size": 5}).json()) == [
            1, 2, 3, 4, 5]
        broken = client.get("/tickets", params={"page": 2, "page_size": 5})
        with pytest.raises(json.JSONDecodeError):
            broken.json()
    assert len(faults.requests) == 4 and faults.requests[2]["params"] == {"page": "1",
                                                                         "page_size": "5"}


def test_slow_answers_time_a_client_out(tickets: Path) -> None:
    with serve_records(tickets, faults=Faults(slow_first=1, delay_seconds=1.0)) as base:
        with pytest.raises(httpx.ReadTimeout):
            httpx.get(f"{base}/tickets", timeout=0.2)
        assert httpx.get(f"{base}/tickets", timeout=2).status_code == 200
