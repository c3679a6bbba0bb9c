"""Runs at the same time, each in its own process against one embedded lake: different run ids
publish side by side (merges serialised, nothing lost, a clash refused rather than overwritten);
the same run id twice is refused while its first run lives, and re-runs freely once it died.
The run hold's contract is checked on every lake backend (local flock, lakeFS lease), and the
model registry keeps every version two processes register at once."""
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
from tideline.core.errors import RunInProgress
from tideline.lake.base import MAIN, Lake
from tideline.lake.lakefs import LakeFSLake
from tideline.lake.local import LocalLake
from tideline.lake.publish import RunHolding, find_published, publish, run_branch_name

from tests.conftest import LAKEFS_KEYS
from tests.reliability.conftest import Ledger
from tests.waiting import ROOT, wait_for

RUN = """
import json, sys, time
from pathlib import Path
from tideline.lake.local import LocalLake
from tideline.lake.publish import publish

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


# ---- the run hold, on every lake backend -----------------------------------------------------

HOLD_TTL = 1.0
"""Seconds a lakeFS run hold lasts unrenewed in these tests (60 by default)."""


def short_holds(lake: Lake) -> Lake:
    """The lake with lakeFS's hold TTL cut to HOLD_TTL (the local flock has none)."""
    if isinstance(lake, LakeFSLake):
        lake.run_hold_ttl = HOLD_TTL
    return lake


def opener(lake: Lake) -> str:
    """Python source opening `lake` again, in this process or another (a second client)."""
    if isinstance(lake, LakeFSLake):
        return (f"__import__('tideline.lake.lakefs', fromlist=['_']).LakeFSLake({lake.endpoint!r}, "
                f"*{LAKEFS_KEYS!r}, {lake.repository!r}, run_hold_ttl={lake.run_hold_ttl!r})")
    assert isinstance(lake, LocalLake)
    return f"__import__('tideline.lake.local', fromlist=['_']).LocalLake({str(lake.root)!r})"


def reopen(lake: Lake) -> Lake:
    """A second client of the same lake, as another process would open it."""
    if isinstance(lake, LakeFSLake):
        return LakeFSLake(lake.endpoint, *LAKEFS_KEYS, lake.repository,
                          run_hold_ttl=lake.run_hold_ttl)
    assert isinstance(lake, LocalLake)
    return LocalLake(lake.root)


def refused(lake: Lake, run_id: str) -> RunInProgress:
    """Holding `run_id` on `lake` fails with RunInProgress naming it; the error."""
    assert isinstance(lake, RunHolding)
    with (pytest.raises(RunInProgress, match=f"run '{run_id}' is already in progress") as info,
          lake.hold_run(run_id)):
        pytest.fail(f"a second holder got run id {run_id!r}")
    return info.value


def test_a_held_run_id_refuses_a_second_holder_until_released(lake: Lake) -> None:
    """While one holder has a run id, a second (another client of the same lake) is refused
    with RunInProgress naming the run, for as long as the first lives (lakeFS: past several
    TTLs, as its heartbeat renews the lease); other run ids stay free; once released the id is
    free at once."""
    first = short_holds(lake)
    second = reopen(first)
    assert isinstance(first, RunHolding) and isinstance(second, RunHolding)
    with first.hold_run("r1"):
        assert refused(second, "r1").run_id == "r1"
        with second.hold_run("r2"):
            pass
        if isinstance(first, LakeFSLake):
            time.sleep(2.5 * HOLD_TTL)  # the lease would have expired twice unrenewed
            refused(second, "r1")
    started = time.monotonic()
    with second.hold_run("r1"):
        assert time.monotonic() - started < HOLD_TTL  # released, not waited out
        refused(first, "r1")


HOLDER = """
import sys, time
from pathlib import Path
from tideline.lake.publish import publish

lake = {opener}
with publish(lake, sys.argv[1], message="doomed") as run:
    lake.put(run.branch, "clean/partial/part-0.csv", b"half\\n")
    Path(sys.argv[2]).touch()
    time.sleep(600)
"""
"""A run that opens `run id` in publish, writes half its output, says it is inside (touches
the file), and waits to be killed."""


