"""Materialising views into the lake: partitions, the population at t, the Ray-backed flow."""
from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tideline.core.errors import FeatureDefinitionError
from tideline.core.partitioning import hash_bucket
from tideline.demo.views import CHURN_VIEWS, DEMO_VIEWS
from tideline.features.materialize import (
    BASE_BYTES,
    BYTES_PER_VALUE,
    PARTITION_VALUES,
    PartitionResult,
    load_events,
    materialize_partition,
    partition_count,
    population,
    record_build,
)
from tideline.features.offline import read_features
from tideline.features.plan import measured, plan_from_lake
from tideline.lake.local import LocalLake

from tests.features.conftest import churn_tables, write_clean

AS_OF = [date(2026, 8, 1), date(2026, 9, 1)]
GIB = 2**30


def build(lake: LocalLake, ref: str, branch: str, partitions: int) -> list[PartitionResult]:
    if branch not in lake.branches():
        lake.create_branch(branch, "main")
    plan = plan_from_lake(CHURN_VIEWS, lake, ref)
    results = [materialize_partition(lake, ref, branch, plan, AS_OF, k, partitions)
               for k in range(partitions)]
    record_build(lake, branch, f"run-{partitions}", ref, plan, AS_OF, results)
    return results


@pytest.mark.parametrize(("buckets", "partitions"), [
    (4, 4),  # each partition reads its bucket's row groups
    (4, 3),  # 3 does not divide 4: each partition filters every object
    (12, 2), (1, 2),
])
def test_one_and_many_partitions_give_identical_tables(
        tmp_path: Path, tables: dict[str, pd.DataFrame], buckets: int, partitions: int) -> None:
    single = LocalLake(tmp_path / "single")
    build(single, write_clean(single, tables, buckets=1), "one", 1)
    lake = LocalLake(tmp_path / "lake")
    build(lake, write_clean(lake, tables, buckets=buckets), "many", partitions)
    for view in CHURN_VIEWS:
        for day in AS_OF:
            pd.testing.assert_frame_equal(read_features(lake, "many", view, day),
                                          read_features(single, "one", view, day),
                                          check_exact=True)
    parts = lake.list("many", f"features/customer_spending/v={CHURN_VIEWS[0].version}/"
                              "as_of=2026-09-01/")
    assert len(parts) == partitions


def test_a_rebuild_with_other_partitions_replaces_every_table(
        churn_lake: tuple[LocalLake, str]) -> None:
    lake, ref = churn_lake
    build(lake, ref, "b", 4)
    build(lake, ref, "b", 2)  # e.g. a larger budget: the four old parts overlap the two new
    for view in CHURN_VIEWS:
        frame = read_features(lake, "b", view, AS_OF[-1])
        assert frame[view.entity.key].is_unique
        parts = lake.list("b", f"features/{view.name}/v={view.version}/as_of=2026-09-01/")
        assert [info.path.rsplit("/", 1)[1] for info in parts] == [
            "part-0000-of-0002.parquet", "part-0001-of-0002.parquet"]


def test_a_partition_reports_where_its_time_went(churn_lake: tuple[LocalLake, str]) -> None:
    lake, ref = churn_lake
    (result,) = build(lake, ref, "b", 1)
    assert set(result.timings) == {"read", "sort", "tiles", "windows", "reductions", "write"}
    assert all(seconds >= 0 for seconds in result.timings.values())
    assert sum(result.timings.values()) <= result.seconds + 0.01


