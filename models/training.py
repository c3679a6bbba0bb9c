"""Training a churn model on a point-in-time training set: a time-based split (earlier as-of
dates train, later ones validate and test, never shuffled across time), LightGBM with class
weighting and early stopping on the validation fold, a logistic-regression baseline, and test
metrics for both.

The validation fold picks the number of boosting rounds and the decision threshold; then both
models are refitted on training and validation rows together (with the rounds scaled to the
larger data), because the newest weeks say most about the test weeks. The test fold is never
seen before the metrics are computed."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from tideline.core.errors import ModelError
from tideline.models.boosting import lightgbm_params, planned, rounds_on_validation
from tideline.models.evaluation import Metrics, best_f1_threshold, evaluate
from tideline.models.leakage import leaking, separation
from tideline.models.search import Trial, search
from tideline.models.spec import ModelSpec

MIN_POSITIVES = 20


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame

    def dates(self) -> dict[str, list[str]]:
        return {name: sorted(f"{t:%Y-%m-%d}" for t in getattr(self, name)["as_of"].unique())
                for name in ("train", "valid", "test")}


def time_split(frame: pd.DataFrame, spec: ModelSpec) -> Split:
    """The latest `test_dates` as-of dates test, the `valid_dates` before them validate, the
    rest train; each fold needs both classes and enough churners to learn from."""
    dates = sorted(frame["as_of"].unique())
    if len(dates) < spec.valid_dates + spec.test_dates + 1:
        raise ModelError(f"model {spec.name!r}: the training set has {len(dates)} as-of dates; "
                         f"a time split needs at least {spec.valid_dates + spec.test_dates + 1}")
    test = dates[-spec.test_dates:]
    valid = dates[-(spec.test_dates + spec.valid_dates):-spec.test_dates]
    folds = Split(train=frame[frame["as_of"] < valid[0]],
                  valid=frame[frame["as_of"].isin(valid)], test=frame[frame["as_of"].isin(test)])
    label = spec.label.name
    for name in ("train", "valid", "test"):
        y = getattr(folds, name)[label]
        if y.nunique() < 2:
            days = ", ".join(folds.dates()[name])
            raise ModelError(f"model {spec.name!r}: the {name} fold ({days}) has a single class "
                             f"({label} = {y.iloc[0] if len(y) else 'none'})")
        if y.sum() < MIN_POSITIVES:
            raise ModelError(f"model {spec.name!r}: the {name} fold has {int(y.sum())} positive "
                             f"labels; at least {MIN_POSITIVES} are needed to fit and judge")
    return folds


@dataclass(frozen=True)
class FeatureMatrix:
    """The model's input columns, in order, and the categories of its text columns (fixed at
    training so scoring encodes them the same way; an unseen value becomes missing)."""

    columns: tuple[str, ...]
    categories: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def fit(cls, frame: pd.DataFrame, columns: Sequence[str]) -> FeatureMatrix:
        empty = [c for c in columns if frame[c].isna().all()]
        if empty:
            raise ModelError(f"feature(s) {', '.join(empty)} have no value in the training fold; "
                             "drop them from the model's features or build them first")
        categories = {c: sorted(map(str, frame[c].dropna().unique())) for c in columns
                      if not pd.api.types.is_numeric_dtype(frame[c])
                      or pd.api.types.is_bool_dtype(frame[c])}
        return cls(tuple(columns), categories)

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise ModelError(f"the model needs feature(s) {', '.join(missing)}, which the input "
                             "lacks")
        numeric = [c for c in self.columns if c not in self.categories]
        # the numbers as one float block (a frame of separate columns is consolidated, copied
        # again, by pandas); infinities (a ratio over zero) count as missing, in training and
        # scoring
        block = np.empty((len(frame), len(numeric)))
        for k, column in enumerate(numeric):
            block[:, k] = pd.to_numeric(frame[column], errors="coerce").to_numpy(
                dtype=float, na_value=np.nan)
        block[np.isinf(block)] = np.nan
        out = pd.DataFrame(block, index=frame.index, columns=numeric)
        for column, categories in self.categories.items():
            out[column] = pd.Categorical(frame[column].astype("string"), categories=categories)
        return out[list(self.columns)]

    @property
    def numeric(self) -> list[str]:
        return [c for c in self.columns if c not in self.categories]


SAMPLE_CAP = 25_000
"""Rows the leakage check learns from at most (a stratified sample): an AUC near 1 is plain in
far fewer, and the check's cost would otherwise grow with the data."""
BASELINE_CAP = 50_000
"""Rows the baseline learns from at most (a stratified sample): a logistic regression of a
hundred inputs gains little beyond."""


def capped(rows: int, y: np.ndarray, cap: int = SAMPLE_CAP, seed: int = 7) -> np.ndarray:
    """Positions of at most `cap` rows keeping each class's share (all rows when fewer)."""
    if rows <= cap:
        return np.arange(rows)
    rng = np.random.default_rng(seed)
    picked = [rng.choice(np.flatnonzero(y == value), size=round(cap * np.mean(y == value)),
                         replace=False) for value in np.unique(y)]
    return np.sort(np.concatenate(picked))


