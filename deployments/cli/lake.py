"""`tideline lake …`: inspect and manage the versioned lake."""
# heavy imports stay inside the command bodies, so `tideline --help` starts fast

from __future__ import annotations

import typer
from rich.table import Table
from tideline.deployments.cli.common import configured_lake, console, short

lake_app = typer.Typer(help="Inspect and manage the versioned lake.", no_args_is_help=True)


@lake_app.command("init")
def lake_init() -> None:
    """Create the lake repository (a no-op when it exists)."""
    lake = configured_lake()
    console.print(f"lake ready: {lake!r}, main at {short(lake.resolve('main'))}")


@lake_app.command("branches")
def lake_branches() -> None:
    """List branches and their head commits."""
    table = Table("branch", "head", "message")
    lake = configured_lake()
    for name, head in lake.branches().items():
        table.add_row(name, short(head), lake.get_commit(head).message)
    console.print(table)


@lake_app.command("log")
def lake_log(
    ref: str = typer.Argument("main", help="Branch, tag or commit."),
    limit: int = typer.Option(20, "--limit", "-n", min=1),
) -> None:
    """Show commits reachable from REF, newest first: id, time, message and metadata."""
    table = Table("commit", "time (UTC)", "message", "metadata")
    for commit in configured_lake().log(ref, limit):
        metadata = ", ".join(f"{k}={v}" for k, v in sorted(commit.metadata.items()))
        table.add_row(
            short(commit.id), f"{commit.created_at:%Y-%m-%d %H:%M:%S}", commit.message, metadata
        )
    console.print(table)


@lake_app.command("diff")
def lake_diff(left: str, right: str) -> None:
    """List paths added, changed or removed going from LEFT to RIGHT."""
    changes = configured_lake().diff(left, right)
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
    lake = configured_lake()
    commit = lake.get_commit(ref)
    console.print(
        f"[bold]commit[/] {commit.id}\n[bold]time[/]   {commit.created_at:%Y-%m-%d %H:%M:%S} UTC"
        f"\n[bold]parents[/] {', '.join(map(short, commit.parents)) or '-'}"
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
    commit_id = configured_lake().tag(name, ref)
    console.print(f"tag {name} → {short(commit_id)}")


@lake_app.command("tags")
def lake_tags() -> None:
    """List tags."""
    table = Table("tag", "commit")
    for name, commit_id in configured_lake().tags().items():
        table.add_row(name, short(commit_id))
    console.print(table)
