"""Raw landing: what a connector pulled becomes Parquet on the run's branch, partitioned by
source and date, with an ingestion record and the checkpoint to resume from.

Layout on the branch::

    raw/source=<name>/dt=<YYYY-MM-DD>/part-<run_id>.parquet   records as received (text)
    raw/source=<name>/rejected/part-<run_id>.parquet          records that could not be parsed
    raw/source=<name>/_runs/<run_id>.json                     the ingestion record
    checkpoints/<name>.json                                   where the next pull resumes

Raw values are stored as text exactly as the source gave them (types are the validator's job),
so nothing a source sends is lost or altered before validation. Part names carry the run id, so
re-running a run id rewrites the same objects instead of adding copies; a backfill replaces the
partitions of its window.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from ingestion.sources import Pull, Source, Window
from lake.base import Lake
from lake.tables import read_frame, write_table
from tideline.errors import IngestionError

UNKNOWN_DATE = "unknown"


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


def _as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Every column as nullable text: the raw layer keeps values exactly as received."""
    return pd.DataFrame(
        {column: frame[column].map(_text, na_action="ignore").astype("string")
         for column in frame.columns},
        index=frame.index,
    )


def _text(value: object) -> str:
    if isinstance(value, (datetime, pd.Timestamp)):
        return value.isoformat()
    return str(value)


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
    raw = _as_text(pull.frame)
    dates = partition_dates(pull.frame, source.timestamp_column)
    replaced = clear_days(lake, branch, prefix, window) if window is not None else []
    parts = []
    for day, rows in raw.groupby(dates, sort=True):
        path = f"{prefix}/dt={day}/part-{run_id}.parquet"
        write_table(lake, branch, path, rows.reset_index(drop=True))
        parts.append(path)
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
        source=source.name, dataset=source.dataset, run_id=run_id, rows=len(raw),
        rejected=len(pull.rejected), parts=tuple(parts), columns=tuple(map(str, raw.columns)),
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


def clear_days(lake: Lake, branch: str, prefix: str, window: Window) -> list[str]:
    """Delete the `<prefix>/dt=<day>/` objects of the window's days (a backfill replaces them)."""
    check_window(window)
    doomed = [o.path for o in lake.list(branch, f"{prefix}/dt=")
              if _in_window(o.path[len(prefix) + 4:].split("/")[0], window)]
    for path in doomed:
        lake.delete(branch, path)
    return doomed


def partition_dates(frame: pd.DataFrame, column: str) -> pd.Series:
    """The `dt=` of each record; records whose timestamp cannot be read land under `unknown`."""
    if column not in frame.columns:
        return pd.Series(UNKNOWN_DATE, index=frame.index)
    stamps = frame[column]
    if not isinstance(stamps.dtype, pd.DatetimeTZDtype):
        stamps = pd.to_datetime(stamps, errors="coerce", utc=True, format="mixed")
    return stamps.dt.strftime("%Y-%m-%d").fillna(UNKNOWN_DATE)


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
    frames = [read_frame(lake, ref, path) for path in record.parts if "/dt=" in path]
    if not frames:
        return pd.DataFrame({column: pd.Series(dtype="string") for column in record.columns})
    return pd.concat(frames, ignore_index=True)


def pull_and_land(
    lake: Lake, branch: str, source: Source, *, run_id: str, window: Window | None = None
) -> IngestRecord:
    """Pull a source from its committed checkpoint (or its backfill window) and land it."""
    from ingestion.connectors import connector_for

    started = time.perf_counter()
    before = read_checkpoint(lake, branch, source.name)
    pull = connector_for(source).pull(source, before, window)
    return land(lake, branch, source, pull, run_id=run_id, checkpoint_before=before,
                window=window, started=started)


def acknowledge(source: Source, record: IngestRecord) -> None:
    """Tell the source its records are safe (after the merge into main); streams ack here."""
    from ingestion.connectors import connector_for

    if record.ack:
        pull = Pull(frame=pd.DataFrame(), checkpoint=record.checkpoint_after or {}, ack=record.ack)
        connector_for(source).acknowledge(source, pull)
