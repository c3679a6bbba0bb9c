"""The whole pipeline, end to end, on whatever stages exist so far."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from prefect import flow, get_run_logger
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from tideline.core.ray_runtime import ray_session
from tideline.core.settings import load_settings
from tideline.demo.project import is_demo
from tideline.features.materialize import FeatureBuild
from tideline.features.store import OnlineWrite
from tideline.flows.build_features import build_features, materialize_online, ray_task_runner
from tideline.flows.discover import Discovery, cannot_discover, discover_features
from tideline.flows.hooks import FAILURE_HOOKS
from tideline.flows.ingest import ingest
from tideline.flows.monitor import MonitorRun, monitor
from tideline.flows.score import ScoringRun, score
from tideline.flows.stream import stream_live
from tideline.flows.train import TrainingOutcome, train
from tideline.ingestion.audit import Audit
from tideline.lake.base import MAIN
from tideline.lake.open import commit_link, open_lake
from tideline.lake.publish import new_run_id
from tideline.streaming.processor import StreamRun

STAGES = ["ingest", "validate", "publish", "features", "registry", "online store", "train",
          "promotion gate", "score", "monitor", "real-time", "feature discovery"]


@dataclass(frozen=True)
class PipelineRun:
    audit: Audit
    features: FeatureBuild
    online: list[OnlineWrite]
    training: TrainingOutcome
    scores: ScoringRun
    monitoring: MonitorRun
    realtime: StreamRun | None
    discovery: Discovery | None
    skipped: dict[str, str] = field(default_factory=dict)
    """Stages that do not apply to the project's shape -> why (their result is None)."""


@flow(name="pipeline", **FAILURE_HOOKS)
def pipeline(run_id: str | None = None, since: date | None = None,
             until: date | None = None) -> PipelineRun:
    """sources → run branch → quality gate → main → features on Ray → offline store and
    registry → online store → training set → LightGBM → model registry → promotion gate →
    batch scores → drift monitor (report, event, e-mail) → on the demo, live events through the
    stream processor (fresh online values, high-risk alerts) → feature discovery (candidates
    from the clean tables, the ones that earn their place registered with a report)."""
    run_id = run_id or new_run_id()
    settings = load_settings()
    logger = get_run_logger()
    skipped: dict[str, str] = {}
    if not is_demo(settings):
        skipped["real-time"] = ("the live events are the demo's; run `tideline stream` against "
                                "your project's broker")
    if (why := cannot_discover(settings)) is not None:
        skipped["feature discovery"] = why
    for stage, why in skipped.items():
        logger.info("skipping %s: %s", stage, why)
    audit = ingest(run_id=run_id, since=since, until=until)
    with ray_session():  # one Ray for every stage that computes on it
        features = build_features.with_options(task_runner=ray_task_runner(settings))(
            run_id=run_id)
        online = materialize_online()
        training = train(run_id=run_id)
        scores = score(run_id=run_id)
        monitoring = monitor(run_id=run_id)
        realtime = None if "real-time" in skipped else stream_live()
        discovery = None if "feature discovery" in skipped else discover_features.with_options(
            task_runner=ray_task_runner(settings))(run_id=run_id)
    rows = "\n".join(f"| {o.dataset} | {o.rows:,} | {o.clean:,} | {o.quarantined:,} | "
                     f"{o.score:.2f} | {'pass' if o.gate_passed else 'fail'} |"
                     for o in audit.outcomes)
    create_markdown_artifact(
        key="pipeline-summary",
        markdown=f"# Pipeline run `{run_id}`\n\nStages: {', '.join(STAGES)}\n\n"
        "| dataset | rows | clean | quarantined | score | gate |\n|---|---|---|---|---|---|\n"
        f"{rows}\n\nQuality report: `{audit.local_report}`\n\n"
        f"Features: {features.features} for {features.entities:,} customers as of "
        f"{', '.join(features.as_of)} (`{features.manifest}`)\n\nOnline store: "
        f"{sum(w.written for w in online):,} rows written for {len(online)} views\n\n"
        f"Model {training.model.ref}: test ROC-AUC {training.model.roc_auc:.4f} ("
        f"{'champion' if training.decision.promoted else 'candidate'})\n\n"
        f"Scores: {scores.customers:,} customers as of {scores.as_of}, {scores.high_risk:,} at "
        f"high risk (`{scores.path}`)\n\nDrift: {len(monitoring.drifted)} features drifted; "
        + ("retrain requested: " + "; ".join(monitoring.reasons) if monitoring.retrain
           else "no retrain needed") + f" (`{monitoring.report['html']}`)\n"
        + (f"\nReal-time: {realtime.applied:,} live events applied, "
           f"{len(realtime.dead_letters)} dead-lettered, {len(realtime.alerts)} high-risk "
           "alerts\n" if realtime else "")
        + (f"\nFeature discovery: {len(discovery.kept)} of {discovery.computed} candidates "
           f"kept (`{discovery.paths['report']}`)\n" if discovery else "")
        + "".join(f"\nSkipped {stage}: {why}\n" for stage, why in skipped.items()),
        description=f"tideline pipeline run {run_id}",
    )
    main = open_lake(settings).resolve(MAIN)
    create_link_artifact(key="lake-main", link=commit_link(settings, main),
                         link_text=f"main after run {run_id}: {main[:12]}",
                         description="the lake commit this run left on main")
    return PipelineRun(audit=audit, features=features, online=online, training=training,
                       scores=scores, monitoring=monitoring, realtime=realtime,
                       discovery=discovery, skipped=skipped)
