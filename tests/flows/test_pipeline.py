"""The pipeline flow on the bundled demo, on a real (test) Prefect server."""
from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from deployments.demo import DEFECT_RULES, injected_defects
from features.churn import CHURN_VIEWS
from features.offline import read_features
from features.online.sqlite import SQLiteOnlineStore
from features.registry import Registry
from features.store import FeatureStore
from flows.pipeline import pipeline
from lake.local import LocalLake
from lake.publish import find_published
from lake.tables import read_frame
from models.lineage import lineage
from models.registry import ModelRegistry


@pytest.mark.slow
def test_demo_pipeline_catches_every_defect_builds_features_and_reruns_idempotently(
    ray_cluster: str, prefect_server: None, data_dir: Path
) -> None:
    run = pipeline(run_id="t1")
    audit = run.audit
    injected = injected_defects(data_dir / "demo")
    for outcome in audit.outcomes:
        expected = {DEFECT_RULES[outcome.dataset][kind]: count
                    for kind, count in injected[outcome.dataset].items()}
        assert outcome.failures == expected, outcome.dataset
        assert outcome.quarantined == sum(expected.values())
        assert outcome.clean + outcome.quarantined == outcome.rows
        assert outcome.gate_passed
    lake = LocalLake(data_dir / "lake")
    head = lake.get_commit("main")
    ingested, built = find_published(lake, "t1"), find_published(lake, "t1-features")
    assert ingested.metadata["stage"] == "ingest" and built.parents[0] == ingested.id
    assert lake.list("main", "clean/transactions/dt=")
    assert lake.exists("main", "reports/quality/t1.html")
    assert "run-t1" not in lake.branches()

    features = run.features
    assert built.metadata["stage"] == "features"
    assert built.metadata["source_commit"] == features.source_commit == ingested.id
    merges = [head]  # main's own history, newest first: training's and scoring's on top
    while len(merges) < 5:
        merges.append(lake.get_commit(merges[-1].parents[0]))
    assert [c.metadata["stage"] for c in merges] == [
        "scores", "model", "training-set", "features", "features"]
    assert merges[4].id == built.id
    assert (features.features, features.entities, features.as_of) == (57, 3000, ("2026-10-01",))
    spending = read_features(lake, "main", CHURN_VIEWS[0], date(2026, 10, 1))
    stamps = pd.concat([read_frame(lake, "main", o.path, columns=["ts"])["ts"]
                        for o in lake.list("main", "clean/transactions/dt=")])
    in_window = ((stamps >= pd.Timestamp("2026-07-03", tz="UTC"))
                 & (stamps < pd.Timestamp("2026-10-01", tz="UTC"))).sum()
    assert spending["txn_count_90d"].sum() == in_window > 0

    registry = Registry(f"sqlite:///{data_dir / 'registry.db'}")
    built_commit = find_published(lake, "t1-features").id
    [built, *_] = registry.materializations(CHURN_VIEWS[0].name)
    assert (built.run_id, built.published_commit, built.rows) == ("t1", built_commit, 3000)
    stats = {s.feature: s for s in registry.stats(CHURN_VIEWS[0].name, CHURN_VIEWS[0].version)}
    assert stats["txn_count_90d"].mean_value == pytest.approx(in_window / 3000)
    assert {w.mode for w in run.online} == {"full"}
    assert sum(w.written for w in run.online) == 4 * 3000
    store = FeatureStore(lake, registry, CHURN_VIEWS, SQLiteOnlineStore(data_dir / "online.db"))
    some = list(spending["customer_id"][:50])
    served = store.get_online_features(some, ["txn_count_90d", "value_segment"]).frame
    pd.testing.assert_frame_equal(served, spending.loc[:49, ["customer_id", "txn_count_90d",
                                                             "value_segment"]])

    model, decision = run.training.model, run.training.decision
    assert (model.ref, model.stage, decision.promoted) == ("churn:v1", "champion", True)
    assert model.roc_auc > max(0.8, model.baseline_metrics["roc_auc"])
    assert lake.exists("main", "models/churn/v1/model.txt")
    chain = lineage(ModelRegistry(f"sqlite:///{data_dir / 'registry.db'}").get("churn"),
                    registry, lake)
    builds = {b["run_id"] for view in chain["feature_views"] for b in view["builds"]}
    assert builds == {"t1-train"}
    assert {b["ingestion_run"] for view in chain["feature_views"] for b in view["builds"]} == {
        "t1"}

    scores = run.scores
    assert (scores.model, scores.as_of) == ("churn:v1", date(2026, 10, 1))
    assert 2000 < scores.customers <= 3000 and 0 < scores.high_risk < scores.customers / 2
    assert len(read_frame(lake, "main", scores.path)) == scores.customers

    again = pipeline(run_id="t1")  # the same run again: nothing new
    assert (again.audit, again.features, again.scores) == (run.audit, run.features, run.scores)
    assert again.training.model == model and again.training.decision == decision
    assert {w.mode for w in again.online} == {"unchanged"}
    assert lake.resolve("main") == head.id

    incremental = pipeline(run_id="t2")  # a new run: every checkpoint says nothing is new
    assert {o.rows for o in incremental.audit.outcomes} == {0}
    assert find_published(lake, "t2-features") is not None
    assert incremental.training.model == model  # same training data: the same model


@pytest.mark.slow
def test_backfill_replaces_its_days_without_duplicates(prefect_server: None, data_dir: Path
                                                       ) -> None:
    from datetime import date

    from flows.ingest import ingest

    ingest(run_id="b0")
    lake = LocalLake(data_dir / "lake")
    day = "clean/transactions/dt=2026-07-15/"

    def rows_on_day() -> int:
        return sum(len(read_frame(lake, "main", o.path)) for o in lake.list("main", day))

    before, checkpoints = rows_on_day(), lake.get("main", "checkpoints/shop-transactions.json")
    audit = ingest(run_id="b1", since=date(2026, 7, 15), until=date(2026, 7, 16))
    assert {o.dataset: o.rows > 0 for o in audit.outcomes}["transactions"]
    assert rows_on_day() == before > 0
    assert [o.path.rsplit("/", 1)[1] for o in lake.list("main", day)] == ["part-b1.parquet"]
    assert lake.get("main", "checkpoints/shop-transactions.json") == checkpoints
