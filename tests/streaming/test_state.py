"""The stream state against the batch engine: the same definitions give the same values."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from tideline.core.errors import FeatureDefinitionError
from tideline.demo.views import ACTIVITY, ENGAGEMENT, EVENTS, SIGNALS, SPENDING
from tideline.features.definitions import CustomView, Input
from tideline.features.engine import Events, Spine, compute_views
from tideline.streaming.state import StreamState, event_schema, streamable_views

from tests.features.conftest import AS_OF, churn_tables
from tests.features.test_engine import assert_same

VIEWS = (ACTIVITY, SIGNALS)
DAY, HOUR = pd.Timedelta(days=1), pd.Timedelta(hours=1)


@pytest.fixture(scope="module")
def events() -> pd.DataFrame:
    frame = churn_tables(customers=150, seed=11)["events"]
    # a burst of closely spaced events so that sessions and the 1-hour window have work
    rng = np.random.default_rng(5)
    burst = pd.DataFrame({
        "event_id": [f"b{i}" for i in range(400)],
        "customer_id": rng.choice(frame["customer_id"].unique()[:20], 400),
        "ts": AS_OF - DAY + pd.to_timedelta(np.sort(rng.integers(0, 86_400, 400)), unit="s"),
        "event_type": rng.choice(["login", "payment_failed", "cancel_page", "view"], 400),
        "session_id": "s-burst", "duration_s": rng.exponential(30, 400)})
    return pd.concat([frame, burst], ignore_index=True)


@pytest.fixture(scope="module")
def schema(events: pd.DataFrame) -> pa.Schema:
    return event_schema(VIEWS, pa.Schema.from_pandas(events, preserve_index=False), "event_id")


def table(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)


def new_state(schema: pa.Schema, lateness: pd.Timedelta = HOUR) -> StreamState:
    return StreamState(VIEWS, key="customer_id", timestamp="ts", id_column="event_id",
                       schema=schema, lateness_ns=lateness.value)


def batch_values(events: pd.DataFrame, keys: np.ndarray, t: pd.Timestamp) -> pd.DataFrame:
    source = Events.from_table(pa.Table.from_pandas(events[events["ts"] < t],
                                                    preserve_index=False), "customer_id", "ts")
    return compute_views(VIEWS, {"events": source}, Spine.of(keys, [t] * len(keys)))


def test_replaying_a_day_out_of_order_gives_the_batch_engines_values(
        events: pd.DataFrame, schema: pa.Schema) -> None:
    day = AS_OF - DAY
    state = new_state(schema)
    state.apply(table(events[events["ts"] < day], schema))
    state.evict()
    today = events[(events["ts"] >= day) & (events["ts"] < AS_OF)]
    # arrival order: event time plus up to 50 minutes of delay (allowed lateness: one hour),
    # and one in ten events delivered twice
    rng = np.random.default_rng(1)
    sent = pd.concat([today, today.sample(frac=0.1, random_state=2)])
    arrival = sent["ts"] + pd.to_timedelta(rng.integers(0, 3000, len(sent)), unit="s")
    replay = sent.iloc[np.argsort(arrival.to_numpy(), kind="stable")]
    applied = duplicates = 0
    for start in range(0, len(replay), 97):
        batch = table(replay.iloc[start:start + 97], schema)
        fresh, repeated, late = state.admit(batch)
        assert late == []
        state.apply(batch.take(fresh))
        applied, duplicates = applied + len(fresh), duplicates + len(repeated)
    assert (applied, duplicates) == (len(today), len(replay) - len(today))

    keys = np.array(sorted(events["customer_id"].unique()), dtype=object)
    newest = pd.Timestamp(state.clock, tz="UTC")
    for t in (newest + pd.Timedelta(1, "ns"), AS_OF, AS_OF + 2 * HOUR):
        stream = state.values(keys, t.value)
        expected = batch_values(events, keys, t)
        for view in VIEWS:
            assert_same(stream[view.name], expected[view.feature_names], rtol=1e-9)
    signals = state.values(keys, AS_OF.value)[SIGNALS.name]
    assert signals["events_1h"].sum() > 0 and signals["sessions_24h"].max() >= 2
    assert signals["avg_duration_all"].notna().sum() > 50


def test_late_events_are_refused_and_values_need_a_time_after_the_newest_event(
        events: pd.DataFrame, schema: pa.Schema) -> None:
    state = new_state(schema)
    state.apply(table(events[events["ts"] < AS_OF], schema))
    old = events[events["ts"] < AS_OF - 2 * HOUR].head(3).assign(
        event_id=["late1", "late2", "late3"])
    fresh, repeated, late = state.admit(table(old, schema))
    assert (len(fresh), len(repeated)) == (0, 0)
    assert [row for row, _ in late] == [0, 1, 2]
    assert "before the watermark" in late[0][1]
    with pytest.raises(ValueError, match="would miss events"):
        state.values(np.array(["C0000001"], dtype=object), state.clock)


def test_eviction_keeps_the_windows_and_snapshots_restore_the_same_values(
        events: pd.DataFrame, schema: pa.Schema) -> None:
    state = new_state(schema)
    state.apply(table(events[events["ts"] < AS_OF], schema))
    held = len(state.snapshot()[0])
    assert state.evict() > 0 and len(state.buffered()) < held
    assert pd.Timestamp(int(pa.compute.min(state.buffered()["ts"]).value), tz="UTC") >= (
        pd.Timestamp(state.clock, tz="UTC") - 30 * DAY - HOUR)
    keys = np.array(sorted(events["customer_id"].unique()), dtype=object)
    before = state.values(keys, AS_OF.value)
    copy = new_state(schema)
    copy.restore(*state.snapshot(), clock=state.clock)
    after = copy.values(keys, AS_OF.value)
    for view in VIEWS:
        assert_same(after[view.name], before[view.name], rtol=0)
    assert copy.seen == state.seen


def test_events_applied_while_a_compaction_runs_are_kept(
        events: pd.DataFrame, schema: pa.Schema, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tideline.streaming.state.TAIL_CHUNKS", 3)  # the tail is combined meanwhile
    day = AS_OF - DAY
    state = new_state(schema)
    state.apply(table(events[events["ts"] < day - DAY], schema))
    job = state.compaction()  # run "on another thread" while the stream goes on
    later = events[(events["ts"] >= day - DAY) & (events["ts"] < AS_OF)].sort_values("ts")
    for start in range(0, len(later), 50):
        state.apply(table(later.iloc[start:start + 50], schema))
    assert len(state._tail) <= 3 < len(later) // 50
    state.install(job, job.run())
    keys = np.array(sorted(events["customer_id"].unique()), dtype=object)
    expected = batch_values(events, keys, AS_OF)
    for view in VIEWS:
        assert_same(state.values(keys, AS_OF.value)[view.name], expected[view.feature_names])
    newest = pd.Timestamp(state.clock, tz="UTC")
    held = (events["ts"] >= newest - 30 * DAY - HOUR) & (events["ts"] < AS_OF)
    assert len(state.buffered()) == held.sum()  # the retention, nothing lost or doubled


def test_a_snapshot_does_not_change_when_the_state_goes_on(events: pd.DataFrame,
                                                           schema: pa.Schema) -> None:
    state = new_state(schema)
    state.apply(table(events[events["ts"] < AS_OF - DAY], schema))
    snapshot, clock = state.snapshot(), state.clock  # written later, on another thread
    keys = np.array(sorted(events["customer_id"].unique()), dtype=object)
    before = state.values(keys, AS_OF.value)
    state.apply(table(events[(events["ts"] >= AS_OF - DAY) & (events["ts"] < AS_OF)], schema))
    copy = new_state(schema)
    copy.restore(*snapshot, clock=clock)
    for view in VIEWS:
        assert_same(copy.values(keys, AS_OF.value)[view.name], before[view.name], rtol=0)


def recent_pages(events: pd.DataFrame, spine: pd.DataFrame) -> pd.DataFrame:
    """Hours with a cancel-page visit in the last day, and the latest event type."""
    cancels = events[events["event_type"] == "cancel_page"]
    hours = cancels["ts"].dt.floor("h").groupby(level="row").nunique()
    latest = events["event_type"].astype(object).groupby(level="row").last()
    return pd.DataFrame({"cancel_hours_1d": hours.reindex(spine.index, fill_value=0),
                         "latest_event_1d": latest.reindex(spine.index)})


RECENT = CustomView(name="recent", entity=ACTIVITY.entity, inputs=[Input(EVENTS, ["event_type"])],
                    function=recent_pages, per="partition", lookback=1, streamable=True,
                    features=["cancel_hours_1d", "latest_event_1d"], owner="x@example.com")


STREAMED = (ACTIVITY, SIGNALS, RECENT)
"""The demo's streamed views and a streamable custom one (`tests.streaming.test_state:STREAMED`
for a processor)."""


def test_a_streamable_custom_view_gives_the_batch_builds_values(events: pd.DataFrame) -> None:
    views = (SIGNALS, RECENT)
    assert streamable_views([SIGNALS, SPENDING, ENGAGEMENT, RECENT], "events") == views
    schema = event_schema(views, pa.Schema.from_pandas(events, preserve_index=False),
                          "event_id")
    state = StreamState(views, key="customer_id", timestamp="ts", id_column="event_id",
                        schema=schema, lateness_ns=HOUR.value)
    day = AS_OF - DAY
    state.apply(table(events[events["ts"] < day], schema))
    state.evict()  # keeps the lookback: a day and the lateness
    today = events[(events["ts"] >= day) & (events["ts"] < AS_OF)].sample(frac=1,
                                                                         random_state=3)
    for start in range(0, len(today), 101):  # out of order within the allowed lateness
        state.apply(table(today.iloc[start:start + 101].sort_values("ts"), schema))
    keys = np.array(sorted(events["customer_id"].unique()), dtype=object)
    for t in (AS_OF, AS_OF + 2 * HOUR):
        stream = state.values(keys, t.value)[RECENT.name]
        source = Events.from_table(pa.Table.from_pandas(events[events["ts"] < t],
                                                        preserve_index=False), "customer_id", "ts")
        expected = compute_views([RECENT], {"events": source}, Spine.of(keys, [t] * len(keys)))
        assert_same(stream, expected)
    assert stream["cancel_hours_1d"].max() >= 1 and stream["latest_event_1d"].notna().sum() > 20
    with pytest.raises(FeatureDefinitionError, match="a streamable custom view reads one input"):
        CustomView(name="recent", entity=ACTIVITY.entity, inputs=[Input(EVENTS)],
                   function=recent_pages, per="partition", streamable=True,
                   features=["cancel_hours_1d", "latest_event_1d"], owner="x@example.com")
