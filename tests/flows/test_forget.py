"""`tideline forget` on a project as a user starts one (`tideline init`, `tideline run`): the
client leaves main, the online store and a later backfill of the same files; a re-run of the
request changes nothing."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from tideline.core.errors import ObjectExpired
from tideline.core.settings import load_settings
from tideline.features.online import open_online_store
from tideline.lake import open_lake
from tideline.lake.base import Lake
from tideline.lake.tables import read_table

from tests.waiting import CLI

CLIENT = "CL00789"


def tideline(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TIDELINE_PROJECT"}
    done = subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**env, "COLUMNS": "200"})
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def holding(lake: Lake, key: str) -> list[str]:
    """The Parquet objects on main with a row of `key` in any text column."""
    found = []
    for info in lake.list("main"):
        if info.path.endswith(".parquet"):
            table = read_table(lake, "main", info.path)
            if any(key in column.to_pylist() for column in table.columns):
                found.append(info.path)
    return found


@pytest.mark.slow
def test_a_forgotten_client_stays_gone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tideline("init", "shop", cwd=tmp_path)
    shop = tmp_path / "shop"
    tideline("run", cwd=shop)
    monkeypatch.setenv("TIDELINE_PROJECT", str(shop / "tideline.yaml"))
    monkeypatch.chdir(shop)
    settings = load_settings()
    lake, online = open_lake(settings), open_online_store(settings)
    assert {p.split("/")[0] for p in holding(lake, CLIENT)} >= {"raw", "clean", "features"}
    assert online.read("payment_behaviour", [CLIENT])[1] != [None]

    done = tideline("forget", CLIENT, "--reason", "ticket 7", "--request-id", "q1", cwd=shop)
    for removed in ("raw/source=payments-export", "clean/payments", "features/payment_behaviour",
                    "scores/payment_churn", "online: payment_behaviour", "scores (database)"):
        assert removed in done.stdout, done.stdout
    assert holding(lake, CLIENT) == []
    assert online.read("payment_behaviour", [CLIENT])[1] == [None]
    assert online.read("payment_behaviour", ["CL00801"])[1] != [None]
    assert CLIENT.encode() not in lake.get("main", "erasure/requests/q1.json")
    head = lake.resolve("main")
    assert lake.get_commit(head).metadata["request"] == "q1"

    again = tideline("forget", CLIENT, "--request-id", "q1", cwd=shop)
    assert lake.resolve("main") == head and "clean/payments" in again.stdout

    before_forget = lake.get_commit(head).parents[0]  # main as `tideline run` left it
    tideline("ingest", "--since", "2025-09-01", "--until", "2026-11-01", cwd=shop)
    assert lake.resolve("main") != head  # the backfill was published
    assert holding(lake, CLIENT) == []

    # a retention later, main's history before the erasure expires but for the model's commits
    time.sleep(2)
    gc = tideline("lake", "gc", "--older-than", "1s", cwd=shop)
    assert "commit(s) of registered models kept" in gc.stdout, gc.stdout
    lake = open_lake(settings)  # a new reader: this one has read that commit already
    with pytest.raises(ObjectExpired, match="expired by `tideline lake gc`"):
        lake.list(before_forget)
    model = lake.tags()  # the training set and the model's artifacts still read
    assert any(name.startswith("training-set-") for name in model)
    for name in model:
        assert lake.list(name)
    assert holding(lake, CLIENT) == []
