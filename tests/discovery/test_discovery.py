"""Feature discovery: relationships from the project, the candidate grid and its budget,
candidate values (the engine's, the same for any number of partitions, point-in-time), and
selection's verdicts with their reasons."""
from __future__ import annotations

import io
import re
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tideline.core.errors import DiscoveryError
from tideline.demo.views import CUSTOMER, TRANSACTIONS
from tideline.discovery.compute import compute_part, read_values, write_examples
from tideline.discovery.generate import generate, selected_views
from tideline.discovery.schema import (
    ChildTable,
    Column,
    Relationship,
    SchemaGraph,
    profile,
)
from tideline.discovery.select import SelectionRules, select
from tideline.features.definitions import check_view
from tideline.features.engine import Spine, compute_views
from tideline.features.materialize import as_of_time, load_events
from tideline.features.plan import plan_from_lake
from tideline.lake.local import LocalLake
from tideline.models.labels import ChurnLabel
from tideline.models.spec import ModelSpec

from tests.features.conftest import churn_tables, write_clean

TIMES = {"customers": "signup_date", "transactions": "ts", "tickets": "created_at"}


def _graph(*links: tuple[str, str]) -> SchemaGraph:
    tables = {"customers": ("customer_id",), "transactions": ("transaction_id",),
              "tickets": ("ticket_id",)}
    return SchemaGraph(tables=tables, times=TIMES, relationships=tuple(
        Relationship(child, "customer_id", parent, "customer_id") for child, parent in links))


def test_children_come_from_references_and_bad_graphs_are_named() -> None:
    graph = _graph(("transactions", "customers"), ("tickets", "customers"))
    assert [source.dataset for source, _ in graph.children(CUSTOMER)] == ["transactions",
                                                                        "tickets"]
    with pytest.raises(DiscoveryError, match=r"cycle \(customers -> transactions -> customers"):
        _graph(("transactions", "customers"), ("customers", "transactions")).children(CUSTOMER)
    with pytest.raises(DiscoveryError, match="no table refers to customers.customer_id"):
        _graph().children(CUSTOMER)
    with pytest.raises(DiscoveryError, match="names table 'refunds'"):
        _graph(("refunds", "customers")).children(CUSTOMER)
    orphan = SchemaGraph(tables={"transactions": ("transaction_id",)}, times=TIMES,
                         relationships=(), columns={"transactions": ("transaction_id", "ts")})
    with pytest.raises(DiscoveryError, match="no table is keyed by 'customer_id' and no table "
                                             "with an event time has a column 'customer_id'"):
        orphan.children(CUSTOMER)


def test_without_a_table_keyed_by_the_entity_its_events_are_the_tables_carrying_its_key(
        ) -> None:
    """A transaction log alone (the commonest shape): the entity's table is implied."""
    graph = SchemaGraph(
        tables={"transactions": ("transaction_id",), "tickets": ("ticket_id",),
                "products": ("sku",)},
        times={"transactions": "ts", "tickets": "created_at"}, relationships=(),
        columns={"transactions": ("transaction_id", "customer_id", "ts", "amount"),
                 "tickets": ("ticket_id", "customer_id", "created_at"),
                 "products": ("sku", "customer_id")})
    found = graph.children(CUSTOMER)
    assert [(source.dataset, source.timestamp) for source, _ in found] == [
        ("tickets", "created_at"), ("transactions", "ts")]  # products: no event time
    assert {(link.child, link.column, link.parent_column) for _, link in found} == {
        ("tickets", "customer_id", "customer_id"),
        ("transactions", "customer_id", "customer_id")}


TABLE = ChildTable(source=TRANSACTIONS, key="customer_id", rows=1000, columns=(
    Column("amount", "numeric"), Column("category", "categorical", ("grocery", "refund"), 2),
    Column("session_id", "high_cardinality", distinct=5000)))


