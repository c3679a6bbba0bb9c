"""Tasks around model training: dates and labels from the lake, the point-in-time training set,
the fit, registration with its artifacts, the promotion gate and the run's artifacts."""
from __future__ import annotations

from datetime import date

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE
from tideline.features.leakage import future_leaks
from tideline.features.retrieval import dates_with_tables
from tideline.features.store import FeatureStore, TrainingSet
from tideline.models.labels import label_examples, labelable_dates, load_activity
from tideline.models.promotion import GateDecision, judge
from tideline.models.registry import ModelRecord, ModelRegistry, register_model
from tideline.models.spec import ModelSpec
from tideline.models.training import TrainedModel, train_model


@task(name="label-examples", cache_policy=NONE)
def label_training_examples(store: FeatureStore, spec: ModelSpec
                            ) -> tuple[pd.DataFrame, list[date]]:
    """The labelled examples at the spec's as-of dates from main's activity, and the dates
    some view has no feature table for yet."""
    commit = store.lake.resolve("main")
    activity = load_activity(store.lake, commit, spec.label)
    dates = labelable_dates(activity, spec.label, spec.as_of_dates, spec.every_days)
    built = dates_with_tables(store.lake, commit, store.views)
    return label_examples(activity, spec.label, dates), [d for d in dates if d not in built]


@task(name="training-set", retries=1, cache_policy=NONE)
def assemble_training_set(store: FeatureStore, examples: pd.DataFrame, spec: ModelSpec
                          ) -> TrainingSet:
    return store.get_training_set(examples, spec.features, timestamp_column="as_of")


@task(name="point-in-time-audit", cache_policy=NONE)
def audit_training_set(store: FeatureStore, training: TrainingSet) -> dict[str, str]:
    """Features of the training set that use data at or after their row's as-of time."""
    leaks = future_leaks(store.lake, training.ref_commit, store.views, training.frame,
                         training.features, timestamp_column="as_of")
    for column, reason in leaks.items():
        get_run_logger().warning("left out %s: %s", column, reason)
    return leaks


@task(name="fit-model", cache_policy=NONE)
def fit_model(training: TrainingSet, spec: ModelSpec, time_leaks: dict[str, str]
              ) -> TrainedModel:
    return train_model(training.frame, training.features, spec, time_leaks)


@task(name="register-model", retries=1, cache_policy=NONE)
def register_trained_model(registry: ModelRegistry, store: FeatureStore, spec: ModelSpec,
                           trained: TrainedModel, training: TrainingSet) -> ModelRecord:
    return register_model(registry, store.lake, spec, trained, training)


@task(name="promotion-gate", cache_policy=NONE)
def promotion_gate(registry: ModelRegistry, store: FeatureStore, record: ModelRecord,
                   trained: TrainedModel, spec: ModelSpec) -> GateDecision:
    return judge(registry, store.lake, record, trained, spec.gate)


@task(name="publish-model-artifacts")
def publish_model_artifacts(record: ModelRecord, trained: TrainedModel,
                            decision: GateDecision) -> None:
    rows = []
    for name, m in (("LightGBM", trained.metrics), ("baseline", trained.baseline_metrics)):
        rows.append({"model": name, "ROC-AUC": round(m.roc_auc, 4), "PR-AUC": round(m.pr_auc, 4),
                     "precision": round(m.precision, 3), "recall": round(m.recall, 3),
                     "F1": round(m.f1, 3), "lift@10%": round(m.lift_top_10, 2),
                     "Brier": round(m.brier, 4), "threshold": round(m.threshold, 3)})
    create_table_artifact(key="model-metrics", table=rows,
                          description=f"{record.ref}: test fold {', '.join(trained.dates['test'])}")
    create_table_artifact(
        key="feature-importance",
        table=[{"feature": k, "gain": round(v, 1)} for k, v in list(
            trained.importance.items())[:20]],
        description=f"{record.ref}: top 20 features by gain")
    verdict = ("**promoted to champion**" if decision.promoted else
               "kept as candidate: " + "; ".join(decision.reasons))
    versus = (f"\n\nCompared with {decision.champion} ({decision.champion_roc_auc:.4f}) on "
              f"{decision.compared_on}." if decision.champion else "")
    create_markdown_artifact(
        key="model-card",
        markdown=f"# Model `{record.ref}`\n\nTest ROC-AUC {record.roc_auc:.4f} (baseline "
                 f"{trained.baseline_metrics.roc_auc:.4f}); {verdict}.{versus}\n\n"
                 f"Training set `{record.training_set_tag}` (commit "
                 f"`{record.training_set_commit[:12]}`), features read at "
                 f"`{record.feature_commit[:12]}`; artifacts `{record.artifact_path}` "
                 f"(ROC/PR curves `curves.png`, `confusion.png`) at "
                 f"`{record.artifact_commit[:12]}`.\n\nLeft out as leaks: "
                 f"{', '.join(trained.leaks) or 'none'}\n\nBoosting: {trained.boosting}\n",
        description=f"model {record.ref}")
