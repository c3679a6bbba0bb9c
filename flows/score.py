"""Score: the champion model × every active customer's features as of a day → churn
probability, risk segment and reasons, into the lake and the analysts' `scores` table. With an
experiment running, the challenger scores the same customers: in shadow its scores are only
recorded, in a split its arm's customers get its scores as the ones acted on."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from prefect import flow, get_run_logger
from tideline.core.settings import flow_settings
from tideline.features.store import FeatureStore
from tideline.flows.hooks import FAILURE_HOOKS
from tideline.lake.publish import find_published, new_run_id
from tideline.models.registry import open_model_registry
from tideline.models.spec import load_model_spec
from tideline.tasks.experiments import (
    challenger_for,
    publish_experiment_scores,
    split_experiment_scores,
)
from tideline.tasks.scoring import (
    champion_for,
    publish_score_artifacts,
    publish_scores,
    score_customers,
)


@dataclass(frozen=True)
class ScoringRun:
    model: str
    as_of: date
    customers: int
    high_risk: int
    path: str


@flow(name="score", **FAILURE_HOOKS)
def score(run_id: str | None = None, model: str | None = None,
          as_of: date | None = None) -> ScoringRun:
    """champion → active customers' features as of a day → scores in the lake and the DB."""
    run_id = run_id or new_run_id()
    settings = flow_settings()
    store, registry = FeatureStore.open(settings), open_model_registry(settings)
    spec = load_model_spec(model or settings.declared("model"), store.views)
    done = find_published(store.lake, f"{run_id}-scores")
    if done is not None:  # this run scored already: the same answer, nothing written again
        m = done.metadata
        return ScoringRun(model=m["model"], as_of=date.fromisoformat(m["as_of"]),
                          customers=int(m["customers"]), high_risk=int(m["high_risk"]),
                          path=m["path"])
    record = champion_for(registry, store, spec)
    day, scores = score_customers(store, record, spec, as_of)
    key = spec.label.entity_key
    experiment = registry.running_experiment(spec.name)
    if experiment is not None:
        challenger = challenger_for(registry, store, experiment)
        _, challenged = score_customers(store, challenger, spec, day)
        scores, rows = split_experiment_scores(experiment, scores, challenged, key, day)
        publish_experiment_scores(store, experiment, day, rows, run_id)
    path = publish_scores(store, registry, record, day, scores, run_id, key)
    publish_score_artifacts(record, day, scores, key)
    high = int((scores["risk"] == "high").sum())
    get_run_logger().info("%s scored %d customers as of %s: %d at high risk", record.ref,
                          len(scores), day, high)
    return ScoringRun(model=record.ref, as_of=day, customers=len(scores), high_risk=high,
                      path=path)
