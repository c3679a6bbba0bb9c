"""Monitor: the champion's training set vs the features it scores today → drift, missing
values, score drift, performance and importance once labels exist → Evidently report and JSON
summary in the lake → `tideline.drift.detected` when a retrain is due → e-mail to the owners
of what drifted. With an experiment running: each arm's outcome once the label horizon of its
scoring days has passed → report → `tideline.experiment.concluded` on a significant verdict."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from prefect import flow, get_run_logger
from tideline.core.settings import flow_settings
from tideline.features.store import FeatureStore
from tideline.flows.hooks import FAILURE_HOOKS
from tideline.lake.publish import find_published, new_run_id
from tideline.models.registry import open_model_registry
from tideline.models.spec import load_model_spec
from tideline.monitoring.checks import MonitorRules
from tideline.monitoring.events import Emitted
from tideline.monitoring.mail import Delivery
from tideline.tasks.experiments import (
    conclude_experiment,
    measure_experiment,
    write_experiment_report,
)
from tideline.tasks.monitoring import (
    drift_checks,
    email_owners,
    emit_drift_event,
    publish_drift_artifacts,
    record_alerts,
    write_drift_report,
)
from tideline.tasks.scoring import champion_for


@dataclass(frozen=True)
class MonitorRun:
    model: str
    as_of: date
    drifted: list[str]
    retrain: bool
    reasons: list[str]
    report: dict[str, str]
    """Lake paths of the HTML and summary, their commit and the local copy."""
    event: Emitted | None = None
    emails: list[Delivery] = field(default_factory=list)
    experiment: dict[str, Any] | None = None
    """The running experiment's outcome so far, when a scored day's horizon has passed."""


@flow(name="monitor", **FAILURE_HOOKS)
def monitor(run_id: str | None = None, model: str | None = None,
            as_of: date | None = None, notify: bool = True) -> MonitorRun:
    """champion vs today's features → report in the lake → event → e-mails (when `notify`)."""
    run_id = run_id or new_run_id()
    settings = flow_settings()
    logger = get_run_logger()
    store = FeatureStore.open(settings)
    spec = load_model_spec(model or settings.declared("model"), store.views)
    done = find_published(store.lake, f"{run_id}-alerts")
    if done is not None:  # this run reported and alerted already: nobody is told twice
        alerts = json.loads(store.lake.get(done.id, done.metadata["path"]))
        summary = json.loads(store.lake.get(done.id, alerts["report"]["summary"]))
        logger.info("monitor run %s alerted already (commit %s)", run_id, done.id[:12])
        return MonitorRun(model=summary["model"], as_of=date.fromisoformat(summary["as_of"]),
                          drifted=[f["column"] for f in summary["features"]
                                   if f["drift"]["drifted"]],
                          retrain=summary["retrain"], reasons=summary["reasons"],
                          report=alerts["report"])
    registry = open_model_registry(settings)
    record = champion_for(registry, store, spec)
    result, compared = drift_checks(store, record, spec, as_of, MonitorRules())
    report = write_drift_report(store, settings, result, compared, run_id)
    event = emit_drift_event(result, report) if result.reasons else None
    emails = email_owners(settings, result, report) if notify else []
    record_alerts(store, result, report, event, emails, run_id)
    publish_drift_artifacts(result, report, event, emails)
    logger.info("%s as of %s: %d of %d features drifted; %s", result.model, result.as_of,
                len(result.drifted), len(result.features),
                "retrain requested: " + "; ".join(result.reasons) if result.reasons
                else "no retrain needed")
    if event is not None and not event.delivered:
        logger.warning("the drift event was not delivered: %s", event.detail)
    experiment = registry.running_experiment(spec.name)
    measured = measure_experiment(store, registry, spec, experiment) if experiment else None
    if measured is not None:
        outcome = write_experiment_report(store, measured, run_id)
        concluded = conclude_experiment(registry, measured, outcome)
        logger.info("experiment %s: %s", measured.experiment.name, measured.verdict.message)
        if concluded is not None and not concluded.delivered:
            logger.warning("the experiment's event was not delivered: %s", concluded.detail)
    for failed in (d for d in emails if not d.sent):
        logger.warning("e-mail to %s not sent: %s", ", ".join(failed.to), failed.detail)
    return MonitorRun(model=result.model, as_of=result.as_of,
                      drifted=[f.column for f in result.drifted], retrain=bool(result.reasons),
                      reasons=result.reasons, report=report, event=event, emails=emails,
                      experiment=None if measured is None else measured.as_dict())