def test_a_run_whose_holder_was_killed_is_taken_over(lake: Lake, tmp_path: Path,
                                                     ledger: Ledger) -> None:
    """A run id held by a live process is refused to a re-run (RunInProgress naming it); once
    the holder is killed with SIGKILL, the re-run gets it (local: at once; lakeFS: when the
    dead holder's lease expires, within its TTL) and main gets the re-run's objects only."""
    lake = short_holds(lake)
    inside = tmp_path / "inside"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER.format(opener=opener(lake)), "r9", str(inside)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for("the holder inside publish", lambda: inside.exists() or holder.poll() is not None,
                 timeout=60)
        assert holder.poll() is None, holder.communicate()[1]
        before = lake.resolve(MAIN)
        with (pytest.raises(RunInProgress, match="run 'r9' is already in progress"),
              publish(lake, "r9", message="too early")):
            pytest.fail("a re-run started while the holder lived")
        os.kill(holder.pid, signal.SIGKILL)
        ledger.fault()
        assert holder.wait(30) == -signal.SIGKILL
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.communicate()
    killed = time.monotonic()
    while True:
        try:
            with publish(lake, "r9", message="re-run") as run:
                lake.put(run.branch, "clean/whole/part-0.csv", b"whole\n")
            break
        except RunInProgress:
            assert time.monotonic() - killed < HOLD_TTL + 5, "the dead holder's hold lasted"
            time.sleep(0.1)
    if isinstance(lake, LocalLake):
        assert time.monotonic() - killed < 5  # the kernel dropped the flock with the holder
    published = find_published(lake, "r9")
    assert published is not None and published.parents[0] == before
    assert [o.path for o in lake.list(MAIN)] == ["clean/whole/part-0.csv"]


# ---- the model registry: two processes registering one model name at once -----------------

REGISTER = """
import faulthandler, json, sys, time
from pathlib import Path

faulthandler.dump_traceback_later(240, exit=True)  # a hang shows where, before the test's 300 s

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.dummy import DummyClassifier

from tideline.features.store import TrainingSet
from tideline.lake.local import LocalLake
from tideline.demo.model import CHURN_MODEL
from tideline.models.evaluation import Metrics
from tideline.models.registry import ModelRegistry, register_model
from tideline.models.training import FeatureMatrix, TrainedModel

root, url, writer, count, promotions, go = sys.argv[1:]
x = np.random.default_rng(len(writer)).normal(size=(200, 2))
y = (x[:, 0] > 0).astype(int)
booster = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 4},
                    lgb.Dataset(x, y), 3)
metrics = Metrics(rows=200, positives=int(y.sum()), roc_auc=0.9, pr_auc=0.8, threshold=0.5,
                  precision=0.8, recall=0.8, f1=0.8, lift_top_10=2.0, brier=0.1,
                  confusion=((90, 10), (10, 90)))
training = TrainingSet(name="churn-train", frame=pd.DataFrame(), tag="training-churn-1",
                       lake_commit="0" * 64, ref_commit="0" * 64, path="training/churn",
                       features=("f0", "f1"), views={"v": "1"}, as_of={})
lake, registry = LocalLake(root), ModelRegistry(url)
while not Path(go).exists():
    time.sleep(0.01)
records = []
for i in range(int(count)):
    trained = TrainedModel(
        booster=booster, baseline=DummyClassifier(), matrix=FeatureMatrix(("f0", "f1")),
        threshold=0.5, metrics=metrics, baseline_metrics=metrics, importance={"f0": 1.0},
        leaks={}, dates={}, params={"writer": writer, "i": i},
        test_scores={"lightgbm": booster.predict(x)}, test_labels=y)
    record = register_model(registry, lake, CHURN_MODEL, trained, training)
    registry.set_champion(record, {"writer": writer})
    records.append(record)
    print(json.dumps([writer, i, record.version]), flush=True)
Path(go + "-" + writer).touch()
while not all(Path(go + "-" + other).exists() for other in "ab"):
    time.sleep(0.01)
for j in range(int(promotions)):
    registry.set_champion(records[j % len(records)], {"writer": writer, "again": j})
"""
"""A process registering `count` versions of the churn model (each carrying its writer and
number in its parameters) and promoting each, once `go` exists; then, once both writers have
registered, promoting its versions again in turn, `promotions` times."""

