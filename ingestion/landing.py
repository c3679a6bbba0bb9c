"""Raw landing: what a connector pulled becomes Parquet on the run's branch, partitioned by
source and date, with an ingestion record and the checkpoint to resume from.

Layout on the branch::

    raw/source=<name>/dt=<YYYY-MM-DD>/part-<run_id>.parquet   records as received
    raw/source=<name>/rejected/part-<run_id>.parquet          records that could not be parsed
    raw/source=<name>/_runs/<run_id>.json                     the ingestion record
    checkpoints/<name>.json                                   where the next pull resumes

Raw values are stored exactly as the source gave them: typed sources' in their own types, the
rest as text (`tideline.ingestion.rawtext`; types are the validator's job), so nothing a source
sends is lost or altered before validation. A day's records keep the order they came in, and
a pull's parts are listed by day, so `read_landed` returns them day by day in that order. Part
names carry the run id, so re-running a run id rewrites the same objects instead of adding
copies; a backfill replaces the partitions of its window.
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tideline.core.errors import IngestionError
from tideline.core.faults import failpoint
from tideline.ingestion.connectors import connector_for
from tideline.ingestion.contracts import Column
from tideline.ingestion.rawtext import as_raw_text, landed
from tideline.ingestion.sources import BATCH_BYTES, Pull, Source, Window
from tideline.ingestion.validation.coercion import coerce
from tideline.lake.base import Lake
from tideline.lake.erasure import drop_erased, erasure_list
from tideline.lake.tables import encoding, write_table

T = TypeVar("T")
UNKNOWN_DATE = "unknown"
PARTITION_THREADS = 4
"""Partitions written or read at a time: Parquet's encoder and decoder release the GIL."""
SPLIT_ROWS = 262_144
"""Rows regrouped by day at a time (`_split_days`): enough to keep Python's share small."""
ROW_GROUP_ROWS = 262_144
"""A day's records written as a row group once this many wait."""


@dataclass(frozen=True)
class IngestRecord:
    """What one source's pull landed: small, serialisable, safe to pass between tasks."""

    source: str
    dataset: str
    run_id: str
    rows: int
    rejected: int
    parts: tuple[str, ...]
    columns: tuple[str, ...]
    checkpoint_before: dict[str, Any] | None
    checkpoint_after: dict[str, Any] | None
    window: dict[str, str | None] | None = None
    seconds: float = 0.0
    replaced: tuple[str, ...] = field(default_factory=tuple)
    ack: Any = None
    """What the connector acknowledges once the run is published (NATS reply subjects)."""
    erased: int = 0
    """Records dropped before landing: their key is on the erasure list (`lake.erasure`)."""


def checkpoint_path(source: str) -> str:
    return f"checkpoints/{source}.json"


def read_checkpoint(lake: Lake, ref: str, source: str) -> dict[str, Any] | None:
    if not lake.exists(ref, checkpoint_path(source)):
        return None
    return json.loads(lake.get(ref, checkpoint_path(source)))


