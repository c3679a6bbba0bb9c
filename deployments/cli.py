"""The `tideline` command line: run the pipeline and look into the lake.

Heavy imports (prefect, ray, pandas) happen inside the commands that need them, so `--help` and
the lake commands start fast.
"""

from __future__ import annotations

import os
import signal
import sys
from datetime import datetime

import typer
from rich.console import Console
from rich.table import Column, Table
from tideline.core.errors import FeatureDefinitionError, TidelineError
from tideline.core.settings import load_settings

app = typer.Typer(help="tideline: an ML feature platform for churn models.", no_args_is_help=True)
lake_app = typer.Typer(help="Inspect and manage the versioned lake.", no_args_is_help=True)
app.add_typer(lake_app, name="lake")
features_app = typer.Typer(help="Build, inspect and serve feature views.", no_args_is_help=True)
app.add_typer(features_app, name="features")
models_app = typer.Typer(help="Trained models: versions, stages, metrics, lineage.",
                         no_args_is_help=True)
app.add_typer(models_app, name="models")
console = Console()


def _lake():  # noqa: ANN202 - returns the configured Lake backend
    from tideline.lake import open_lake

    return open_lake(load_settings())


def _short(commit_id: str) -> str:
    return commit_id[:12]


def _prefect_quiet() -> None:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # the ephemeral server's 20 s start-up limit is too short on a busy 2-core machine
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def _print_audit(audit) -> None:  # noqa: ANN001 - ingestion.audit.Audit, imported lazily
    table = Table(title=f"run {audit.run_id}")
    for column in ("dataset", "rows", "clean", "quarantined", "quality score", "gate"):
        table.add_column(column, justify="right" if column != "dataset" else "left")
    for o in audit.outcomes:
        verdict = "[green]pass[/]" if o.gate_passed else "[red]fail[/]"
        table.add_row(o.dataset, f"{o.rows:,}", f"{o.clean:,}", f"{o.quarantined:,}",
                      f"{o.score:.2f}", verdict)
    console.print(table)
    console.print(f"quality report: {audit.local_report}")


def _print_features(build) -> None:  # noqa: ANN001 - features.materialize.FeatureBuild
    table = Table(title=f"features of run {build.run_id} as of {', '.join(build.as_of)}")
    for column in ("view", "version", "features"):
        table.add_column(column)
    counts = build.view_features
    for name, version in build.versions.items():
        table.add_row(name, version, str(counts[name]))
    console.print(table)
    console.print(f"{build.features} features for {build.entities:,} entities from lake commit "
                  f"{_short(build.source_commit)} in {len(build.partitions)} Ray partitions; "
                  f"manifest: {build.manifest}")


@app.command()
def run(
    run_id: str = typer.Option(None, help="Re-use a run id to re-run it idempotently."),
) -> None:
    """Run the pipeline end to end on the configured sources (bundled demo data by default)."""
    _prefect_quiet()
    from tideline.flows.pipeline import pipeline

    result = pipeline(run_id=run_id)
    _print_audit(result.audit)
    _print_features(result.features)
    _print_training(result.training)
    _print_scoring(result.scores)
    _print_monitoring(result.monitoring)
    if result.realtime is not None:
        _print_stream(result.realtime)
    _print_discovery(result.discovery, top=10)


@app.command()
def ingest(
    run_id: str = typer.Option(None, help="Re-use a run id to re-run it idempotently."),
    since: datetime = typer.Option(None, formats=["%Y-%m-%d"], help="Backfill from this day."),
    until: datetime = typer.Option(None, formats=["%Y-%m-%d"], help="Backfill up to (excl.)."),
) -> None:
    """Ingest, validate and publish every source; with --since/--until, backfill those days."""
    _prefect_quiet()
    from tideline.flows.ingest import ingest as ingest_flow

    _print_audit(ingest_flow(run_id=run_id,
                             since=since.date() if since else None,
                             until=until.date() if until else None))


@features_app.command("build")
def features_build(
    run_id: str = typer.Option(None, help="Re-use a run id to re-run it idempotently."),
    as_of: list[datetime] = typer.Option(None, formats=["%Y-%m-%d"],
                                         help="As-of date (repeat for several); default: the "
                                              "day after the newest data."),
    partitions: int = typer.Option(None, min=1, help="Entity partitions (Ray tasks)."),
) -> None:
    """Build the feature views from the clean tables on main, on Ray, into the offline store."""
    _prefect_quiet()
    from tideline.flows.build_features import build_features, ray_task_runner

    flow = build_features.with_options(task_runner=ray_task_runner(load_settings()))
    _print_features(flow(run_id=run_id,
                         as_of=[day.date() for day in as_of] if as_of else None,
                         partitions=partitions))


