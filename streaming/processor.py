"""The stream processor (`tideline stream`): consumes a source's events from NATS JetStream
(or the embedded event log, `tideline.streaming.brokers`), keeps each entity's state and writes its
streamable views' fresh values to the online store.

One loop, micro-batch by micro-batch (whatever the consumer has, up to `batch_size`):

1. decode the messages; a bad one is dead-lettered with its reason (`tideline.streaming.records`);
2. drop duplicates (an event id already applied) and dead-letter events older than the
   watermark (newest event time minus the allowed lateness);
3. apply the rest to the state and write the touched entities' values, as of just after the
   newest event time, to the online store;
4. with `score_on`, score the customers whose new events are of those types with the
   champion (features read back from the online store, as `POST /predict` does) and publish
   the high-risk ones to `tideline.alerts.<model>`;
5. only then acknowledge the batch (one ack-all for the last message).

Erased customers (`tideline forget`) stay out: the processor reads main's erasure list when it
starts and whenever main has moved (every `erasure_check_seconds`), drops their entities from
its state, and drops their new events uncounted but for the `erased` outcome (never
dead-lettered: a dead letter would keep their data).

Time is event time: the processor's "now" is its newest event, so a replay of last week's
events gives last week's values. Every `refresh_seconds` all entities are rewritten as of that
clock (windows slide for entities without new events): those whose turn has come are written
with each batch, or a chunk at a time while the stream is idle; and
every `checkpoint_seconds` the state and the last applied stream sequence are committed to the
lake (`tideline.streaming.checkpoint`) from a worker thread.
A restart loads the checkpoint and re-reads the stream from the sequence after it, so the
state is the same as if the processor had never stopped: events after the checkpoint are
applied once (their effect was in no checkpoint), duplicates are recognised by id.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from tideline.core.errors import FeatureDefinitionError
from tideline.features.definitions import View, load_definitions
from tideline.features.offline import read_source, source_schema
from tideline.features.online import open_online_store
from tideline.features.online.base import STREAM_PREFIX, OnlineState, OnlineStore, arrow_types
from tideline.features.store import FeatureStore
from tideline.ingestion.connectors.stream import run_sync
from tideline.ingestion.contracts import Contract
from tideline.ingestion.project import Project
from tideline.lake.base import MAIN, Lake
from tideline.lake.erasure import erased_mask, erasure_list
from tideline.lake.open import open_lake
from tideline.models.registry import open_model_registry
from tideline.models.scoring import OnlineScorer
from tideline.models.spec import load_model_spec
from tideline.streaming.brokers import Broker, Message, open_broker
from tideline.streaming.checkpoint import (
    CheckpointMeta,
    drop_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from tideline.streaming.records import EventShape, decode
from tideline.streaming.state import Compaction, StreamState, event_schema, streamable_views

log = logging.getLogger(__name__)

REFRESH_CHUNK = 2000
"""Entities rewritten at a time by a refresh."""


@dataclass(frozen=True)
class StreamConfig:
    """Where the events come from and how the processor treats them."""

    name: str = "app-events"
    """The processor's name: its durable consumer, checkpoint branch and dead-letter subject."""
    url: str = "nats://127.0.0.1:4222"
    """NATS (`nats://host:4222`), or a directory holding the embedded event log."""
    subject: str = "app-events"
    stream: str | None = None
    """The JetStream stream; None finds the one holding `subject`."""
    lateness_seconds: float = 3600.0
    max_future_seconds: float = 300.0
    batch_size: int = 5000
    max_wait_seconds: float = 0.05
    """How long to wait for messages when none are ready."""
    checkpoint_seconds: float = 60.0
    refresh_seconds: float = 300.0
    erasure_check_seconds: float = 30.0
    """How often main is checked for a new erasure list (`tideline forget`)."""
    connect_timeout_seconds: float = 10.0
    """How long to try reaching NATS at start (once running, it reconnects for ever)."""
    start: str = "new"
    """Where a processor without a checkpoint starts reading: `new` (messages published from
    now on), `all`, or a stream sequence."""
    score_on: tuple[str, ...] = ()
    """Event types (values of `score_column`) after which the customer is scored with the
    champion at once; a high-risk score is published to `tideline.alerts.<model>`."""
    score_column: str = "event_type"