def land(
    lake: Lake,
    branch: str,
    source: Source,
    pull: Pull,
    *,
    run_id: str,
    checkpoint_before: dict[str, Any] | None,
    window: Window | None = None,
    started: float | None = None,
    batch_bytes: int = BATCH_BYTES,
    timestamp: Column | None = None,
) -> IngestRecord:
    """Write one pull to the run branch, batch by batch as the connector reads it; the
    checkpoint moves only if this is not a backfill. Records of erased entities are dropped
    before anything is written, and counted. `timestamp`: the contract's declaration of the
    source's timestamp column, whose `format` (if any) reads each record's day."""
    prefix = f"raw/source={source.name}"
    erased, dropped = erasure_list(lake, branch), 0
    replaced = clear_days(lake, branch, prefix, window) if window is not None else []
    with DayParts(lake, branch, f"{prefix}/dt={{day}}/part-{run_id}{{variant}}.parquet",
                  batch_bytes) as days:
        for chunk in pull.chunks():
            table, erasing = drop_erased(landed(chunk, typed=pull.typed), erased)
            dropped += erasing
            days.add(table, *day_codes(table, source.timestamp_column, timestamp))
    parts = days.paths()
    failpoint("landing")  # the days are written; rejects, checkpoint and record are not
    if pull.rejected:
        path = f"{prefix}/rejected/part-{run_id}.parquet"
        write_table(lake, branch, path,
                    pd.DataFrame(pull.rejected, columns=["raw", "reason"], dtype="string"))
        parts.append(path)
    after = checkpoint_before if window is not None else pull.checkpoint
    if window is None:
        lake.put(branch, checkpoint_path(source.name),
                 json.dumps(pull.checkpoint, sort_keys=True, default=str).encode())
    record = IngestRecord(
        source=source.name, dataset=source.dataset, run_id=run_id, rows=days.rows,
        rejected=len(pull.rejected), parts=tuple(parts), columns=tuple(days.columns),
        checkpoint_before=checkpoint_before, checkpoint_after=after,
        window=None if window is None else {
            "since": window.since.isoformat() if window.since else None,
            "until": window.until.isoformat() if window.until else None},
        seconds=round(time.perf_counter() - started, 3) if started is not None else 0.0,
        replaced=tuple(p for p in replaced if p not in parts),
        ack=pull.ack, erased=dropped,
    )
    lake.put(branch, f"{prefix}/_runs/{run_id}.json",
             json.dumps(asdict(record), sort_keys=True, default=str, indent=1).encode())
    return record


class DayParts:
    """Batches of records written by day as they come, each day to one Parquet object whose
    row groups keep the day's records in the order they came. A day's rows wait in memory
    until they fill a row group, or until all days' waiting rows pass the budget, when every
    day is written out, on threads, while the next batches are read and split; so memory is
    twice the budget and a batch at most, however big the source.

    A batch whose columns or types differ from the last one's (files of another shape) starts
    new objects (`-1`, `-2` … after the run id), so every object has one schema and a day's
    objects, read in order, still give its records in arrival order."""

    def __init__(self, lake: Lake, branch: str, path: str, budget: int) -> None:
        self._lake, self._branch, self._path, self._budget = lake, branch, path, budget
        self._stack = ExitStack()
        self._pool = ThreadPoolExecutor(PARTITION_THREADS, thread_name_prefix="land")
        self._waiting: dict[str, list[pa.RecordBatch]] = {}
        self._waiting_rows: dict[str, int] = {}
        self._waiting_bytes = 0
        self._writers: dict[str, pq.ParquetWriter] = {}
        self._writing: list[Future] = []
        self._schema: pa.Schema | None = None
        self._variant = -1
        self._written: list[tuple[str, int, str]] = []
        self.rows = 0
        self.columns: dict[str, None] = {}

    def __enter__(self) -> DayParts:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: Any) -> None:
        try:
            if kind is None:
                self._flush(list(self._waiting))
                self._written_out()
        except BaseException as failure:
            kind, error, trace = type(failure), failure, failure.__traceback__
            raise
        finally:
            self._pool.shutdown()  # every write done (or failed) before the objects close
            # a failed landing discards the objects it was writing
            self._stack.__exit__(kind, error, trace)

    def add(self, table: pa.Table, codes: np.ndarray, days: np.ndarray) -> None:
        """The batch's rows, `codes` indexing each row's day in `days`."""
        self.columns.update(dict.fromkeys(table.column_names))
        if not table.num_rows:
            return
        if self._schema is None or not table.schema.equals(self._schema):
            self._flush(list(self._waiting))
            self._close_writers()
            self._schema, self._variant = table.schema, self._variant + 1
        self.rows += table.num_rows
        full = []
        for day, pieces in enumerate(_split_days(table, codes, len(days))):
            if not pieces:
                continue
            label = str(days[day])
            self._waiting.setdefault(label, []).extend(pieces)
            self._waiting_rows[label] = self._waiting_rows.get(label, 0) + sum(
                piece.num_rows for piece in pieces)
            self._waiting_bytes += sum(piece.nbytes for piece in pieces)
            if self._waiting_rows[label] >= ROW_GROUP_ROWS:
                full.append(label)
        self._flush(list(self._waiting) if self._waiting_bytes > self._budget else full)

    def paths(self) -> list[str]:
        """The objects written, by day, then in order of schema."""
        return [path for _, _, path in sorted(self._written)]

    def _flush(self, labels: list[str]) -> None:
        for label in labels:  # opened here: the lake's writers are entered on one thread
            if label not in self._writers:
                variant = f"-{self._variant}" if self._variant else ""
                path = self._path.format(day=label, variant=variant)
                sink = self._stack.enter_context(self._lake.writer(self._branch, path))
                self._writers[label] = self._stack.enter_context(pq.ParquetWriter(
                    sink, self._schema, **encoding(self._schema, dictionaries=False)))
                self._written.append((label, self._variant, path))
        batches = [(label, self._waiting.pop(label)) for label in labels]
        for label, pieces in batches:
            self._waiting_bytes -= sum(piece.nbytes for piece in pieces)
            del self._waiting_rows[label]
        self._written_out()  # a day's object takes one write at a time
        schema = self._schema
        self._writing = [self._pool.submit(self._writers[label].write_table,
                                           pa.Table.from_batches(pieces, schema))
                         for label, pieces in batches]

    def _written_out(self) -> None:
        """Wait for the writes under way; the first failure is raised."""
        writing, self._writing = self._writing, []
        for done in writing:
            done.result()

    def _close_writers(self) -> None:
        """Finish the objects written so far, in the order they were opened: the next batch
        has another schema."""
        self._written_out()
        stack, self._stack = self._stack, ExitStack()
        stack.close()
        self._writers.clear()


