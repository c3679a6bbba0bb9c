"""Retention (`tideline lake gc`): run branches past the retention go once their run is over,
on both backends; the local lake then deletes what only they reached and expires history
replaced before the retention, and lakeFS gets the garbage-collection rules its own job expires
objects by (checked against lakeFS's own preparation of that job). Age is set with `now`, not by
sleeping; on the local lake, file times are set with `os.utime`."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tideline.lake.base import MAIN, Lake
from tideline.lake.local import LocalLake
from tideline.lake.retention import collect_garbage
from typer.testing import CliRunner

WEEK = timedelta(days=7)


def later(days: float = 8) -> datetime:
    """A clock `days` ahead: everything made so far is that old."""
    return datetime.now(UTC) + timedelta(days=days)


def commit_run(lake: Lake, run_id: str, path: str, data: bytes) -> str:
    branch = f"run-{run_id}"
    lake.create_branch(branch, MAIN)
    lake.put(branch, path, data)
    lake.commit(branch, f"run {run_id}", {"run_id": run_id})
    return branch


def merge_run(lake: Lake, run_id: str, path: str, data: bytes) -> str:
    """A run merged into main whose branch was left behind (its process died after the merge)."""
    branch = commit_run(lake, run_id, path, data)
    lake.merge(branch, MAIN, f"Publish run {run_id}", {"run_id": run_id})
    return branch


def read_every_commit(lake: Lake) -> int:
    """Read every object of every commit any branch or tag reaches; the bytes read."""
    seen, total = set(), 0
    for head in [*lake.branches().values(), *lake.tags().values()]:
        for commit in lake.log(head, 10_000):
            if commit.id in seen:
                continue
            seen.add(commit.id)
            for info in lake.list(commit.id):
                data = lake.get(commit.id, info.path)
                assert len(data) == info.size
                total += len(data)
    return total


@pytest.fixture
def history(lake: Lake) -> Lake:
    """Main with two commits and a tag, a non-run branch, an abandoned run and a merged one."""
    lake.put(MAIN, "raw/a.parquet", b"first version")
    lake.commit(MAIN, "first")
    lake.tag("v1", MAIN)
    lake.put(MAIN, "raw/a.parquet", b"second version")
    lake.commit(MAIN, "second")
    lake.create_branch("feature-x", MAIN)
    lake.put("feature-x", "scratch.txt", b"kept: not a run branch")
    commit_run(lake, "failed", "raw/b.parquet", b"abandoned rows")
    merge_run(lake, "published", "raw/c.parquet", b"merged rows")
    return lake


def test_old_run_branches_go_merged_or_abandoned_and_nothing_else(history: Lake) -> None:
    main, tags = history.resolve(MAIN), history.tags()
    done = collect_garbage(history, WEEK, now=later(), expire_history=False)
    assert {(b.name, b.state) for b in done.deleted} == {
        ("run-failed", "abandoned"), ("run-published", "merged")}
    assert all(b.age > WEEK for b in done.deleted)
    assert not done.held and not done.kept
    assert not [name for name in history.branches() if name.startswith("run-")]
    assert {MAIN, "feature-x"} <= set(history.branches())
    assert history.resolve(MAIN) == main and history.tags() == tags
    assert history.get("feature-x", "scratch.txt") == b"kept: not a run branch"
    assert history.get(MAIN, "raw/c.parquet") == b"merged rows"
    assert history.get("v1", "raw/a.parquet") == b"first version"
    read_every_commit(history)


def test_young_run_branches_are_kept(history: Lake) -> None:
    done = collect_garbage(history, WEEK)
    assert {b.name for b in done.kept} == {"run-failed", "run-published"}
    assert not done.deleted
    assert {"run-failed", "run-published"} <= set(history.branches())
    # six days on they are still young; eight days on they go
    assert not collect_garbage(history, WEEK, now=later(6)).deleted
    assert len(collect_garbage(history, WEEK, now=later(8)).deleted) == 2


def test_a_run_in_progress_is_never_touched(history: Lake) -> None:
    with history.hold_run("failed"):  # type: ignore[attr-defined]
        dry = collect_garbage(history, WEEK, now=later(), dry_run=True)
        done = collect_garbage(history, WEEK, now=later())
        assert "run-failed" in history.branches()
    assert [b.name for b in dry.held] == [b.name for b in done.held] == ["run-failed"]
    assert [b.name for b in done.deleted] == ["run-published"]
    assert history.get("run-failed", "raw/b.parquet") == b"abandoned rows"
    # its run over, the next collection takes it
    assert [b.name for b in collect_garbage(history, WEEK, now=later()).deleted] == ["run-failed"]


def test_a_dry_run_deletes_nothing(history: Lake) -> None:
    branches, tags = history.branches(), history.tags()
    dry = collect_garbage(history, WEEK, now=later(), dry_run=True)
    assert {b.name for b in dry.deleted} == {"run-failed", "run-published"}
    assert history.branches() == branches and history.tags() == tags
    read_every_commit(history)
    done = collect_garbage(history, WEEK, now=later())
    assert [b.name for b in done.deleted] == [b.name for b in dry.deleted]
    if dry.sweep is not None:  # the local lake's estimate is what the real sweep frees
        assert dry.sweep == done.sweep and done.sweep.bytes > 0


# ---- the local lake's sweep ------------------------------------------------------------------


def files(lake: LocalLake) -> dict[Path, int]:
    return {path: path.stat().st_size for sub in ("objects", "commits", "tmp", "staging")
            for path in (lake.root / sub).rglob("*") if path.is_file()}


def object_file(lake: LocalLake, data: bytes) -> Path:
    import hashlib

    digest = hashlib.sha256(data).hexdigest()
    return lake.root / "objects" / digest[:2] / digest[2:]


def age(path: Path, days: float) -> None:
    stamp = time.time() - days * 86_400
    os.utime(path, (stamp, stamp))


@pytest.fixture
def local(tmp_path: Path) -> LocalLake:
    return LocalLake(tmp_path / "lake")


def test_sweep_deletes_only_what_deleted_run_branches_reached(local: LocalLake) -> None:
    local.put(MAIN, "raw/a.parquet", b"old main version")  # only in main's history: kept
    local.commit(MAIN, "first")
    local.put(MAIN, "raw/a.parquet", b"new main version")
    local.commit(MAIN, "second")
    local.create_branch("feature-x", MAIN)
    local.put("feature-x", "staged.txt", b"staged on a kept branch")  # staged only: kept
    commit_run(local, "failed", "raw/b.parquet", b"only on a failed run")
    local.create_branch("run-staged", MAIN)
    local.put("run-staged", "raw/s.parquet", b"staged on a failed run")
    local.put("run-failed", "raw/u.parquet", b"uncommitted on a failed run")
    orphan = local._store(b"stored, never staged (a crashed writer)")[0]
    (local.root / "tmp" / "leftover").write_bytes(b"x" * 1000)
    run_commit = local.resolve("run-failed")
    before = files(local)

    done = collect_garbage(local, WEEK, now=later(), expire_history=False)

    gone = {path: size for path, size in before.items() if not path.exists()}
    assert done.sweep is not None and done.sweep.bytes == sum(
        size for path, size in gone.items() if "staging" not in path.parts)
    assert object_file(local, b"only on a failed run") in gone
    assert object_file(local, b"staged on a failed run") in gone
    assert object_file(local, b"uncommitted on a failed run") in gone
    assert local.root / "objects" / orphan[:2] / orphan[2:] in gone
    assert local.root / "tmp" / "leftover" in gone
    assert local.root / "commits" / f"{run_commit}.json" in gone
    # objects: three data objects, the orphan, and the failed run's tree
    assert (done.sweep.objects, done.sweep.commits, done.sweep.temp_files) == (5, 1, 1)
    for kept in (b"old main version", b"new main version", b"staged on a kept branch"):
        assert object_file(local, kept).exists()
    assert local.get("feature-x", "staged.txt") == b"staged on a kept branch"
    assert local.get(f"{MAIN}~1", "raw/a.parquet") == b"old main version"
    # every commit left, reachable or not, reads in full
    for record in (local.root / "commits").glob("*.json"):
        for info in local.list(record.stem):
            assert len(local.get(record.stem, info.path)) == info.size
    assert read_every_commit(local) > 0
    # a second collection finds nothing more
    again = collect_garbage(local, WEEK, now=later(), expire_history=False)
    assert not again.deleted and again.sweep.bytes == 0


def test_sweep_keeps_what_is_younger_than_the_retention(local: LocalLake) -> None:
    """Unreachable but recent: a writer may have stored it and not yet staged or committed it.
    Storing content that exists already makes it recent again."""
    young = local._store(b"stored a day ago")[0]
    old = local._store(b"stored ten days ago")[0]
    refreshed = local._store(b"stored ten days ago, stored again now")[0]
    for checksum, days in ((young, 1), (old, 10), (refreshed, 10)):
        age(local.root / "objects" / checksum[:2] / checksum[2:], days)
    local.put(MAIN, "again.txt", b"stored ten days ago, stored again now")  # a writer adopts it
    assert time.time() - object_file(local, b"stored ten days ago, stored again now").stat(
    ).st_mtime < 60
    sweep = collect_garbage(local, WEEK).sweep
    assert sweep is not None and sweep.objects == 1
    assert not object_file(local, b"stored ten days ago").exists()
    assert object_file(local, b"stored a day ago").exists()
    assert local.get(MAIN, "again.txt") == b"stored ten days ago, stored again now"


def test_a_recent_uncommitted_change_keeps_an_old_run_branch(local: LocalLake) -> None:
    """A run that failed before its first commit has main's older commit as head: its staged
    change, not its head, says when it last ran."""
    local.create_branch("run-recent", MAIN)
    local.put("run-recent", "raw/r.parquet", b"failed yesterday")
    [staged] = (local.root / "staging" / "run-recent").iterdir()
    stamp = later(7.5).timestamp()  # staged "after" the cutoff of a clock 8 days ahead
    os.utime(staged, (stamp, stamp))
    done = collect_garbage(local, WEEK, now=later())
    assert [b.name for b in done.kept] == ["run-recent"] and not done.deleted
    assert local.get("run-recent", "raw/r.parquet") == b"failed yesterday"


def test_lake_gc_command(data_dir: Path) -> None:
    from tideline.deployments.cli import app

    lake = LocalLake(data_dir / "lake")
    commit_run(lake, "failed", "raw/b.parquet", b"abandoned rows")
    runner = CliRunner()
    result = runner.invoke(app, ["lake", "gc", "--dry-run", "--older-than", "0s"],
                           terminal_width=200)
    assert result.exit_code == 2 and "positive" in result.output
    result = runner.invoke(app, ["lake", "gc", "--dry-run"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "run-failed" in result.output and "kept: young" in result.output
    result = runner.invoke(app, ["lake", "gc", "--older-than", "0.001s"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "run-failed" in result.output and "abandoned" in result.output
    assert "1 run branch(es) deleted" in result.output and "bytes freed" in result.output
    assert "run-failed" not in lake.branches()


# ---- lakeFS's garbage-collection rules -------------------------------------------------------


@pytest.mark.service("lakefs")
def test_lakefs_gets_gc_rules_for_the_retention(lakefs_lake: Lake) -> None:
    import lakefs_sdk

    assert lakefs_lake.gc_rules() is None  # type: ignore[attr-defined]
    dry = collect_garbage(lakefs_lake, timedelta(days=2, hours=1), dry_run=True)
    assert dry.gc_rules is None and lakefs_lake.gc_rules() is None  # type: ignore[attr-defined]
    done = collect_garbage(lakefs_lake, timedelta(days=2, hours=1))
    assert done.sweep is None and done.gc_rules == {"": 3, MAIN: 3}
    # as the server holds them, read with the SDK itself
    api = lakefs_sdk.RepositoriesApi(lakefs_lake._client)  # type: ignore[attr-defined]
    rules = api.get_gc_rules(lakefs_lake.repository)  # type: ignore[attr-defined]
    assert rules.default_retention_days == 3
    assert [(r.branch_id, r.retention_days) for r in rules.branches] == [(MAIN, 3)]
    kept = collect_garbage(lakefs_lake, timedelta(days=30), set_gc_rules=False)
    assert kept.gc_rules == {"": 3, MAIN: 3}


# ---- the local lake's history past the retention ---------------------------------------------


def parquet_holding(lake: LocalLake, key: str) -> list[Path]:
    """Every object file on disk that is a Parquet table with `key` in a text column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    found = []
    for path in (lake.root / "objects").rglob("*"):
        if path.is_file() and path.read_bytes()[:4] == b"PAR1":
            table = pq.read_table(path)
            if any(key in column.to_pylist() for column in table.columns
                   if pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
                found.append(path)
    return found


def test_history_past_the_retention_takes_erased_rows_off_the_disk(local: LocalLake) -> None:
    """As lakeFS's garbage collection does: an erasure (`tideline forget`) leaves the rows in
    main's older commits until they were replaced more than the retention ago; then they go,
    but for commits a tag or a registered model keeps, and every commit's record stays."""
    import pandas as pd
    from tideline.core.errors import ObjectExpired
    from tideline.lake.erasure import erase_rows
    from tideline.lake.tables import read_frame, write_table

    rows = pd.DataFrame({"customer_id": ["C1", "C2", "C3"], "amount": [1.0, 2.0, 3.0]})
    write_table(local, MAIN, "clean/payments/part-0.parquet", rows)
    first = local.commit(MAIN, "payments").id
    write_table(local, MAIN, "features/spend/part-0.parquet", rows.assign(spend=[5.0, 6.0, 7.0]))
    model_commit = local.commit(MAIN, "features").id  # a registered model's training commit
    write_table(local, MAIN, "raw/x/part-0.parquet", rows)
    local.commit(MAIN, "raw")
    local.tag("training-set-kept", MAIN)
    local.create_branch("run-forget", MAIN)
    erase_rows(local, "run-forget", "customer_id", ["C2"], request="r1")
    local.commit("run-forget", "erase", {"run_id": "forget"})
    local.merge("run-forget", MAIN, "Publish run forget", {"run_id": "forget"})
    local.delete_branch("run-forget")
    assert parquet_holding(local, "C2")  # erased from main's head only

    young = collect_garbage(local, WEEK, keep={model_commit})  # replaced just now: kept
    assert young.sweep is not None and young.sweep.expired == 0
    assert read_frame(local, first, "clean/payments/part-0.parquet")["customer_id"].tolist() == [
        "C1", "C2", "C3"]

    dry = collect_garbage(local, WEEK, now=later(), keep={model_commit}, dry_run=True)
    done = collect_garbage(local, WEEK, now=later(), keep={model_commit})
    assert done.sweep is not None and dry.sweep == done.sweep and done.sweep.expired >= 2
    with pytest.raises(ObjectExpired, match=f"commit {first[:12]} was expired"):
        local.list(first)
    assert [c.message for c in local.log(MAIN, 10)][-2:] == ["payments", "Repository created"]
    # what stays holding C2: the model's commit and the tagged training set, nothing else
    kept = {Path(info.checksum) for ref in (model_commit, "training-set-kept")
            for info in local.list(ref)}
    assert {Path(p.parent.name + p.name) for p in parquet_holding(local, "C2")} <= kept
    assert "C2" in read_frame(local, model_commit, "features/spend/part-0.parquet")[
        "customer_id"].tolist()
    assert read_frame(local, MAIN, "clean/payments/part-0.parquet")["customer_id"].tolist() == [
        "C1", "C3"]
    again = collect_garbage(local, WEEK, now=later(), keep={model_commit})
    assert again.sweep is not None and again.sweep.expired == 0 and again.sweep.objects == 0


def test_without_keeps_only_main_head_holds_data(local: LocalLake) -> None:
    """Nothing kept but the heads: after the retention no object but the head's remains."""
    for version in (b"one", b"two", b"three"):
        local.put(MAIN, "raw/a.txt", version)
        local.commit(MAIN, version.decode())
    done = collect_garbage(local, WEEK, now=later())
    assert done.sweep is not None and done.sweep.expired == 3  # "one", "two", the first commit
    assert not object_file(local, b"one").exists() and not object_file(local, b"two").exists()
    assert local.get(MAIN, "raw/a.txt") == b"three"
    assert [c.message for c in local.log(MAIN)][:3] == ["three", "two", "one"]


@pytest.mark.service("lakefs")
def test_lakefs_expires_what_the_rules_say(lakefs_lake: Lake) -> None:
    """lakeFS's own garbage-collection preparation (what its job deletes objects by), on the
    real server, after `collect_garbage` set the rules: main's commits replaced more than the
    retention ago, and a deleted run branch's commits, expire; the head and the commit that was
    main's head a retention ago stay. Old commits are dated back with lakeFS's `date`."""
    import lakefs_sdk

    repository, client = lakefs_lake.repository, lakefs_lake._client  # type: ignore[attr-defined]
    commits = lakefs_sdk.CommitsApi(client)
    days_ago = int(time.time()) - 20 * 86_400

    def backdated(branch: str, path: str, data: bytes, days: int) -> str:
        lakefs_lake.put(branch, path, data)
        creation = lakefs_sdk.CommitCreation(message=path, var_date=days_ago + days * 86_400)
        return commits.commit(repository, branch, creation).id

    with_rows = backdated(MAIN, "clean/payments.parquet", b"C1 C2 C3", 0)
    lakefs_lake.create_branch("run-old", MAIN)
    abandoned = backdated("run-old", "raw/r.parquet", b"abandoned C2", 1)
    erased = backdated(MAIN, "clean/payments.parquet", b"C1 C3", 2)  # `tideline forget`
    lakefs_lake.put(MAIN, "clean/today.parquet", b"C4")
    head = lakefs_lake.commit(MAIN, "today").id
    done = collect_garbage(lakefs_lake, WEEK)
    assert [b.name for b in done.deleted] == ["run-old"] and done.gc_rules == {"": 7, MAIN: 7}

    internal = lakefs_sdk.InternalApi(client)
    task = internal.prepare_garbage_collection_commits_async(repository)
    for _ in range(100):
        status = internal.prepare_garbage_collection_commits_status(repository, task.id)
        if status.completed:
            break
        time.sleep(0.1)
    assert status.completed and status.error is None, status
    location = status.result.gc_commits_location
    assert location.startswith("local://"), location  # the suite's lakeFS: a local blockstore
    lines = Path(location.removeprefix("local://")).read_text().splitlines()[1:]
    active = {line.split(",")[0] for line in lines if line.split(",")[1] == "false"}
    assert head in active and erased in active  # main's head a week ago
    assert with_rows not in active and abandoned not in active  # their objects go
