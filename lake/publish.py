"""Write-audit-publish: a run writes only to its own branch, and main moves only by merging that
branch after the run's checks pass. A failure keeps the branch for inspection and leaves main as
it was; re-running a run id starts its branch afresh from main, so nothing is written twice.
While a run is open its id is held (on backends that can hold one): a second live run of the
same id is refused with `RunInProgress`, and a run whose process died holds nothing."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from tideline.core.faults import failpoint
from tideline.lake.base import MAIN, Commit, Lake, check_branch

log = logging.getLogger(__name__)


def new_run_id() -> str:
    """A run id from the time (UTC, to the second): what a run gets when nobody names it."""
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def run_branch_name(run_id: str) -> str:
    return check_branch(f"run-{run_id}")


@runtime_checkable
class RunHolding(Protocol):
    """A backend that can hold a run id for one live process (`LocalLake` does, with a flock)."""

    def hold_run(self, run_id: str) -> AbstractContextManager[None]: ...


@dataclass
class RunBranch:
    """The branch a run writes to, and (after a successful exit) the commit it published."""

    lake: Lake
    run_id: str
    branch: str
    into: str
    published: Commit | None = field(default=None)

    def commit(self, message: str, metadata: dict[str, str] | None = None) -> Commit:
        return self.lake.commit(self.branch, message, {**(metadata or {}), "run_id": self.run_id})


def find_published(lake: Lake, run_id: str, into: str = MAIN, depth: int = 1000) -> Commit | None:
    """The commit that published `run_id` into `into`, if it did (within `depth` commits)."""
    for commit in lake.log(into, depth):
        if commit.metadata.get("run_id") == run_id and len(commit.parents) == 2:
            return commit
    return None


@contextmanager
def publish(
    lake: Lake,
    run_id: str,
    *,
    message: str,
    metadata: dict[str, str] | None = None,
    into: str = MAIN,
) -> Iterator[RunBranch]:
    """Open `run-<run_id>` from `into`, yield it, then commit and merge it into `into`.

    Raise inside the block to stop publication (a failed quality gate does exactly that).
    Raises `RunInProgress` if another live process has `run_id` open.
    """
    branch = run_branch_name(run_id)
    with ExitStack() as held:
        if isinstance(lake, RunHolding):
            held.enter_context(lake.hold_run(run_id))
        if branch in lake.branches():
            log.info("run %s ran before; starting its branch %s afresh from %s",
                     run_id, branch, into)
            lake.delete_branch(branch)
        lake.create_branch(branch, into)
        run = RunBranch(lake, run_id, branch, into)
        try:
            yield run
        except BaseException:
            log.warning("run %s failed; branch %s is kept for inspection, %s is unchanged",
                        run_id, branch, into)
            raise
        run.commit(message, metadata)
        failpoint("pre-merge")
        run.published = lake.merge(
            branch,
            into,
            message=f"Publish run {run_id}: {message}",
            metadata={**(metadata or {}), "run_id": run_id},
        )
        lake.delete_branch(branch)