def test_the_grid_covers_every_family_with_readable_descriptions() -> None:
    result = generate(CUSTOMER, [TABLE], "ds@example.com", max_candidates=10_000)
    candidates = result.candidates
    assert result.over_budget == 0
    assert {c.family for c in candidates.values()} == {
        "count", "numeric", "recency", "levels", "distinct", "series", "statistics",
        "sessions", "hashed", "window ratio"}
    refund = candidates["transactions_amount_sum_category_refund_30d"]
    assert refund.description == "sum of amount over the last 30 days where category = 'refund'"
    assert refund.feature.filter == "category == 'refund'"
    ratio = candidates["transactions_count_7d_over_30d"]
    assert ratio.derived.expression == "ratio(transactions_count_7d, transactions_count_30d)"
    assert ratio.needs == ("transactions_count_7d", "transactions_count_30d")
    hashed = candidates["transactions_session_id_bucket3_count_90d"]
    assert hashed.feature.filter == "bucket(session_id, 8) == 3"
    names = [n for view in result.views for n in view.feature_names]
    assert len(names) == len(set(names)) == len(candidates)
    for view in result.views:
        check_view(view)
        assert len(view.feature_names) <= 60 and view.tags == ("discovered",)
    approximate = generate(CUSTOMER, [TABLE], "ds@example.com", 10_000, approximate=True)
    aggs = {c.feature.agg for c in approximate.candidates.values() if c.feature}
    assert {"approx_nunique", "approx_p50", "approx_p95"} <= aggs and "nunique" not in aggs


def test_the_budget_cuts_whole_groups_and_zero_is_refused() -> None:
    small = generate(CUSTOMER, [TABLE], "ds@example.com", max_candidates=12)
    assert 0 < len(small.candidates) <= 12 and small.over_budget > 0
    for candidate in small.candidates.values():  # nothing derived lost what it needs
        assert set(candidate.needs) <= set(small.candidates)
    with pytest.raises(DiscoveryError, match="budget must be at least 1, got 0"):
        generate(CUSTOMER, [TABLE], "ds@example.com", max_candidates=0)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> LocalLake:
    lake = LocalLake(tmp_path_factory.mktemp("discovery") / "lake")
    write_clean(lake, churn_tables(customers=80))
    return lake


def test_profile_sorts_columns_and_names_a_null_event_time(lake: LocalLake, tmp_path: Path
                                                           ) -> None:
    table = profile(lake, "main", TRANSACTIONS, "customer_id", ("transaction_id",))
    kinds = {c.name: (c.kind, c.levels) for c in table.columns}
    assert kinds == {"amount": ("numeric", ()),
                     "category": ("categorical", ("grocery", "fashion", "home", "refund")),
                     "channel": ("categorical", kinds["channel"][1])}
    assert sorted(kinds["channel"][1]) == ["app", "store", "web"]
    broken = LocalLake(tmp_path / "broken")
    frame = pa.table({"customer_id": ["C1", "C2"], "amount": [1.0, 2.0],
                      "ts": pa.array([None, 1], pa.timestamp("us", tz="UTC"))})
    buffer = io.BytesIO()
    pq.write_table(frame, buffer)
    broken.put("main", "clean/transactions/dt=2026-08-01/part-0.parquet", buffer.getvalue())
    with pytest.raises(DiscoveryError, match=r"table 'transactions': event-time column 'ts' "
                                             r"has 1 null values in 2 rows"):
        profile(broken, "main", TRANSACTIONS, "customer_id", ())


def test_candidate_values_are_the_engines_for_any_partitioning(lake: LocalLake) -> None:
    table = profile(lake, "main", TRANSACTIONS, "customer_id", ("transaction_id",))
    views = generate(CUSTOMER, [table], "ds@example.com", max_candidates=85).views
    keys = [f"C{i:07d}" for i in range(1, 81)]
    days = [date(2026, 8, 1), date(2026, 8, 15)]
    examples = pd.DataFrame({"customer_id": keys * 2, "as_of": np.repeat(days, 80)})
    commit = lake.resolve("main")
    lake.create_branch("discovery-test", "main")
    write_examples(lake, "discovery-test", "t", examples, "customer_id")
    frames = {}
    for partitions in (1, 2):
        columns = []
        for view in views:
            plan = plan_from_lake([view], lake, commit)
            parts = [compute_part(lake, commit, "discovery-test", "t", plan, "customer_id", k,
                                  partitions) for k in range(partitions)]
            assert sum(p.rows for p in parts) == len(examples)
            columns.append(read_values(lake, "discovery-test", parts, len(examples)))
        frames[partitions] = pd.concat(columns, axis=1)
    pd.testing.assert_frame_equal(frames[1], frames[2])
    plan = plan_from_lake(views, lake, commit)
    direct = compute_views(views, load_events(lake, commit, plan),
                           Spine.of(examples["customer_id"], examples["as_of"]))
    pd.testing.assert_frame_equal(frames[2], direct, check_names=False)

    # point-in-time by hand: refunds in [t - 30 d, t), never at or after t
    raw = churn_tables(customers=80)["transactions"]
    raw["ts"] = pd.to_datetime(raw["ts"], utc=True)
    name = "transactions_amount_sum_category_refund_30d"
    for row in examples.sample(20, random_state=1).itertuples():
        t = as_of_time(row.as_of)
        mine = raw[(raw.customer_id == row.customer_id) & (raw.category == "refund")
                   & (raw.ts >= t - pd.Timedelta(days=30)) & (raw.ts < t)]
        value = frames[2].loc[row.Index, name]
        assert (value if not np.isnan(value) else 0.0) == pytest.approx(mine.amount.sum(),
                                                                        abs=1e-9)