@dataclass
class StreamMetrics:
    """Prometheus metrics of one processor (its own registry: several may share a process)."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.events = Counter("tideline_stream_events", "Messages by outcome", ["outcome"],
                              registry=r)
        self.dead_letters = Counter("tideline_stream_dead_letters", "Dead-lettered messages "
                                    "by kind of reason", ["reason"], registry=r)
        self.watermark = Gauge("tideline_stream_watermark_seconds", "Event-time watermark "
                               "(Unix seconds)", registry=r)
        self.clock = Gauge("tideline_stream_clock_seconds", "Newest event time applied "
                           "(Unix seconds)", registry=r)
        self.sequence = Gauge("tideline_stream_sequence", "Last stream sequence applied",
                              registry=r)
        self.pending = Gauge("tideline_stream_pending", "Messages in the stream not yet "
                             "delivered to the processor", registry=r)
        self.batch = Histogram("tideline_stream_batch_seconds", "Time to process a batch, "
                               "from fetch to ack", registry=r)
        self.alerts = Counter("tideline_stream_alerts", "High-risk alerts published",
                              registry=r)

    def value(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


@dataclass
class BatchOutcome:
    applied: int
    duplicates: int
    dead: list[tuple[int, str]]
    touched: int
    alerts: list[dict[str, Any]] = field(default_factory=list)
    """High-risk scores of customers whose new events asked for scoring."""
    erased: int = 0
    """Events of erased customers, dropped."""


class StreamProcessor:
    """One source's streamable views, kept fresh from one subject."""

    def __init__(self, config: StreamConfig, views: tuple[View, ...], shape: EventShape,
                 lake: Lake, online: OnlineStore, wall: Callable[[], float] = time.time,
                 on_batch: Callable[[list[Any]], None] | None = None,
                 scorer: OnlineScorer | None = None) -> None:
        """`on_batch` is called with each batch's NATS messages once they are acknowledged
        (the benchmark measures end-to-end latency with it); `scorer` scores the customers
        `config.score_on` names."""
        self.config, self.views, self.shape = config, views, shape
        self.lake, self.online, self.wall, self.on_batch = lake, online, wall, on_batch
        self.scorer = scorer
        self.state = StreamState(views, key=shape.key, timestamp=shape.timestamp,
                                 id_column=shape.id_column, schema=shape.schema,
                                 lateness_ns=int(config.lateness_seconds * 1e9))
        self.metrics = StreamMetrics()
        self.sequence = 0
        self.source_commit = ""
        self._checkpointed = 0.0
        self.erased: dict[str, frozenset[str]] = {}
        """Main's erasure list as last read, and the commit it was read at."""
        self._erasure_at, self._erasure_checked = "", 0.0
        self.recent: deque[tuple[str, Any]] = deque(maxlen=200)
        """The latest dead letters ("dead", reason) and alerts ("alert", body)."""
        self._cycle = (0.0, 0, 0)
        """When the current refresh cycle started, how many entities it has rewritten and how
        many there were at its start."""

    # -- start ---------------------------------------------------------------------------------

    def load(self) -> str:
        """Restore the last checkpoint, or build the state from the lake's events at main.
        Returns which it did."""
        found = load_checkpoint(self.lake, self.config.name)
        versions = {v.name: v.version for v in self.views}
        if found is not None and found[2].versions == versions:
            buffer, running, meta = found
            self.state.restore(buffer, running, meta.clock)
            self.sequence, self.source_commit = meta.sequence, meta.source_commit
            log.info("stream %s: resumed from the checkpoint at sequence %d", self.config.name,
                     meta.sequence)
            self.forget_erased()  # erased since the checkpoint
            return "checkpoint"
        if found is not None:
            log.warning("stream %s: the checkpoint was made for other view versions (%s); "
                        "rebuilding the state from the lake", self.config.name, found[2].versions)
        self.source_commit = self.lake.resolve(MAIN)
        view = self.views[0]
        history = read_source(self.lake, self.source_commit, view.sources[0], view.entity.key,
                              self.shape.schema.names)
        self.state.apply(history.select(self.shape.schema.names).cast(self.shape.schema))
        self.state.evict()
        log.info("stream %s: state built from %d events of %r at %s", self.config.name,
                 len(history), view.sources[0].dataset, self.source_commit[:12])
        self.forget_erased()
        return "lake"

    def forget_erased(self) -> int:
        """Read main's erasure list if main has moved since it was last read, and drop the
        erased entities from the state; returns how many went."""
        self._erasure_checked = self.wall()
        head = self.lake.resolve(MAIN)
        if head == self._erasure_at:
            return 0
        self.erased, self._erasure_at = erasure_list(self.lake, head), head
        gone = self.state.forget(self.erased)
        if gone:
            log.info("stream %s: %d erased entities dropped from the state", self.config.name,
                     gone)
        return gone

    # -- one batch -----------------------------------------------------------------------------

    def process(self, payloads: list[bytes]) -> BatchOutcome:
        """Decode, deduplicate, apply and write one batch, with the entities whose periodic
        rewrite is due (no I/O but the online store)."""
        decoded = decode(payloads, self.shape, int(self.wall() * 1e9))
        events, positions = decoded.events, decoded.positions
        erased = erased_mask(events, self.erased) if self.erased else None
        if erased is not None:
            events, positions = events.filter(pa.array(~erased)), positions[~erased]
        fresh, repeated, late = self.state.admit(events)
        dead = decoded.rejected + [(int(positions[row]), why) for row, why in late]
        applied = events if len(fresh) == len(events) else (
            events.take(pa.array(fresh)))  # (fresh rows are in order)
        touched = self.state.apply(applied)
        due = self._due(least=1)  # riding along with a batch, a rewrite costs next to nothing
        if len(touched) or len(due):
            self.publish(np.union1d(touched, due), replace_all=False)
        alerts = self.alerts(applied) if self.scorer is not None else []
        m = self.metrics
        m.events.labels("applied").inc(len(fresh))
        m.events.labels("duplicate").inc(len(repeated))
        m.events.labels("dead_letter").inc(len(dead))
        m.events.labels("erased").inc(0 if erased is None else int(erased.sum()))
        for _, why in dead:
            m.dead_letters.labels(why.split(":")[0].split(" ")[0]).inc()
        m.clock.set(self.state.clock / 1e9)
        m.watermark.set(self.state.watermark / 1e9)
        return BatchOutcome(applied=len(fresh), duplicates=len(repeated), dead=sorted(dead),
                            touched=len(touched), alerts=alerts,
                            erased=0 if erased is None else int(erased.sum()))

    def alerts(self, applied: pa.Table) -> list[dict[str, Any]]:
        """Score the customers with a triggering event among `applied` (from the values just
        written) and return the high-risk ones as alerts."""
        column = self.config.score_column
        triggered = applied.filter(pc.is_in(applied.column(column),
                                            value_set=pa.array(self.config.score_on)))
        if not len(triggered) or self.scorer is None:
            return []
        model = self.scorer.champion()
        if model is None:
            log.warning("stream %s: model %r has no champion; nobody scored",
                        self.config.name, self.scorer.model)
            return []
        keys = pd.unique(triggered.column(self.shape.key).to_numpy(zero_copy_only=False))
        online, scores = self.scorer.score(model, list(keys))
        causes = triggered.group_by(self.shape.key).aggregate([(column, "distinct")])
        cause = dict(zip(causes.column(self.shape.key).to_pylist(),
                         causes.column(f"{column}_distinct").to_pylist(), strict=True))
        event_time = pd.Timestamp(self.state.clock, tz="UTC").isoformat()
        high = scores[(scores["risk"] == "high").to_numpy() & np.asarray(online.found)]
        self.metrics.alerts.inc(len(high))
        return [{"model": model.record.ref, self.shape.key: key, "entity": key,
                 "probability": float(p),
                 "risk": "high", "reasons": reasons.split("; ") if reasons else [],
                 "trigger": sorted(cause[key]), "event_time": event_time}
                for key, p, reasons in zip(high[self.shape.key], high["probability"],
                                           high["reasons"], strict=True)]

    def publish(self, codes: np.ndarray, replace_all: bool) -> None:
        """Write every view's values for the entities with `codes` (the state's) as of just
        after the newest event."""
        t = self.state.clock + 1
        as_of = pd.Timestamp(t, tz="UTC").date()
        keys = self.state.keys_of(codes)
        named = pa.array(keys, pa.string())
        for view, columns in zip(self.views, self.state.features(keys, codes, t).values(),
                                 strict=True):
            table = pa.table({view.entity.key: named, **{
                name: pa.array(values, from_pandas=True) for name, values in columns.items()}})
            state = OnlineState(view=view.name, version=view.version, as_of=as_of,
                                key=view.entity.key, columns=tuple(view.feature_names),
                                types=arrow_types(table.schema, view.feature_names),
                                ttl_days=view.ttl_days,
                                source_commit=f"{STREAM_PREFIX}{self.config.name}@"
                                              f"{self.source_commit}",
                                written_at=datetime.now(UTC))
            self.online.write(state, table, [], replace=replace_all)

    def refresh(self) -> int:
        """Rewrite every entity (windows slide for those without new events)."""
        size = self.state.size
        for start in range(0, size, REFRESH_CHUNK):
            self.publish(np.arange(start, min(start + REFRESH_CHUNK, size)), replace_all=False)
        self._cycle = self._new_cycle()
        return size

    def refresh_step(self) -> int:
        """While the stream is idle, rewrite the entities whose turn has come once a chunk of
        them is due (a write on its own costs as much for a few); returns how many."""
        codes = self._due(least=REFRESH_CHUNK)
        if len(codes):
            self.publish(codes, replace_all=False)
        return len(codes)

    def _due(self, least: int) -> np.ndarray:
        """The codes of the entities whose rewrite is due, so that every one is rewritten once
        per `refresh_seconds` (at most a chunk at a time; none unless `least` are due or the
        cycle ends with them); the cycle moves past them."""
        started, done, known = self._cycle
        due = int(known * min(1.0, (self.wall() - started) / self.config.refresh_seconds))
        count = min(due - done, REFRESH_CHUNK)
        if count < min(least, known - done):
            count = 0
        self._cycle = (self._new_cycle() if done + count >= known
                       else (started, done + count, known))
        return np.arange(done, done + count)

    def _new_cycle(self) -> tuple[float, int, int]:
        return self.wall(), 0, self.state.size

    def checkpoint(self) -> str:
        """Commit the state now (compacting it first)."""
        self.state.evict()
        return self._save(self._checkpoint_job())

    def _checkpoint_job(self) -> tuple[pa.Table, pa.Table, CheckpointMeta]:
        """What a checkpoint writes, fixed now; the writing may happen on another thread."""
        buffer, running = self.state.snapshot()
        self._checkpointed = self.wall()
        return buffer, running, CheckpointMeta(
            sequence=self.sequence, clock=self.state.clock,
            versions={v.name: v.version for v in self.views}, source_commit=self.source_commit)

    def _save(self, job: tuple[pa.Table, pa.Table, CheckpointMeta]) -> str:
        commit = save_checkpoint(self.lake, self.config.name, *job)
        log.info("stream %s: checkpoint at sequence %d (%s)", self.config.name,
                 job[2].sequence, commit[:12])
        return commit

    # -- the loop ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None, idle_exit: bool = False) -> None:
        """Consume until `stop` is set (or, with `idle_exit`, until nothing comes within
        `max_wait_seconds`); a clean stop rewrites every entity and writes a last checkpoint.

        Between batches the loop starts compactions and checkpoints on worker threads (they
        work on immutable snapshots and release the GIL in Arrow and numpy), so neither holds
        up the stream; when nothing comes, it rewrites the entities whose turn has come."""
        stop = stop or asyncio.Event()
        broker = open_broker(self.config.url, self.config.subject, self.config.name,
                             self.config.stream, in_flight=2 * self.config.batch_size,
                             connect_timeout=self.config.connect_timeout_seconds)
        await broker.connect()
        compacting: tuple[Compaction, asyncio.Task] | None = None
        saving: asyncio.Task | None = None
        try:
            self.publish(np.arange(self.state.size), replace_all=True)
            if not self.sequence:
                self.sequence = await broker.start_sequence(self.config.start)
                self.checkpoint()  # a restart must not depend on `start` again
            await broker.open(self.sequence + 1)
            log.info("stream %s: reading %s from sequence %d", self.config.name,
                     self.config.subject, self.sequence + 1)
            self._cycle, self._checkpointed = self._new_cycle(), self.wall()
            while not stop.is_set():
                messages = await broker.take(self.config.batch_size,
                                             self.config.max_wait_seconds)
                if messages:
                    await self._handle(broker, messages)  # with the rewrites now due
                elif idle_exit:
                    break
                else:
                    self.refresh_step()
                if compacting is not None and compacting[1].done():
                    self.state.install(compacting[0], compacting[1].result())
                    compacting = None
                if compacting is None and (self.wall() - self._erasure_checked
                                           >= self.config.erasure_check_seconds):
                    self.forget_erased()
                if compacting is None and self.state.needs_compaction:
                    job = self.state.compaction()
                    compacting = (job, asyncio.create_task(asyncio.to_thread(job.run)))
                if saving is not None and saving.done():
                    saving.result()  # a failed checkpoint fails the processor
                    saving = None
                if saving is None and (self.wall() - self._checkpointed
                                       >= self.config.checkpoint_seconds):
                    saving = asyncio.create_task(asyncio.to_thread(
                        self._save, self._checkpoint_job()))
            for task in (t for t in (compacting and compacting[1], saving) if t is not None):
                await task
            self.refresh()  # every entity as of the last event, then the state to resume from
            self.checkpoint()
        finally:
            await broker.close()

    async def _handle(self, broker: Broker, messages: list[Message]) -> None:
        started = time.perf_counter()
        outcome = self.process([m.data for m in messages])
        for index, why in outcome.dead:
            await broker.dead_letter(messages[index], why)
            self.recent.append(("dead", why))
        for alert in outcome.alerts:
            await broker.alert(self.scorer.model, alert)  # type: ignore[union-attr]
            self.recent.append(("alert", alert))
        last = messages[-1]
        await broker.acknowledge(last)  # every message of the batch, now written
        self.sequence = last.sequence
        self.metrics.sequence.set(self.sequence)
        self.metrics.pending.set(last.pending)
        self.metrics.batch.observe(time.perf_counter() - started)
        if self.on_batch is not None:
            self.on_batch(messages)

    def status(self) -> str:
        """One line for a live log: counts, sequence, watermark."""
        counts = {outcome: self.metrics.value("tideline_stream_events_total", outcome=outcome)
                  for outcome in ("applied", "duplicate", "dead_letter", "erased")}
        watermark = pd.Timestamp(self.state.watermark, tz="UTC").strftime("%Y-%m-%d %H:%M:%S")
        erased = f"  erased {counts['erased']:,.0f}" if counts["erased"] else ""
        return (f"applied {counts['applied']:,.0f}  duplicates {counts['duplicate']:,.0f}  "
                f"dead letters {counts['dead_letter']:,.0f}{erased}  sequence "
                f"{self.sequence:,}  watermark {watermark}")

    def serve_metrics(self, port: int) -> None:
        start_http_server(port, registry=self.metrics.registry)


