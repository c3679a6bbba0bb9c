"""Retention (`tideline lake gc`): run branches past the retention go once their run is over,
on both backends; the local lake then deletes what only they reached, and lakeFS gets the
garbage-collection rules its own job expires objects by. Age is set with `now`, not by
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
    done = collect_garbage(history, WEEK, now=later())
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

    done = collect_garbage(local, WEEK, now=later())

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
    again = collect_garbage(local, WEEK, now=later())
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
