"""The `tideline` command line: run the pipeline and look into the lake.

Heavy imports (prefect, ray, pandas) happen inside the commands that need them, so `--help` and
the lake commands start fast.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime

import typer
from rich.console import Console
from rich.table import Table

from tideline.errors import TidelineError
from tideline.settings import load_settings

app = typer.Typer(help="tideline: an ML feature platform for churn models.", no_args_is_help=True)
lake_app = typer.Typer(help="Inspect and manage the versioned lake.", no_args_is_help=True)
app.add_typer(lake_app, name="lake")
console = Console()


def _lake():  # noqa: ANN202 - returns the configured Lake backend
    from lake import open_lake

    return open_lake(load_settings())


def _short(commit_id: str) -> str:
    return commit_id[:12]


def _prefect_quiet() -> None:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")


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
    from flows.pipeline import pipeline

    result = pipeline(run_id=run_id)
    _print_audit(result.audit)
    _print_features(result.features)


@app.command()
def ingest(
    run_id: str = typer.Option(None, help="Re-use a run id to re-run it idempotently."),
    since: datetime = typer.Option(None, formats=["%Y-%m-%d"], help="Backfill from this day."),
    until: datetime = typer.Option(None, formats=["%Y-%m-%d"], help="Backfill up to (excl.)."),
) -> None:
    """Ingest, validate and publish every source; with --since/--until, backfill those days."""
    _prefect_quiet()
    from flows.ingest import ingest as ingest_flow
    from flows.pipeline import new_run_id

    _print_audit(ingest_flow(run_id=run_id or new_run_id(),
                             since=since.date() if since else None,
                             until=until.date() if until else None))


@app.command()
def features(
    run_id: str = typer.Option(None, help="Re-use a run id to re-run it idempotently."),
    as_of: list[datetime] = typer.Option(None, formats=["%Y-%m-%d"],
                                         help="As-of date (repeat for several); default: the "
                                              "day after the newest data."),
    partitions: int = typer.Option(None, min=1, help="Entity partitions (Ray tasks)."),
) -> None:
    """Build the feature views from the clean tables on main, on Ray, into the offline store."""
    _prefect_quiet()
    from flows.features import build_features, ray_task_runner
    from flows.pipeline import new_run_id
    from tideline.settings import load_settings

    flow = build_features.with_options(task_runner=ray_task_runner(load_settings()))
    _print_features(flow(run_id=run_id or new_run_id(),
                         as_of=[day.date() for day in as_of] if as_of else None,
                         partitions=partitions))


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