@dataclass(frozen=True)
class StreamRun:
    """What one run of a processor did (`replay`)."""

    name: str
    applied: int
    duplicates: int
    dead_letters: list[str]
    alerts: list[dict[str, Any]]
    sequence: int
    clock: str
    """The newest event time applied (ISO 8601, UTC)."""
    entities: int


def replay(settings: Any, config: StreamConfig, source: str = "events",
           fresh: bool = False, project: Project | None = None) -> StreamRun:
    """Run a processor until its stream has nothing more (`fresh`: from a state built anew
    from the lake, its checkpoints dropped), and say what it did."""
    processor = open_processor(settings, config, source, project=project)
    if fresh:
        drop_checkpoints(processor.lake, config.name)
    processor.load()
    run_sync(lambda: processor.run(idle_exit=True))
    count = processor.metrics.value
    return StreamRun(
        name=config.name, applied=int(count("tideline_stream_events_total", outcome="applied")),
        duplicates=int(count("tideline_stream_events_total", outcome="duplicate")),
        dead_letters=[why for kind, why in processor.recent if kind == "dead"],
        alerts=[body for kind, body in processor.recent if kind == "alert"],
        sequence=processor.sequence, entities=processor.state.size,
        clock=pd.Timestamp(processor.state.clock, tz="UTC").isoformat())


