"""Tasks around the drift monitor: the checks, the report into the lake, the event, the
e-mails and the run's artifacts."""
from __future__ import annotations

import json
from dataclasses import asdict
from datetime import date
from pathlib import Path

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE
from tideline.core.settings import Settings
from tideline.features.store import FeatureStore
from tideline.lake.publish import publish
from tideline.models.registry import ModelRecord
from tideline.models.spec import ModelSpec
from tideline.monitoring.alerts import owner_mails
from tideline.monitoring.checks import MonitorRules
from tideline.monitoring.events import Emitted, drift_event, emit
from tideline.monitoring.evidently_report import render_report
from tideline.monitoring.mail import Delivery, send_mails
from tideline.monitoring.monitor import Comparison, MonitorResult, run_checks, summary_json


@task(name="drift-checks", cache_policy=NONE)
def drift_checks(store: FeatureStore, record: ModelRecord, spec: ModelSpec, as_of: date | None,
                 rules: MonitorRules) -> tuple[MonitorResult, Comparison]:
    return run_checks(store, record, spec, as_of, rules)


def report_prefix(result: MonitorResult) -> str:
    name, _, version = result.model.partition(":v")
    return f"reports/drift/{name}/v{version}/as_of={result.as_of:%Y-%m-%d}"


@task(name="write-drift-report", retries=1, cache_policy=NONE)
def write_drift_report(store: FeatureStore, settings: Settings, result: MonitorResult,
                       compared: Comparison, run_id: str) -> dict[str, str]:
    """The Evidently HTML and the JSON summary, kept locally (for the link) and published to
    the lake through the run's branch; returns their lake paths, the commit and local path."""
    prefix = report_prefix(result)
    local = settings.data_dir / prefix / run_id / "report.html"
    render_report(compared.reference, compared.current, [f.drift for f in result.features],
                  compared.policies, local, sample_rows=result.rules.sample_rows)
    summary = summary_json(result)
    (local.parent / "summary.json").write_bytes(summary)
    with publish(store.lake, f"{run_id}-monitor",
                 message=f"drift report for {result.model} as of {result.as_of}",
                 metadata={"stage": "monitor", "model": result.model,
                           "as_of": f"{result.as_of}", "retrain": str(bool(result.reasons))}
                 ) as run:
        store.lake.put(run.branch, f"{prefix}/report.html", local.read_bytes())
        store.lake.put(run.branch, f"{prefix}/summary.json", summary)
    return {"html": f"{prefix}/report.html", "summary": f"{prefix}/summary.json",
            "commit": run.published.id, "local": str(local.resolve())}


@task(name="emit-drift-event", cache_policy=NONE)
def emit_drift_event(result: MonitorResult, report: dict[str, str]) -> Emitted:
    return emit(drift_event(result, report))


@task(name="email-owners", cache_policy=NONE)
def email_owners(settings: Settings, result: MonitorResult, report: dict[str, str]
                 ) -> list[Delivery]:
    local = Path(report["local"])
    return send_mails(settings, owner_mails(result, local.as_uri(), local.read_bytes()))


@task(name="record-alerts", retries=1, cache_policy=NONE)
def record_alerts(store: FeatureStore, result: MonitorResult, report: dict[str, str],
                  event: Emitted | None, deliveries: list[Delivery], run_id: str) -> str:
    """What was told to whom (the event and each e-mail) next to the report in the lake."""
    path = f"{report_prefix(result)}/alerts.json"
    body = {"report": report, "event": None if event is None else asdict(event),
            "emails": [asdict(d) for d in deliveries]}
    with publish(store.lake, f"{run_id}-alerts", message=f"alerts for {result.model}",
                 metadata={"stage": "alerts", "model": result.model, "path": path}) as run:
        store.lake.put(run.branch, path, json.dumps(body, indent=1, default=str).encode())
    return path


@task(name="publish-drift-artifacts")
def publish_drift_artifacts(result: MonitorResult, report: dict[str, str],
                            event: Emitted | None, deliveries: list[Delivery]) -> None:
    create_table_artifact(
        key="drifted-features", description=f"{result.model}: features as of {result.as_of} "
                                             "against the training set",
        table=[{"feature": f.column, "view": f.view, "owner": f.owner, "test": f.drift.method,
                "score": round(f.drift.score, 4), "threshold": f.drift.threshold,
                "drift": f.drift.drifted, "missing now": round(f.nulls.current, 4),
                "missing changed": f.nulls.shifted}
               for f in sorted(result.features, key=lambda f: (not f.alert, f.column))])
    create_link_artifact(key="drift-report", link=Path(report["local"]).as_uri(),
                         link_text=f"Evidently report for {result.model} ({result.as_of})")
    verdict = ("**retrain requested**: " + "; ".join(result.reasons) if result.reasons
               else "no retrain needed")
    told = (f"event `{event.event}` {'delivered' if event.delivered else 'UNDELIVERED: '}"
            f"{'' if event.delivered else event.detail}" if event else "no event (no retrain)")
    sent = sum(d.sent for d in deliveries)
    create_markdown_artifact(
        key="drift-summary",
        markdown=f"# Drift: `{result.model}` as of {result.as_of}\n\n{verdict}\n\n"
                 f"{len(result.drifted)} of {len(result.features)} features drifted "
                 f"({result.share:.0%}); scores: {result.prediction.method} "
                 f"{result.prediction.score:.4f}{' (drift)' if result.prediction.drifted else ''}"
                 f"\n\nReference: training set `{result.reference['training_set']}` "
                 f"({result.reference['rows']:,} rows); current: {result.current_rows:,} "
                 f"customers\n\nReport `{report['html']}` at commit `{report['commit'][:12]}`"
                 f"\n\n{told}; e-mails: {sent} of {len(deliveries)} sent\n\n"
                 + "".join(f"- {note}\n" for note in result.notes),
        description=f"drift monitor for {result.model}")
