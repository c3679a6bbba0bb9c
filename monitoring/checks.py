"""What the monitor checks besides each feature's drift: missing values against the statistics
captured when the features were materialised, the model's score distribution, and, once labels
exist for a period after training, the champion's ROC-AUC there and which features a fresh fit
on that period leans on."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import roc_auc_score
from tideline.features.stats import FeatureStats
from tideline.models.registry import LoadedModel
from tideline.monitoring.drift import ColumnDrift, column_drift


@dataclass(frozen=True)
class MonitorRules:
    """When the monitor alerts (and asks for a retrain)."""

    drift_share: float = 0.25
    """... when at least this share of the model's features drifted ..."""
    null_rate_change: float = 0.10
    """... a feature's missing share moved this far from its materialised statistics
    (reported and e-mailed; it does not retrain by itself) ..."""
    prediction_drift: bool = True
    """... the score distribution drifted ..."""
    auc_drop: float = 0.05
    """... ROC-AUC on a newly labelled period fell this far below the test ROC-AUC ..."""
    importance_correlation: float = 0.6
    """... or a fresh fit ranks the features this differently (Spearman below this)."""
    sample_rows: int = 50_000
    """Rows a side in the HTML report."""
    reference_dates: int | None = 2
    """Compare with the training set's latest this-many as-of dates (None: all of it). Its
    earlier dates see shorter histories (a 90-day window on a young lake) and an older
    population, which would read as drift that is not there."""


@dataclass(frozen=True)
class NullCheck:
    expected: float | None
    """The missing share when the features were materialised (None: no statistics)."""
    reference: float
    current: float
    shifted: bool


def null_check(column: str, reference: pd.Series, current: pd.Series,
               expected: FeatureStats | None, rules: MonitorRules) -> NullCheck:
    """The current missing share against the materialised statistics (or, without them, the
    reference's)."""
    now, before = float(current.isna().mean()), float(reference.isna().mean())
    baseline = expected.null_rate if expected is not None else before
    return NullCheck(expected=None if expected is None else expected.null_rate,
                     reference=before, current=now,
                     shifted=abs(now - baseline) >= rules.null_rate_change)


def prediction_drift(model: LoadedModel, reference: pd.DataFrame, current: pd.DataFrame
                     ) -> ColumnDrift:
    """The champion's churn probabilities on the reference against the current population."""
    return column_drift("churn probability", model.predict(reference), model.predict(current),
                        "num")


@dataclass(frozen=True)
class PerformanceCheck:
    as_of: tuple[str, ...]
    rows: int
    roc_auc: float
    expected: float
    """The model's test ROC-AUC."""
    decayed: bool


def performance_check(model: LoadedModel, labelled: pd.DataFrame, label: str,
                      rules: MonitorRules) -> PerformanceCheck:
    """The champion's ROC-AUC on a labelled period it was not trained on."""
    y = labelled[label].to_numpy()
    auc = float(roc_auc_score(y, model.predict(labelled))) if len(np.unique(y)) == 2 else np.nan
    expected = model.record.roc_auc
    return PerformanceCheck(
        as_of=tuple(sorted(f"{t:%Y-%m-%d}" for t in labelled["as_of"].unique())),
        rows=len(labelled), roc_auc=auc, expected=expected,
        decayed=bool(np.isfinite(auc) and expected - auc >= rules.auc_drop))


@dataclass(frozen=True)
class ImportanceCheck:
    correlation: float
    """Spearman rank correlation of the features' gain shares, champion vs fresh fit."""
    threshold: float
    drifted: bool
    top: tuple[tuple[str, float, float], ...]
    """The features that matter most to either model: (feature, champion share, fresh share)."""


def gain_shares(booster: lgb.Booster, columns: Sequence[str]) -> np.ndarray:
    gain = booster.feature_importance(importance_type="gain")
    total = gain.sum()
    return gain / total if total else np.zeros(len(columns))


def importance_check(model: LoadedModel, labelled: pd.DataFrame, label: str,
                     params: Mapping[str, object], rules: MonitorRules, top: int = 10
                     ) -> ImportanceCheck:
    """Refit with the champion's fitted parameters and number of trees on the labelled period
    and compare which features each model gains most from."""
    columns = list(model.matrix.columns)
    data = lgb.Dataset(model.matrix.transform(labelled), labelled[label].to_numpy())
    fresh = lgb.train(dict(params), data, num_boost_round=model.booster.num_trees())
    before, after = gain_shares(model.booster, columns), gain_shares(fresh, columns)
    correlation = float(stats.spearmanr(before, after).statistic)
    order = np.argsort(-np.maximum(before, after), kind="stable")[:top]
    return ImportanceCheck(
        correlation=correlation, threshold=rules.importance_correlation,
        drifted=bool(correlation < rules.importance_correlation),
        top=tuple((columns[k], float(before[k]), float(after[k])) for k in order))