def open_processor(settings: Any, config: StreamConfig, source: str = "events",
                   id_column: str = "event_id", project: Project | None = None
                   ) -> StreamProcessor:
    """A processor for `source`'s streamable views in the settings' definitions, its event
    shape from the lake's table and the dataset's contract in `project` (none: no contract)."""
    views = streamable_views(load_definitions(settings.declared("features")), source)
    if not views:
        raise FeatureDefinitionError(f"no streamable feature view reads source {source!r} in "
                                     f"{settings.declared('features')}; mark one `streamable=True`")
    lake = open_lake(settings)
    first = views[0]
    source = first.sources[0]
    schema = event_schema(views, source_schema(lake, MAIN, source, first.name), id_column)
    shape = EventShape(schema=schema, key=first.entity.key, timestamp=source.timestamp,
                       id_column=id_column, contract=_contract(project, source.dataset),
                       max_future_ns=int(config.max_future_seconds * 1e9))
    scorer = None
    if config.score_on:
        scorer = OnlineScorer(FeatureStore.open(settings), open_model_registry(settings),
                              load_model_spec(settings.declared("model")).name)
    return StreamProcessor(config, views, shape, lake, open_online_store(settings),
                           scorer=scorer)


def _contract(project: Project | None, dataset: str) -> Contract | None:
    """The dataset's contract in the project, if it declares one."""
    try:
        return project.contract(dataset) if project is not None else None
    except StopIteration:
        return None
