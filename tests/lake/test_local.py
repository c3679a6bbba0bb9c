"""Promises only the embedded backend can be held to from here: crash safety, concurrency,
checksums, and agreement with a plain model of branch state under random operations."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
import threading
from multiprocessing import get_context
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from tideline.core.errors import CorruptObject
from tideline.lake.base import MAIN
from tideline.lake.local import LocalLake

KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from tideline.lake.local import LocalLake

    root, point = sys.argv[1], sys.argv[2]
    lake = LocalLake(root)

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    if point == "before-ref-update":
        lake.put("main", "new.txt", b"new")
        LocalLake._write_ref = die
        lake.commit("main", "must not land")
    elif point == "mid-object-write":
        with lake.writer("main", "big.bin") as sink:
            sink.write(b"x" * 1_000_000)
            die()
    elif point == "mid-merge":
        lake.create_branch("dev")
        lake.put("dev", "dev.txt", b"dev")
        lake.commit("dev", "on dev")
        LocalLake._write_ref = die
        lake.merge("dev", "main")
    """
)


def kill_at(root: Path, point: str) -> None:
    done = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(root), point], timeout=60)
    assert done.returncode == -9, f"the subprocess was meant to die at {point}"


@pytest.fixture
def lake(tmp_path: Path) -> LocalLake:
    lake = LocalLake(tmp_path / "lake")
    lake.put(MAIN, "old.txt", b"old")
    lake.commit(MAIN, "before the crash")
    return lake


def test_kill_between_commit_record_and_ref_update_leaves_main_as_it_was(lake: LocalLake) -> None:
    before = lake.resolve(MAIN)
    kill_at(lake.root, "before-ref-update")
    fresh = LocalLake(lake.root)
    assert fresh.resolve(MAIN) == before
    assert fresh.get_commit(MAIN).message == "before the crash"
    assert not fresh.exists(before, "new.txt")
    # the write is still staged (nothing lost) and a retried commit lands it
    assert [c.path for c in fresh.uncommitted(MAIN)] == ["new.txt"]
    assert fresh.commit(MAIN, "retry").parents == (before,)
    assert fresh.get(MAIN, "new.txt") == b"new"


def test_kill_mid_object_write_leaves_no_partial_object(lake: LocalLake) -> None:
    before = lake.resolve(MAIN)
    kill_at(lake.root, "mid-object-write")
    fresh = LocalLake(lake.root)
    assert fresh.resolve(MAIN) == before
    assert not fresh.exists(MAIN, "big.bin")
    assert fresh.uncommitted(MAIN) == []


def test_kill_mid_merge_leaves_both_branches(lake: LocalLake) -> None:
    before = lake.resolve(MAIN)
    kill_at(lake.root, "mid-merge")
    fresh = LocalLake(lake.root)
    assert fresh.resolve(MAIN) == before and not fresh.exists(MAIN, "dev.txt")
    assert fresh.get("dev", "dev.txt") == b"dev"
    fresh.merge("dev", MAIN)
    assert fresh.get(MAIN, "dev.txt") == b"dev"


def _write_and_merge(root: str, branch: str, count: int) -> None:
    lake = LocalLake(root)
    lake.create_branch(branch)
    for i in range(count):
        lake.put(branch, f"{branch}/{i}.txt", str(i).encode())
        lake.commit(branch, f"{branch} {i}")
    lake.merge(branch, MAIN)


def test_concurrent_processes_on_different_branches_all_land(lake: LocalLake) -> None:
    ctx = get_context("spawn")
    workers = [
        ctx.Process(target=_write_and_merge, args=(str(lake.root), f"b{n}", 15)) for n in range(3)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    paths = {o.path for o in LocalLake(lake.root).list(MAIN)}
    assert paths == {"old.txt"} | {f"b{n}/{i}.txt" for n in range(3) for i in range(15)}


def test_concurrent_commits_on_one_branch_lose_no_update(lake: LocalLake) -> None:
    def work(n: int) -> None:
        mine = LocalLake(lake.root)
        for i in range(10):
            mine.put(MAIN, f"t{n}/{i}.txt", b"x")
            mine.commit(MAIN, f"t{n} {i}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    fresh = LocalLake(lake.root)
    assert len(fresh.list(MAIN)) == 1 + 60
    assert fresh.uncommitted(MAIN) == []


def test_corrupt_object_is_detected_and_named(lake: LocalLake) -> None:
    info = lake.put(MAIN, "data/x.parquet", b"precious bytes")
    lake.commit(MAIN, "x")
    (lake.root / "objects" / info.checksum[:2] / info.checksum[2:]).write_bytes(b"flipped bytes!")
    fresh = LocalLake(lake.root)
    with pytest.raises(CorruptObject, match="data/x.parquet"):
        fresh.get(MAIN, "data/x.parquet")
    with pytest.raises(CorruptObject, match="data/x.parquet"), fresh.reader(MAIN, "data/x.parquet"):
        pass


def test_an_object_verified_once_is_verified_again_after_a_write(
        lake: LocalLake, monkeypatch: pytest.MonkeyPatch) -> None:
    """Verification is remembered per process, across instances, until the file changes."""
    info = lake.put(MAIN, "data/y.parquet", b"precious bytes")
    stored = lake.root / "objects" / info.checksum[:2] / info.checksum[2:]
    hashed = []
    sha256 = hashlib.sha256
    monkeypatch.setattr(hashlib, "sha256", lambda *a: hashed.append(1) or sha256(*a))
    for reader in (lake, LocalLake(lake.root), lake):
        with reader.reader(MAIN, "data/y.parquet") as handle:
            assert handle.read() == b"precious bytes"
    assert len(hashed) == 1
    stored.write_bytes(b"flipped bytes!")
    with pytest.raises(CorruptObject, match="data/y.parquet"), lake.reader(MAIN, "data/y.parquet"):
        pass


class BranchModel(RuleBasedStateMachine):
    """Random puts, deletes, commits and resets agree with two plain dicts (committed, staged)."""

    def __init__(self) -> None:
        super().__init__()
        import tempfile

        self.lake = LocalLake(tempfile.mkdtemp())
        self.committed: dict[str, bytes] = {}
        self.view: dict[str, bytes] = {}

    paths = st.sampled_from(["a", "b", "d/c", "d/e"])

    @rule(path=paths, data=st.binary(max_size=8))
    def put(self, path: str, data: bytes) -> None:
        self.lake.put(MAIN, path, data)
        self.view[path] = data

    @rule(path=paths)
    def delete(self, path: str) -> None:
        if path in self.view:
            self.lake.delete(MAIN, path)
            del self.view[path]

    @rule()
    def commit(self) -> None:
        head = self.lake.resolve(MAIN)
        commit = self.lake.commit(MAIN, "c")
        assert (commit.id == head) == (self.view == self.committed)
        self.committed = dict(self.view)

    @rule()
    def reset(self) -> None:
        self.lake.reset(MAIN)
        self.view = dict(self.committed)

    @invariant()
    def reads_agree(self) -> None:
        assert {o.path: self.lake.get(MAIN, o.path) for o in self.lake.list(MAIN)} == self.view
        head = self.lake.resolve(MAIN)
        assert {o.path: self.lake.get(head, o.path) for o in self.lake.list(head)} == self.committed


TestBranchModel = BranchModel.TestCase
TestBranchModel.settings = settings(
    max_examples=30,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