def _split_days(table: pa.Table, codes: np.ndarray, count: int) -> list[list[pa.RecordBatch]]:
    """The rows of each of `count` days in input order, as slices of the table's batches
    regrouped by day. Rows move only within a batch, so memory is read close together: one
    shuffle of the whole table would miss the CPU's caches on nearly every value."""
    pieces: list[list[pa.RecordBatch]] = [[] for _ in range(count)]
    start = 0
    for batch in table.to_batches(max_chunksize=SPLIT_ROWS):
        mine = codes[start:start + batch.num_rows]
        start += batch.num_rows
        grouped = batch.take(np.argsort(mine.astype(np.min_scalar_type(count)), kind="stable"))
        sizes = np.bincount(mine, minlength=count)
        for day, end in zip(np.flatnonzero(sizes), np.cumsum(sizes)[sizes > 0], strict=True):
            pieces[day].append(grouped.slice(end - sizes[day], sizes[day]))
    return pieces


def clear_days(lake: Lake, branch: str, prefix: str, window: Window) -> list[str]:
    """Delete the `<prefix>/dt=<day>/` objects of the window's days (a backfill replaces them)."""
    check_window(window)
    doomed = [o.path for o in lake.list(branch, f"{prefix}/dt=")
              if _in_window(o.path[len(prefix) + 4:].split("/")[0], window)]
    for path in doomed:
        lake.delete(branch, path)
    return doomed


def partition_dates(frame: pd.DataFrame, column: str) -> pd.Series:
    """The `dt=` (UTC) of each record; records whose timestamp cannot be read land under
    `unknown`."""
    codes, days = day_codes(pa.Table.from_pandas(frame, preserve_index=False), column)
    return pd.Series(days[codes], index=frame.index)