def test_partitions_follow_the_sources_size_and_the_memory_budget(
        churn_lake: tuple[LocalLake, str], tables: dict[str, pd.DataFrame]) -> None:
    lake, ref = churn_lake
    plan = measured(plan_from_lake(CHURN_VIEWS, lake, ref), lake, ref)
    rows = sum(plan.rows.values())
    assert rows == sum(len(table) for table in tables.values())  # from the footers
    assert partition_count(plan, 8 * GIB, workers=2) == 2  # small: one per worker
    big = replace(plan, rows={name: 10_000_000 for name in plan.rows},
                  bucket_rows={48: 10_000_000 * len(plan.rows)})
    values = sum(10_000_000 * len(columns) for columns in big.columns.values())
    counts = [partition_count(big, budget * GIB, workers=2) for budget in (64, 8, 3)]
    assert counts == sorted(counts) and counts[-1] > counts[0]
    assert counts[0] >= values / PARTITION_VALUES  # plenty of memory: sized for speed
    for budget, count in zip((64, 8, 3), counts, strict=True):
        assert 96 % count == 0 and count % 2 == 0  # reads its row groups; no idle worker
        per_task = max(budget * GIB - BASE_BYTES, budget * GIB / 4) / 2
        assert count >= values * BYTES_PER_VALUE / per_task
    # objects of 24 buckets: 16 partitions would read them whole, 16 times over
    small_objects = replace(big, bucket_rows={24: 9_000_000, 48: 31_000_000})
    assert partition_count(small_objects, 4 * GIB, workers=2) == 24
    assert partition_count(big, 4 * GIB, workers=2) == 16
    # daily tiles of 12 partitions: kept wherever 12 are enough, even unaligned or unbalanced
    assert partition_count(plan, 8 * GIB, workers=2, tiled=12) == 12
    assert partition_count(big, 64 * GIB, workers=2, tiled=12) == 12 != counts[0]
    assert partition_count(big, 4 * GIB, workers=2, tiled=12) == 16  # too few: a new count
    assert partition_count(plan, 8 * GIB, workers=2, tiled=1) == 2  # one per worker


def test_a_partition_loads_only_its_entities(churn_lake: tuple[LocalLake, str]) -> None:
    lake, ref = churn_lake
    plan = plan_from_lake(CHURN_VIEWS, lake, ref)
    seen = []
    for k in range(4):
        events = load_events(lake, ref, plan, k, 4)
        keys = set(population(events, pd.Timestamp("2026-10-01", tz="UTC")))
        assert set(hash_bucket(np.array(sorted(keys), dtype=object), 4)) == {k}
        seen.append(keys)
    assert len(set().union(*seen)) == sum(map(len, seen))


def test_the_population_at_t_is_every_entity_with_an_event_before_t(
        churn_lake: tuple[LocalLake, str], tables: dict[str, pd.DataFrame]) -> None:
    lake, ref = churn_lake
    build(lake, ref, "b", 2)
    times = {"transactions": "ts", "events": "ts", "tickets": "created_at",
             "customers": "signup_date"}
    sizes = []
    for day in AS_OF:
        cutoff = pd.Timestamp(day, tz="UTC")
        known = set().union(*(
            frame.loc[pd.to_datetime(frame[times[name]], utc=True) < cutoff, "customer_id"]
            for name, frame in tables.items()))
        for view in CHURN_VIEWS:
            assert list(read_features(lake, "b", view, day)["customer_id"]) == sorted(known)
        sizes.append(len(known))
    assert sizes == [len(tables["customers"]) - 3, len(tables["customers"])]  # late signups


@pytest.mark.slow
def test_build_features_flow_on_a_two_node_ray_cluster(
    ray_cluster: str, prefect_server: None, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ray
    from tideline.flows.build_features import build_features

    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    lake = LocalLake(data_dir / "lake")
    source_commit = write_clean(lake, churn_tables(customers=60))
    result = build_features(run_id="f1", partitions=3)
    head = lake.get_commit("main")
    assert head.metadata["source_commit"] == result.source_commit == source_commit
    assert result.as_of == ("2026-09-01",) and result.features == sum(
        len(view.feature_names) for view in DEMO_VIEWS) == 57 + 17 + 3
    assert sorted(p.partition for p in result.partitions) == [0, 1, 2]
    assert result.entities == len(read_features(lake, "main", CHURN_VIEWS[0], date(2026, 9, 1)))
    assert lake.exists("main", result.manifest)

    assert build_features(run_id="f1", partitions=3) == result  # published already: no-op
    assert lake.resolve("main") == head.id

    bad = data_dir.parent / "bad.yaml"
    bad.write_text("entities: [{name: c, key: customer_id}]\n"
                   "sources: [{name: t, dataset: transactions, timestamp: ts}]\n"
                   "views: [{name: broken, entity: c, source: t, owner: a@example.com,\n"
                   "         features: [{name: x, column: amonut, agg: sum, window: 7}]}]\n")
    monkeypatch.setenv("TIDELINE_FEATURE_VIEWS", str(bad))
    with pytest.raises(FeatureDefinitionError, match="'broken', feature 'x': unknown column"):
        build_features(run_id="f2")
    assert lake.resolve("main") == head.id
    assert "run-f2-features" not in lake.branches()  # it failed before any Ray work
