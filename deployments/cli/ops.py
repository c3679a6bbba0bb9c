"""The pipeline and its operation, top-level commands (registered by the package, in the order of
`tideline --help`): `run`, `ingest`, `serve`, `stream`, `monitor`, `retrain`, `worker`, `server`,
`deploy`."""
# heavy imports (Prefect flows and server, Ray, FastAPI, NATS) stay inside the command bodies, so
# `tideline --help` starts fast

from __future__ import annotations

import signal
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import typer
from rich.table import Table
from tideline.core.errors import ConfigError, ModelError
from tideline.core.project import NoProject
from tideline.core.settings import Settings, load_settings
from tideline.deployments.cli.common import (
    console,
    flow_runtime,
    model_registry,
    prefect_quiet,
    short,
)
from tideline.deployments.cli.features import print_discovery, print_features
from tideline.deployments.cli.models import print_scoring, print_training

if TYPE_CHECKING:
    from tideline.features.definitions import FeatureView
    from tideline.ingestion.project import Project


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
                  f"{short(run.report['commit'])})")


def _print_stream(run) -> None:  # noqa: ANN001 - streaming.processor.StreamRun
    console.print(f"stream {run.name}: {run.applied:,} live events applied (newest "
                  f"{run.clock[:19]}), {run.duplicates:,} duplicates dropped, "
                  f"{len(run.dead_letters)} dead-lettered"
                  + "".join(f"\n  dead letter: {why[:110]}" for why in run.dead_letters[:5]))
    table = Table("customer", "churn probability", "after", "top reasons",
                  title=f"{len(run.alerts)} high-risk alerts on live events")
    for alert in sorted(run.alerts, key=lambda a: -a["probability"])[:10]:
        table.add_row(alert["entity"], f"{alert['probability']:.3f}",
                      ", ".join(alert["trigger"]), "; ".join(alert["reasons"][:2]))
    console.print(table)


def run(
    run_id: str = typer.Option(None, help="Re-use a run id to re-run it idempotently."),
) -> None:
    """Run the pipeline end to end on the project's sources."""
    with flow_runtime("tideline.flows.pipeline", with_ray=True):
        from tideline.flows.pipeline import pipeline

        result = pipeline(run_id=run_id)
        _print_audit(result.audit)
        print_features(result.features)
        console.print(f"online store: {sum(w.written for w in result.online):,} rows written "
                      f"for {len(result.online)} views")
        print_training(result.training)
        print_scoring(result.scores)
        _print_monitoring(result.monitoring)
        if result.realtime is not None:
            _print_stream(result.realtime)
        if result.discovery is not None:
            print_discovery(result.discovery, top=10)
        for stage, why in result.skipped.items():
            console.print(f"[yellow]skipped {stage}[/]: {why}", highlight=False)


def ingest(
    run_id: str = typer.Option(None, help="Re-use a run id to re-run it idempotently."),
    since: datetime = typer.Option(None, formats=["%Y-%m-%d"], help="Backfill from this day."),
    until: datetime = typer.Option(None, formats=["%Y-%m-%d"], help="Backfill up to (excl.)."),
) -> None:
    """Ingest, validate and publish every source; with --since/--until, backfill those days."""
    with flow_runtime("tideline.flows.ingest"):
        from tideline.flows.ingest import ingest as ingest_flow

        _print_audit(ingest_flow(run_id=run_id,
                                 since=since.date() if since else None,
                                 until=until.date() if until else None))


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
) -> None:
    """Serve online features and churn predictions over HTTP (POST /features, POST /predict;
    docs at /docs); with the api_keys or api_keys_secret setting, only to callers with a key."""
    import uvicorn
    from tideline.features.store import FeatureStore
    from tideline.serving.access import api_keys
    from tideline.serving.api import create_app

    settings = load_settings()
    keys = api_keys(settings)
    if not keys and not _loopback(host):
        console.print(f"[yellow]warning:[/] serving on {host} without authentication: anyone "
                      "who reaches it can read features; set TIDELINE_API_KEYS")
    store = FeatureStore.open(settings)
    uvicorn.run(create_app(store, model_registry(), served_model(settings, store.views),
                           api_keys=keys), host=host, port=port)


def served_model(settings: Settings, views: Sequence[FeatureView]) -> str | None:
    """The name of the project's model, whose champion `/predict` scores with (None when the
    project declares none: features alone are served)."""
    from tideline.models.spec import load_model_spec

    try:
        return load_model_spec(settings.declared("model"), views).name
    except (NoProject, ModelError) as exc:
        console.print(f"[yellow]note:[/] /predict has no model ({exc})")
        return None


