"""The stream processor (`tideline stream`): consumes a source's events from NATS JetStream,
keeps each entity's state and writes its streamable views' fresh values to the online store.

One loop, micro-batch by micro-batch (whatever the consumer has, up to `batch_size`):

1. decode the messages; a bad one is dead-lettered with its reason (`streaming.records`);
2. drop duplicates (an event id already applied) and dead-letter events older than the
   watermark (newest event time minus the allowed lateness);
3. apply the rest to the state and write the touched entities' values, as of just after the
   newest event time, to the online store;
4. only then acknowledge the batch (one ack-all for the last message).

Time is event time: the processor's "now" is its newest event, so a replay of last week's
events gives last week's values. Every `refresh_seconds` all entities are rewritten as of that
clock (windows slide for entities without new events), and every `checkpoint_seconds` the
state and the last applied stream sequence are committed to the lake (`streaming.checkpoint`).
A restart loads the checkpoint and re-reads the stream from the sequence after it, so the
state is the same as if the processor had never stopped: events after the checkpoint are
applied once (their effect was in no checkpoint), duplicates are recognised by id.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from features.definitions import FeatureView
from features.online.base import OnlineState, OnlineStore, arrow_types
from features.plan import plan_views
from lake.base import MAIN, Lake
from streaming.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from streaming.records import EventShape, decode
from streaming.state import StreamState
from tideline.errors import SourceError, SourceUnavailable

log = logging.getLogger(__name__)

DEAD_LETTER_STREAM = "TIDELINE_DEAD_LETTER"
DEAD_LETTER_SUBJECTS = "tideline.dead-letter.>"


@dataclass(frozen=True)
class StreamConfig:
    """Where the events come from and how the processor treats them."""

    name: str = "app-events"
    """The processor's name: its durable consumer, checkpoint branch and dead-letter subject."""
    url: str = "nats://127.0.0.1:4222"
    subject: str = "app-events"
    stream: str | None = None
    """The JetStream stream; None finds the one holding `subject`."""
    lateness_seconds: float = 3600.0
    max_future_seconds: float = 300.0
    batch_size: int = 5000
    max_wait_seconds: float = 0.05
    """How long a fetch waits for messages when none are ready."""
    checkpoint_seconds: float = 60.0
    refresh_seconds: float = 300.0
    connect_timeout_seconds: float = 10.0
    """How long to try reaching NATS at start (once running, it reconnects for ever)."""
    start: str = "new"
    """Where a processor without a checkpoint starts reading: `new` (messages published from
    now on), `all`, or a stream sequence."""

    @property
    def dead_letter_subject(self) -> str:
        return f"tideline.dead-letter.{self.name}"


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

    def value(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


@dataclass
class BatchOutcome:
    applied: int
    duplicates: int
    dead: list[tuple[int, str]]
    touched: int


class StreamProcessor:
    """One source's streamable views, kept fresh from one subject."""

    def __init__(self, config: StreamConfig, views: tuple[FeatureView, ...], shape: EventShape,
                 lake: Lake, online: OnlineStore, wall: Callable[[], float] = time.time,
                 on_batch: Callable[[list[Any]], None] | None = None) -> None:
        """`on_batch` is called with each batch's NATS messages once they are acknowledged
        (the benchmark measures end-to-end latency with it)."""
        self.config, self.views, self.shape = config, views, shape
        self.lake, self.online, self.wall, self.on_batch = lake, online, wall, on_batch
        self.state = StreamState(views, key=shape.key, timestamp=shape.timestamp,
                                 id_column=shape.id_column, schema=shape.schema,
                                 lateness_ns=int(config.lateness_seconds * 1e9))
        self.metrics = StreamMetrics()
        self.sequence = 0
        self.source_commit = ""
        self._checkpointed = self._refreshed = 0.0

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
            return "checkpoint"
        if found is not None:
            log.warning("stream %s: the checkpoint was made for other view versions (%s); "
                        "rebuilding the state from the lake", self.config.name, found[2].versions)
        from features.offline import read_source

        self.source_commit = self.lake.resolve(MAIN)
        view = self.views[0]
        history = read_source(self.lake, self.source_commit, view.source, view.entity.key,
                              self.shape.schema.names)
        self.state.apply(history.select(self.shape.schema.names).cast(self.shape.schema))
        self.state.evict()
        log.info("stream %s: state built from %d events of %r at %s", self.config.name,
                 len(history), view.source.dataset, self.source_commit[:12])
        return "lake"

    # -- one batch -----------------------------------------------------------------------------

    def process(self, payloads: list[bytes]) -> BatchOutcome:
        """Decode, deduplicate, apply and write one batch (no I/O but the online store)."""
        decoded = decode(payloads, self.shape, int(self.wall() * 1e9))
        fresh, repeated, late = self.state.admit(decoded.events)
        dead = decoded.rejected + [(int(decoded.positions[row]), why) for row, why in late]
        touched = self.state.apply(decoded.events.take(pa.array(fresh)))
        if len(touched):
            self.publish(touched, replace_all=False)
        m = self.metrics
        m.events.labels("applied").inc(len(fresh))
        m.events.labels("duplicate").inc(len(repeated))
        m.events.labels("dead_letter").inc(len(dead))
        for _, why in dead:
            m.dead_letters.labels(why.split(":")[0].split(" ")[0]).inc()
        m.clock.set(self.state.clock / 1e9)
        m.watermark.set(self.state.watermark / 1e9)
        return BatchOutcome(applied=len(fresh), duplicates=len(repeated), dead=sorted(dead),
                            touched=len(touched))

    def publish(self, keys: np.ndarray, replace_all: bool) -> None:
        """Write every view's values for `keys` as of just after the newest event."""
        t = self.state.clock + 1
        as_of = pd.Timestamp(t, tz="UTC").date()
        for view, frame in zip(self.views, self.state.values(keys, t).values(), strict=True):
            frame.insert(0, view.entity.key, keys)
            table = pa.Table.from_pandas(frame, preserve_index=False)
            state = OnlineState(view=view.name, version=view.version, as_of=as_of,
                                key=view.entity.key, columns=tuple(view.feature_names),
                                types=arrow_types(table.schema, view.feature_names),
                                ttl_days=view.ttl_days, source_commit=self.source_commit,
                                written_at=datetime.now(UTC))
            self.online.write(state, table, [], replace=replace_all)

    def refresh(self) -> int:
        """Rewrite every entity (windows slide for those without new events)."""
        keys = self.state.entities()
        if len(keys):
            self.publish(keys, replace_all=False)
        self._refreshed = self.wall()
        return len(keys)

    def checkpoint(self) -> str:
        self.state.evict()
        buffer, running = self.state.snapshot()
        commit = save_checkpoint(self.lake, self.config.name, buffer, running, CheckpointMeta(
            sequence=self.sequence, clock=self.state.clock,
            versions={v.name: v.version for v in self.views}, source_commit=self.source_commit))
        self._checkpointed = self.wall()
        log.info("stream %s: checkpoint at sequence %d (%s)", self.config.name, self.sequence,
                 commit[:12])
        return commit

    # -- the loop ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None, idle_exit: bool = False) -> None:
        """Consume until `stop` is set (or, with `idle_exit`, until a fetch finds nothing);
        a clean stop rewrites every entity and writes a last checkpoint."""
        import nats

        stop = stop or asyncio.Event()
        try:
            nc = await asyncio.wait_for(nats.connect(
                servers=[self.config.url], connect_timeout=self.config.connect_timeout_seconds,
                max_reconnect_attempts=-1, reconnect_time_wait=0.5),
                timeout=self.config.connect_timeout_seconds)
        except Exception as exc:  # nats raises several unrelated types for one cause
            raise SourceUnavailable(self.config.name, f"cannot connect to NATS at "
                                    f"{self.config.url}: {type(exc).__name__}: {exc}") from exc
        try:
            js = nc.jetstream()
            self.publish(self.state.entities(), replace_all=True)
            sub = await self._subscribe(js)
            self._refreshed = self._checkpointed = self.wall()
            while not stop.is_set():
                try:
                    messages = await sub.fetch(self.config.batch_size,
                                               timeout=self.config.max_wait_seconds)
                except TimeoutError:  # nats.errors.TimeoutError and asyncio's alike
                    if idle_exit:
                        break
                    messages = []
                if messages:
                    await self._handle(js, messages)
                now = self.wall()
                if now - self._refreshed >= self.config.refresh_seconds:
                    self.refresh()
                if now - self._checkpointed >= self.config.checkpoint_seconds:
                    self.checkpoint()
            self.refresh()  # every entity as of the last event, then the state to resume from
            self.checkpoint()
        finally:
            await nc.close()

    async def _handle(self, js: Any, messages: list[Any]) -> None:
        started = time.perf_counter()
        outcome = self.process([m.data for m in messages])
        for index, why in outcome.dead:
            message = messages[index]
            await js.publish(self.config.dead_letter_subject, message.data, headers={
                "Tideline-Reason": why[:1000], "Tideline-Source-Subject": message.subject,
                "Tideline-Source-Sequence": str(message.metadata.sequence.stream)})
        last = messages[-1].metadata
        self.sequence = last.sequence.stream
        await messages[-1].ack()  # ack-all: every message of the batch, now written
        self.metrics.sequence.set(self.sequence)
        self.metrics.pending.set(last.num_pending)
        self.metrics.batch.observe(time.perf_counter() - started)
        if self.on_batch is not None:
            self.on_batch(messages)

    async def _subscribe(self, js: Any) -> Any:
        """A fresh durable consumer from the sequence after the state's; the dead-letter
        stream created if missing."""
        from nats.js import api
        from nats.js.errors import NotFoundError

        try:
            stream = self.config.stream or await js.find_stream_name_by_subject(
                self.config.subject)
        except NotFoundError as exc:
            raise SourceError(self.config.name, f"no JetStream stream holds subject "
                              f"{self.config.subject!r} at {self.config.url}; create it "
                              "first") from exc
        try:
            await js.find_stream_name_by_subject(self.config.dead_letter_subject)
        except NotFoundError:
            await js.add_stream(name=DEAD_LETTER_STREAM, subjects=[DEAD_LETTER_SUBJECTS])
        if not self.sequence:
            self.sequence = await self._start_sequence(js, stream)
            self.checkpoint()  # a restart must not depend on `start` again
        durable = f"tideline-stream-{self.config.name}"
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(stream, durable)
        await js.add_consumer(stream, api.ConsumerConfig(
            durable_name=durable, ack_policy=api.AckPolicy.ALL,
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self.sequence + 1,
            filter_subject=self.config.subject, ack_wait=60.0, max_ack_pending=-1))
        log.info("stream %s: reading %s (%s) from sequence %d", self.config.name,
                 self.config.subject, stream, self.sequence + 1)
        return await js.pull_subscribe_bind(durable=durable, stream=stream)

    async def _start_sequence(self, js: Any, stream: str) -> int:
        """The sequence before the first message to read, for a processor without a
        checkpoint."""
        if self.config.start == "all":
            return 0
        if self.config.start == "new":
            return (await js.stream_info(stream)).state.last_seq
        try:
            return max(int(self.config.start) - 1, 0)
        except ValueError:
            raise SourceError(self.config.name, f"start must be 'new', 'all' or a stream "
                              f"sequence, got {self.config.start!r}") from None

    def status(self) -> str:
        """One line for a live log: counts, sequence, watermark."""
        counts = {outcome: self.metrics.value("tideline_stream_events_total", outcome=outcome)
                  for outcome in ("applied", "duplicate", "dead_letter")}
        watermark = pd.Timestamp(self.state.watermark, tz="UTC").strftime("%Y-%m-%d %H:%M:%S")
        return (f"applied {counts['applied']:,.0f}  duplicates {counts['duplicate']:,.0f}  "
                f"dead letters {counts['dead_letter']:,.0f}  sequence {self.sequence:,}  "
                f"watermark {watermark}")

    def serve_metrics(self, port: int) -> None:
        start_http_server(port, registry=self.metrics.registry)


def open_processor(settings: Any, config: StreamConfig, source: str = "events",
                   id_column: str = "event_id") -> StreamProcessor:
    """A processor for `source`'s streamable views in the settings' definitions, its event
    shape from the lake's table and the dataset's contract."""
    from features.definitions import load_definitions
    from features.offline import source_schema
    from features.online import open_online_store
    from lake.open import open_lake
    from streaming.state import event_schema, streamable_views
    from tideline.errors import FeatureDefinitionError

    views = streamable_views(load_definitions(settings.feature_views), source)
    if not views:
        raise FeatureDefinitionError(f"no streamable feature view reads source {source!r} in "
                                     f"{settings.feature_views}; mark one `streamable=True`")
    lake = open_lake(settings)
    first = views[0]
    schema = event_schema(views, source_schema(lake, MAIN, first.source, first.name), id_column)
    plan_views(views, {first.source.name: schema})
    shape = EventShape(schema=schema, key=first.entity.key, timestamp=first.source.timestamp,
                       id_column=id_column, contract=_contract(settings, first.source.dataset),
                       max_future_ns=int(config.max_future_seconds * 1e9))
    return StreamProcessor(config, views, shape, lake, open_online_store(settings))


def _contract(settings: Any, dataset: str) -> Any:
    """The dataset's contract in the settings' project (the bundled demo's when none)."""
    from deployments.demo import PROJECT_FILE
    from ingestion.project import load_project

    project = load_project(settings.project_file or PROJECT_FILE, demo_dir=".",
                           demo_api="http://127.0.0.1",
                           validation_time=datetime.now(UTC).isoformat())
    try:
        return project.contract(dataset)
    except StopIteration:
        return None
