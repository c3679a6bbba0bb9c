"""Retention of feature tables and training sets on main (`tideline lake gc --tables`): feature
tables whose as-of date, and saved training sets whose commit, are older than the retention are
dropped through write-audit-publish, except each view version's newest table and the training
sets registered models name (their lineage keeps reading); so are the daily tiles no build
merges any more, those of another partition count than their view version's newest tiles."""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from tideline.features.tiles import newest_count, tile_object
from tideline.lake.base import MAIN, Lake
from tideline.lake.publish import publish

log = logging.getLogger(__name__)

TRAINING_SET_TAG = "training-set-"


@dataclass(frozen=True)
class TableRetention:
    """What dropping tables older than `cutoff` takes off main (or, before it runs, would)."""

    cutoff: datetime
    feature_tables: tuple[str, ...]
    """`<view>/v=<version>/as_of=<day>` of each feature table dropped."""
    training_sets: tuple[str, ...]
    """Names of the training sets dropped (with their tags)."""
    kept: tuple[str, ...]
    """Training sets past the retention that a registered model names: kept."""
    tiles: tuple[str, ...]
    """`<view>/v=<version>/f=<format>/of=<count>` of each set of tiles dropped."""
    paths: tuple[str, ...]
    """Every object deleted."""


def _feature_table(path: str) -> tuple[str, str] | None:
    """(`<view>/v=<version>`, day) of an object of a feature table, None for anything else."""
    parts = path.split("/")
    if len(parts) > 4 and parts[2].startswith("v=") and parts[3].startswith("as_of="):
        return f"{parts[1]}/{parts[2]}", parts[3].removeprefix("as_of=")
    return None


def plan_table_retention(lake: Lake, cutoff: datetime, referenced: Collection[str],
                         ref: str = MAIN) -> TableRetention:
    """The feature tables (but each view version's newest) whose as-of day is before
    `cutoff`'s, and the saved training sets made before `cutoff` that no name in `referenced`
    is, on `ref`."""
    days: dict[str, set[str]] = {}
    objects: dict[tuple[str, str], list[str]] = {}
    tiles: dict[str, list[tuple[str, int, str]]] = {}
    for info in lake.list(ref, "features/"):
        found = _feature_table(info.path)
        if found is not None:
            days.setdefault(found[0], set()).add(found[1])
            objects.setdefault(found, []).append(info.path)
        elif (tile := tile_object(info.path)) is not None:
            tiles.setdefault(tile[0], []).append((*tile[1:], info.path))
    stale = {}  # tiles of other partition counts than the newest: no build reads them
    for group, found in tiles.items():
        count = newest_count([(day, n) for day, n, _ in found])
        for _, n, path in found:
            if n != count:
                stale.setdefault(f"{group}/of={n}", []).append(path)
    day_cutoff = cutoff.date().isoformat()
    tables = sorted((view, day) for view, seen in days.items()
                    for day in sorted(seen)[:-1] if day < day_cutoff)
    old_sets = sorted(name.removeprefix(TRAINING_SET_TAG) for name, commit in lake.tags().items()
                      if name.startswith(TRAINING_SET_TAG)
                      and lake.get_commit(commit).created_at < cutoff)
    dropped = [name for name in old_sets if name not in referenced]
    paths = [path for table in tables for path in objects[table]] + [
        info.path for name in dropped for info in lake.list(ref, f"training_sets/{name}/")] + [
        path for name in sorted(stale) for path in stale[name]]
    return TableRetention(cutoff, tuple(f"{view}/as_of={day}" for view, day in tables),
                          tuple(dropped), tuple(n for n in old_sets if n in referenced),
                          tuple(sorted(stale)), tuple(paths))


def drop_tables(lake: Lake, plan: TableRetention, run_id: str) -> str | None:
    """Publish main without the plan's objects (one run, `run_id`), then delete the dropped
    training sets' tags; the commit published, or None when there was nothing to drop."""
    commit = None
    if plan.paths:
        with publish(lake, run_id, message=f"drop {len(plan.feature_tables)} feature tables, "
                     f"{len(plan.training_sets)} training sets before {plan.cutoff} and "
                     f"{len(plan.tiles)} sets of unused tiles",
                     metadata={"stage": "retention", "before": plan.cutoff.isoformat()}) as run:
            for path in plan.paths:
                lake.delete(run.branch, path)
        commit = run.published.id if run.published is not None else None
    tags = lake.tags()
    for name in plan.training_sets:
        if f"{TRAINING_SET_TAG}{name}" in tags:
            lake.delete_tag(f"{TRAINING_SET_TAG}{name}")
    log.info("retention before %s: %d feature tables, %d training sets and %d sets of unused "
             "tiles dropped (%d objects)", plan.cutoff, len(plan.feature_tables),
             len(plan.training_sets), len(plan.tiles), len(plan.paths))
    return commit
