"""The stream processor against the real NATS JetStream of this machine: a replayed day equals
the batch engine, bad messages are dead-lettered with their reason, a SIGKILL mid-stream loses
nothing."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from tideline.core.errors import SourceUnavailable
from tideline.core.settings import load_settings
from tideline.demo.project import declared_project
from tideline.demo.views import ACTIVITY, SIGNALS
from tideline.features.engine import Events, Spine, compute_views
from tideline.features.online.sqlite import SQLiteOnlineStore
from tideline.lake.erasure import erase_rows
from tideline.lake.local import LocalLake
from tideline.streaming.checkpoint import load_checkpoint
from tideline.streaming.processor import StreamConfig, open_processor

from tests.features.conftest import AS_OF, churn_tables, write_clean
from tests.features.test_engine import assert_same
from tests.streaming.broker import dead_letters, publish
from tests.streaming.test_state import RECENT, STREAMED, VIEWS, batch_values
from tests.waiting import ROOT, wait_for

pytestmark = pytest.mark.service("nats")
DAY = pd.Timedelta(days=1)


@pytest.fixture(scope="module")
def events() -> pd.DataFrame:
    return churn_tables(customers=150, seed=11)["events"]


def as_json(frame: pd.DataFrame) -> list[bytes]:
    out = frame.assign(ts=frame["ts"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    return [json.dumps({k: (None if pd.isna(v) else v) for k, v in row.items()}).encode()
            for row in out.to_dict("records")]


def lake_before(path: Path, events: pd.DataFrame, day: pd.Timestamp) -> LocalLake:
    lake = LocalLake(path)
    write_clean(lake, {"events": events[events["ts"] < day]})
    return lake


def online_values(online: SQLiteOnlineStore, keys: np.ndarray) -> dict[str, pd.DataFrame]:
    out = {}
    for view in VIEWS:
        state, rows = online.read(view.name, list(keys))
        out[view.name] = pd.DataFrame(rows, columns=list(state.columns))
    return out


def test_a_day_replayed_through_nats_gives_the_batch_values_and_dead_letters_the_bad(
        tmp_path: Path, subject: str, nats_url: str, events: pd.DataFrame) -> None:
    day = AS_OF - DAY
    lake = lake_before(tmp_path / "lake", events, day)
    settings = load_settings(data_dir=tmp_path, feature_views="tideline.demo.views:DEMO_VIEWS")
    config = StreamConfig(name=subject, url=nats_url, subject=subject, start="all", batch_size=200,
                          max_wait_seconds=0.5)
    processor = open_processor(settings, config, project=declared_project(settings))
    assert processor.views == (ACTIVITY, SIGNALS) and processor.load() == "lake"

    today = events[(events["ts"] >= day) & (events["ts"] < AS_OF)]
    rng = np.random.default_rng(3)
    order = np.argsort((today["ts"] + pd.to_timedelta(rng.integers(0, 1800, len(today)),
                                                      unit="s")).to_numpy())
    good = as_json(today.iloc[order])
    good += good[::10]  # redelivered by a producer: must not count twice
    template = json.loads(good[0])
    bad = {
        b"{not json": "malformed JSON",
        b"[1, 2, 3]": "expected a JSON object, got list",
        json.dumps({**template, "customer_id": None, "event_id": "x1"}).encode():
            "missing customer_id",
        json.dumps({**template, "ts": "2099-01-01T00:00:00Z", "event_id": "x2"}).encode():
            "ts is in the future",
        json.dumps({**template, "ts": "2026-05-01T00:00:00Z", "event_id": "x3"}).encode():
            "late: event time 2026-05-01",
        json.dumps({**template, "event_type": "teleport", "event_id": "x4"}).encode():
            "unknown event_type 'teleport'",
        json.dumps({**template, "customer_id": {"$ne": 1}, "event_id": "x5"}).encode():
            "customer_id is not text",
        json.dumps({**template, "duration_s": "12; DROP TABLE", "event_id": "x6"}).encode():
            "duration_s is not a number",
        ("[" * 2000 + "]" * 2000).encode(): "malformed JSON",
    }
    payloads = good[:300] + list(bad) + good[300:]
    publish(nats_url, subject, payloads)

    asyncio.run(processor.run(idle_exit=True))

    keys = np.array(sorted(events["customer_id"].unique()), dtype=object)
    t = pd.Timestamp(processor.state.clock + 1, tz="UTC")
    expected = batch_values(events, keys, t)
    served = online_values(processor.online, keys)
    for view in VIEWS:
        assert_same(served[view.name], expected[view.feature_names], rtol=1e-9)
    m = processor.metrics
    assert m.value("tideline_stream_events_total", outcome="applied") == len(today)
    assert m.value("tideline_stream_events_total", outcome="duplicate") == len(good[::10])
    assert m.value("tideline_stream_events_total", outcome="dead_letter") == len(bad)
    assert m.value("tideline_stream_watermark_seconds") == (t.value - 1) / 1e9 - 3600
    assert processor.sequence == len(payloads)
    letters = dead_letters(nats_url, subject)
    assert sorted(payload for _, payload in letters) == sorted(bad)
    for reason, payload in letters:
        assert bad[payload] in reason, (payload[:40], reason)
    meta = load_checkpoint(lake, subject)[2]
    assert (meta.sequence, meta.clock) == (len(payloads), processor.state.clock)


def test_the_processor_calls_a_streamable_custom_views_function_for_touched_entities(
        tmp_path: Path, subject: str, nats_url: str, events: pd.DataFrame) -> None:
    day = AS_OF - DAY
    lake_before(tmp_path / "lake", events, day)
    settings = load_settings(data_dir=tmp_path,
                             feature_views="tests.streaming.test_state:STREAMED")
    config = StreamConfig(name=subject, url=nats_url, subject=subject, start="all",
                          batch_size=150, max_wait_seconds=0.5)
    processor = open_processor(settings, config, project=declared_project(settings))
    assert processor.views == STREAMED and processor.load() == "lake"
    today = events[(events["ts"] >= day) & (events["ts"] < AS_OF)].sort_values("ts")
    publish(nats_url, subject, as_json(today))
    asyncio.run(processor.run(idle_exit=True))

    keys = np.array(sorted(today["customer_id"].unique()), dtype=object)
    t = pd.Timestamp(processor.state.clock + 1, tz="UTC")
    expected = compute_views([RECENT], {"events": Events.from_table(pa.Table.from_pandas(
        events[events["ts"] < t], preserve_index=False), "customer_id", "ts")},
        Spine.of(keys, [t] * len(keys)))
    state, rows = processor.online.read(RECENT.name, list(keys))
    served = pd.DataFrame(rows, columns=list(state.columns))
    assert_same(served[RECENT.feature_names], expected)
    assert served["cancel_hours_1d"].sum() > 0


def test_killed_mid_stream_the_processor_resumes_from_its_checkpoint_to_the_same_values(
        tmp_path: Path, subject: str, nats_url: str, events: pd.DataFrame) -> None:
    day = AS_OF - 20 * DAY
    lake = lake_before(tmp_path / "lake", events, day)
    later = events[(events["ts"] >= day) & (events["ts"] < AS_OF)].sort_values("ts")
    half = len(later) // 2  # the rest is published after the kill: the kill is mid-stream
    publish(nats_url, subject, as_json(later.iloc[:half]))
    env = {**os.environ, "TIDELINE_DATA_DIR": str(tmp_path),
           "TIDELINE_FEATURE_VIEWS": "tideline.demo.views:DEMO_VIEWS"}
    command = [sys.executable, "-m", "tideline.deployments.cli", "stream", "--url", nats_url,
               "--subject", subject, "--start", "all", "--batch-size", "5",
               "--checkpoint-seconds", "0.2"]
    first = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    try:
        wait_for("a checkpoint past sequence 40", lambda: (
            load_checkpoint(lake, subject) or (0, 0, None))[2] is not None and load_checkpoint(
            lake, subject)[2].sequence >= 40, timeout=60)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    killed_at = load_checkpoint(lake, subject)[2].sequence
    assert 40 <= killed_at < len(later), "killed mid-stream"
    publish(nats_url, subject, as_json(later.iloc[half:]))
    second = subprocess.run([*command, "--idle-exit"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert "state from the checkpoint" in second.stdout

    keys = np.array(sorted(events["customer_id"].unique()), dtype=object)
    meta = load_checkpoint(lake, subject)[2]
    assert meta.sequence == len(later)
    expected = batch_values(events, keys, pd.Timestamp(meta.clock + 1, tz="UTC"))
    served = online_values(SQLiteOnlineStore(tmp_path / "online.db"), keys)
    for view in VIEWS:
        assert_same(served[view.name], expected[view.feature_names], rtol=1e-9)


def test_an_unreachable_broker_is_a_clear_error(tmp_path: Path, events: pd.DataFrame) -> None:
    lake_before(tmp_path / "lake", events, AS_OF)
    settings = load_settings(data_dir=tmp_path, feature_views="tideline.demo.views:DEMO_VIEWS")
    processor = open_processor(settings, StreamConfig(url="nats://127.0.0.1:1",
                                                      connect_timeout_seconds=1.0))
    with pytest.raises(SourceUnavailable, match="cannot connect to NATS at nats://127.0.0.1:1"):
        asyncio.run(processor.run(idle_exit=True))


def test_entities_without_new_events_are_rewritten_with_the_batches_in_turn(
        tmp_path: Path, events: pd.DataFrame) -> None:
    day = AS_OF - DAY
    lake_before(tmp_path / "lake", events, day)
    settings = load_settings(data_dir=tmp_path, feature_views="tideline.demo.views:DEMO_VIEWS")
    processor = open_processor(settings, StreamConfig(refresh_seconds=100.0))
    processor.load()
    start = time.time()
    wall = [start]
    processor.wall = lambda: wall[0]
    processor.publish(np.zeros(0, dtype=np.int64), replace_all=True)  # the views, empty
    processor._cycle = processor._new_cycle()  # as `run` starts it, after its whole write
    known = processor.state.entities()
    today = events[(events["ts"] >= day) & (events["ts"] < AS_OF)].sort_values("ts")

    def written() -> set[str]:
        state, rows = processor.online.read(ACTIVITY.name, list(known))
        return {key for key, row in zip(known, rows, strict=True) if row is not None}

    wall[0] = start + 40.0  # 40% into the cycle: the first 40% of the entities ride along
    first = today.iloc[:5]
    processor.process(as_json(first))
    assert written() == set(known[:int(len(known) * 0.4)]) | set(first["customer_id"])
    wall[0] = start + 100.0  # the cycle is over: every entity has been rewritten once
    processor.process(as_json(today.iloc[5:10]))
    assert written() == set(known)
    t = pd.Timestamp(processor.state.clock + 1, tz="UTC")
    quiet = np.array(sorted(set(known[int(len(known) * 0.4):])  # rewritten as of t
                            - set(today.iloc[:10]["customer_id"])), dtype=object)
    state, rows = processor.online.read(ACTIVITY.name, list(quiet))
    expected = batch_values(events, quiet, t)  # windows slid to t
    assert_same(pd.DataFrame(rows, columns=list(state.columns)),
                expected[ACTIVITY.feature_names], rtol=1e-9)


def test_an_erased_customer_leaves_the_state_and_its_new_events_are_dropped(
        tmp_path: Path, events: pd.DataFrame) -> None:
    day = AS_OF - DAY
    lake = lake_before(tmp_path / "lake", events, day)
    settings = load_settings(data_dir=tmp_path, feature_views="tideline.demo.views:DEMO_VIEWS")
    processor = open_processor(settings, StreamConfig(erasure_check_seconds=0.0))
    processor.load()
    processor.publish(np.zeros(0, dtype=np.int64), replace_all=True)  # the views, empty
    today = events[(events["ts"] >= day) & (events["ts"] < AS_OF)].sort_values("ts")
    gone = today["customer_id"].value_counts().index[0]  # the busiest customer of the day
    assert gone in set(processor.state.entities())
    known = processor.state.size

    lake.create_branch("run-forget", "main")  # as `tideline forget` publishes an erasure
    erase_rows(lake, "run-forget", "customer_id", [gone], request="r1")
    lake.commit("run-forget", "erase one customer")
    lake.merge("run-forget", "main")
    assert processor.forget_erased() == 1 and processor.forget_erased() == 0  # read once
    assert gone not in set(processor.state.entities()) and processor.state.size == known - 1

    outcome = processor.process(as_json(today))
    mine = int((today["customer_id"] == gone).sum())
    assert outcome.erased == mine and outcome.applied == len(today) - mine and not outcome.dead
    assert processor.metrics.value("tideline_stream_events_total", outcome="erased") == mine
    state, rows = processor.online.read(ACTIVITY.name, [gone])
    assert rows == [None]  # never written again
    assert gone not in set(processor.state.entities())
    processor.checkpoint()
    buffer, running, _ = load_checkpoint(lake, processor.config.name)
    assert gone not in set(buffer.column("customer_id").to_pylist())
    assert gone not in set(running.column("customer_id").to_pylist())
    others = np.array(sorted(set(today["customer_id"]) - {gone})[:20], dtype=object)
    t = pd.Timestamp(processor.state.clock + 1, tz="UTC")
    state, rows = processor.online.read(ACTIVITY.name, list(others))
    assert_same(pd.DataFrame(rows, columns=list(state.columns)),
                batch_values(events, others, t)[ACTIVITY.feature_names], rtol=1e-9)
