"""Storage faults on the embedded lake: a disk that fills up during a write is a `LakeFull`
naming what was being written, with nothing half-committed and the lake usable again once there
is space; an object whose bytes were corrupted on disk is caught by its checksum on the read
paths the pipeline uses, named by its path."""
from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tideline.core.errors import CorruptObject, LakeFull
from tideline.ingestion.audit import clean_keys
from tideline.lake.base import MAIN
from tideline.lake.local import LocalLake
from tideline.lake.tables import read_frame, write_table

from tests.reliability.conftest import Ledger
from tests.services import skip_or_fail

DISK = "2m"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs of its own (mounting needs root, as on this machine and its CI)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK}", "tmpfs", str(mount)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        skip_or_fail(f"cannot mount a {DISK} tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(path: Path) -> None:
    """Write `path` until the filesystem under it has no space left."""
    with path.open("wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def test_an_object_larger_than_the_free_space_is_refused_whole(small_disk: Path,
                                                               ledger: Ledger) -> None:
    """Writing a 3 MB table to a 2 MB disk: LakeFull naming the object and branch, nothing
    staged, no temp file left, main where it was; the next write and merge go through."""
    lake = LocalLake(small_disk / "lake")
    lake.put(MAIN, "data/small.bin", b"x" * 1000)
    published = lake.commit(MAIN, "small")
    lake.create_branch("run-1", MAIN)
    big = pd.DataFrame({"v": np.random.default_rng(0).random(400_000)})

    ledger.fault()
    with pytest.raises(LakeFull, match=r"'data/big\.parquet' on 'run-1'.*free some space"):
        write_table(lake, "run-1", "data/big.parquet", big)
    assert lake.uncommitted("run-1") == [] and lake.list("run-1") == lake.list(MAIN)
    assert list((small_disk / "lake" / "tmp").iterdir()) == []
    assert lake.resolve(MAIN) == published.id

    write_table(lake, "run-1", "data/ok.parquet", big.head(1000))
    lake.commit("run-1", "ok")
    lake.merge("run-1", MAIN, message="ok")
    assert read_frame(lake, MAIN, "data/ok.parquet").equals(big.head(1000))


def test_a_commit_on_a_full_disk_moves_nothing(small_disk: Path, ledger: Ledger) -> None:
    """Staged writes, then the disk fills before the commit: LakeFull, the branch head and its
    staged changes as they were; once space is freed the same commit records them all."""
    lake = LocalLake(small_disk / "lake")
    lake.create_branch("run-2", MAIN)
    head = lake.resolve("run-2")
    for day in range(3):
        lake.put("run-2", f"clean/orders/dt=2026-07-0{day + 1}/part.bin", bytes([day]) * 100)
    staged = lake.uncommitted("run-2")
    fill(small_disk / "filler")

    ledger.fault()
    with pytest.raises(LakeFull, match="no space left"):
        lake.commit("run-2", "three days")
    assert lake.resolve("run-2") == head
    assert lake.uncommitted("run-2") == staged

    (small_disk / "filler").unlink()
    lake.commit("run-2", "three days")
    assert [o.path for o in lake.list("run-2")] == [c.path for c in staged]
    assert lake.get("run-2", "clean/orders/dt=2026-07-02/part.bin") == b"\1" * 100


def test_a_corrupted_parquet_object_is_named_on_every_read_path(tmp_path: Path,
                                                                ledger: Ledger) -> None:
    """Bytes flipped in a clean partition's stored object: reading the table, and the next
    ingestion's reference check over that dataset, fail with CorruptObject naming the path."""
    lake = LocalLake(tmp_path / "lake")
    path = "clean/customers/dt=2026-07-01/part-r1.parquet"
    info = write_table(lake, MAIN, path, pd.DataFrame({"customer_id": ["C1", "C2"]}))
    lake.commit(MAIN, "customers")
    stored = lake.root / "objects" / info.checksum[:2] / info.checksum[2:]
    corrupted = bytearray(stored.read_bytes())
    corrupted[len(corrupted) // 2] ^= 0xFF
    stored.write_bytes(bytes(corrupted))

    ledger.fault()
    fresh = LocalLake(lake.root)  # a new process: nothing verified yet
    with pytest.raises(CorruptObject, match=path):
        read_frame(fresh, MAIN, path)
    with pytest.raises(CorruptObject, match=path):
        clean_keys(LocalLake(lake.root), MAIN, "customers", "customer_id")