@features_app.command("discover")
def features_discover(
    run_id: str = typer.Option(None, help="Re-use a run id to re-run it idempotently."),
    max_candidates: int = typer.Option(600, help="Candidates to generate at most."),
    seconds: float = typer.Option(900.0, help="Time budget for computing candidates."),
    max_selected: int = typer.Option(30, help="Features to keep at most."),
    approximate: bool = typer.Option(False, help="HyperLogLog distinct counts and DDSketch "
                                                 "quantiles instead of exact ones."),
    owner: str = typer.Option(None, help="Owner e-mail of the selected views (default: the "
                                          "pipeline owner)."),
) -> None:
    """Generate candidate features from the clean tables and their references, compute them on
    Ray, and keep the ones that earn their place (judged on the training split)."""
    _prefect_quiet()
    from tideline.flows.build_features import ray_task_runner
    from tideline.flows.discover import discover_features

    flow = discover_features.with_options(task_runner=ray_task_runner(load_settings()))
    _print_discovery(flow(run_id=run_id, max_candidates=max_candidates, seconds=seconds,
                          max_selected=max_selected, approximate=approximate, owner=owner))


def _print_discovery(result, top: int | None = None) -> None:  # noqa: ANN001 - flows.discover.Discovery
    import pandas as pd

    decisions = pd.read_csv(f"{result.local}/decisions.csv")
    table = Table(Column("feature", overflow="fold"), "description", "permutation ΔAUC",
                  title=f"{len(result.kept)} features kept of {result.computed} candidates"
                  + (f" (the best {top})" if top else ""))
    for row in decisions[decisions["status"] == "kept"].head(top).itertuples():
        table.add_row(row.candidate, row.description, f"{row.permutation:.4f}")
    console.print(table)
    console.print(f"{result.generated} generated ({result.over_budget} over the candidate "
                  f"budget, {result.out_of_time} out of time) in {result.seconds:.0f} s; views "
                  f"{', '.join(result.views) or 'none'} registered; report "
                  f"{result.local}/report.html (lake: {result.paths['report']} at "
                  f"{_short(result.commit)})")


def _registry():  # noqa: ANN202 - features.registry.Registry, imported lazily
    from tideline.features.registry import open_registry

    return open_registry(load_settings())


@features_app.command("list")
def features_list() -> None:
    """Every feature view (newest version): owner, features, last materialisation."""
    registry = _registry()
    table = Table("view", "version", "owner", "features", "source", "last as-of", "updated (UTC)")
    for view in registry.views():
        done = registry.materializations(view.name, view.version)
        table.add_row(view.name, view.version, view.owner, str(len(registry.features(view))),
                      view.source_dataset, f"{max(m.as_of for m in done)}" if done else "-",
                      f"{view.updated_at:%Y-%m-%d %H:%M}")
    console.print(table)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:,.4g}"


