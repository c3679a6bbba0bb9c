"""Train: labels from the lake at main → features at the spec's as-of dates (built on Ray where
missing) → a point-in-time training set, saved and tagged → its point-in-time audit → LightGBM
and the baseline on a time split → the model registry → the promotion gate."""
from __future__ import annotations

from dataclasses import dataclass

from prefect import flow, get_run_logger
from tideline.core.settings import flow_settings
from tideline.features.store import FeatureStore
from tideline.flows.build_features import build_features, ray_task_runner
from tideline.flows.hooks import FAILURE_HOOKS
from tideline.lake.publish import new_run_id
from tideline.models.promotion import GateDecision, recorded_decision
from tideline.models.registry import ModelRecord, open_model_registry
from tideline.models.spec import load_model_spec
from tideline.tasks.models import (
    assemble_training_set,
    audit_training_set,
    fit_model,
    label_training_examples,
    promotion_gate,
    publish_model_artifacts,
    register_trained_model,
)


@dataclass(frozen=True)
class TrainingOutcome:
    model: ModelRecord
    decision: GateDecision


@flow(name="train", **FAILURE_HOOKS)
def train(run_id: str | None = None, model: str | None = None) -> TrainingOutcome:
    """lake → labels + point-in-time features → audit → LightGBM → registry → promotion
    gate."""
    run_id = run_id or new_run_id()
    settings = flow_settings()
    logger = get_run_logger()
    store = FeatureStore.open(settings)
    spec = load_model_spec(model or settings.declared("model"), store.views)
    examples, missing = label_training_examples(store, spec)
    if missing:
        build_features.with_options(task_runner=ray_task_runner(settings))(
            run_id=f"{run_id}-train", as_of=missing)
    training = assemble_training_set(store, examples, spec)
    registry = open_model_registry(settings)
    done = registry.trained_on(spec.name, training.name, spec.version)
    if done is not None:
        logger.info("model %s was trained on %s already", done.ref, training.tag)
        return TrainingOutcome(model=done, decision=recorded_decision(registry, done))
    trained = fit_model(training, spec, audit_training_set(store, training))
    record = register_trained_model(registry, store, spec, trained, training)
    decision = promotion_gate(registry, store, record, trained, spec)
    record = registry.get(record.name, record.version)  # its stage after the gate
    publish_model_artifacts(record, trained, decision)
    logger.info("model %s: test ROC-AUC %.4f (baseline %.4f); %s", record.ref, record.roc_auc,
                trained.baseline_metrics.roc_auc,
                "champion" if decision.promoted else "candidate")
    return TrainingOutcome(model=record, decision=decision)
