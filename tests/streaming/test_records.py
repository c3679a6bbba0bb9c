"""Decoding stream messages: every bad message gets a reason naming what is wrong, the good
ones around it are kept, and no payload crashes the decoder."""
from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tideline.demo.project import PROJECT_FILE
from tideline.ingestion.project import load_project
from tideline.streaming.records import EventShape, decode

NOW = 1_790_000_000 * 10**9  # 2026-09-21
CONTRACT = load_project(PROJECT_FILE, demo_dir=".", demo_api="http://127.0.0.1",
                        validation_time="2026-10-01T00:00:00+00:00").contract("events")
GOOD = {"event_id": "e1", "customer_id": "C0000001", "ts": "2026-09-20T10:00:00.5Z",
        "event_type": "login", "session_id": "s1", "duration_s": 12.5}


def shape(text: pa.DataType) -> EventShape:
    return EventShape(schema=pa.schema([
        ("customer_id", text), ("duration_s", pa.float64()), ("event_id", text),
        ("event_type", text), ("session_id", text), ("ts", pa.timestamp("ns", "UTC"))]),
        key="customer_id", timestamp="ts", id_column="event_id", contract=CONTRACT)


BAD = [
    (b"{nope", "malformed JSON"),
    (b'"just text"', "expected a JSON object, got str"),
    (json.dumps({**GOOD, "customer_id": None}).encode(), "missing customer_id"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "event_id"}).encode(),
     "missing event_id"),
    (json.dumps({**GOOD, "customer_id": ""}).encode(), "missing customer_id (empty)"),
    (json.dumps({**GOOD, "customer_id": 42}).encode(), "customer_id is not text: 42"),
    (json.dumps({**GOOD, "ts": "yesterday"}).encode(), "ts is not a timestamp: 'yesterday'"),
    (json.dumps({**GOOD, "ts": 1790000000}).encode(),
     "ts is not a timestamp (ISO 8601 text)"),
    (json.dumps({**GOOD, "ts": "2031-01-01T00:00:00Z"}).encode(), "ts is in the future"),
    (json.dumps({**GOOD, "event_type": "teleport"}).encode(),
     "unknown event_type 'teleport', not one of login"),
    (json.dumps({**GOOD, "duration_s": "long"}).encode(), "duration_s is not a number"),
    (json.dumps({**GOOD, "duration_s": True}).encode(), "duration_s is not a number: True"),
    (json.dumps({**GOOD, "duration_s": -1}).encode(), "duration_s out of range [0.0, None]"),
]


@pytest.mark.parametrize("text", [pa.string(), pa.large_string()])
@pytest.mark.parametrize(("payload", "reason"), BAD)
def test_a_bad_message_gets_its_reason_and_the_good_ones_are_kept(
        text: pa.DataType, payload: bytes, reason: str) -> None:
    good = [json.dumps({**GOOD, "event_id": f"e{k}"}).encode() for k in range(3)]
    decoded = decode([good[0], payload, *good[1:]], shape(text), NOW)
    assert [(index, why[:len(reason)]) for index, why in decoded.rejected] == [(1, reason)]
    assert decoded.events.column("event_id").to_pylist() == ["e0", "e1", "e2"]
    assert decoded.positions.tolist() == [0, 2, 3]


def test_a_clean_batch_is_typed_as_the_schema() -> None:
    decoded = decode([json.dumps({**GOOD, "extra": [1, 2]}).encode(),
                      json.dumps({**GOOD, "event_id": "e2", "ts": "2026-09-20T12:00:00+02:00",
                                  "duration_s": None, "session_id": None}).encode()],
                     shape(pa.large_string()), NOW)
    assert decoded.rejected == []
    rows = decoded.events.to_pylist()
    assert [r["ts"].isoformat() for r in rows] == ["2026-09-20T10:00:00.500000+00:00",
                                                   "2026-09-20T10:00:00+00:00"]
    assert rows[1]["duration_s"] is None and rows[0]["duration_s"] == 12.5


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=200),
                          st.dictionaries(st.sampled_from(sorted(GOOD)), st.one_of(
                              st.none(), st.booleans(), st.integers(), st.floats(),
                              st.text(max_size=30), st.lists(st.integers(), max_size=3)),
                              max_size=6).map(lambda d: json.dumps({**GOOD, **d}).encode())),
                max_size=8))
def test_no_payload_crashes_the_decoder_and_every_message_is_accounted_for(
        payloads: list[bytes]) -> None:
    decoded = decode(payloads, shape(pa.large_string()), NOW)
    rejected = [index for index, _ in decoded.rejected]
    assert sorted([*rejected, *decoded.positions.tolist()]) == list(range(len(payloads)))
    assert all(why for _, why in decoded.rejected)
    assert len(decoded.events) == len(decoded.positions)


def test_event_times_read_in_the_contracts_format() -> None:
    """A contract whose event time is epoch milliseconds (or a strftime pattern) has its
    stream read so, as batch ingestion reads it; a time in no such form is dead-lettered."""
    def formatted(fmt: str) -> EventShape:
        columns = tuple(c.model_copy(update={"format": fmt}) if c.name == "ts" else c
                        for c in CONTRACT.columns)
        return EventShape(schema=shape(pa.string()).schema, key="customer_id", timestamp="ts",
                          id_column="event_id",
                          contract=CONTRACT.model_copy(update={"columns": columns}))

    sent = [1789900000500, "1789900000500", "2026-09-20T10:00:00Z", "soon"]
    decoded = decode([json.dumps({**GOOD, "event_id": f"e{k}", "ts": t}).encode()
                      for k, t in enumerate(sent)], formatted("unix_ms"), NOW)
    assert decoded.events.column("ts").to_pylist() == [
        pd.Timestamp(1789900000500, unit="ms", tz="UTC")] * 2
    assert [(i, why) for i, why in decoded.rejected] == [
        (2, "ts is not a timestamp in format 'unix_ms': '2026-09-20T10:00:00Z'"),
        (3, "ts is not a timestamp in format 'unix_ms': 'soon'")]
    decoded = decode([json.dumps({**GOOD, "ts": "20.09.2026 10:15"}).encode()],
                     formatted("%d.%m.%Y %H:%M"), NOW)
    assert decoded.events.column("ts").to_pylist() == [pd.Timestamp("2026-09-20 10:15Z")]
