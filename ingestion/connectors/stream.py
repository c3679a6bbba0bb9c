"""Event-stream sources, two transports behind one connector: the embedded event log (the
default; a directory, no broker) and NATS JetStream (a durable pull consumer).

Both read from where the last committed pull ended, at most `max_messages` records per pull (all
that are there when None), `batch_size` per fetch; a message whose payload is not a JSON object
is rejected with its reason, never dropped and never left to block the stream.

Event log: `<url>/<subject>/*.jsonl`, files in name order, lines `{"seq": n, "data": {...}}` with
`seq` rising. Checkpoint: ``{"seq": <last seq read>}``, plus ``"poison_after": k`` when the pull
ended on k unparsable lines after that seq. `acknowledge` does nothing: the checkpoint in the
lake commit is the acknowledgement.

NATS: each message's payload is one JSON record. Checkpoint: ``{"seq": <last stream sequence
read>}``. `Pull.ack` holds the pulled messages' reply subjects (``{"ack": [...], "term":
[...]}``), so `acknowledge` can ack them on a new connection after the lake commit; poison
messages are terminated then (after they are safely quarantined). Messages never acknowledged
(a crash between pull and commit) are redelivered once the consumer's `ack_wait` passes;
messages at or before the checkpoint's sequence (committed, but their ack was lost) are not
returned again, only acknowledged.
"""
from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from tideline.core.errors import SourceError, SourceUnavailable
from tideline.ingestion.connectors.windows import filter_window
from tideline.ingestion.rawtext import records_frame
from tideline.ingestion.sources import Pull, StreamSource, Window

log = logging.getLogger(__name__)

T = TypeVar("T")


