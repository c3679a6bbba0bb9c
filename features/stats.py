"""Expected statistics of feature values, captured when a feature table is materialised: what
monitoring later compares new values against (null rate, range, mean, quantiles; for text
features the number of distinct values and the most common one)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


@dataclass(frozen=True)
class FeatureStats:
    feature: str
    row_count: int
    null_rate: float
    """Share of rows without a value (null or NaN)."""
    min_value: float | None = None
    max_value: float | None = None
    mean_value: float | None = None
    p05: float | None = None
    p25: float | None = None
    p50: float | None = None
    p75: float | None = None
    p95: float | None = None
    distinct_count: int | None = None
    top_value: str | None = None


def _number(value: float) -> float | None:
    return None if not np.isfinite(value) else float(value)


GRID = np.linspace(0, 1, 101)
"""The quantiles a partition keeps of each numeric feature, for merging: every 1%."""
TOP_VALUES = 1_000
"""Text values a partition keeps the counts of, most common first."""


@dataclass(frozen=True)
class StatsPart:
    """One partition's statistics of a feature column and what merging them needs: its finite
    numbers' count, extremes (infinities included) and 1% quantile grid, or its most common
    text values' counts."""

    stats: FeatureStats
    finite: int = 0
    low: float = np.nan
    high: float = np.nan
    grid: tuple[float, ...] = ()
    counts: dict[str, int] = field(default_factory=dict)


def profile_column(name: str, values: pd.Series) -> StatsPart:
    """The statistics of one feature column, with what merging them with other partitions'
    needs. Infinite values count as values, not in the mean or quantiles (a ratio over a zero
    can be one)."""
    rows = len(values)
    missing = values.isna()
    null_rate = float(missing.mean()) if rows else 0.0
    present = values[~missing]
    if pd.api.types.is_bool_dtype(present) or not pd.api.types.is_numeric_dtype(present):
        counts = present.astype(str).value_counts()
        return StatsPart(FeatureStats(name, rows, null_rate, distinct_count=len(counts),
                                      top_value=str(counts.index[0]) if len(counts) else None),
                         counts={str(k): int(v) for k, v in counts.head(TOP_VALUES).items()})
    numbers = present.to_numpy(dtype=float)
    finite = numbers[np.isfinite(numbers)]
    if not len(finite):
        return StatsPart(FeatureStats(name, rows, null_rate))
    quantiles = np.quantile(finite, np.concatenate([QUANTILES, GRID]))  # one selection
    low, high = float(numbers.min()), float(numbers.max())
    return StatsPart(
        FeatureStats(name, rows, null_rate, min_value=_number(low), max_value=_number(high),
                     mean_value=_number(finite.mean()),
                     **{f"p{round(q * 100):02d}": float(v)
                        for q, v in zip(QUANTILES, quantiles[:len(QUANTILES)], strict=True)}),
        finite=len(finite), low=low, high=high, grid=tuple(quantiles[len(QUANTILES):]))


def summarise(frame: pd.DataFrame, names: list[str]) -> list[StatsPart]:
    """Each feature's `StatsPart` in one partition's feature table."""
    return [profile_column(name, frame[name]) for name in names]


def profile_features(frame: pd.DataFrame, names: list[str]) -> list[FeatureStats]:
    return [part.stats for part in summarise(frame, names)]


def merge_stats(parts: list[StatsPart]) -> FeatureStats:
    """The statistics of a feature over partitions. One partition's are exact as they are.
    Over several: rows, null rate, extremes and mean exactly; each quantile as the partitions'
    own, weighted by their finite values (hash partitions are random samples of the entities,
    so each one's quantile estimates the table's); distinct count and top value from the kept
    counts (the distinct count is a lower bound when a partition had more than `TOP_VALUES`
    values)."""
    if len(parts) == 1:
        return parts[0].stats
    name = parts[0].stats.feature
    rows = sum(p.stats.row_count for p in parts)
    null_rate = sum(p.stats.null_rate * p.stats.row_count for p in parts) / rows if rows else 0.0
    if any(p.counts for p in parts):
        counts: dict[str, int] = {}
        for part in parts:
            for value, count in part.counts.items():
                counts[value] = counts.get(value, 0) + count
        top = max(counts, key=lambda v: (counts[v], v)) if counts else None
        return FeatureStats(name, rows, null_rate, distinct_count=max(
            [len(counts), *(p.stats.distinct_count or 0 for p in parts)]), top_value=top)
    numeric = [p for p in parts if p.finite]
    if not numeric:
        return FeatureStats(name, rows, null_rate)
    finite = sum(p.finite for p in numeric)

    def quantile(q: float) -> float:
        return float(sum(np.interp(q, GRID, p.grid) * p.finite for p in numeric) / finite)

    return FeatureStats(
        name, rows, null_rate, min_value=_number(min(p.low for p in numeric)),
        max_value=_number(max(p.high for p in numeric)),
        mean_value=_number(sum(p.stats.mean_value * p.finite for p in numeric) / finite),
        **{f"p{round(q * 100):02d}": quantile(q) for q in QUANTILES})
