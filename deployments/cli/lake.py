"""`tideline lake …`: inspect and manage the versioned lake."""
# heavy imports stay inside the command bodies, so `tideline --help` starts fast

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import typer
from rich.table import Table
from tideline.deployments.cli.common import command_group, configured_lake, console, short

if TYPE_CHECKING:
    from tideline.lake.base import Lake

lake_app = command_group("Inspect and manage the versioned lake.")


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


def _duration(text: str | None) -> timedelta | None:
    if text is None:
        return None
    from pydantic import TypeAdapter, ValidationError
    from tideline.core.durations import PositiveDuration

    try:
        return TypeAdapter(PositiveDuration).validate_python(text)
    except ValidationError:
        raise typer.BadParameter(
            f"{text!r} is no positive duration: write e.g. 7d, 36h or 2w") from None


def _age(age: timedelta) -> str:
    hours, minutes = age.seconds // 3600, age.seconds % 3600 // 60
    return f"{age.days}d {hours}h" if age.days else f"{hours}h {minutes}m"


def _drop_tables(lake: Lake, older_than: timedelta, referenced: set[str], dry_run: bool
                 ) -> None:
    from tideline.features.retention import drop_tables, plan_table_retention

    now = datetime.now(UTC)
    plan = plan_table_retention(lake, now - older_than, referenced)
    if not dry_run:
        drop_tables(lake, plan, f"retention-{now:%Y%m%dT%H%M%S}")
    went = "would be dropped" if dry_run else "dropped"
    console.print(f"tables before {plan.cutoff:%Y-%m-%d %H:%M}: {len(plan.feature_tables)} "
                  f"feature table(s), {len(plan.training_sets)} training set(s) and "
                  f"{len(plan.tiles)} set(s) of unused daily tiles {went} "
                  f"({len(plan.paths)} objects); {len(plan.kept)} older training set(s) kept "
                  "for registered models")
    for table in plan.feature_tables:
        console.print(f"  features/{table}")
    for name in plan.training_sets:
        console.print(f"  training_sets/{name}")
    if plan.tiles:
        console.print("unused daily tiles (another partition count than their view's newest):")
        for name in plan.tiles:
            console.print(f"  features/tiles/{name}")


@lake_app.command("gc")
def lake_gc(
    older_than: str | None = typer.Option(
        None, "--older-than", metavar="DURATION",
        help="Retention, e.g. 7d, 36h or 2w (default: the lake_retention setting)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would go; change nothing."),
    set_gc_rules: bool = typer.Option(
        True, "--set-gc-rules/--keep-gc-rules",
        help="lakeFS: set the repository's garbage-collection rules to the retention."),
    keep_history: bool = typer.Option(
        False, "--keep-history",
        help="Local lake: keep the data of every commit branches and tags reach."),
    tables_older_than: str | None = typer.Option(
        None, "--tables-older-than", metavar="DURATION",
        help="Also drop feature tables and training sets older than this from main "
             "(default: the table_retention setting; unset keeps them)."),
) -> None:
    """Delete run branches older than the retention whose run is over (merged or abandoned);
    on the local lake also the commits and objects nothing reaches any more, and the data of
    commits replaced more than the retention ago, but for the commits registered models name;
    on lakeFS set the garbage-collection rules its own job expires old objects by. With a
    table retention, first drop old feature tables and unreferenced training sets from main."""
    from tideline.core.settings import load_settings
    from tideline.lake import open_lake
    from tideline.lake.retention import collect_garbage
    from tideline.models.registry import open_model_registry

    settings = load_settings()
    retention = _duration(older_than) or settings.lake_retention
    tables = _duration(tables_older_than) or settings.table_retention
    registry = open_model_registry(settings)
    try:  # lineage: every registered model's commits and training sets read in full
        models = registry.models()
    finally:
        registry.close()
    keep = set() if keep_history else {commit for record in models for commit in (
        record.training_set_commit, record.feature_commit, record.artifact_commit)}
    lake = open_lake(settings)
    if tables is not None:
        _drop_tables(lake, tables, {record.training_set for record in models}, dry_run)
    table = Table("run branch", "state", "head age", "verdict")
    verdicts = {"deleted": "[red]would delete[/]" if dry_run else "[red]deleted[/]",
                "held": "[yellow]kept: run in progress[/]", "kept": "kept: young"}
    done = collect_garbage(
        lake, retention, dry_run=dry_run, set_gc_rules=set_gc_rules,
        expire_history=not keep_history, keep=keep,
        report=lambda b, verdict: table.add_row(b.name, b.state, _age(b.age), verdicts[verdict]),
    )
    if table.row_count:
        console.print(table)
    went = "would be deleted" if dry_run else "deleted"
    console.print(f"retention {retention}: {len(done.deleted)} run branch(es) {went}, "
                  f"{len(done.held)} kept as in progress, {len(done.kept)} kept as young")
    if done.sweep is not None:
        sweep = done.sweep
        console.print(f"unreachable data {went}: {sweep.objects} object(s), {sweep.commits} "
                      f"commit(s), {sweep.temp_files} temp file(s), {sweep.bytes:,} bytes "
                      f"{'to free' if dry_run else 'freed'}")
        if not keep_history:
            console.print(f"history past the retention: {sweep.expired} commit(s) "
                          f"{'would be expired' if dry_run else 'expired'} (their records "
                          f"stay), {len(keep)} commit(s) of registered models kept")
    if done.sweep is None:
        rules = done.gc_rules or {}
        text = ", ".join(f"{name or 'default'}: {days} days" for name, days in sorted(
            rules.items())) or "none (lakeFS's job would expire nothing)"
        console.print(f"lakeFS garbage-collection rules: {text}; objects go when lakeFS's "
                      "garbage-collection job runs")
