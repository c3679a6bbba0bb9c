"""Raw landing: what a connector pulled becomes Parquet on the run's branch, partitioned by
source and date, with an ingestion record and the checkpoint to resume from.

Layout on the branch::

    raw/source=<name>/dt=<YYYY-MM-DD>/part-<run_id>.parquet   records as received (text)
    raw/source=<name>/rejected/part-<run_id>.parquet          records that could not be parsed
    raw/source=<name>/_runs/<run_id>.json                     the ingestion record
    checkpoints/<name>.json                                   where the next pull resumes

Raw values are stored as text exactly as the source gave them (types are the validator's job),
so nothing a source sends is lost or altered before validation; in memory the text is held by
Arrow (`RAW_TEXT`). A day's records keep the order they came in, and a pull's parts are listed
by day, so `read_landed` returns them day by day in that order. Part names carry the run id, so
re-running a run id rewrites the same objects instead of adding copies; a backfill replaces the
partitions of its window.
"""
from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tideline.core.errors import IngestionError
from tideline.core.faults import failpoint
from tideline.ingestion.connectors import connector_for
from tideline.ingestion.rawtext import RAW_TEXT, as_raw_text, as_text
from tideline.ingestion.sources import Pull, Source, Window
from tideline.lake.base import Lake
from tideline.lake.tables import read_table, write_table

UNKNOWN_DATE = "unknown"
PARTITION_THREADS = 4
"""Partitions written or read at a time: Parquet's encoder and decoder release the GIL."""
SPLIT_ROWS = 262_144
"""Rows regrouped by day at a time (`_split_days`): enough to keep Python's share small."""


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
) -> IngestRecord:
    """Write one pull to the run branch; the checkpoint moves only if this is not a backfill."""
    prefix = f"raw/source={source.name}"
    raw = pa.Table.from_pandas(as_text(pull.frame), preserve_index=False)
    replaced = clear_days(lake, branch, prefix, window) if window is not None else []
    parts = write_days(lake, branch, f"{prefix}/dt={{day}}/part-{run_id}.parquet", raw,
                       *day_codes(pull.frame, source.timestamp_column))
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
        source=source.name, dataset=source.dataset, run_id=run_id, rows=raw.num_rows,
        rejected=len(pull.rejected), parts=tuple(parts), columns=tuple(raw.column_names),
        checkpoint_before=checkpoint_before, checkpoint_after=after,
        window=None if window is None else {
            "since": window.since.isoformat() if window.since else None,
            "until": window.until.isoformat() if window.until else None},
        seconds=round(time.perf_counter() - started, 3) if started is not None else 0.0,
        replaced=tuple(p for p in replaced if p not in parts),
        ack=pull.ack,
    )
    lake.put(branch, f"{prefix}/_runs/{run_id}.json",
             json.dumps(asdict(record), sort_keys=True, default=str, indent=1).encode())
    return record


def write_days(lake: Lake, branch: str, path: str, table: pa.Table, codes: np.ndarray,
               days: np.ndarray) -> list[str]:
    """Write the rows of each day (`codes` index `days`), in input order, to `path` with `{day}`
    filled in, several days at a time; the paths written, in order of day."""
    pieces = _split_days(table, codes, len(days))

    def write(day: int) -> str:
        where = path.format(day=days[day])
        with lake.writer(branch, where) as sink:
            # raw text is mostly distinct values (ids, times, amounts): a dictionary would
            # double the encoding time to save a few percent of space
            pq.write_table(pa.Table.from_batches(pieces[day], table.schema), sink,
                           use_dictionary=False)
        return where

    with ThreadPoolExecutor(PARTITION_THREADS, thread_name_prefix="land") as pool:
        return list(pool.map(write, [day for day, rows in enumerate(pieces) if rows]))


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
    codes, days = day_codes(frame, column)
    return pd.Series(days[codes], index=frame.index)


def day_codes(frame: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    """Each record's `dt=` as a position in the sorted days the frame has (`unknown` last)."""
    if column not in frame.columns:
        return np.zeros(len(frame), dtype=np.intp), np.array([UNKNOWN_DATE], dtype=object)
    codes, uniques = pd.factorize(utc_stamps(frame[column]).astype("datetime64[D]"), sort=True)
    days = np.append(np.datetime_as_string(uniques, unit="D").astype(object), UNKNOWN_DATE)
    return np.where(codes < 0, len(uniques), codes), days


def utc_stamps(values: pd.Series) -> np.ndarray:
    """Values as naive UTC datetime64, NaT where unreadable, as `pandas.to_datetime(values,
    utc=True, format="mixed")` reads them. Arrow parses a column of ISO 8601 with offsets, the
    usual case, many times faster (it reads those as pandas does, and fails on any other)."""
    if not isinstance(values.dtype, pd.DatetimeTZDtype):
        try:
            text = pa.array(values, type=pa.large_string(), from_pandas=True)
            return pc.cast(text, pa.timestamp("ns", tz="UTC")).to_numpy()
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            values = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
    return np.asarray(values.array, dtype=f"datetime64[{values.dtype.unit}]")


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
    """The records a pull landed, back as one text frame in landing order."""
    paths = [path for path in record.parts if "/dt=" in path]
    with ThreadPoolExecutor(PARTITION_THREADS, thread_name_prefix="read-landed") as pool:
        tables = list(pool.map(lambda path: read_table(lake, ref, path), paths))
    if not tables:
        return pd.DataFrame({column: pd.Series(dtype=RAW_TEXT) for column in record.columns})
    # one chunk per column: validation takes rows from these columns, and a take from many
    # chunks joins them first, every time
    return as_raw_text(pa.concat_tables(tables).combine_chunks())


def pull_and_land(
    lake: Lake, branch: str, source: Source, *, run_id: str, window: Window | None = None
) -> IngestRecord:
    """Pull a source from its committed checkpoint (or its backfill window) and land it."""
    started = time.perf_counter()
    before = read_checkpoint(lake, branch, source.name)
    pull = connector_for(source).pull(source, before, window)
    return land(lake, branch, source, pull, run_id=run_id, checkpoint_before=before,
                window=window, started=started)


def acknowledge(source: Source, record: IngestRecord) -> None:
    """Tell the source its records are safe (after the merge into main); streams ack here."""
    if record.ack:
        pull = Pull(frame=pd.DataFrame(), checkpoint=record.checkpoint_after or {}, ack=record.ack)
        connector_for(source).acknowledge(source, pull)
