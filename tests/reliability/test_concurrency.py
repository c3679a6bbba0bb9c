"""Runs at the same time, each in its own process against one embedded lake: different run ids
publish side by side (merges serialised, nothing lost, a clash refused rather than overwritten);
the same run id twice is refused while its first run lives, and re-runs freely once it died."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lake.base import MAIN
from lake.local import LocalLake
from lake.publish import find_published, run_branch_name
from tests.reliability.conftest import Ledger
from tests.waiting import ROOT, wait_for

RUN = """
import json, sys, time
from pathlib import Path
from lake.local import LocalLake
from lake.publish import publish

root, run_id, files, inside, go = sys.argv[1:]
lake = LocalLake(root)
with publish(lake, run_id, message=f"run {run_id}") as run:
    for path, body in json.loads(files).items():
        lake.put(run.branch, path, body.encode())
    Path(inside).touch()
    while not Path(go).exists():
        time.sleep(0.01)
print(run.published.id)
"""
"""One run in a child process: write `files` on its branch, say it is inside (touch `inside`),
wait for `go`, publish."""


class Runs:
    """Child processes publishing into one lake, held inside their runs until `release()`."""

    def __init__(self, root: Path) -> None:
        self.root, self.go = root, root.parent / "go"
        self.children: list[subprocess.Popen[str]] = []

    def start(self, name: str, run_id: str, files: dict[str, str]) -> subprocess.Popen[str]:
        child = subprocess.Popen(
            [sys.executable, "-c", RUN, str(self.root), run_id, json.dumps(files),
             str(self.inside(name)), str(self.go)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.children.append(child)
        return child

    def inside(self, name: str) -> Path:
        return self.root.parent / f"inside-{name}"

    def release(self) -> None:
        self.go.touch()

    def finish(self, child: subprocess.Popen[str]) -> tuple[int, str]:
        _, err = child.communicate(timeout=60)
        return child.returncode, err


@pytest.fixture
def runs(tmp_path: Path) -> Iterator[Runs]:
    LocalLake(tmp_path / "lake")
    runs = Runs(tmp_path / "lake")
    yield runs
    for child in runs.children:
        if child.poll() is None:
            child.kill()
            child.wait()


def published_runs(lake: LocalLake) -> list[str]:
    return [c.metadata["run_id"] for c in lake.log(MAIN) if len(c.parents) == 2]


def test_two_run_ids_at_once_both_publish_with_merges_serialised(runs: Runs) -> None:
    """Two runs open at the same moment both reach main: each by its own merge, one after the
    other on main's first-parent line, and neither run's objects are lost."""
    first = runs.start("a", "a", {"clean/a/part-0.csv": "1,2\n", "checkpoints/a.json": "{}"})
    second = runs.start("b", "b", {"clean/b/part-0.csv": "3,4\n", "checkpoints/b.json": "{}"})
    wait_for("both runs inside publish",
             lambda: runs.inside("a").exists() and runs.inside("b").exists())
    runs.release()
    assert runs.finish(first)[0] == runs.finish(second)[0] == 0
    lake = LocalLake(runs.root)
    assert sorted(published_runs(lake)) == ["a", "b"]
    head = lake.get_commit(MAIN)
    below = lake.get_commit(head.parents[0])
    assert {head.metadata["run_id"], below.metadata["run_id"]} == {"a", "b"}
    assert len(below.parents) == 2  # the later merge sits on the earlier one, not beside it
    assert [o.path for o in lake.list(MAIN)] == [
        "checkpoints/a.json", "checkpoints/b.json", "clean/a/part-0.csv", "clean/b/part-0.csv"]
    assert not {run_branch_name("a"), run_branch_name("b")} & set(lake.branches())


def test_two_runs_moving_one_checkpoint_cannot_lose_an_update(runs: Runs) -> None:
    """Two runs that both move the same checkpoint: one publishes, the other is refused with a
    merge conflict naming the checkpoint, so main never silently drops either's position."""
    first = runs.start("a", "a", {"checkpoints/crm.json": '{"offset": 10}'})
    second = runs.start("b", "b", {"checkpoints/crm.json": '{"offset": 20}'})
    wait_for("both runs inside publish",
             lambda: runs.inside("a").exists() and runs.inside("b").exists())
    runs.release()
    outcomes = {"a": runs.finish(first), "b": runs.finish(second)}
    [winner] = [run for run, (code, _) in outcomes.items() if code == 0]
    [loser] = [run for run, (code, _) in outcomes.items() if code != 0]
    assert "MergeConflict" in outcomes[loser][1]
    assert "checkpoints/crm.json" in outcomes[loser][1]
    lake = LocalLake(runs.root)
    assert published_runs(lake) == [winner]
    offset = {"a": b'{"offset": 10}', "b": b'{"offset": 20}'}
    assert lake.get(MAIN, "checkpoints/crm.json") == offset[winner]
    assert lake.get(run_branch_name(loser), "checkpoints/crm.json") == offset[loser]  # kept


def test_same_run_id_at_once_is_refused_and_nothing_is_written_twice(runs: Runs) -> None:
    """A second process starting a run id that a live process has open is refused with
    RunInProgress naming the run, before touching its branch; the first publishes once."""
    first = runs.start("first", "r7", {"clean/x/part-0.csv": "first\n"})
    wait_for("the first run inside publish", runs.inside("first").exists)
    second = runs.start("second", "r7", {"clean/x/part-0.csv": "second\n",
                                         "clean/y/part-0.csv": "second\n"})
    code, err = runs.finish(second)
    assert code == 1
    assert "RunInProgress" in err and "run 'r7' is already in progress" in err
    assert not runs.inside("second").exists()
    lake = LocalLake(runs.root)
    branch = run_branch_name("r7")
    assert [o.path for o in lake.list(branch)] == ["clean/x/part-0.csv"]
    assert lake.get(branch, "clean/x/part-0.csv") == b"first\n"  # the first run's, untouched
    runs.release()
    assert runs.finish(first)[0] == 0
    assert published_runs(lake) == ["r7"]
    assert [(o.path, lake.get(MAIN, o.path)) for o in lake.list(MAIN)] == [
        ("clean/x/part-0.csv", b"first\n")]


def test_a_run_killed_inside_publish_can_be_rerun_at_once(runs: Runs, ledger: Ledger) -> None:
    """A run killed with SIGKILL holds nothing: its re-run with the same id starts afresh from
    main, and main gets the re-run's objects only, not the dead run's partial ones."""
    dead = runs.start("dead", "r8", {"clean/partial/part-0.csv": "half\n"})
    wait_for("the run inside publish", runs.inside("dead").exists)
    os.kill(dead.pid, signal.SIGKILL)
    ledger.fault()
    assert runs.finish(dead)[0] == -signal.SIGKILL
    lake = LocalLake(runs.root)
    before = lake.resolve(MAIN)
    assert find_published(lake, "r8") is None
    runs.release()
    started = time.monotonic()
    code, err = runs.finish(runs.start("rerun", "r8", {"clean/whole/part-0.csv": "whole\n"}))
    assert code == 0, err
    assert time.monotonic() - started < 30  # no waiting out a stale lock
    published = find_published(lake, "r8")
    assert published is not None and published.parents[0] == before
    assert [o.path for o in lake.list(MAIN)] == ["clean/whole/part-0.csv"]
