"""Stream connector: the embedded event log (position, caps, poison lines, a line still being
written) and NATS JetStream for real (durable consumer, ack after commit, redelivery after a
crash, poison messages terminated, backfills that leave the consumer alone)."""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tideline.core.errors import SourceError, SourceUnavailable
from tideline.ingestion.connectors import connector_for
from tideline.ingestion.connectors.stream import StreamConnector
from tideline.ingestion.sources import StreamSource, Window


def event(i: int) -> dict:
    """Event i happens on July (i // 3 + 1): 1-2 on Jul 1, 3-5 on Jul 2, 6-8 on Jul 3..."""
    return {"event_id": f"e{i}", "customer_id": f"C{i:07d}",
            "ts": f"2026-07-{i // 3 + 1:02d}T08:00:00Z", "duration_s": None if i % 2 else i}


def round_trip(checkpoint: dict) -> dict:
    return json.loads(json.dumps(checkpoint, sort_keys=True, default=str))


# -- event log ------------------------------------------------------------------------------


def eventlog_source(root: Path, **extra: object) -> StreamSource:
    return StreamSource(name="app-events", dataset="events", timestamp_column="ts",
                        url=str(root), subject="app-events", **extra)


def log_line(seq: int) -> str:
    return json.dumps({"seq": seq, "data": event(seq)}) + "\n"


@pytest.fixture
def event_log(tmp_path: Path) -> Path:
    """Two files, events 1-9, with a poison line after seq 4 and another after seq 7."""
    directory = tmp_path / "events" / "app-events"
    directory.mkdir(parents=True)
    (directory / "00001.jsonl").write_text(
        "".join(log_line(i) for i in range(1, 5)) + "{not json\n" + log_line(5))
    (directory / "00006.jsonl").write_text(
        log_line(6) + log_line(7) + '{"seq": "eight"}\n' + log_line(8) + log_line(9))
    return tmp_path / "events"


def test_connector_for_picks_the_stream_connector(event_log: Path) -> None:
    assert isinstance(connector_for(eventlog_source(event_log)), StreamConnector)


def test_event_log_reads_every_record_and_rejects_poison_lines(event_log: Path) -> None:
    pull = StreamConnector().pull(eventlog_source(event_log), None, None)
    assert pull.frame["event_id"].tolist() == [f"e{i}" for i in range(1, 10)]
    assert pull.frame["duration_s"].isna().sum() == 5
    assert pull.checkpoint == {"seq": 9}
    assert [raw for raw, _ in pull.rejected] == ["{not json", '{"seq": "eight"}']
    assert pull.rejected[0][1].startswith("00001.jsonl:5: not JSON")
    assert pull.rejected[1][1] == "00006.jsonl:3: no integer 'seq'"
    assert pull.ack is None
    StreamConnector().acknowledge(eventlog_source(event_log), pull)  # a no-op


def test_event_log_resumes_after_the_checkpoint(event_log: Path) -> None:
    source = eventlog_source(event_log)
    first = StreamConnector().pull(source, None, None)
    assert StreamConnector().pull(source, round_trip(first.checkpoint), None).frame.empty
    with (event_log / "app-events" / "00006.jsonl").open("a") as out:
        out.write(log_line(10) + log_line(11))
    second = StreamConnector().pull(source, round_trip(first.checkpoint), None)
    assert second.frame["event_id"].tolist() == ["e10", "e11"]
    assert second.rejected == [] and second.checkpoint == {"seq": 11}


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cap=st.integers(1, 12))
def test_any_cap_reads_each_record_and_each_poison_line_exactly_once(
    event_log: Path, cap: int
) -> None:
    source = eventlog_source(event_log, max_messages=cap)
    records, rejected, checkpoint = [], [], None
    for _ in range(20):
        pull = StreamConnector().pull(source, checkpoint, None)
        assert len(pull.frame) + len(pull.rejected) <= cap
        if pull.frame.empty and not pull.rejected:
            break
        records += pull.frame["event_id"].tolist() if len(pull.frame) else []
        rejected += [raw for raw, _ in pull.rejected]
        checkpoint = round_trip(pull.checkpoint)
    assert records == [f"e{i}" for i in range(1, 10)]
    assert rejected == ["{not json", '{"seq": "eight"}']