@features_app.command("describe")
def features_describe(
    name: str = typer.Argument(help="A view (`name` or `name@version`) or a feature."),
) -> None:
    """A view's definition, owner, versions, value statistics and lineage."""
    registry = _registry()
    view_name, _, version = name.partition("@")
    if not any(v.name == view_name for v in registry.views()):
        owners = [v for v in registry.views()
                  if any(f["name"] == view_name for f in registry.features(v))]
        if not owners:
            raise FeatureDefinitionError(f"no feature view or feature named {name!r} in the "
                                         "registry (`tideline features list`)")
        view_name = owners[0].name
    view = registry.view(view_name, version or None)
    console.print(f"[bold]{view.name}[/] @ {view.version}  —  {view.description}\n"
                  f"owner {view.owner} · entity {view.entity} ({view.entity_key}) · source "
                  f"{view.source_dataset} (time: {view.source_timestamp}) · tags "
                  f"{', '.join(view.tags) or '-'} · TTL "
                  f"{f'{view.ttl_days} days' if view.ttl_days else 'none'}")
    stats = {s.feature: s for s in registry.stats(view.name, view.version)}
    table = Table("feature", "definition", "null rate", "min", "mean", "max", "p50",
                  title="features (statistics of the newest materialisation)")
    for f in registry.features(view):
        if f["kind"] == "derived":
            definition = f["expression"]
        else:
            window = f["window_length"] or f["window_days"]  # before v2: days only
            definition = f"{f['aggregation']}({f['source_column'] or ''})" + (
                f" over {window}{'d' if str(window).isdigit() else ''}" if window else "") + (
                f", gap {f['session_gap']}" if f["session_gap"] else "") + (
                f" where {f['event_filter']}" if f["event_filter"] else "")
        s = stats.get(f["name"])
        table.add_row(f["name"], definition, *(
            [f"{s.null_rate:.1%}", _number(s.min_value), _number(s.mean_value),
             _number(s.max_value), _number(s.p50) if s.p50 is not None else s.top_value or ""]
            if s else [""] * 5))
    console.print(table)
    versions = Table("version", "created (UTC)", "features", title="versions")
    for record in registry.versions(view.name):
        versions.add_row(record.version, f"{record.created_at:%Y-%m-%d %H:%M}",
                         str(len(registry.features(record))))
    console.print(versions)
    lineage = Table("run", "as of", "rows", "source commit", "published commit",
                    title="lineage: builds of this version")
    for m in registry.materializations(view.name, view.version):
        lineage.add_row(m.run_id, f"{m.as_of}", f"{m.rows:,}", _short(m.source_commit),
                        _short(m.published_commit))
    console.print(lineage)


@features_app.command("diff")
def features_diff(
    left: str = typer.Argument(help="`view@version`, a view name or a version hash."),
    right: str = typer.Argument(help="The same, to compare with."),
) -> None:
    """What changed between two versions of a view."""
    diff = _registry().diff(left, right)
    console.print(f"{diff.left.name}@{diff.left.version} → {diff.right.name}@"
                  f"{diff.right.version}")
    table = Table("what", "before", "after")
    for field, (a, b) in diff.changed.items():
        table.add_row(field, str(a), str(b))
    for name in diff.removed:
        table.add_row(f"[red]- {name}[/]", "feature", "")
    for name in diff.added:
        table.add_row(f"[green]+ {name}[/]", "", "feature")
    for name, fields in diff.features_changed.items():
        for field, (a, b) in fields.items():
            table.add_row(f"[yellow]~ {name}[/].{field}", str(a), str(b))
    console.print(table)
    if not (diff.changed or diff.added or diff.removed or diff.features_changed):
        console.print("no differences")


@features_app.command("materialize")
def features_materialize() -> None:
    """Load the newest feature tables on main into the online store (changed entities only)."""
    _prefect_quiet()
    from tideline.flows.build_features import materialize_online

    table = Table("view", "version", "as of", "mode", "written", "deleted")
    for w in materialize_online():
        table.add_row(w.view, w.version, f"{w.as_of}", w.mode, f"{w.written:,}",
                      f"{w.deleted:,}")
    console.print(table)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
) -> None:
    """Serve online features and churn predictions over HTTP (POST /features, POST /predict;
    docs at /docs)."""
    import uvicorn
    from tideline.features.store import FeatureStore
    from tideline.serving.api import create_app

    settings = load_settings()
    uvicorn.run(create_app(FeatureStore.open(settings), _model_registry()), host=host,
                port=port)