SPEC = ModelSpec(name="discovery-test", label=ChurnLabel(activity=(TRANSACTIONS,)),
                 features=(), owner="ds@example.com", as_of_dates=8)


def _labelled(seed: int = 5) -> pd.DataFrame:
    """8 weekly dates: `strong` predicts churn, `copy` is `strong` rescaled, `leak` is the
    label, `flip` helps on alternate dates in opposite directions, and some are useless."""
    rng = np.random.default_rng(seed)
    days = pd.date_range("2026-06-01", periods=8, freq="7D")
    n = 1500
    frames = []
    for k, day in enumerate(days):
        signal = rng.normal(size=n)
        y = (rng.random(n) < 1 / (1 + np.exp(-(2.2 * signal - 2.5)))).astype(int)
        frames.append(pd.DataFrame({
            "customer_id": [f"C{i:07d}" for i in range(n)], "as_of": day, "churned": y,
            "strong": signal + rng.normal(scale=0.3, size=n),
            "copy": 0.0, "constant": 1.0,
            "mostly_null": np.where(rng.random(n) < 0.98, np.nan, rng.normal(size=n)),
            "noise": rng.normal(size=n), "leak": y + rng.normal(scale=0.01, size=n),
            "flip": (1 if k % 2 else -1) * (y + rng.normal(scale=0.8, size=n)),
            "segment": np.where(signal > 0.8, "at risk", np.where(signal > 0, "watch", "fine"))}))
    frame = pd.concat(frames, ignore_index=True)
    frame["copy"] = 3 * frame["strong"] + 1 + rng.normal(scale=1e-3, size=len(frame))
    return frame


def test_selection_keeps_what_helps_and_says_why_it_dropped_the_rest() -> None:
    frame = _labelled()
    names = ["strong", "copy", "constant", "mostly_null", "noise", "leak", "flip", "segment"]
    selection = select(frame, names, SPEC, SelectionRules(max_selected=2))
    reasons = selection.decisions.set_index("candidate")["reason"].to_dict()
    status = selection.decisions.set_index("candidate")["status"].to_dict()
    signal = next(n for n in ("strong", "copy") if status[n] == "kept")
    other = "copy" if signal == "strong" else "strong"
    assert re.fullmatch(rf"redundant with {signal} \(\|rank correlation\| (0\.99\d|1\.000)\)",
                        reasons[other])
    assert reasons["constant"] == "constant on the training rows"
    assert reasons["mostly_null"].startswith("mostly missing (9")
    assert reasons["leak"].startswith("leaks the target: ROC-AUC 1.000 on its own")
    assert reasons["flip"].startswith("unstable: relates to the label in its overall "
                                      "direction on only 50% of training dates")
    assert status["noise"] == "dropped" and "leak" not in selection.kept
    assert set(selection.kept) == {signal, "segment"}
    assert selection.dates["train"] == [f"2026-06-{d:02d}" for d in (1, 8, 15, 22)]
    kept = selection.decisions[selection.decisions["status"] == "kept"]
    assert (kept["permutation"] > 0).all() and (kept["gain"] > 0).all()
    assert selection.clusters[signal] == [other]


def test_selected_views_carry_what_a_kept_ratio_needs(lake: LocalLake) -> None:
    generated = generate(CUSTOMER, [TABLE], "ds@example.com", max_candidates=10_000)
    views = selected_views(["transactions_count_7d_over_30d", "transactions_amount_sum_7d"],
                           generated.candidates, [TABLE], CUSTOMER, "ds@example.com", "r1",
                           "discovery/r1/report.html")
    (view,) = views
    assert view.name == "discovered_transactions"
    assert view.feature_names == ["transactions_count_7d", "transactions_count_30d",
                                  "transactions_amount_sum_7d",
                                  "transactions_count_7d_over_30d"]
    assert "discovery/r1/report.html" in view.description
