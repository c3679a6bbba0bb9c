"""The drift monitor: the champion's training set (read back from its lake tag) is the
reference, the features of the customers it would score today are the current data. Each of
the model's features is tested for drift and missing values, the score distribution for drift,
and, once labels exist for a period after training, the champion's ROC-AUC and a fresh fit's
feature importance. The verdict says whether to retrain and why."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
from tideline.features.retrieval import resolve_features
from tideline.features.store import FeatureStore
from tideline.lake.base import MAIN
from tideline.models.boosting import lightgbm_params
from tideline.models.labels import Activity, label_examples, labelable_dates, load_activity
from tideline.models.registry import LoadedModel, ModelRecord, load_model
from tideline.models.scoring import model_dates, scoring_population
from tideline.models.spec import ModelSpec
from tideline.monitoring.checks import (
    ImportanceCheck,
    MonitorRules,
    NullCheck,
    PerformanceCheck,
    importance_check,
    null_check,
    performance_check,
    prediction_drift,
)
from tideline.monitoring.drift import ColumnDrift, ColumnPolicy, detect_drift, drifted_share


@dataclass(frozen=True)
class FeatureCheck:
    column: str
    view: str
    owner: str
    drift: ColumnDrift
    nulls: NullCheck

    @property
    def alert(self) -> bool:
        return self.drift.drifted or self.nulls.shifted


@dataclass(frozen=True)
class MonitorResult:
    model: str
    owner: str
    as_of: date
    reference: dict[str, Any]
    """The training set: name, tag, commit, and the rows and as-of dates compared with."""
    current_rows: int
    features: tuple[FeatureCheck, ...]
    prediction: ColumnDrift
    performance: PerformanceCheck | None
    importance: ImportanceCheck | None
    rules: MonitorRules
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def drifted(self) -> list[FeatureCheck]:
        return [f for f in self.features if f.drift.drifted]

    @property
    def share(self) -> float:
        return drifted_share([f.drift for f in self.features])

    @property
    def reasons(self) -> list[str]:
        """Why a retrain is due (empty: it is not)."""
        reasons = []
        if self.features and self.share >= self.rules.drift_share:
            reasons.append(f"{len(self.drifted)} of {len(self.features)} features drifted "
                           f"({self.share:.0%} >= {self.rules.drift_share:.0%})")
        if self.rules.prediction_drift and self.prediction.drifted:
            reasons.append(f"the score distribution drifted ({self.prediction.method} "
                           f"{self.prediction.score:.3f})")
        if self.performance is not None and self.performance.decayed:
            p = self.performance
            reasons.append(f"ROC-AUC fell to {p.roc_auc:.3f} from {p.expected:.3f} on "
                           f"{', '.join(p.as_of)}")
        if self.importance is not None and self.importance.drifted:
            reasons.append(f"a fresh fit ranks the features differently (Spearman "
                           f"{self.importance.correlation:.2f})")
        return reasons

    def summary(self) -> dict[str, Any]:
        """Everything, as JSON-ready data (the `summary.json` next to the HTML report)."""
        def number(value: float) -> float | None:
            return None if value is None or not np.isfinite(value) else float(value)

        def drift(d: ColumnDrift) -> dict[str, Any]:
            return {**asdict(d), "score": number(d.score), "effect": number(d.effect)}

        return {
            "model": self.model, "owner": self.owner, "as_of": f"{self.as_of}",
            "reference": self.reference, "current_rows": self.current_rows,
            "drifted_share": self.share, "retrain": bool(self.reasons), "reasons": self.reasons,
            "features": [{"column": f.column, "view": f.view, "owner": f.owner,
                          "drift": drift(f.drift), "nulls": asdict(f.nulls)}
                         for f in self.features],
            "prediction": drift(self.prediction),
            "performance": None if self.performance is None else asdict(self.performance),
            "importance": None if self.importance is None else asdict(self.importance),
            "rules": asdict(self.rules), "notes": list(self.notes)}


@dataclass(frozen=True)
class Comparison:
    """The frames compared, kept for the HTML report."""

    reference: pd.DataFrame
    current: pd.DataFrame
    policies: dict[str, ColumnPolicy]


def labelled_period(store: FeatureStore, record: ModelRecord, spec: ModelSpec,
                    trained_until: date, commit: str, activity: Activity
                    ) -> tuple[pd.DataFrame | None, str]:
    """The newest labelled as-of dates after the training set's last one that have feature
    tables for every view of the model, with their features; or None and why not."""
    built = model_dates(store, commit, record)
    dates = [d for d in labelable_dates(activity, spec.label, spec.test_dates, spec.every_days)
             if d > trained_until and d in built]
    if not dates:
        return None, (f"no labelled period after the training set's last date ({trained_until}) "
                      f"yet: labels need {spec.label.horizon_days} days of later activity and "
                      "features built as of those dates")
    examples = label_examples(activity, spec.label, dates)
    frame = store.get_training_set(examples, record.features, ref=commit,
                                   timestamp_column="as_of", save=False).frame
    return frame, ""


def run_checks(store: FeatureStore, record: ModelRecord, spec: ModelSpec, as_of: date | None,
               rules: MonitorRules) -> tuple[MonitorResult, Comparison]:
    training = store.load_training_set(record.training_set)
    reference = training.frame
    if rules.reference_dates is not None:
        latest = sorted(reference["as_of"].unique())[-rules.reference_dates:]
        reference = reference[reference["as_of"].isin(latest)]
    commit = store.lake.resolve(MAIN)
    activity = load_activity(store.lake, commit, spec.label)
    day, current = scoring_population(store, record, spec, as_of, commit, activity)
    refs = {r.column: r for r in resolve_features(store.views, record.features)}
    policies = {c: ColumnPolicy(r.view.drift_method, r.view.drift_threshold)
                for c, r in refs.items()}
    drifts = detect_drift(reference, current, policies)
    expected = {(view.name, s.feature): s for view in store.views
                if view.name in record.feature_views
                for s in store.registry.stats(view.name, view.version)}
    checks = []
    for d in drifts:
        ref = refs[d.column]
        checks.append(FeatureCheck(
            d.column, ref.view.name, ref.view.owner, d,
            null_check(d.column, reference[d.column], current[d.column],
                       expected.get((ref.view.name, ref.feature)), rules)))
    model: LoadedModel = load_model(store.lake, record)
    trained_until = pd.Timestamp(reference["as_of"].max()).date()
    labelled, why_not = labelled_period(store, record, spec, trained_until, commit, activity)
    notes = [why_not] if why_not else []
    performance = importance = None
    if labelled is not None:
        performance = performance_check(model, labelled, spec.label.name, rules)
        fitted = {k: v for k, v in record.params.items()
                  if k not in ("num_boost_round", "rounds")}  # the registry's bookkeeping
        importance = importance_check(model, labelled, spec.label.name,
                                      lightgbm_params(spec, fitted), rules)
    result = MonitorResult(
        model=record.ref, owner=record.owner, as_of=day,
        reference={"training_set": training.name, "tag": training.tag,
                   "commit": training.lake_commit, "rows": len(reference),
                   "as_of": sorted({f"{pd.Timestamp(t):%Y-%m-%d}" for t in reference["as_of"]})},
        current_rows=len(current), features=tuple(checks),
        prediction=prediction_drift(model, reference, current), performance=performance,
        importance=importance, rules=rules, notes=tuple(notes))
    return result, Comparison(reference=reference[list(policies)],
                              current=current[list(policies)], policies=policies)


def summary_json(result: MonitorResult) -> bytes:
    return json.dumps(result.summary(), indent=1, sort_keys=True, default=str).encode()
