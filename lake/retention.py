"""Retention: run branches past the retention are deleted once their run is over (merged or
abandoned), then the backend expires what only they reached and the history replaced before the
retention: the local lake sweeps it (`LocalLake.sweep`), lakeFS gets garbage-collection rules for
its own job. Commits that registered models name are kept, so their lineage reads in full."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Collection
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol, runtime_checkable

from tideline.core.errors import InvalidName, RunInProgress
from tideline.lake.base import MAIN, Lake, Sweep, check_branch
from tideline.lake.publish import RunHolding

log = logging.getLogger(__name__)

RUN_PREFIX = "run-"
"""Only branches named so are ever deleted: never main, tags or other branches."""

PUBLISHED_DEPTH = 10_000
"""Commits of main searched for a run's publishing merge (to say merged or abandoned)."""


@runtime_checkable
class RunWatching(Protocol):
    """What a backend tells about a run branch beyond the protocol (both backends have it)."""

    def run_held(self, run_id: str) -> bool: ...
    def uncommitted_since(self, branch: str, cutoff: datetime) -> bool: ...


@runtime_checkable
class Sweeping(Protocol):
    """A backend that deletes its own unreachable data (`LocalLake`)."""

    def sweep(
        self, cutoff: datetime, *, ignore_branches: tuple[str, ...] = (), dry_run: bool = False,
        expire_history: bool = False, keep: Collection[str] = (),
    ) -> Sweep: ...


@runtime_checkable
class GcRuled(Protocol):
    """A backend whose server expires old objects by rules (`LakeFSLake`)."""

    def gc_rules(self) -> dict[str, int] | None: ...
    def set_gc_rules(self, default_days: int, branches: dict[str, int]) -> None: ...


@dataclass(frozen=True)
class RunBranchAge:
    """A run branch and how long ago its head commit was made."""

    name: str
    head: str
    age: timedelta
    state: Literal["merged", "abandoned"]


@dataclass
class GarbageCollection:
    """What one garbage collection did (or, in a dry run, would do)."""

    retention: timedelta
    dry_run: bool
    deleted: list[RunBranchAge] = field(default_factory=list)
    """Run branches past the retention: deleted (a dry run: would be)."""
    held: list[RunBranchAge] = field(default_factory=list)
    """Past the retention, but their run is in progress: kept."""
    kept: list[RunBranchAge] = field(default_factory=list)
    """Younger than the retention (head, or a staged change): kept."""
    sweep: Sweep | None = None
    """The local lake's sweep of unreachable data."""
    gc_rules: dict[str, int] | None = None
    """lakeFS: the repository's rules after this collection, days by branch (`""`: default)."""


def retention_days(retention: timedelta) -> int:
    """Whole days for lakeFS's rules, rounded up (and at least one): never shorter."""
    return max(1, math.ceil(retention / timedelta(days=1)))


def _published_runs(lake: Lake) -> set[str]:
    return {commit.metadata["run_id"] for commit in lake.log(MAIN, PUBLISHED_DEPTH)
            if len(commit.parents) == 2 and "run_id" in commit.metadata}


def _run_id(branch: str) -> str | None:
    """The run id a run branch belongs to, or None if no run could be named so."""
    try:
        return check_branch(branch.removeprefix(RUN_PREFIX))
    except InvalidName:
        return None


def run_branch_ages(lake: Lake, now: datetime) -> list[RunBranchAge]:
    """Every `run-*` branch with the age of its head commit, oldest first."""
    published = _published_runs(lake)
    ages = [
        RunBranchAge(name, head, now - lake.get_commit(head).created_at,
                     "merged" if name.removeprefix(RUN_PREFIX) in published else "abandoned")
        for name, head in lake.branches().items() if name.startswith(RUN_PREFIX)
    ]
    return sorted(ages, key=lambda branch: (-branch.age, branch.name))


def _delete_unless_held(lake: Lake, branch: RunBranchAge) -> bool:
    """Delete a run branch holding its run, so no run of that id starts meanwhile; false (and
    nothing deleted) if a live process holds the run."""
    run_id = _run_id(branch.name)
    with ExitStack() as held:
        if run_id is not None and isinstance(lake, RunHolding):
            try:
                held.enter_context(lake.hold_run(run_id))
            except RunInProgress:
                return False
        lake.delete_branch(branch.name)
    return True


def _is_held(lake: Lake, branch: RunBranchAge) -> bool:
    run_id = _run_id(branch.name)
    return run_id is not None and isinstance(lake, RunWatching) and lake.run_held(run_id)


def collect_garbage(
    lake: Lake,
    retention: timedelta,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    set_gc_rules: bool = True,
    expire_history: bool = True,
    keep: Collection[str] = (),
    report: Callable[[RunBranchAge, str], None] | None = None,
) -> GarbageCollection:
    """Delete run branches whose head commit is older than `retention` unless their run is
    held, then expire what only they reached: the local lake sweeps unreachable data older than
    `retention` and (with `expire_history`) the data of commits replaced before it but for the
    commits in `keep` (`LocalLake.sweep`); on lakeFS (with `set_gc_rules`) every branch's rule
    becomes `retention` in whole days, rounded up, for lakeFS's own garbage-collection job.
    `report` hears of each run branch as it is decided (`deleted`, `held`, `kept`). A dry run
    changes nothing."""
    now = now or datetime.now(UTC)
    cutoff = now - retention
    done = GarbageCollection(retention, dry_run)
    for branch in run_branch_ages(lake, now):
        young = branch.age < retention or (
            isinstance(lake, RunWatching) and lake.uncommitted_since(branch.name, cutoff))
        if young:
            verdict, into = "kept", done.kept
        elif dry_run:
            verdict, into = ("held", done.held) if _is_held(lake, branch) else (
                "deleted", done.deleted)
        elif _delete_unless_held(lake, branch):
            verdict, into = "deleted", done.deleted
        else:
            verdict, into = "held", done.held
        into.append(branch)
        log.info("run branch %s (%s, head %s old): %s", branch.name, branch.state, branch.age,
                 verdict)
        if report is not None:
            report(branch, verdict)
    if isinstance(lake, Sweeping):
        done.sweep = lake.sweep(
            cutoff, ignore_branches=tuple(b.name for b in done.deleted), dry_run=dry_run,
            expire_history=expire_history, keep=keep)
    if isinstance(lake, GcRuled):
        if set_gc_rules and not dry_run:
            days = retention_days(retention)
            lake.set_gc_rules(days, {MAIN: days})
        done.gc_rules = lake.gc_rules()
    return done
