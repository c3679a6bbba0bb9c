"""Where the stream processor's events come from and its dead letters and alerts go: NATS
JetStream (`nats://…`, production) or the embedded event log (a directory, the default stream
transport of ingestion: `<dir>/<subject>/*.jsonl`, lines `{"seq": n, "data": {...}}`).

NATS: nats-py's pull `fetch` waits for every message with its own timeout, which costs about
as much as processing an event (it tops out near 10-20k messages/s here). `NatsBroker` instead
creates a durable *push* consumer whose deliveries land in one core subscription's callback,
which only appends them to a deque: several times the throughput (benchmarks/stream_bench.py).
Back-pressure comes from the consumer's `max_ack_pending`: the server stops delivering while
that many messages are unacknowledged, and the processor acknowledges (ack-all, one message per
batch) only after the online-store write. Dead letters go to the JetStream stream
`TIDELINE_DEAD_LETTER` (`tideline.dead-letter.<name>`, the reason in a header), alerts to
`TIDELINE_ALERTS` (`tideline.alerts.<model>`); both are created when missing.
The client reconnects for ever. A server that restarted may have lost the acknowledgements
sent while it was away (its consumer then holds `max_ack_pending` messages unacknowledged and
delivers nothing for `ack_wait`, 5 minutes) and deliveries that were on the wire (a later
ack-all would acknowledge them unread): after every reconnect the next `take` starts a fresh
consumer right after the last acknowledged message, so nothing is lost and nothing waits.

Event log: read from a given sequence, tailing the files as they grow; dead letters and alerts
are appended as JSON lines under `<dir>/tideline.dead-letter.<name>/` and
`<dir>/tideline.alerts.<model>/`. Nothing to acknowledge: the checkpoint is the position. A line
without a sequence of its own (not JSON) carries the one before it, so after a crash it may be
dead-lettered twice.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import orjson
from tideline.core.errors import SourceError, SourceUnavailable
from tideline.ingestion.connectors.stream import parse_entry, redact

log = logging.getLogger(__name__)

DEAD_LETTER_STREAM = "TIDELINE_DEAD_LETTER"
ALERT_STREAM = "TIDELINE_ALERTS"
REOPEN_ATTEMPTS = 8
"""Tries at a fresh consumer after a reconnect (JetStream may still be starting), 0.25 s
apart and doubling (about 30 s of waiting), then the processor stops with `SourceUnavailable`
and a restart of it resumes from its checkpoint."""


class Message(Protocol):
    @property
    def data(self) -> bytes: ...
    @property
    def sequence(self) -> int: ...
    @property
    def pending(self) -> int:
        """Messages still waiting after this one."""
        ...
    @property
    def stored_at(self) -> float:
        """When the broker stored it (Unix seconds)."""
        ...


class Broker(Protocol):
    async def connect(self) -> None: ...
    async def start_sequence(self, start: str) -> int:
        """The sequence before the first message to read: 0 for `all`, the newest for
        `new`, or one before a given sequence."""
        ...
    async def open(self, start_sequence: int) -> None: ...
    async def take(self, most: int, wait: float) -> list[Message]:
        """Up to `most` messages in order; waits up to `wait` seconds for the first (an
        empty list when none came)."""
        ...
    async def acknowledge(self, last: Message) -> None:
        """`last` and every message before it are done with."""
        ...
    async def dead_letter(self, message: Message, reason: str) -> None: ...
    async def alert(self, model: str, body: dict[str, Any]) -> None: ...
    async def close(self) -> None: ...


def open_broker(url: str, subject: str, name: str, stream: str | None = None,
                in_flight: int = 10_000, connect_timeout: float = 10.0) -> Broker:
    """NATS for `nats://` and `tls://` URLs, else the event log in that directory."""
    if url.startswith(("nats://", "tls://")):
        return NatsBroker(url, subject, name, stream, in_flight, connect_timeout)
    return EventLogBroker(Path(url.removeprefix("file://")), subject, name)


def _start(start: str, newest: int, name: str) -> int:
    if start == "all":
        return 0
    if start == "new":
        return newest
    try:
        return max(int(start) - 1, 0)
    except ValueError:
        raise SourceError(name, f"start must be 'new', 'all' or a stream sequence, got "
                                f"{start!r}") from None


# -- NATS JetStream ---------------------------------------------------------------------------


class NatsMessage:
    """A delivered JetStream message; its metadata is parsed only when asked for."""

    __slots__ = ("msg",)

    def __init__(self, msg: Any) -> None:
        self.msg = msg

    @property
    def data(self) -> bytes:
        return self.msg.data

    @property
    def sequence(self) -> int:
        return self.msg.metadata.sequence.stream

    @property
    def pending(self) -> int:
        return self.msg.metadata.num_pending

    @property
    def stored_at(self) -> float:
        return self.msg.metadata.timestamp.timestamp()


class NatsBroker:
    def __init__(self, url: str, subject: str, name: str, stream: str | None,
                 in_flight: int, connect_timeout: float) -> None:
        self.url, self.subject, self.name, self.stream = url, subject, name, stream
        self.in_flight, self.connect_timeout = in_flight, connect_timeout
        self.durable = f"tideline-stream-{name}"
        self._queue: deque[Any] = deque()
        self._arrived = asyncio.Event()
        self._nc: Any = None
        self._sub: Any = None
        self._acked = 0
        """The stream sequence of the last message acknowledged (or before the first read)."""
        self._reconnected = False

    async def connect(self) -> None:
        import nats
        from nats.js.errors import NotFoundError

        try:
            self._nc = await asyncio.wait_for(nats.connect(
                servers=[self.url], connect_timeout=self.connect_timeout,
                max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                error_cb=self._error, disconnected_cb=self._disconnected,
                reconnected_cb=self._on_reconnect),
                timeout=self.connect_timeout)
        except Exception as exc:  # nats raises several unrelated types for one cause
            raise SourceUnavailable(self.name, f"cannot connect to NATS at {redact(self.url)}: "
                                    f"{type(exc).__name__}: {exc}") from exc
        js = self._nc.jetstream()
        try:
            self.stream = self.stream or await js.find_stream_name_by_subject(self.subject)
        except NotFoundError as exc:
            raise SourceError(self.name, f"no JetStream stream holds subject {self.subject!r} "
                              f"at {redact(self.url)}; create it first") from exc
        for stream, subjects in ((DEAD_LETTER_STREAM, "tideline.dead-letter.>"),
                                 (ALERT_STREAM, "tideline.alerts.>")):
            try:
                await js.find_stream_name_by_subject(subjects.replace(">", "any"))
            except NotFoundError:
                await js.add_stream(name=stream, subjects=[subjects])

    async def _error(self, exc: Exception) -> None:
        log.warning("stream %s: NATS at %s: %s: %s", self.name, redact(self.url),
                    type(exc).__name__, exc)

    async def _disconnected(self) -> None:
        log.warning("stream %s: disconnected from NATS at %s; reconnecting", self.name,
                    redact(self.url))

    async def _on_reconnect(self) -> None:
        log.warning("stream %s: reconnected to NATS at %s", self.name, redact(self.url))
        self._reconnected = True
        self._arrived.set()

    async def start_sequence(self, start: str) -> int:
        newest = (await self._nc.jetstream().stream_info(self.stream)).state.last_seq
        return _start(start, newest, self.name)

    async def open(self, start_sequence: int) -> None:
        """A fresh durable consumer from `start_sequence` (the old one, if any, removed)."""
        from nats.js import api
        from nats.js.errors import NotFoundError

        js = self._nc.jetstream()
        if self._sub is not None:  # its deliveries are the old consumer's: dropped
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
        self._queue.clear()
        self._acked = start_sequence - 1
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(self.stream, self.durable)
        inbox = self._nc.new_inbox()
        self._sub = await self._nc.subscribe(inbox, cb=self._received,
                                             pending_msgs_limit=4 * self.in_flight + 1000,
                                             pending_bytes_limit=2**30)
        await js.add_consumer(self.stream, api.ConsumerConfig(
            durable_name=self.durable, deliver_subject=inbox, ack_policy=api.AckPolicy.ALL,
            ack_wait=300.0, deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=start_sequence, filter_subject=self.subject,
            max_ack_pending=self.in_flight))

    async def _received(self, msg: Any) -> None:
        self._queue.append(msg)
        self._arrived.set()

    async def _reopen(self) -> None:
        """A fresh consumer from just after the last acknowledged message, once JetStream
        answers again."""
        self._reconnected = False
        delay, problem = 0.25, ""
        for attempt in range(1, REOPEN_ATTEMPTS + 1):
            try:
                await self.open(self._acked + 1)
            except Exception as exc:  # timeouts, "no responders", JetStream not ready yet
                problem = f"{type(exc).__name__}: {exc}"
                if attempt < REOPEN_ATTEMPTS:
                    await asyncio.sleep(delay)
                    delay *= 2
                continue
            log.warning("stream %s: reading %s again from sequence %d after the reconnect",
                        self.name, self.subject, self._acked + 1)
            return
        raise SourceUnavailable(self.name, f"NATS at {redact(self.url)} is back but its "
                                f"consumer could not be recreated from sequence "
                                f"{self._acked + 1} after {REOPEN_ATTEMPTS} attempts, last: "
                                f"{problem}; restart the processor")

    async def take(self, most: int, wait: float) -> list[Message]:
        if self._reconnected:
            await self._reopen()
        if not self._queue:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), wait)
        idle = 0  # let the client drain what the socket holds (it could not while the last
        while len(self._queue) < most and idle < 3:  # batch was processed): reading a chunk
            before = len(self._queue)                # and delivering its messages take a
            await asyncio.sleep(0)                   # turn of the loop each
            idle = idle + 1 if len(self._queue) == before else 0
        count = min(most, len(self._queue))
        return [NatsMessage(self._queue.popleft()) for _ in range(count)]

    async def acknowledge(self, last: Message) -> None:
        await last.msg.ack()  # type: ignore[attr-defined] - ack-all: and every one before
        self._acked = max(self._acked, last.sequence)

    async def dead_letter(self, message: Message, reason: str) -> None:
        await self._nc.jetstream().publish(f"tideline.dead-letter.{self.name}", message.data,
                                           headers={"Tideline-Reason": reason[:1000],
                                                    "Tideline-Source-Subject": self.subject,
                                                    "Tideline-Source-Sequence":
                                                        str(message.sequence)})

    async def alert(self, model: str, body: dict[str, Any]) -> None:
        await self._nc.jetstream().publish(f"tideline.alerts.{model}", json.dumps(body).encode())

    async def close(self) -> None:
        if self._nc is not None:
            await self._nc.close()


# -- the embedded event log -------------------------------------------------------------------


@dataclass(frozen=True)
class LogMessage:
    data: bytes
    sequence: int
    pending: int
    stored_at: float


class EventLogBroker:
    def __init__(self, root: Path, subject: str, name: str) -> None:
        self.root, self.subject, self.name = root, subject, name
        self.directory = root / subject
        self._offsets: dict[Path, int] = {}
        self._queue: deque[LogMessage] = deque()
        self._last = 0

    async def connect(self) -> None:
        if not self.directory.is_dir():
            raise SourceError(self.name, f"no event log at {self.directory} (expected "
                              f"{self.root}/{self.subject}/*.jsonl)")

    async def start_sequence(self, start: str) -> int:
        newest = max((m.sequence for m in self._read_new()), default=0)
        self._offsets.clear()
        return _start(start, newest, self.name)

    async def open(self, start_sequence: int) -> None:
        self._last = start_sequence - 1
        self._queue = deque(m for m in self._read_new() if m.sequence >= start_sequence)

    def _read_new(self) -> list[LogMessage]:
        """Whole lines appended since the last read, file by file in name order."""
        found = []
        for path in sorted(self.directory.glob("*.jsonl")):
            with path.open("rb") as handle:
                handle.seek(self._offsets.get(path, 0))
                data = handle.read()
            end = data.rfind(b"\n") + 1  # a line still being written waits for the next read
            self._offsets[path] = self._offsets.get(path, 0) + end
            stored = path.stat().st_mtime
            for line in data[:end].splitlines():
                if not line.strip():
                    continue
                entry, problem = parse_entry(line)
                if entry is None:  # no sequence of its own: it follows the one before it
                    found.append(LogMessage(line, self._last, 0, stored))
                    continue
                self._last = entry["seq"]
                found.append(LogMessage(orjson.dumps(entry["data"]) if problem is None
                                        else json.dumps(entry.get("data")).encode(),
                                        entry["seq"], 0, stored))
        return found

    async def take(self, most: int, wait: float) -> list[Message]:
        if not self._queue:
            self._queue.extend(self._read_new())
        if not self._queue:
            await asyncio.sleep(wait)
            self._queue.extend(self._read_new())
        count = min(most, len(self._queue))
        return [self._queue.popleft() for _ in range(count)]

    async def acknowledge(self, last: Message) -> None:
        """Nothing to do: the checkpoint is the position."""

    async def dead_letter(self, message: Message, reason: str) -> None:
        self._append(f"tideline.dead-letter.{self.name}", {
            "reason": reason, "sequence": message.sequence,
            "payload": message.data.decode("utf-8", "replace")})

    async def alert(self, model: str, body: dict[str, Any]) -> None:
        self._append(f"tideline.alerts.{model}", body)

    def _append(self, subject: str, body: dict[str, Any]) -> None:
        directory = self.root / subject
        directory.mkdir(parents=True, exist_ok=True)
        line = json.dumps({**body, "at": datetime.now(UTC).isoformat()}) + "\n"
        with (directory / f"{time.strftime('%Y-%m-%d', time.gmtime())}.jsonl").open("a") as out:
            out.write(line)

    async def close(self) -> None:
        """Nothing held open."""