@app.command()
def stream(
    subject: str = typer.Option("app-events", help="NATS subject of the events."),
    url: str = typer.Option("nats://127.0.0.1:4222", help="NATS server."),
    name: str = typer.Option(None, help="Processor name (consumer, checkpoints, dead letters); "
                                        "default: the subject."),
    source: str = typer.Option("events", help="Feature source whose streamable views to keep "
                                              "fresh."),
    start: str = typer.Option("new", help="Without a checkpoint, read from: new, all, or a "
                                          "stream sequence."),
    lateness: float = typer.Option(3600.0, help="Allowed lateness, seconds."),
    batch_size: int = typer.Option(5000, min=1, help="Most messages per micro-batch."),
    checkpoint_seconds: float = typer.Option(60.0, help="Seconds between checkpoints."),
    refresh_seconds: float = typer.Option(300.0, help="Seconds between rewrites of every "
                                                      "entity."),
    metrics_port: int = typer.Option(None, help="Serve Prometheus metrics on this port."),
    idle_exit: bool = typer.Option(False, help="Stop (after a checkpoint) once the stream has "
                                               "nothing more."),
    score_on: str = typer.Option("", help="Comma-separated event types after which the customer "
                                          "is scored with the champion; high risk is published "
                                          "to tideline.alerts.MODEL."),
) -> None:
    """Keep streamable feature views fresh in the online store from a NATS JetStream subject;
    bad and late events go to tideline.dead-letter.NAME with their reason."""
    import asyncio

    from tideline.core.process import frozen_heap
    from tideline.demo.project import declared_project
    from tideline.streaming.processor import StreamConfig, open_processor

    config = StreamConfig(name=name or subject.replace(".", "-"), url=url, subject=subject,
                          start=start, lateness_seconds=lateness, batch_size=batch_size,
                          checkpoint_seconds=checkpoint_seconds, refresh_seconds=refresh_seconds,
                          score_on=tuple(t.strip() for t in score_on.split(",") if t.strip()))
    settings = load_settings()
    processor = open_processor(settings, config, source=source,
                               project=declared_project(settings))
    console.print(f"stream {config.name}: state from the {processor.load()}; views "
                  f"{', '.join(v.name for v in processor.views)}")
    if metrics_port:
        processor.serve_metrics(metrics_port)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

        async def report() -> None:
            while not stop.is_set():
                await asyncio.sleep(5)
                console.print(processor.status())

        reporter = asyncio.create_task(report())
        try:
            await processor.run(stop, idle_exit=idle_exit)
        finally:
            reporter.cancel()

    with frozen_heap():  # the state is long-lived: spare it every full collection's scan
        asyncio.run(main())
    console.print(f"stream {config.name}: stopped at sequence {processor.sequence} "
                  "(checkpoint committed)")


@app.command()
def train(
    run_id: str = typer.Option(None, help="Re-use a run id (its feature build is reused)."),
    model: str = typer.Option(None, help="`module:attribute` of a ModelSpec or a YAML file; "
                                         "default: TIDELINE_MODEL_SPEC (the demo's churn)."),
) -> None:
    """Train a model on point-in-time features from main, register it, run the promotion
    gate."""
    _prefect_quiet()
    from tideline.flows.train import train as train_flow

    _print_training(train_flow(run_id=run_id, model=model))


@app.command("score")
def score_command(
    run_id: str = typer.Option(None, help="Re-use a run id."),
    model: str = typer.Option(None, help="`module:attribute` of a ModelSpec or a YAML file; "
                                         "default: TIDELINE_MODEL_SPEC (the demo's churn)."),
    as_of: datetime = typer.Option(None, formats=["%Y-%m-%d"],
                                   help="Score as of this day; default: the newest features."),
) -> None:
    """Score every active customer with the champion: probability, risk and reasons, into the
    lake and the `scores` table."""
    _prefect_quiet()
    from tideline.flows.score import score

    _print_scoring(score(run_id=run_id, model=model,
                         as_of=as_of.date() if as_of else None))


@app.command()
def monitor(
    run_id: str = typer.Option(None, help="Re-use a run id (a finished run alerts no one "
                                          "twice)."),
    model: str = typer.Option(None, help="`module:attribute` of a ModelSpec or a YAML file; "
                                         "default: TIDELINE_MODEL_SPEC (the demo's churn)."),
    as_of: datetime = typer.Option(None, formats=["%Y-%m-%d"],
                                   help="Compare the features as of this day; default: the "
                                        "newest."),
    notify: bool = typer.Option(True, help="E-mail the owners of what drifted."),
) -> None:
    """Compare the champion's training set with today's features: drift report, event, e-mail."""
    _prefect_quiet()
    from tideline.flows.monitor import monitor as monitor_flow

    _print_monitoring(monitor_flow(run_id=run_id, model=model,
                                   as_of=as_of.date() if as_of else None, notify=notify))


@app.command()
def retrain(
    model: str = typer.Option(None, help="`module:attribute` of a ModelSpec or a YAML file; "
                                         "default: TIDELINE_MODEL_SPEC (the demo's churn)."),
    report: str = typer.Option(None, help="The drift report asking for it (lake path)."),
) -> None:
    """Rebuild the training set from main, train, and run the promotion gate."""
    _prefect_quiet()
    from tideline.flows.retrain import retrain as retrain_flow

    _print_training(retrain_flow(model=model, report=report))


