"""The `tideline` command line: run the pipeline and look into the lake.

Heavy imports (prefect, ray, pandas) happen inside the commands that need them, so `--help` and
the lake commands start fast.
"""

from __future__ import annotations

import os
import sys

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


@app.command()
def run(
    run_id: str = typer.Option(None, help="Re-use a run id to re-run it idempotently."),
) -> None:
    """Run the pipeline end to end on the configured sources (bundled demo data by default)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    from flows.pipeline import pipeline

    result = pipeline(run_id=run_id)
    table = Table(title="tideline run")
    table.add_column("run id")
    table.add_column("published to main at")
    table.add_row(result["run_id"], _short(result["commit"]))
    console.print(table)


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