def test_a_line_still_being_written_waits_for_the_next_pull(event_log: Path) -> None:
    source = eventlog_source(event_log)
    latest = event_log / "app-events" / "00006.jsonl"
    whole = log_line(10)
    with latest.open("a") as out:
        out.write(whole[:15])
    first = StreamConnector().pull(source, None, None)
    assert first.checkpoint == {"seq": 9} and len(first.rejected) == 2
    with latest.open("a") as out:
        out.write(whole[15:])
    second = StreamConnector().pull(source, round_trip(first.checkpoint), None)
    assert second.frame["event_id"].tolist() == ["e10"] and second.rejected == []


def test_event_log_backfill_is_exactly_the_window(event_log: Path) -> None:
    window = Window(since=datetime(2026, 7, 2), until=datetime(2026, 7, 3))
    pull = StreamConnector().pull(eventlog_source(event_log), {"seq": 9}, window)
    assert pull.frame["event_id"].tolist() == ["e3", "e4", "e5"]
    assert pull.checkpoint == {"seq": 9}


def test_missing_event_log_names_the_directory(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"no event log at .*nowhere/app-events"):
        StreamConnector().pull(eventlog_source(tmp_path / "nowhere"), None, None)


# -- NATS JetStream ---------------------------------------------------------------------------


def run(coroutine: object) -> object:
    return asyncio.run(coroutine)


async def _admin(url: str, action: str, stream: str, subject: str,
                 payloads: list[bytes] = ()) -> object:
    import nats

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        if action == "create":
            await js.add_stream(name=stream, subjects=[subject])
        elif action == "publish":
            for payload in payloads:
                await js.publish(subject, payload)
        elif action == "delete":
            await js.delete_stream(stream)
        elif action == "consumers":
            return [c.name for c in await js.consumers_info(stream)]
    finally:
        await nc.close()
    return None


class Stream:
    """A JetStream stream of its own for one test, deleted afterwards."""

    def __init__(self, url: str) -> None:
        self.url = url
        token = uuid.uuid4().hex[:12]
        self.name, self.subject = f"TL_TEST_{token}", f"tl-test.{token}.events"

    def publish(self, *payloads: bytes | dict) -> None:
        raw = [p if isinstance(p, bytes) else json.dumps(p).encode() for p in payloads]
        run(_admin(self.url, "publish", self.name, self.subject, raw))

    def source(self, **extra: object) -> StreamSource:
        return StreamSource(name="app-events", dataset="events", timestamp_column="ts",
                            transport="nats", url=self.url, subject=self.subject,
                            stream=self.name, **extra)


@pytest.fixture
def stream(nats_url: str) -> Iterator[Stream]:
    created = Stream(nats_url)
    run(_admin(nats_url, "create", created.name, created.subject))
    yield created
    run(_admin(nats_url, "delete", created.name, created.subject))


def nats(ack_wait: float = 30.0) -> StreamConnector:
    return StreamConnector(ack_wait_seconds=ack_wait, fetch_timeout_seconds=0.3)


@pytest.mark.service("nats")
def test_nats_pull_then_acknowledge_moves_the_consumer_on(stream: Stream) -> None:
    stream.publish(*(event(i) for i in range(1, 6)))
    source = stream.source()
    pull = nats().pull(source, None, None)
    assert pull.frame["event_id"].tolist() == ["e1", "e2", "e3", "e4", "e5"]
    assert pull.checkpoint == {"seq": 5} and len(pull.ack["ack"]) == 5
    nats().acknowledge(source, pull)
    stream.publish(event(6))
    later = nats().pull(source, round_trip(pull.checkpoint), None)
    assert later.frame["event_id"].tolist() == ["e6"] and later.checkpoint == {"seq": 6}