@app.command()
def worker(
    names: list[str] = typer.Argument(None, help="Deployments to serve (default: all of "
                                                 "prefect.yaml)."),
) -> None:
    """Serve prefect.yaml's deployments from this process: their schedules, drift trigger and
    runs started from the Prefect UI (set PREFECT_API_URL to a running server)."""
    _prefect_quiet()
    from tideline.deployments.serve import serve_deployments

    serve_deployments(names or ())


@app.command()
def server(
    port: int = typer.Option(4200, help="Port of the API and UI."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
) -> None:
    """Start a Prefect server (UI included; SQLite in the data directory, or
    TIDELINE_PREFECT_DATABASE_URL) and serve every deployment of prefect.yaml against it."""
    _prefect_quiet()
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from tideline.core.settings import load_settings
    from tideline.deployments.serve import prefect_server, serve_deployments

    # stop on Ctrl-C and on SIGTERM alike, even when started with SIGINT ignored (a
    # background job of a script), so the server below is always stopped with it
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with prefect_server(load_settings(), host, port) as api, temporary_settings(
            {PREFECT_API_URL: api}):
        console.print(f"Prefect UI: {api.removesuffix('/api')}  (API {api})")
        serve_deployments()


@app.command()
def deploy(pool: str = typer.Option("tideline", help="The process work pool to deploy to.")
           ) -> None:
    """Register prefect.yaml's deployments and the drift automation with the server at
    PREFECT_API_URL for a work pool (then: prefect worker start --pool tideline)."""
    _prefect_quiet()
    from tideline.deployments.serve import deploy_all

    deploy_all(pool)


def _print_monitoring(run) -> None:  # noqa: ANN001 - flows.monitor.MonitorRun
    console.print(f"{run.model} as of {run.as_of}: {len(run.drifted)} features drifted"
                  + (f" ({', '.join(run.drifted[:8])}{', ...' if len(run.drifted) > 8 else ''})"
                     if run.drifted else ""))
    if run.retrain:
        console.print("[yellow]retrain requested:[/] " + "; ".join(run.reasons))
    if run.event is not None:
        console.print(f"event {run.event.event}: "
                      + ("delivered" if run.event.delivered else
                         f"[red]not delivered[/] ({run.event.detail})"))
    for mail in run.emails:
        console.print(f"e-mail to {', '.join(mail.to)}: "
                      + (mail.detail if mail.sent else f"[red]not sent[/] ({mail.detail})"))
    console.print(f"report: {run.report['local']} (lake: {run.report['html']} at "
                  f"{_short(run.report['commit'])})")


def _print_stream(run) -> None:  # noqa: ANN001 - streaming.processor.StreamRun
    console.print(f"stream {run.name}: {run.applied:,} live events applied (newest "
                  f"{run.clock[:19]}), {run.duplicates:,} duplicates dropped, "
                  f"{len(run.dead_letters)} dead-lettered"
                  + "".join(f"\n  dead letter: {why[:110]}" for why in run.dead_letters[:5]))
    table = Table("customer", "churn probability", "after", "top reasons",
                  title=f"{len(run.alerts)} high-risk alerts on live events")
    for alert in sorted(run.alerts, key=lambda a: -a["probability"])[:10]:
        table.add_row(alert["customer_id"], f"{alert['probability']:.3f}",
                      ", ".join(alert["trigger"]), "; ".join(alert["reasons"][:2]))
    console.print(table)


def _print_scoring(run) -> None:  # noqa: ANN001 - flows.score.ScoringRun
    console.print(f"{run.model} scored {run.customers:,} customers as of {run.as_of}: "
                  f"{run.high_risk:,} at high risk; scores in {run.path} and the `scores` table")


def _print_training(outcome) -> None:  # noqa: ANN001 - flows.train.TrainingOutcome
    record, decision = outcome.model, outcome.decision
    table = Table("model", "ROC-AUC", "PR-AUC", "precision", "recall", "F1", "lift@10%",
                  title=f"{record.ref} on the test fold")
    for name, m in (("LightGBM", record.metrics), ("baseline", record.baseline_metrics)):
        table.add_row(name, f"{m['roc_auc']:.4f}", f"{m['pr_auc']:.4f}", f"{m['precision']:.3f}",
                      f"{m['recall']:.3f}", f"{m['f1']:.3f}", f"{m['lift_top_10']:.2f}")
    console.print(table)
    if decision.promoted:
        console.print(f"[green]{record.ref} is the champion[/]"
                      + (f" (beat {decision.champion}: {decision.champion_roc_auc:.4f})"
                         if decision.champion else ""))
    else:
        console.print(f"[yellow]{record.ref} stays a candidate:[/] " + "; ".join(decision.reasons))


def _model_registry():  # noqa: ANN202 - models.registry.ModelRegistry, imported lazily
    from tideline.models.registry import open_model_registry

    return open_model_registry(load_settings())


def _model_ref(ref: str) -> tuple[str, int | None]:
    name, _, version = ref.partition(":")
    version = version.removeprefix("v")
    if version and not version.isdigit():
        raise typer.BadParameter(f"{ref!r}: give NAME or NAME:VERSION (churn:3)")
    return name, int(version) if version else None


@models_app.command("list")
def models_list() -> None:
    """Every model version: stage, test metrics, training set."""
    table = Table("model", "stage", "ROC-AUC", "PR-AUC", "baseline AUC", "training set",
                  "created (UTC)")
    for r in _model_registry().models():
        style = {"champion": "bold green", "archived": "dim"}.get(r.stage, "")
        table.add_row(r.ref, f"[{style}]{r.stage}[/]" if style else r.stage, f"{r.roc_auc:.4f}",
                      f"{r.pr_auc:.4f}", f"{r.baseline_metrics['roc_auc']:.4f}",
                      r.training_set_tag, f"{r.created_at:%Y-%m-%d %H:%M}")
    console.print(table)


@models_app.command("describe")
def models_describe(ref: str = typer.Argument(help="NAME (the champion) or NAME:VERSION")) -> None:
    """A model's metrics, parameters, lineage and promotion history."""
    registry = _model_registry()
    r = registry.get(*_model_ref(ref))
    console.print(f"[bold]{r.ref}[/] ({r.stage}) · owner {r.owner} · {r.code_version}\n"
                  f"artifacts {r.artifact_path} @ {_short(r.artifact_commit)} · training set "
                  f"{r.training_set_tag} @ {_short(r.training_set_commit)} · threshold "
                  f"{r.threshold:.3f}")
    metrics = Table("metric", "LightGBM", "baseline", title="test fold")
    for key in ("roc_auc", "pr_auc", "precision", "recall", "f1", "lift_top_10", "brier",
                "rows", "positives"):
        metrics.add_row(key, f"{r.metrics[key]:.4g}", f"{r.baseline_metrics[key]:.4g}")
    console.print(metrics)
    console.print("parameters: " + ", ".join(f"{k}={v}" for k, v in sorted(r.params.items())))
    console.print("feature views: " + ", ".join(f"{k}@{v}" for k, v in r.feature_views.items()))
    history = Table("version", "event", "detail", title="history")
    for event in registry.events(r.name):
        detail = event["detail"]
        text = "; ".join(detail.get("reasons", [])) if isinstance(detail, dict) else str(detail)
        if isinstance(detail, dict) and detail.get("champion"):
            text += f" (vs {detail['champion']}: {detail['champion_roc_auc']:.4f})"
        history.add_row(f"v{event['version']}", event["event"], text)
    console.print(history)


@models_app.command("promote")
def models_promote(ref: str = typer.Argument(help="NAME:VERSION to make the champion")) -> None:
    """Make a version the champion by hand (the one before is archived)."""
    name, version = _model_ref(ref)
    if version is None:
        raise typer.BadParameter("give the version to promote: NAME:VERSION")
    registry = _model_registry()
    record = registry.get(name, version)
    registry.set_champion(record, {"by": "hand", "reasons": []})
    console.print(f"{record.ref} is the champion")


@models_app.command("lineage")
def models_lineage(ref: str = typer.Argument(help="NAME (the champion) or NAME:VERSION")) -> None:
    """model → training set → feature views and builds → source commits and ingestion runs."""
    lineage_command(ref)


@app.command("lineage")
def lineage_command(ref: str = typer.Argument(help="MODEL or MODEL:VERSION")) -> None:
    """Where a model came from, down to the ingestion runs."""
    from rich.tree import Tree
    from tideline.features.registry import open_registry
    from tideline.lake import open_lake
    from tideline.models.lineage import lineage

    settings = load_settings()
    chain = lineage(_model_registry().get(*_model_ref(ref)), open_registry(settings),
                    open_lake(settings))
    ts = chain["training_set"]
    tree = Tree(f"[bold]{chain['model']}[/] ({chain['stage']}) · {chain['code_version']} · "
                f"{chain['artifacts']}")
    node = tree.add(f"training set {ts['tag']} ({ts['rows']:,} rows) @ {_short(ts['commit'])},"
                    f" features read at {_short(ts['feature_commit'])}")
    for view in chain["feature_views"]:
        branch = node.add(f"{view['view']}@{view['version']} · {view['owner']} · source "
                          f"clean/{view['source_dataset']}")
        for b in view["builds"]:
            branch.add(f"as of {b['as_of']}: build {b['run_id']} ({b['rows']:,} rows) @ "
                       f"{_short(b['published_commit'])} ← source {_short(b['source_commit'])}"
                       f" (ingestion run {b['ingestion_run']}, {b['ingested_at']})")
    console.print(tree)


@lake_app.command("init")
def lake_init() -> None:
    """Create the lake repository (a no-op when it exists)."""
    lake = _lake()
    console.print(f"lake ready: {lake!r}, main at {_short(lake.resolve('main'))}")


@lake_app.command("branches")
def lake_branches() -> None:
    """List branches and their head commits."""
    table = Table("branch", "head", "message")
    lake = _lake()
    for name, head in lake.branches().items():
        table.add_row(name, _short(head), lake.get_commit(head).message)
    console.print(table)


@lake_app.command("log")
def lake_log(
    ref: str = typer.Argument("main", help="Branch, tag or commit."),
    limit: int = typer.Option(20, "--limit", "-n", min=1),
) -> None:
    """Show commits reachable from REF, newest first: id, time, message and metadata."""
    table = Table("commit", "time (UTC)", "message", "metadata")
    for commit in _lake().log(ref, limit):
        metadata = ", ".join(f"{k}={v}" for k, v in sorted(commit.metadata.items()))
        table.add_row(
            _short(commit.id), f"{commit.created_at:%Y-%m-%d %H:%M:%S}", commit.message, metadata
        )
    console.print(table)


@lake_app.command("diff")
def lake_diff(left: str, right: str) -> None:
    """List paths added, changed or removed going from LEFT to RIGHT."""
    changes = _lake().diff(left, right)
    table = Table("change", "path", "size")
    style = {"added": "green", "removed": "red", "changed": "yellow"}
    for change in changes:
        table.add_row(
            f"[{style[change.kind]}]{change.kind}[/]",
            change.path,
            f"{change.size:,}" if change.size is not None else "",
        )
    console.print(table)
    console.print(f"{len(changes)} change(s) from {left} to {right}")


@lake_app.command("show")
def lake_show(
    ref: str = typer.Argument("main", help="Branch, tag or commit."),
    prefix: str = typer.Argument("", help="Only objects under this path prefix."),
) -> None:
    """Show a commit and the objects it holds."""
    lake = _lake()
    commit = lake.get_commit(ref)
    console.print(
        f"[bold]commit[/] {commit.id}\n[bold]time[/]   {commit.created_at:%Y-%m-%d %H:%M:%S} UTC"
        f"\n[bold]parents[/] {', '.join(map(_short, commit.parents)) or '-'}"
        f"\n\n    {commit.message}\n"
    )
    for key, value in sorted(commit.metadata.items()):
        console.print(f"    {key}: {value}")
    objects = lake.list(ref, prefix)
    table = Table("path", "size", "checksum")
    for info in objects:
        table.add_row(info.path, f"{info.size:,}", info.checksum[:12])
    console.print(table)
    console.print(f"{len(objects)} object(s), {sum(o.size for o in objects):,} bytes")


@lake_app.command("tag")
def lake_tag(name: str, ref: str = typer.Argument("main")) -> None:
    """Tag REF (default main) as NAME; tags never move."""
    commit_id = _lake().tag(name, ref)
    console.print(f"tag {name} → {_short(commit_id)}")


@lake_app.command("tags")
def lake_tags() -> None:
    """List tags."""
    table = Table("tag", "commit")
    for name, commit_id in _lake().tags().items():
        table.add_row(name, _short(commit_id))
    console.print(table)


def main() -> None:
    """Console entry point: a `TidelineError` is printed as one clear line, without a traceback."""
    try:
        app()
    except TidelineError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