class StreamConnector:
    """Reads a `StreamSource` through its transport. `ack_wait_seconds` is how long NATS waits
    for an acknowledgement before redelivering (it must outlast landing and validation);
    `fetch_timeout_seconds` how long a fetch waits for messages when none are ready."""

    def __init__(
        self, *, ack_wait_seconds: float = 600.0, fetch_timeout_seconds: float = 1.0,
        connect_timeout_seconds: float = 5.0,
    ) -> None:
        self.ack_wait_seconds = ack_wait_seconds
        self.fetch_timeout_seconds = fetch_timeout_seconds
        self.connect_timeout_seconds = connect_timeout_seconds

    def pull(
        self, source: StreamSource, checkpoint: dict[str, Any] | None, window: Window | None
    ) -> Pull:
        if source.transport == "eventlog":
            pull = pull_event_log(source, checkpoint, window)
        else:
            pull = run_sync(lambda: self._pull_nats(source, checkpoint, window))
        log.info("source %s: %d record(s), %d rejected", source.name, len(pull.frame),
                 len(pull.rejected))
        return pull

    def acknowledge(self, source: StreamSource, pull: Pull) -> None:
        if source.transport == "eventlog" or not pull.ack:
            return
        run_sync(lambda: self._acknowledge_nats(source, pull.ack))

    # -- NATS JetStream ---------------------------------------------------------------------

    async def _connect(self, source: StreamSource) -> Any:
        import nats

        async def quiet(exc: Exception) -> None:
            log.debug("source %s: NATS: %s", source.name, exc)

        try:
            # max_reconnect_attempts=0 makes nats-py 2.16 retry a refused connect for ever; the
            # outer deadline guards against any other way of hanging
            return await asyncio.wait_for(nats.connect(
                servers=[source.url], connect_timeout=self.connect_timeout_seconds,
                allow_reconnect=False, max_reconnect_attempts=1, reconnect_time_wait=0.1,
                error_cb=quiet,
            ), timeout=3 * self.connect_timeout_seconds + 1)
        except Exception as exc:  # nats raises several unrelated types for one cause
            raise SourceUnavailable(source.name, f"cannot connect to NATS at "
                                    f"{redact(source.url)}: {type(exc).__name__}: {exc}"
                                    ) from exc

    async def _pull_nats(
        self, source: StreamSource, checkpoint: dict[str, Any] | None, window: Window | None
    ) -> Pull:
        from nats.errors import Error as NatsError
        from nats.js import api
        from nats.js.errors import NotFoundError

        nc = await self._connect(source)
        try:
            js = nc.jetstream()
            try:
                stream = source.stream or await js.find_stream_name_by_subject(source.subject)
                if window is None:
                    consumer = durable_name(source)
                    config = api.ConsumerConfig(
                        durable_name=consumer, ack_policy=api.AckPolicy.EXPLICIT,
                        deliver_policy=api.DeliverPolicy.ALL, ack_wait=self.ack_wait_seconds,
                        max_ack_pending=-1, filter_subject=source.subject)
                    sub = await js.pull_subscribe(source.subject, durable=consumer,
                                                  stream=stream, config=config)
                else:
                    # a backfill replays the stream on a throwaway consumer; the durable one
                    # (and so the incremental position) is left alone
                    consumer = f"tideline-backfill-{uuid.uuid4().hex}"
                    await js.add_consumer(stream, api.ConsumerConfig(
                        name=consumer, ack_policy=api.AckPolicy.NONE,
                        deliver_policy=api.DeliverPolicy.ALL, filter_subject=source.subject,
                        inactive_threshold=60.0))
                    sub = await js.pull_subscribe_bind(consumer=consumer, stream=stream)
            except NotFoundError as exc:
                raise SourceError(source.name, f"no JetStream stream "
                                  f"{source.stream or 'for subject ' + repr(source.subject)} "
                                  f"at {redact(source.url)}; create it first") from exc
            try:
                messages = await self._fetch(sub, source)
            finally:
                await sub.unsubscribe()
                if window is not None:
                    await js.delete_consumer(stream, consumer)
        except NatsError as exc:
            raise SourceError(source.name, f"JetStream at {redact(source.url)} refused the "
                              f"pull: {type(exc).__name__}: {exc}") from exc
        finally:
            await nc.close()
        return messages_to_pull(source, stream, messages, checkpoint, window)

    async def _fetch(self, sub: Any, source: StreamSource) -> list[Any]:
        messages: list[Any] = []
        limit = source.max_messages
        while limit is None or len(messages) < limit:
            want = source.batch_size if limit is None else min(source.batch_size,
                                                                 limit - len(messages))
            try:
                batch = await sub.fetch(want, timeout=self.fetch_timeout_seconds)
            except TimeoutError:  # nats.errors.TimeoutError and asyncio.TimeoutError alike
                break
            messages.extend(batch)
            if batch and batch[-1].metadata.num_pending == 0:
                break  # nothing more in the stream for this consumer right now
        return messages

    async def _acknowledge_nats(self, source: StreamSource, handles: dict[str, list[str]]
                                ) -> None:
        nc = await self._connect(source)
        try:
            replies = [(reply, b"+ACK") for reply in handles.get("ack", [])]
            replies += [(reply, b"+TERM") for reply in handles.get("term", [])]
            for reply, verb in replies[:-1]:
                await nc.publish(reply, verb)
            if replies:
                # the last one waits for the server's confirmation, which comes after the rest
                reply, verb = replies[-1]
                await nc.request(reply, verb, timeout=self.connect_timeout_seconds)
        except Exception as exc:
            raise SourceUnavailable(source.name, f"acknowledging {len(replies)} message(s) on "
                                    f"NATS at {redact(source.url)} failed: {exc}; they will be "
                                    "redelivered and skipped by the checkpoint") from exc
        finally:
            await nc.close()


def messages_to_pull(
    source: StreamSource, stream: str, messages: list[Any], checkpoint: dict[str, Any] | None,
    window: Window | None,
) -> Pull:
    """NATS messages as records, rejects and the handles to acknowledge them with."""
    committed = int((checkpoint or {}).get("seq", 0)) if window is None else 0
    records, rejected, acks, terms = [], [], [], []
    last = committed
    for message in messages:
        seq = message.metadata.sequence.stream
        last = max(last, seq)
        if seq <= committed:
            acks.append(message.reply)  # committed already; only its ack was lost
            continue
        record, problem = parse_record(message.data)
        if problem is None:
            records.append(record)
            acks.append(message.reply)
        else:
            rejected.append((message.data.decode("utf-8", "replace"),
                             f"{stream} seq {seq}: {problem}"))
            terms.append(message.reply)
    frame = records_frame(records)
    if window is not None:
        return Pull(frame=filter_window(frame, source.timestamp_column, window, source.name),
                    checkpoint=dict(checkpoint or {}))
    return Pull(frame=frame, checkpoint={"seq": last} if last else dict(checkpoint or {}),
                rejected=rejected, ack={"ack": acks, "term": terms} if acks or terms else None)


