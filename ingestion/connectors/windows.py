"""The window arithmetic every connector shares for backfills, so that a record's window and
its `dt=` partition are decided alike."""
from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
from tideline.core.errors import SourceError
from tideline.ingestion.sources import Window


def parse_timestamps(values: pd.Series) -> pd.Series:
    """Timestamps as UTC, NaT where unreadable: the same reading landing uses for `dt=`."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC")
    return pd.to_datetime(values, errors="coerce", utc=True, format="mixed")


def as_utc(moment: datetime) -> pd.Timestamp:
    """A window bound as a UTC timestamp; naive bounds are taken to be UTC already."""
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)


def in_window(frame: pd.DataFrame, column: str, window: Window, source: str) -> pd.Series:
    """Which records have `column` in `[since, until)`. Records whose timestamp is missing or
    unreadable are in no window (landing puts them under `dt=unknown`, which no backfill
    replaces)."""
    if column not in frame.columns:
        if frame.empty:
            return pd.Series(False, index=frame.index, dtype=bool)
        raise SourceError(
            source,
            f"cannot backfill: the timestamp column {column!r} is not among the columns read "
            f"({', '.join(map(str, frame.columns))}); fix `timestamp_column`",
        )
    stamps = parse_timestamps(frame[column])
    mask = stamps.notna()
    if window.since is not None:
        mask &= stamps >= as_utc(window.since)
    if window.until is not None:
        mask &= stamps < as_utc(window.until)
    return mask.astype(bool)


def filter_window(frame: pd.DataFrame, column: str, window: Window, source: str) -> pd.DataFrame:
    """Only the records of `frame` inside the backfill window, renumbered from 0."""
    return frame[in_window(frame, column, window, source)].reset_index(drop=True)
