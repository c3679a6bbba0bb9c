"""Scoring customers with a registered model, the same way in batch and online: the model's own
feature columns at the versions it was trained on (never re-ordered or filled in), a churn
probability, a risk segment and the features that pushed the score up most (their
contributions to the log-odds along the row's decision paths, `tideline.models.explain`)."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd
from tideline.core.errors import ModelError
from tideline.features.definitions import FeatureView
from tideline.features.retrieval import dates_with_tables
from tideline.features.store import FeatureStore, OnlineFeatures
from tideline.lake.base import MAIN
from tideline.models.experiment import Experiment, split_scores
from tideline.models.explain import contributions
from tideline.models.labels import Activity, active_at, load_activity
from tideline.models.registry import LoadedModel, ModelRecord, ModelRegistry, load_model
from tideline.models.spec import ModelSpec

REASONS = 3


def check_versions(record: ModelRecord, views: Sequence[FeatureView]) -> None:
    """The store must serve every view the model was trained on, at the same version."""
    serving = {view.name: view.version for view in views}
    for name, version in record.feature_views.items():
        if serving.get(name) != version:
            now = f"at {serving[name]}" if name in serving else "not at all"
            raise ModelError(
                f"model {record.ref} was trained on feature view {name!r} version {version}, "
                f"but the store serves it {now}; retrain the model, or build and serve that "
                "version")


def model_dates(store: FeatureStore, ref: str, record: ModelRecord) -> set[date]:
    """The as-of dates every view of the model has a feature table for at `ref`."""
    return dates_with_tables(store.lake, ref, [view for view in store.views
                                               if view.name in record.feature_views])


def scoring_population(store: FeatureStore, record: ModelRecord, spec: ModelSpec,
                       as_of: date | None, commit: str | None = None,
                       activity: Activity | None = None) -> tuple[date, pd.DataFrame]:
    """The model's features, at main (or `commit`), for every entity active before the day
    (the newest day every view of the model has a table for, unless given): what batch scoring
    and the drift monitor both look at. `activity` saves reading it again."""
    commit = commit or store.lake.resolve(MAIN)
    days = model_dates(store, commit, record)
    day = as_of or max(days, default=None)
    if day not in days:
        raise ModelError(f"no feature tables as of {day or 'any day'} for every view of "
                         f"{record.ref}; build them (`tideline features build --as-of`)")
    activity = activity or load_activity(store.lake, commit, spec.label)
    customers = active_at(activity, spec.label, day)
    features = store.get_training_set(customers, record.features, ref=commit,
                                      timestamp_column="as_of", save=False)
    return day, features.frame


def risk_segment(probability: np.ndarray, threshold: float) -> np.ndarray:
    """`high` at or above the model's threshold, `medium` above half of it, else `low`."""
    return np.where(probability >= threshold, "high",
                    np.where(probability >= threshold / 2, "medium", "low"))


def score(model: LoadedModel, frame: pd.DataFrame, key: str) -> pd.DataFrame:
    """One row per input row: key, churn probability, risk segment and the top reasons
    (`feature=value (+contribution)`, largest push towards churn first)."""
    x = model.matrix.transform(frame)
    tables, bias = model.paths
    pushes = contributions(model.booster, tables, x)
    # the binary objective's link on the summed path: one pass over the trees gives both
    probability = 1 / (1 + np.exp(-(pushes.sum(axis=1) + bias)))
    order = np.argsort(-pushes, axis=1, kind="stable")[:, :REASONS]
    columns = list(model.matrix.columns)
    values = [frame[c].to_numpy(dtype=object) for c in columns]
    reasons = ["; ".join(f"{columns[k]}={_shown(values[k][row])} ({pushes[row, k]:+.3f})"
                         for k in picks if pushes[row, k] > 0)
               for row, picks in enumerate(order)]
    return pd.DataFrame({key: frame[key].to_numpy(), "probability": probability,
                         "risk": risk_segment(probability, model.record.threshold),
                         "reasons": reasons}, index=frame.index)


def _shown(value: object) -> str:
    if isinstance(value, float):
        return "null" if np.isnan(value) else f"{value:.4g}"
    return "null" if value is None else str(value)


class OnlineScorer:
    """A model's champion scoring entities from the online store: what `POST /predict` and
    the stream processor's alerts share. The champion is looked up on every call (a promotion
    takes effect at once) and its booster loaded once per version."""

    def __init__(self, store: FeatureStore, models: ModelRegistry, model: str) -> None:
        self.store, self.models, self.model = store, models, model
        self._loaded: dict[str, LoadedModel] = {}
        self._challengers: dict[str, LoadedModel] = {}

    def champion(self) -> LoadedModel | None:
        """The champion, loaded; None when the model has none. Raises `ModelError` when the
        store's feature views are not the versions it was trained on."""
        record = self.models.champion(self.model)
        if record is None:
            return None
        check_versions(record, self.store.views)
        if record.ref not in self._loaded:
            self._loaded.clear()
            self._loaded[record.ref] = load_model(self.store.lake, record)
        return self._loaded[record.ref]

    def score(self, model: LoadedModel, entity_ids: Sequence[Any]
              ) -> tuple[OnlineFeatures, pd.DataFrame]:
        """The online features of the entities and their scores (`score`), in order."""
        online = self.store.get_online_features(entity_ids, model.record.features)
        return online, score(model, online.frame, online.frame.columns[0])

    def experiment(self) -> Experiment | None:
        """The model's running experiment, looked up on every call like the champion."""
        return self.models.running_experiment(self.model)

    def challenge(self, experiment: Experiment, online: OnlineFeatures, scores: pd.DataFrame,
                  entity_ids: Sequence[Any]) -> pd.DataFrame:
        """The scores acted on during `experiment` (the champion's `scores`, but the
        challenger's for its arm in a split); both models' scores of the entities the store
        knows are recorded in the registry."""
        record = self.models.get(self.model, experiment.challenger)
        check_versions(record, self.store.views)
        if record.ref not in self._challengers:
            self._challengers = {record.ref: load_model(self.store.lake, record)}
        _, theirs = self.score(self._challengers[record.ref], entity_ids)
        key = scores.columns[0]
        acted, rows = split_scores(experiment, scores, theirs, key,
                                   datetime.now(UTC).date())
        self.models.record_predictions(experiment.name, rows[np.asarray(online.found)], key)
        return acted