def day_codes(table: pa.Table, column: str, declared: Column | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """Each record's `dt=` as a position in the sorted days the table has (`unknown` last);
    read as the contract reads them where it `declared` the column with a format."""
    if column not in table.column_names:
        return np.zeros(table.num_rows, dtype=np.intp), np.array([UNKNOWN_DATE], dtype=object)
    values = table.column(column)
    stamps = (utc_stamps(values) if declared is None or declared.format is None else
              coerce(values.to_pandas(), declared).cmp.view("datetime64[ns]"))
    stamps = stamps.astype("datetime64[D]").view(np.int64)
    known = stamps != np.iinfo(np.int64).min  # not NaT
    if not known.any():
        return np.zeros(table.num_rows, dtype=np.intp), np.array([UNKNOWN_DATE], dtype=object)
    valid = stamps[known]
    first, last = valid.min(), valid.max()
    # days as offsets from the first, unknown ones one past the last: counted, then numbered
    # in order (half the time of hashing them)
    offsets = np.where(known, stamps - first, last - first + 1)
    counts = np.bincount(offsets, minlength=last - first + 2)
    present = np.flatnonzero(counts[:-1])
    position = np.zeros(len(counts), dtype=np.intp)
    position[present] = np.arange(len(present))
    position[-1] = len(present)
    days = np.datetime_as_string((first + present).astype("datetime64[D]"), unit="D")
    return position[offsets], np.append(days.astype(object), UNKNOWN_DATE)


def utc_stamps(values: pa.ChunkedArray) -> np.ndarray:
    """Values as naive UTC datetime64, NaT where unreadable, as `pandas.to_datetime(values,
    utc=True, format="mixed")` reads them. Times and dates are read as they are (naive ones as
    UTC); Arrow parses a column of ISO 8601 with offsets, the usual case, many times faster
    (it reads those as pandas does, and fails on any other)."""
    if pa.types.is_timestamp(values.type) or pa.types.is_date(values.type):
        return values.to_numpy().astype("datetime64[ns]")
    try:
        text = values.cast(pa.large_string())
        return pc.cast(text, pa.timestamp("ns", tz="UTC")).to_numpy()
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        stamps = pd.to_datetime(values.to_pandas(), errors="coerce", utc=True, format="mixed")
    return np.asarray(stamps.array, dtype=f"datetime64[{stamps.dtype.unit}]")


def _in_window(day: str, window: Window) -> bool:
    """Backfill windows are whole days, so a `dt=` partition is either inside or outside."""
    if day == UNKNOWN_DATE:
        return False
    return (window.since is None or day >= f"{window.since:%Y-%m-%d}") and (
        window.until is None or day < f"{window.until:%Y-%m-%d}"
    )


def check_window(window: Window) -> Window:
    for bound in (window.since, window.until):
        if bound is not None and (bound.hour, bound.minute, bound.second, bound.microsecond) != (
            0, 0, 0, 0
        ):
            raise IngestionError(f"backfill bounds must be whole days, got {bound.isoformat()}")
    if window.since and window.until and window.since >= window.until:
        raise IngestionError(
            f"backfill window is empty: since {window.since:%Y-%m-%d} is not before "
            f"until {window.until:%Y-%m-%d}"
        )
    return window


def read_landed(lake: Lake, ref: str, record: IngestRecord) -> pd.DataFrame:
    """The records a pull landed, back as one frame in landing order (in one schema:
    `landed_schema`)."""
    parts = landed_parts(lake, ref, [record])
    schema = landed_schema(parts, list(record.columns))
    whole = max(sum(part.rows for part in parts), 1)
    tables = [table for table, _ in landed_batches(lake, ref, parts, schema, whole)]
    return as_raw_text(tables[0] if tables else schema.empty_table())


@dataclass(frozen=True)
class LandedPart:
    """One landed object of a dataset's records: which pull (`record`, by position) and day."""

    record: int
    day: str
    path: str
    rows: int
    schema: pa.Schema


def landed_parts(lake: Lake, ref: str, records: list[IngestRecord]) -> list[LandedPart]:
    """The day objects the pulls landed, in the order `read_landed` reads them."""
    def part(item: tuple[int, str]) -> LandedPart:
        record, path = item
        with lake.reader(ref, path) as source:
            parquet = pq.ParquetFile(source)
            return LandedPart(record, path.split("/dt=")[1].split("/")[0], path,
                              parquet.metadata.num_rows, parquet.schema_arrow)

    todo = [(i, path) for i, record in enumerate(records) for path in record.parts
            if "/dt=" in path]
    with ThreadPoolExecutor(PARTITION_THREADS, thread_name_prefix="landed") as pool:
        return list(pool.map(part, todo))


def landed_schema(parts: list[LandedPart], columns: list[str]) -> pa.Schema:
    """One schema for every part's records, with `columns` in that order: a column's own type
    where the parts agree (or widen to one), text where they do not, or where no part has it."""
    try:
        found = pa.unify_schemas([part.schema for part in parts],
                                 promote_options="permissive") if parts else pa.schema([])
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        found = pa.schema([])
    return pa.schema([found.field(name) if name in found.names
                      else pa.field(name, pa.large_string()) for name in columns])


def landed_batches(lake: Lake, ref: str, parts: list[LandedPart], schema: pa.Schema,
                   rows: int, columns: list[str] | None = None
                   ) -> Iterator[tuple[pa.Table, np.ndarray]]:
    """The parts' records in order, in batches of about `rows` in `schema` (`columns` only),
    each with the position in `parts` of every row's part."""
    names = columns if columns is not None else schema.names
    pieces: list[pa.Table] = []
    owners: list[np.ndarray] = []
    waiting = 0
    for position, part in enumerate(parts):
        mine = [name for name in names if name in part.schema.names]
        with lake.reader(ref, part.path) as source:
            for batch in pq.ParquetFile(source, pre_buffer=False).iter_batches(
                    batch_size=rows, columns=mine):
                pieces.append(_conform(pa.Table.from_batches([batch]), schema, names))
                owners.append(np.full(batch.num_rows, position, dtype=np.int32))
                waiting += batch.num_rows
                if waiting >= rows:
                    yield pa.concat_tables(pieces).combine_chunks(), np.concatenate(owners)
                    pieces, owners, waiting = [], [], 0
    if pieces:
        yield pa.concat_tables(pieces).combine_chunks(), np.concatenate(owners)


def read_ahead(items: Iterator[T]) -> Iterator[T]:
    """The items of `items`, the next one read on a thread while this one is used (decoding
    Parquet releases the GIL)."""
    with ThreadPoolExecutor(1, thread_name_prefix="read-ahead") as pool:
        pending = pool.submit(next, items, None)
        while (item := pending.result()) is not None:
            pending = pool.submit(next, items, None)
            yield item


def _conform(table: pa.Table, schema: pa.Schema, names: list[str]) -> pa.Table:
    """`table` with the columns `names` in the types of `schema` (null where it has none)."""
    columns = []
    for name in names:
        wanted = schema.field(name).type
        if name not in table.column_names:
            columns.append(pa.nulls(table.num_rows, wanted))
            continue
        column = table.column(name)
        if column.type == wanted:
            columns.append(column)
        elif wanted == pa.large_string():
            columns.append(landed(pa.table({name: column}), typed=False).column(0))
        else:
            columns.append(column.cast(wanted))
    return pa.table(columns, names=names)


def pull_and_land(
    lake: Lake, branch: str, source: Source, *, run_id: str, window: Window | None = None,
    batch_bytes: int = BATCH_BYTES, timestamp: Column | None = None,
) -> IngestRecord:
    """Pull a source from its committed checkpoint (or its backfill window) and land it, about
    `batch_bytes` of records at a time (`land`'s `timestamp`)."""
    started = time.perf_counter()
    before = read_checkpoint(lake, branch, source.name)
    pull = connector_for(source, batch_bytes).pull(source, before, window)
    return land(lake, branch, source, pull, run_id=run_id, checkpoint_before=before,
                window=window, started=started, batch_bytes=batch_bytes, timestamp=timestamp)


def acknowledge(source: Source, record: IngestRecord) -> None:
    """Tell the source its records are safe (after the merge into main); streams ack here."""
    if record.ack:
        pull = Pull(frame=pd.DataFrame(), checkpoint=record.checkpoint_after or {}, ack=record.ack)
        connector_for(source).acknowledge(source, pull)