VERSIONS_EACH = 4
PROMOTIONS = 30


@pytest.mark.parametrize("database", [
    "sqlite", pytest.param("postgres", marks=pytest.mark.service("postgres"))])
def test_two_processes_registering_one_model_keep_every_version(
        database: str, tmp_path: Path, request: pytest.FixtureRequest, ledger: Ledger) -> None:
    """Two processes registering (and promoting) versions of the same model name at the same
    time, against one metadata database and one lake, lose neither's: all 2N versions exist
    with distinct numbers, each with its own row, tag, registration event and artifacts at its
    commit. Promotions racing each other leave exactly one champion, every promotion having
    archived the one champion before it (none twice, none left beside the new one)."""
    from tideline.models.registry import ModelRegistry, load_model

    url = (request.getfixturevalue("postgres_database") if database == "postgres"
           else f"sqlite:///{tmp_path / 'models.db'}")
    root, go = tmp_path / "lake", tmp_path / "go"
    LocalLake(root)
    ModelRegistry(url).close()  # created before the race; migrating at once is another matter
    writers = [subprocess.Popen(
        [sys.executable, "-c", REGISTER, str(root), url, writer, str(VERSIONS_EACH),
         str(PROMOTIONS), str(go)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for writer in ("a", "b")]
    try:
        time.sleep(3)  # both import and reach the start line, then go at once
        go.touch()
        # a writer that fails leaves the other waiting for it: stop both at the first failure
        deadline = time.monotonic() + 300
        while (any(w.poll() is None for w in writers) and time.monotonic() < deadline
               and not any(w.poll() for w in writers)):
            time.sleep(0.1)
    finally:
        for writer in writers:
            if writer.poll() is None:
                writer.kill()
        finished = [writer.communicate() for writer in writers]
    ended = "\n".join(f"writer {name} ended with {writer.returncode}: {err[-3000:]}"
                     for name, writer, (_, err) in zip("ab", writers, finished, strict=True))
    assert [writer.returncode for writer in writers] == [0, 0], ended
    ledger.fault()  # a concurrent writer is the fault this registry must survive
    registry, lake = ModelRegistry(url), LocalLake(root)
    try:
        records = registry.models("churn")
        ledger.reconcile(f"model versions registered at once ({database})", 2 * VERSIONS_EACH,
                         len(records))
        said = [json.loads(line) for out, _ in finished for line in out.splitlines()]
        versions = sorted(r.version for r in records)
        assert versions == sorted({v for _, _, v in said}) == list(range(1, 2 * VERSIONS_EACH + 1))
        assert sorted((r.params["writer"], r.params["i"]) for r in records) == sorted(
            (w, i) for w in ("a", "b") for i in range(VERSIONS_EACH))
        tags = lake.tags()
        for record in records:
            assert tags[f"model-churn-v{record.version}"] == record.artifact_commit
            card = json.loads(lake.get(record.artifact_commit, f"{record.artifact_path}/card.json"))
            assert (card["version"], card["params"]) == (
                record.version, {"writer": record.params["writer"], "i": record.params["i"]})
            assert record.artifact_path == f"models/churn/v{record.version}"
            load_model(lake, record)  # its booster reads back
        assert [r.stage for r in records].count("champion") == 1
        events = registry.events("churn")
        assert sorted(e["version"] for e in events if e["event"] == "registered") == versions
        promoted = [e["version"] for e in events if e["event"] == "promoted"]
        assert sorted(set(promoted)) == versions
        assert len(promoted) == 2 * (VERSIONS_EACH + PROMOTIONS)
        # each promotion archived the one champion before it: none archived twice, none kept
        assert len([e for e in events if e["event"] == "archived"]) == len(promoted) - 1
        assert not [b for b in lake.branches() if b.startswith("run-")]
    finally:
        registry.close()