@dataclass
class TrainedModel:
    booster: lgb.Booster
    baseline: Pipeline
    matrix: FeatureMatrix
    threshold: float
    metrics: Metrics
    baseline_metrics: Metrics
    importance: dict[str, float]
    """Feature -> total gain, largest first."""
    leaks: dict[str, float]
    """Features left out for separating the classes too well alone -> their AUC."""
    dates: dict[str, list[str]]
    time_leaks: dict[str, str] = field(default_factory=dict)
    """Features left out for using data at or after the as-of time -> the audit's finding."""
    params: dict[str, Any] = field(default_factory=dict)
    """The LightGBM parameters it was fitted with (the search's pick, or the spec's)."""
    boosting: str = ""
    """The rule that chose the parameters the spec left open (`boosting.planned`)."""
    trials: list[Trial] = field(default_factory=list)
    """The hyper-parameter search's finished trials (empty without a search)."""
    test_scores: dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    test_labels: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    test_frame: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)
    """The test fold's rows (entity, as-of date, features, label): the held-out data a
    champion is compared on."""


def fit_baseline(x: pd.DataFrame, y: np.ndarray, matrix: FeatureMatrix) -> Pipeline:
    """Logistic regression on standardised numbers (median-imputed, with missing indicators)
    and one-hot categories."""
    columns = ColumnTransformer([
        ("numbers", make_pipeline(SimpleImputer(strategy="median", add_indicator=True,
                                                keep_empty_features=True), StandardScaler()),
         matrix.numeric),
        ("categories", make_pipeline(SimpleImputer(strategy="constant", fill_value="missing"),
                                     OneHotEncoder(handle_unknown="ignore")),
         list(matrix.categories)),
    ])
    model = Pipeline([("columns", columns),
                      # Newton steps on a hundred inputs: a few iterations, the same optimum
                      ("classifier", LogisticRegression(class_weight="balanced",
                                                        solver="newton-cholesky", max_iter=200))])
    return model.fit(_for_sklearn(x, matrix), y)


def fit_baselines(x: pd.DataFrame, y: np.ndarray, x_valid: pd.DataFrame, x_all: pd.DataFrame,
                  y_all: np.ndarray, x_test: pd.DataFrame, matrix: FeatureMatrix
                  ) -> tuple[Pipeline, np.ndarray, np.ndarray]:
    """The baseline as LightGBM is: fitted on the training fold (`x`) for its validation scores
    (its threshold), then refitted on training and validation (`x_all`) for its test scores;
    each fit on at most `BASELINE_CAP` rows."""
    rows, rows_all = capped(len(y), y, BASELINE_CAP), capped(len(y_all), y_all, BASELINE_CAP)
    valid = fit_baseline(x.iloc[rows], y[rows], matrix).predict_proba(
        _for_sklearn(x_valid, matrix))[:, 1]
    baseline = fit_baseline(x_all.iloc[rows_all], y_all[rows_all], matrix)
    return baseline, valid, baseline.predict_proba(_for_sklearn(x_test, matrix))[:, 1]


def _for_sklearn(x: pd.DataFrame, matrix: FeatureMatrix) -> pd.DataFrame:
    return x.astype({c: object for c in matrix.categories})


def train_model(frame: pd.DataFrame, columns: Sequence[str], spec: ModelSpec,
                time_leaks: dict[str, str] | None = None) -> TrainedModel:
    """Split by time, leave out leaking features (`time_leaks`, found by the point-in-time
    audit, and any that alone separate the classes too well on the training fold), fit
    LightGBM and the baseline, and judge both on the test fold at the threshold that maximises
    F1 on validation."""
    time_leaks = time_leaks or {}
    folds = time_split(frame, spec)
    spec, rule = planned(spec, len(folds.train))
    label = spec.label.name
    columns = [c for c in columns if c not in time_leaks]
    sample = folds.train.iloc[capped(len(folds.train), folds.train[label].to_numpy())]
    leaks = leaking(separation(sample, columns, sample[label].to_numpy()), spec.leakage_auc)
    matrix = FeatureMatrix.fit(folds.train, [c for c in columns if c not in leaks])
    x, x_valid, x_test = (matrix.transform(f) for f in (folds.train, folds.valid, folds.test))
    y, y_valid, y_test = (f[label].to_numpy() for f in (folds.train, folds.valid, folds.test))
    x_all, y_all = pd.concat([x, x_valid]), np.concatenate([y, y_valid])

    params, trials = search(x, y, x_valid, y_valid, spec)
    early = rounds_on_validation(x, y, x_valid, y_valid, replace(spec, params=params))
    threshold = best_f1_threshold(y_valid, early.predict(x_valid,
                                                         num_iteration=early.best_iteration))
    rounds = max(1, round(early.best_iteration * len(y_all) / len(y)))
    booster = lgb.train(lightgbm_params(spec, params), lgb.Dataset(x_all, y_all),
                        num_boost_round=rounds)
    scores = booster.predict(x_test)
    baseline, baseline_valid, baseline_scores = fit_baselines(x, y, x_valid, x_all, y_all,
                                                              x_test, matrix)
    gain = booster.feature_importance(importance_type="gain")
    importance = dict(sorted(zip(matrix.columns, map(float, gain), strict=True),
                             key=lambda item: -item[1]))
    return TrainedModel(
        booster=booster, baseline=baseline, matrix=matrix, threshold=threshold,
        metrics=evaluate(y_test, scores, threshold),
        baseline_metrics=evaluate(y_test, baseline_scores,
                                  best_f1_threshold(y_valid, baseline_valid)),
        importance=importance, leaks=leaks, dates=folds.dates(),
        time_leaks=time_leaks, params=params, boosting=rule, trials=trials,
        test_scores={"lightgbm": scores, "baseline": baseline_scores}, test_labels=y_test,
        test_frame=folds.test)