def _loopback(host: str) -> bool:
    from ipaddress import ip_address

    try:
        return ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def stream_defaults(settings: Settings, project: Project, subject: str | None,
                    source: str | None) -> tuple[str, str]:
    """The subject and the feature source `tideline stream` reads: as given, else the
    subject of the project's one stream source and the feature source over its dataset."""
    if subject is not None and source is not None:
        return subject, source
    streams = [declared for declared in project.sources if declared.kind == "stream"]
    if len(streams) != 1:
        raise ConfigError(f"the project declares {len(streams)} stream sources"
                          f"{': ' + ', '.join(s.name for s in streams) if streams else ''}; "
                          "give --subject and --source")
    stream_source = streams[0]
    if source is None:
        from tideline.features.definitions import load_definitions

        names = sorted({read.name for view in load_definitions(settings.declared("features"))
                        for read in view.sources if read.dataset == stream_source.dataset})
        if len(names) != 1:
            raise ConfigError(f"{len(names)} feature sources read dataset "
                              f"{stream_source.dataset!r} of stream source "
                              f"{stream_source.name!r}; give --source")
        source = names[0]
    return subject or stream_source.subject, source  # type: ignore[union-attr]


def stream(
    subject: str = typer.Option(None, help="NATS subject of the events; default: the "
                                           "project's stream source's."),
    url: str = typer.Option(None, help="NATS server; default: the nats_url setting, else "
                                        "nats://127.0.0.1:4222."),
    name: str = typer.Option(None, help="Processor name (consumer, checkpoints, dead letters); "
                                        "default: the subject."),
    source: str = typer.Option(None, help="Feature source whose streamable views to keep "
                                          "fresh; default: the one over the stream's dataset."),
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

    settings = load_settings()
    project = declared_project(settings)
    subject, source = stream_defaults(settings, project, subject, source)
    url = url or settings.nats_url or "nats://127.0.0.1:4222"
    config = StreamConfig(name=name or subject.replace(".", "-"), url=url, subject=subject,
                          start=start, lateness_seconds=lateness, batch_size=batch_size,
                          checkpoint_seconds=checkpoint_seconds, refresh_seconds=refresh_seconds,
                          score_on=tuple(t.strip() for t in score_on.split(",") if t.strip()))
    processor = open_processor(settings, config, source=source, project=project)
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


def monitor(
    run_id: str = typer.Option(None, help="Re-use a run id (a finished run alerts no one "
                                          "twice)."),
    model: str = typer.Option(None, help="`module:attribute` of a ModelSpec or a YAML file; "
                                         "default: the project's model."),
    as_of: datetime = typer.Option(None, formats=["%Y-%m-%d"],
                                   help="Compare the features as of this day; default: the "
                                        "newest."),
    notify: bool = typer.Option(True, help="E-mail the owners of what drifted."),
) -> None:
    """Compare the champion's training set with today's features: drift report, event, e-mail."""
    with flow_runtime("tideline.flows.monitor"):
        from tideline.flows.monitor import monitor as monitor_flow

        _print_monitoring(monitor_flow(run_id=run_id, model=model,
                                       as_of=as_of.date() if as_of else None, notify=notify))


def retrain(
    model: str = typer.Option(None, help="`module:attribute` of a ModelSpec or a YAML file; "
                                         "default: the project's model."),
    report: str = typer.Option(None, help="The drift report asking for it (lake path)."),
) -> None:
    """Rebuild the training set from main, train, and run the promotion gate."""
    with flow_runtime("tideline.flows.retrain"):
        from tideline.flows.retrain import retrain as retrain_flow

        print_training(retrain_flow(model=model, report=report))


def worker(
    names: list[str] = typer.Argument(None, help="Deployments to serve (default: all of "
                                                 "prefect.yaml)."),
) -> None:
    """Serve the project's prefect.yaml deployments (else tideline's own) from this process:
    their schedules, drift trigger and runs started from the Prefect UI (set PREFECT_API_URL
    to a running server)."""
    prefect_quiet()
    from tideline.deployments.serve import serve_deployments

    serve_deployments(load_settings(), names or ())


def server(
    port: int = typer.Option(4200, help="Port of the API and UI."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
) -> None:
    """Start a Prefect server (UI included; SQLite in the data directory, or
    TIDELINE_PREFECT_DATABASE_URL) and serve every deployment of the project's prefect.yaml
    (else tideline's own) against it."""
    prefect_quiet()
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from tideline.deployments.serve import prefect_server, serve_deployments

    # stop on Ctrl-C and on SIGTERM alike, even when started with SIGINT ignored (a
    # background job of a script), so the server below is always stopped with it
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    settings = load_settings()
    with prefect_server(settings, host, port) as api, temporary_settings(
            {PREFECT_API_URL: api}):
        console.print(f"Prefect UI: {api.removesuffix('/api')}  (API {api})")
        serve_deployments(settings)


def deploy(pool: str = typer.Option("tideline", help="The process work pool to deploy to.")
           ) -> None:
    """Register the project's prefect.yaml deployments (else tideline's own) and the drift
    automation with the server at PREFECT_API_URL for a work pool (then: prefect worker start
    --pool tideline)."""
    prefect_quiet()
    from tideline.deployments.serve import deploy_all

    deploy_all(load_settings(), pool)
