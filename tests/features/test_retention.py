"""Retention of feature tables and training sets (`tideline lake gc --tables-older-than`):
tables past the retention leave main, but a view version's newest table and the training sets
registered models name; the rest of the lake is untouched."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
from tideline.features.retention import drop_tables, plan_table_retention
from tideline.lake.base import MAIN
from tideline.lake.local import LocalLake
from tideline.lake.tables import write_table
from typer.testing import CliRunner

TOMORROW = datetime.now(UTC) + timedelta(days=1)


def filled(root: Path) -> LocalLake:
    lake = LocalLake(root)
    rows = pd.DataFrame({"customer_id": ["C1", "C2"], "x": [1.0, 2.0]})
    for view, days in (("spend", ("2026-01-01", "2026-02-01", "2026-03-01")),
                       ("spend_v1", ("2026-01-01",))):
        for day in days:
            for part in range(2):
                write_table(lake, MAIN, f"features/{view}/v=ab12/as_of={day}/part-{part}-of-2"
                            ".parquet", rows)
    write_table(lake, MAIN, "clean/payments/dt=2026-01-01/part-0.parquet", rows)
    lake.commit(MAIN, "tables")
    for name in ("ts-unused", "ts-of-a-model"):
        write_table(lake, MAIN, f"training_sets/{name}/data.parquet", rows)
        lake.put(MAIN, f"training_sets/{name}/manifest.json", b"{}")
        lake.tag(f"training-set-{name}", lake.commit(MAIN, name).id)
    return lake


def test_old_tables_leave_main_but_the_newest_and_what_models_name(tmp_path: Path) -> None:
    lake = filled(tmp_path / "lake")
    before = lake.resolve(MAIN)
    plan = plan_table_retention(lake, TOMORROW, referenced={"ts-of-a-model"})
    assert plan.feature_tables == ("spend/v=ab12/as_of=2026-01-01",
                                   "spend/v=ab12/as_of=2026-02-01")
    assert plan.training_sets == ("ts-unused",) and plan.kept == ("ts-of-a-model",)
    assert len(plan.paths) == 2 * 2 + 2
    assert lake.resolve(MAIN) == before  # planning changes nothing

    commit = drop_tables(lake, plan, "retention-1")
    assert commit == lake.resolve(MAIN) and commit != before
    left = {info.path for info in lake.list(MAIN)}
    assert not left & set(plan.paths)
    assert {p.split("/as_of=")[1][:10] for p in left if p.startswith("features/spend/")} == {
        "2026-03-01"}
    assert any(p.startswith("features/spend_v1/") for p in left)  # its only table: newest
    assert "clean/payments/dt=2026-01-01/part-0.parquet" in left
    assert set(lake.tags()) == {"training-set-ts-of-a-model"}
    assert lake.get("training-set-ts-of-a-model", "training_sets/ts-of-a-model/manifest.json")
    # a second pass finds nothing more; a date in the past drops nothing at all
    assert not plan_table_retention(lake, TOMORROW, {"ts-of-a-model"}).paths
    assert not plan_table_retention(lake, datetime(2025, 1, 1, tzinfo=UTC), set()).paths


def test_lake_gc_drops_old_tables_from_the_command_line(data_dir: Path) -> None:
    from tideline.deployments.cli import app

    lake = filled(data_dir / "lake")
    head = lake.resolve(MAIN)
    runner = CliRunner()
    dry = runner.invoke(app, ["lake", "gc", "--dry-run", "--tables-older-than", "0.001s"],
                        terminal_width=200)
    assert dry.exit_code == 0, dry.output
    assert ("2 feature table(s), 2 training set(s) and 0 set(s) of unused daily tiles would be "
            "dropped (8 objects)") in dry.output
    assert lake.resolve(MAIN) == head
    done = runner.invoke(app, ["lake", "gc", "--tables-older-than", "0.001s"],
                         terminal_width=200)
    assert done.exit_code == 0, done.output
    assert "training_sets/ts-of-a-model" in done.output and lake.resolve(MAIN) != head
    assert lake.tags() == {}


def test_tiles_of_a_partition_count_no_build_merges_leave_main(tmp_path: Path) -> None:
    """A view version's tiles of another count than its newest day's are of no use to any
    build (tiles are per partition): they go; the newest count's and other versions' stay."""
    lake = LocalLake(tmp_path / "lake")
    rows = pd.DataFrame({"customer_id": ["C1"], "n": [1]})
    written = [("spend/v=ab12/f=1", "2026-01-01", 3), ("spend/v=ab12/f=1", "2026-01-01", 2),
               ("spend/v=ab12/f=1", "2026-01-02", 2), ("spend/v=cd34/f=1", "2026-01-01", 4)]
    for group, day, count in written:
        for part in range(count):
            write_table(lake, MAIN, f"features/tiles/{group}/day={day}/src=0f0f/part-{part:04d}"
                        f"-of-{count:04d}.parquet", rows)
    lake.commit(MAIN, "tiles")
    plan = plan_table_retention(lake, datetime(2025, 1, 1, tzinfo=UTC), set())
    assert plan.tiles == ("spend/v=ab12/f=1/of=3",) and not plan.feature_tables
    assert sorted(plan.paths) == [f"features/tiles/spend/v=ab12/f=1/day=2026-01-01/src=0f0f/"
                                  f"part-{k:04d}-of-0003.parquet" for k in range(3)]
    drop_tables(lake, plan, "retention-tiles")
    left = {info.path.rsplit("-of-", 1)[1][:4] for info in lake.list(MAIN, "features/tiles/")}
    assert left == {"0002", "0004"}
    assert not plan_table_retention(lake, datetime(2025, 1, 1, tzinfo=UTC), set()).paths
