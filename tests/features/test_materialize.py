"""Materialising views into the lake: partitions, the population at t, the Ray-backed flow."""
from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from features.churn import CHURN_VIEWS
from features.materialize import materialize_partition
from features.offline import read_features
from features.plan import plan_from_lake
from lake.local import LocalLake
from tests.features.conftest import churn_tables, write_clean
from tideline.errors import FeatureDefinitionError

AS_OF = [date(2026, 8, 1), date(2026, 9, 1)]


def build(lake: LocalLake, ref: str, branch: str, partitions: int) -> None:
    lake.create_branch(branch, "main")
    plan = plan_from_lake(CHURN_VIEWS, lake, ref)
    for k in range(partitions):
        materialize_partition(lake, ref, branch, plan, AS_OF, k, partitions)


def test_one_and_many_partitions_give_identical_tables(churn_lake: tuple[LocalLake, str]
                                                       ) -> None:
    lake, ref = churn_lake
    build(lake, ref, "one", 1)
    build(lake, ref, "four", 4)
    for view in CHURN_VIEWS:
        for day in AS_OF:
            pd.testing.assert_frame_equal(read_features(lake, "four", view, day),
                                          read_features(lake, "one", view, day),
                                          check_exact=True)
    parts = lake.list("four", f"features/customer_spending/v={CHURN_VIEWS[0].version}/"
                              "as_of=2026-09-01/")
    assert len(parts) == 4


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

    from flows.features import build_features

    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    lake = LocalLake(data_dir / "lake")
    source_commit = write_clean(lake, churn_tables(customers=60))
    result = build_features(run_id="f1", partitions=3)
    head = lake.get_commit("main")
    assert head.metadata["source_commit"] == result.source_commit == source_commit
    assert result.as_of == ("2026-09-01",) and result.features == 57
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


def test_partition_hash_is_stable_even_and_width_independent() -> None:
    import numpy as np
    import pyarrow as pa

    from features.offline import partition_of

    keys = [f"C{i:07d}" for i in range(100_000)]
    parts = partition_of(pa.array(keys), 4)
    assert np.bincount(parts).min() > 0.98 * len(keys) / 4
    mixed = partition_of(np.array([*keys[:3], "x", "", "é"], dtype=object), 4)
    assert list(mixed[:3]) == list(parts[:3])  # the same key, fixed- or variable-width path
    assert list(partition_of(pa.array(["C0000005", "C0000006", "C0000007"]), 1000)) == [
        704, 127, 474]  # pinned: every process and release must agree
