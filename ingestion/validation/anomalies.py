"""Dataset-level checks on the rows that passed: volume and null rates against the history of
past runs (median ± k·MAD), freshness of the newest value, and outliers flagged (not
quarantined) per column."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict
from tideline.ingestion.contracts import Column, Contract
from tideline.ingestion.validation.coercion import DAY_NS, Typed

MIN_HISTORY = 3


@dataclass(frozen=True)
class Anomaly:
    kind: Literal["volume", "null_rate", "freshness"]
    column: str | None
    observed: float
    low: float | None
    high: float | None
    detail: str


@dataclass(frozen=True)
class OutlierFlag:
    """Values flagged (not quarantined) in one column of the clean rows."""

    column: str
    method: Literal["iqr", "zscore"]
    count: int
    low: float
    high: float
    rows: np.ndarray = field(repr=False)
    """Input positions (`_row`) of the flagged values."""


class DatasetStats(BaseModel):
    """What a run saw, kept for the next runs' volume checks (serialise with `model_dump_json`)."""

    model_config = ConfigDict(frozen=True)

    dataset: str
    rows: int
    null_rates: dict[str, float]
    validated_at: datetime
    contract_version: str = ""
    days: int = 1
    """Days of events the batch covered (see `days_covered`); volume is compared per day."""


def _band(values: list[float], k: float, floor: float) -> tuple[float, float]:
    median = float(np.median(values))
    mad = float(np.median(np.abs(np.asarray(values) - median)))
    width = k * max(mad, floor)
    return median - width, median + width


def day_counts(typed: Typed | None) -> pd.Series:
    """Rows per event day (days since the epoch) of a temporal column, unparsed and null times
    left out; counts of batches add up with `Series.add(fill_value=0)`."""
    if typed is None or typed.cmp is None:
        return pd.Series(dtype="int64")
    days, counts = np.unique(typed.cmp[~(typed.null | typed.bad)] // DAY_NS, return_counts=True)
    return pd.Series(counts, index=days)


def days_covered(counts: pd.Series, history: list[DatasetStats]) -> int:
    """Event days of the time column, by their `counts` of rows (`day_counts`), that hold at
    least a quarter of a typical day's rows (of history, or of the batch's busiest day): a day
    blocked by the gate arrives again with the next one, and two days' rows must not look like
    a volume spike, while a few late events from an earlier day do not halve the rate."""
    if not len(counts):
        return 1
    values = counts.to_numpy()
    typical = (float(np.median([h.rows / h.days for h in history])) if history
               else float(values.max()))
    return max(1, int((values >= 0.25 * typical).sum()))


def volume_anomalies(stats: DatasetStats, history: list[DatasetStats], k: float
                     ) -> list[Anomaly]:
    """Rows per day and each column's null rate outside median ± k·MAD of `history`."""
    if len(history) < MIN_HISTORY:
        return []
    anomalies = []
    counts = [h.rows / h.days for h in history]
    # a floor on MAD: a count's own (Poisson) noise, so a perfectly steady history does not
    # flag a few rows' difference, nor a day of 30 rows one of 36
    typical = float(np.median(counts))
    low, high = _band(counts, k, max(1.0, 0.01 * typical, math.sqrt(typical)))
    per_day = stats.rows / stats.days
    if not low <= per_day <= high:
        seen = (f"{stats.rows} rows" if stats.days == 1
                else f"{stats.rows} rows over {stats.days} days ({per_day:.0f} a day)")
        anomalies.append(Anomaly(
            "volume", None, per_day, max(low, 0.0), high,
            f"{seen}, expected {max(low, 0):.0f}–{high:.0f}{'' if stats.days == 1 else ' a day'}"
            f" (median ± {k:g}·MAD of the last {len(history)} runs)"))
    for name, rate in stats.null_rates.items():
        past = [h.null_rates[name] for h in history if name in h.null_rates]
        if len(past) < MIN_HISTORY:
            continue
        # a floor on MAD: the rate's own sampling noise on this many rows, so a batch of a
        # hundred rows is not flagged for two nulls where a steady history had one, nor a
        # batch of thirty for its one null where history had none
        rows = max(stats.rows, 1)
        typical = min(max(float(np.median(past)), 1 / rows), 0.5)
        noise = math.sqrt(typical * (1 - typical) / rows)
        low, high = _band(past, k, max(0.002, noise))
        if not low <= rate <= high:
            anomalies.append(Anomaly(
                "null_rate", name, rate, max(low, 0.0), min(high, 1.0),
                f"{name}: null rate {rate:.1%}, expected {max(low, 0):.1%}–{min(high, 1):.1%} "
                f"(median ± {k:g}·MAD of the last {len(past)} runs)"))
    return anomalies


def freshness_anomalies(contract: Contract, newest_ns: int | None, now: datetime
                        ) -> list[Anomaly]:
    """The contract's freshness rule on the kept rows, `newest_ns` the newest valid value of
    its column among them (None when there is none): at most `max_age` old."""
    rule = contract.freshness
    if rule is None:
        return []
    column = contract.column(rule.column)
    max_age = rule.max_age.total_seconds()
    if newest_ns is None:
        return [Anomaly("freshness", rule.column, float("inf"), None, max_age,
                        f"{rule.column}: no valid values, so the data's freshness is unknown "
                        f"(max age {rule.max_age})")]
    if column.type == "date":  # a date counts as fresh until the end of that day
        newest_ns += DAY_NS
    newest = pd.Timestamp(newest_ns, unit="ns", tz="UTC")
    age = pd.Timestamp(now) - newest
    if age.total_seconds() <= max_age:
        return []
    return [Anomaly("freshness", rule.column, age.total_seconds(), None, max_age,
                    f"{rule.column}: newest value {newest.isoformat()} is {age} old, "
                    f"more than the allowed {rule.max_age}")]


def outlier_flag(column: Column, values: np.ndarray, rows: np.ndarray) -> OutlierFlag | None:
    """The kept valid `values` of a column that asks for outliers (at input rows `rows`)
    outside the IQR fences or 3 standard deviations; None for fewer than four values."""
    if values.size < 4:
        return None
    if column.outliers == "iqr":
        q1, q3 = np.percentile(values, [25, 75])
        low, high = q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1)
    else:
        mean, std = float(values.mean()), float(values.std())
        low, high = mean - 3 * std, mean + 3 * std
    flagged = (values < low) | (values > high)
    return OutlierFlag(column.name, column.outliers, int(flagged.sum()), float(low),
                       float(high), rows[flagged])