@pytest.mark.service("nats")
def test_unacknowledged_messages_come_back_after_a_crash(stream: Stream) -> None:
    stream.publish(*(event(i) for i in range(1, 4)))
    source = stream.source()
    crashed = nats(ack_wait=1.0).pull(source, None, None)  # pulled, never committed nor acked
    assert len(crashed.frame) == 3
    time.sleep(1.2)
    retried = nats(ack_wait=1.0).pull(source, None, None)  # a new run, a new connector
    assert retried.frame["event_id"].tolist() == crashed.frame["event_id"].tolist()
    nats().acknowledge(source, retried)
    time.sleep(1.2)
    assert nats().pull(source, round_trip(retried.checkpoint), None).frame.empty


@pytest.mark.service("nats")
def test_messages_up_to_the_checkpoint_are_only_acknowledged(stream: Stream) -> None:
    """Committed but the ack was lost: redelivered messages are not landed twice."""
    stream.publish(*(event(i) for i in range(1, 4)))
    source = stream.source()
    committed = nats(ack_wait=1.0).pull(source, None, None)
    time.sleep(1.2)
    stream.publish(event(4))
    again = nats(ack_wait=1.0).pull(source, round_trip(committed.checkpoint), None)
    assert again.frame["event_id"].tolist() == ["e4"] and len(again.ack["ack"]) == 4
    nats().acknowledge(source, again)
    time.sleep(1.2)
    assert nats().pull(source, round_trip(again.checkpoint), None).frame.empty


@pytest.mark.service("nats")
def test_poison_message_is_rejected_then_terminated(stream: Stream) -> None:
    stream.publish(event(1), b"\x00not json", b"[1, 2]", event(2))
    source = stream.source()
    pull = nats(ack_wait=1.0).pull(source, None, None)
    assert pull.frame["event_id"].tolist() == ["e1", "e2"]
    assert [raw for raw, _ in pull.rejected] == ["\x00not json", "[1, 2]"]
    assert pull.rejected[0][1].startswith(f"{stream.name} seq 2: payload is not JSON")
    assert pull.rejected[1][1] == f"{stream.name} seq 3: expected a JSON object, got list"
    assert len(pull.ack["term"]) == 2
    nats().acknowledge(source, pull)
    time.sleep(1.2)
    after = nats().pull(source, round_trip(pull.checkpoint), None)
    assert after.frame.empty and after.rejected == []  # not redelivered, nothing blocked


@pytest.mark.service("nats")
def test_max_messages_caps_a_pull(stream: Stream) -> None:
    stream.publish(*(event(i) for i in range(1, 8)))
    source = stream.source(max_messages=3, batch_size=2)
    seen, checkpoint = [], None
    for _ in range(4):
        pull = nats().pull(source, checkpoint, None)
        assert len(pull.frame) <= 3
        seen += pull.frame["event_id"].tolist() if len(pull.frame) else []
        nats().acknowledge(source, pull)
        checkpoint = round_trip(pull.checkpoint)
    assert seen == [f"e{i}" for i in range(1, 8)]


@pytest.mark.service("nats")
def test_nats_backfill_reads_the_window_and_leaves_the_consumer_alone(stream: Stream) -> None:
    stream.publish(*(event(i) for i in range(1, 9)))
    source = stream.source()
    window = Window(since=datetime(2026, 7, 2), until=datetime(2026, 7, 3))
    backfill = nats().pull(source, {"seq": 8}, window)
    assert backfill.frame["event_id"].tolist() == ["e3", "e4", "e5"]
    assert backfill.checkpoint == {"seq": 8} and backfill.ack is None
    consumers = run(_admin(stream.url, "consumers", stream.name, stream.subject))
    assert consumers == []  # the throwaway consumer is removed
    assert len(nats().pull(source, None, None).frame) == 8  # the durable starts from the top


@pytest.mark.service("nats")
def test_nats_faults_are_named(nats_url: str) -> None:
    gone = Stream(nats_url).source()
    with pytest.raises(SourceError, match=rf"no JetStream stream {gone.stream}"):
        nats().pull(gone, None, None)
    down = gone.model_copy(update={"url": "nats://user:pw@127.0.0.1:1"})
    with pytest.raises(SourceUnavailable, match=r"cannot connect to NATS at nats://\*\*\*@127"
                       r"\.0\.0\.1:1") as caught:
        StreamConnector(connect_timeout_seconds=1).pull(down, None, None)
    assert "pw" not in str(caught.value)
