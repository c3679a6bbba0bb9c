"""Retrain: what the drift automation runs. The training set is rebuilt from main as it is now
and the model goes through the same training and promotion gate as any other; the drift
report that asked for it is named in the run and its artifact."""
from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from tideline.flows.hooks import FAILURE_HOOKS
from tideline.flows.train import TrainingOutcome, train
from tideline.lake.publish import new_run_id


@flow(name="retrain", **FAILURE_HOOKS)
def retrain(model: str | None = None, report: str | None = None,
            reasons: list[str] | None = None, run_id: str | None = None) -> TrainingOutcome:
    """drift report → train on current main → promotion gate."""
    run_id = run_id or f"retrain-{new_run_id()}"
    logger = get_run_logger()
    why = "; ".join(reasons or []) or "asked for"
    logger.info("retraining %s (%s); drift report: %s", model or "the configured model", why,
                report or "none")
    outcome = train(run_id=run_id, model=model)
    decision = outcome.decision
    create_markdown_artifact(
        key="retrain",
        markdown=f"# Retrain of `{outcome.model.name}`\n\nWhy: {why}\n\nDrift report: "
                 f"`{report or 'none'}`\n\nResult: {outcome.model.ref}, test ROC-AUC "
                 f"{outcome.model.roc_auc:.4f}, "
                 + ("champion" if decision.promoted else "kept as candidate: "
                    + "; ".join(decision.reasons)) + "\n",
        description=f"retrain of {outcome.model.name}")
    return outcome
