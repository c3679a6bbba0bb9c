"""`tideline features …`: build, discover, inspect and materialise feature views."""
# heavy imports (Prefect flows, Ray, pandas) stay inside the command bodies, so `tideline --help`
# starts fast

from __future__ import annotations

from datetime import datetime

import typer
from rich.table import Column, Table
from tideline.core.errors import FeatureDefinitionError
from tideline.core.settings import load_settings
from tideline.deployments.cli.common import (
    FORMAT_OPTION,
    Format,
    Section,
    command_group,
    console,
    flow_runtime,
    short,
    show,
)

features_app = command_group("Build, inspect and serve feature views.")


def print_features(build) -> None:  # noqa: ANN001 - features.materialize.FeatureBuild
    table = Table(title=f"features of run {build.run_id} as of {', '.join(build.as_of)}")
    for column in ("view", "version", "features"):
        table.add_column(column)
    counts = build.view_features
    for name, version in build.versions.items():
        table.add_row(name, version, str(counts[name]))
    console.print(table)
    console.print(f"{build.features} features for {build.entities:,} entities from lake commit "
                  f"{short(build.source_commit)} in {len(build.partitions)} Ray partitions; "
                  f"manifest: {build.manifest}")
    console.print(f"source days: {build.days_from_tiles} from daily tiles, "
                  f"{build.days_from_events} from raw events")
    for reason in build.untiled:
        console.print(f"  read raw: {reason}")


def print_discovery(result, top: int | None = None) -> None:  # noqa: ANN001 - flows.discover.Discovery
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
                  f"{short(result.commit)})")


def _registry():  # noqa: ANN202 - features.registry.Registry, imported lazily
    from tideline.features.registry import open_registry

    return open_registry(load_settings())


@features_app.command("build")
def features_build(
    run_id: str = typer.Option(None, help="Re-use a run id to re-run it idempotently."),
    as_of: list[datetime] = typer.Option(None, formats=["%Y-%m-%d"],
                                         help="As-of date (repeat for several); default: the "
                                              "day after the newest data."),
    partitions: int = typer.Option(None, min=1, help="Entity partitions (Ray tasks)."),
    full: bool = typer.Option(False, "--full", help="Recompute every window from raw events "
                                                    "instead of merging daily tiles."),
) -> None:
    """Build the feature views from the clean tables on main, on Ray, into the offline store:
    days with a valid daily tile are merged from it, the others read from raw events."""
    with flow_runtime("tideline.flows.build_features", with_ray=True):
        from tideline.flows.build_features import build_features, ray_task_runner

        flow = build_features.with_options(task_runner=ray_task_runner(load_settings()))
        print_features(flow(run_id=run_id,
                             as_of=[day.date() for day in as_of] if as_of else None,
                             partitions=partitions, full=full))


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
    with flow_runtime("tideline.flows.build_features", "tideline.flows.discover",
                      with_ray=True):
        from tideline.flows.build_features import ray_task_runner
        from tideline.flows.discover import discover_features

        flow = discover_features.with_options(task_runner=ray_task_runner(load_settings()))
        print_discovery(flow(run_id=run_id, max_candidates=max_candidates, seconds=seconds,
                              max_selected=max_selected, approximate=approximate, owner=owner))


@features_app.command("list")
def features_list(fmt: Format = FORMAT_OPTION) -> None:
    """Every feature view (newest version): owner, features, last materialisation."""
    registry = _registry()
    listing = Section("feature views", ["view", "version", "owner", "features", "source",
                                        "last as-of", "updated (UTC)"])
    for view in registry.views():
        done = registry.materializations(view.name, view.version)
        listing.rows.append([view.name, view.version, view.owner, len(registry.features(view)),
                             view.source_dataset, max(m.as_of for m in done) if done else None,
                             view.updated_at])
    show(fmt, listing)


@features_app.command("describe")
def features_describe(
    name: str = typer.Argument(help="A view (`name` or `name@version`) or a feature."),
    fmt: Format = FORMAT_OPTION,
) -> None:
    """A view's definition, owner, versions, value statistics and lineage (csv: the features
    table)."""
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
    about = {"view": view.name, "version": view.version, "description": view.description,
             "owner": view.owner, "entity": f"{view.entity} ({view.entity_key})",
             "source": f"{view.source_dataset} (time: {view.source_timestamp})",
             "tags": ", ".join(view.tags) or None,
             "ttl": f"{view.ttl_days} days" if view.ttl_days else None}
    stats = {s.feature: s for s in registry.stats(view.name, view.version)}
    features = Section("features (statistics of the newest materialisation)",
                       ["feature", "definition", "null rate", "min", "mean", "max", "p50"],
                       shown={"null rate": "{:.1%}".format})
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
        features.rows.append([f["name"], definition, *(
            [s.null_rate, s.min_value, s.mean_value, s.max_value,
             s.p50 if s.p50 is not None else s.top_value] if s else [None] * 5)])
    versions = Section("versions", ["version", "created (UTC)", "features"],
                       [[r.version, r.created_at, len(registry.features(r))]
                        for r in registry.versions(view.name)])
    lineage = Section("lineage: builds of this version",
                      ["run", "as of", "rows", "source commit", "published commit"],
                      [[m.run_id, m.as_of, m.rows, m.source_commit, m.published_commit]
                       for m in registry.materializations(view.name, view.version)],
                      shown={"source commit": short, "published commit": short})
    show(fmt, features, versions, lineage, about=about)


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
    with flow_runtime("tideline.flows.build_features"):
        from tideline.flows.build_features import materialize_online

        table = Table("view", "version", "as of", "mode", "written", "deleted")
        for w in materialize_online():
            table.add_row(w.view, w.version, f"{w.as_of}", w.mode, f"{w.written:,}",
                          f"{w.deleted:,}")
        console.print(table)