def parse_record(payload: bytes) -> tuple[dict[str, Any] | None, str | None]:
    try:
        record = json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "payload is not UTF-8 text"
    except json.JSONDecodeError as exc:
        return None, f"payload is not JSON: {exc.msg} at column {exc.colno}"
    if not isinstance(record, dict):
        return None, f"expected a JSON object, got {type(record).__name__}"
    return record, None


def durable_name(source: StreamSource) -> str:
    return source.durable or f"tideline-{source.name}"


def redact(url: str) -> str:
    """A server URL without its user and password."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    return urlunsplit(parts._replace(netloc=f"***@{host}" + (f":{parts.port}" if parts.port
                                                             else "")))


def run_sync(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from sync code, even when called inside a running loop
    (a Prefect async task): then it runs on its own loop in a worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


# -- the embedded event log ----------------------------------------------------------------


def pull_event_log(
    source: StreamSource, checkpoint: dict[str, Any] | None, window: Window | None
) -> Pull:
    """The event log's records after the checkpoint (or all of them in the window).

    An unparsable line has no seq of its own: it sits after the last good seq before it, so
    its position is (that seq, how many bad lines since). A pull takes every line whose
    position is past the checkpoint's, which rejects each bad line exactly once."""
    directory = Path(source.url) / source.subject
    if not directory.is_dir():
        raise SourceError(source.name, f"no event log at {directory} (expected "
                          f"{source.url}/{source.subject}/*.jsonl); check `url` and `subject`")
    start = (int((checkpoint or {}).get("seq", 0)), int((checkpoint or {}).get("poison_after",
                                                                                0)))
    limit = None if window is not None else source.max_messages
    records: list[dict[str, Any]] = []
    rejected: list[tuple[str, str]] = []
    position = start
    taken = 0
    for seq, run, record, raw, problem in read_event_log(directory):
        if limit is not None and taken >= limit:
            break
        if window is not None:
            if record is not None:
                records.append(record)
            continue
        if (seq, run) <= start:
            continue
        taken += 1
        position = (seq, run)
        if record is not None:
            records.append(record)
        else:
            rejected.append((raw, problem))
    frame = records_frame(records)
    if window is not None:
        return Pull(frame=filter_window(frame, source.timestamp_column, window, source.name),
                    checkpoint=dict(checkpoint or {}))
    after: dict[str, Any] = {"seq": position[0]}
    if position[1]:
        after["poison_after"] = position[1]
    return Pull(frame=frame, checkpoint=after, rejected=rejected)


def read_event_log(directory: Path) -> Iterator[tuple[int, int, dict | None, str, str | None]]:
    """Yield `(seq, bad_run, record, raw, problem)` for every line of the log in order. Good
    lines have `bad_run` 0 and a record; bad lines carry the last good seq before them, their
    count since it, and why they are bad. A final line still being written (no newline yet,
    not parsable) is left for the next pull."""
    files = sorted(directory.glob("*.jsonl"))
    seq = run = 0
    for index, path in enumerate(files):
        data = path.read_bytes()
        lines = data.splitlines()
        for number, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            line = raw.decode("utf-8", "replace")
            entry, problem = parse_entry(raw)
            if problem is not None and index == len(files) - 1 and number == len(lines) and (
                not data.endswith(b"\n")
            ):
                return  # a writer is still appending this line
            if entry is not None:
                seq, run = entry["seq"], 0
                yield seq, 0, entry["data"] if problem is None else None, line, (
                    None if problem is None else f"{path.name}:{number}: {problem}")
                continue
            run += 1
            yield seq, run, None, line, f"{path.name}:{number}: {problem}"


def parse_entry(line: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """An event-log line as `{"seq": int, "data": dict}`: (entry, None) if good, (entry, why)
    if it has a seq but no record, (None, why) if it has no usable seq."""
    try:
        entry = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    except json.JSONDecodeError as exc:
        return None, f"not JSON: {exc.msg} at column {exc.colno}"
    seq = entry.get("seq") if isinstance(entry, dict) else None
    if not isinstance(seq, int) or isinstance(seq, bool):
        return None, "no integer 'seq'"
    if not isinstance(entry.get("data"), dict):
        return entry, "'data' is not a JSON object"
    return entry, None
