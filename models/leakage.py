"""The single-feature leakage rule, one for training and discovery: a feature that alone
separates the classes better than the spec's `leakage_auc` gives the label away (it was
measured after the outcome, or is the outcome in disguise) and is left out."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata


def is_number(values: pd.Series) -> bool:
    """Numeric and not boolean: measured as a number (booleans and text as categories)."""
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def separation(frame: pd.DataFrame, columns: Sequence[str], y: np.ndarray) -> dict[str, float]:
    """How well each column alone separates the classes of `y`, max(AUC, 1 - AUC). Numbers
    count missing and infinite values as the median; other columns are scored by each value's
    label rate, missing being a value of its own. All columns at once, as the Mann-Whitney
    statistic of their ranks (ties averaged, as `roc_auc_score`)."""
    y = np.asarray(y).astype(bool)
    positives, negatives = int(y.sum()), int((~y).sum())
    if not positives or not negatives or not len(columns):
        return dict.fromkeys(columns, 0.5)
    scored = np.empty((len(frame), len(columns)))
    labels = pd.Series(y, index=frame.index, dtype=float)
    for k, column in enumerate(columns):
        values = frame[column]
        if is_number(values):
            numbers = pd.to_numeric(values, errors="coerce").astype(float).replace(
                [np.inf, -np.inf], np.nan)
            scored[:, k] = numbers.fillna(numbers.median() if numbers.notna().any() else 0.0)
        else:
            scored[:, k] = labels.groupby(values.astype("string").fillna("\0missing")
                                          ).transform("mean")
    ranks = rankdata(scored, axis=0)
    auc = (ranks[y].sum(axis=0) - positives * (positives + 1) / 2) / (positives * negatives)
    return {column: float(max(a, 1 - a)) for column, a in zip(columns, auc, strict=True)}


def leaking(separations: dict[str, float], limit: float) -> dict[str, float]:
    """The features whose separation is above `limit`, with it."""
    return {column: auc for column, auc in separations.items() if auc > limit}
