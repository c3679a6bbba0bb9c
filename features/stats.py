"""Expected statistics of feature values, captured when a feature table is materialised: what
monitoring later compares new values against (null rate, range, mean, quantiles; for text
features the number of distinct values and the most common one)."""
from __future__ import annotations

from dataclasses import dataclass

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


def profile_column(name: str, values: pd.Series) -> FeatureStats:
    """The statistics of one feature column. Infinite values count as values, not in the mean
    or quantiles (a ratio over a zero can be one)."""
    rows = len(values)
    missing = values.isna()
    null_rate = float(missing.mean()) if rows else 0.0
    present = values[~missing]
    if pd.api.types.is_bool_dtype(present) or not pd.api.types.is_numeric_dtype(present):
        counts = present.astype(str).value_counts()
        return FeatureStats(name, rows, null_rate, distinct_count=len(counts),
                            top_value=str(counts.index[0]) if len(counts) else None)
    numbers = present.to_numpy(dtype=float)
    finite = numbers[np.isfinite(numbers)]
    if not len(finite):
        return FeatureStats(name, rows, null_rate)
    quantiles = np.quantile(finite, QUANTILES)
    return FeatureStats(name, rows, null_rate, min_value=_number(numbers.min()),
                        max_value=_number(numbers.max()), mean_value=_number(finite.mean()),
                        **{f"p{round(q * 100):02d}": float(v)
                           for q, v in zip(QUANTILES, quantiles, strict=True)})


def profile_features(frame: pd.DataFrame, names: list[str]) -> list[FeatureStats]:
    return [profile_column(name, frame[name]) for name in names]
