"""Declarations: versions, YAML, and clear errors at declaration and plan time."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pytest
from tideline.core.errors import FeatureDefinitionError
from tideline.demo.views import CHURN_VIEWS, DEMO_VIEWS, SPENDING
from tideline.features.definitions import (
    Derived,
    Entity,
    Feature,
    FeatureView,
    Source,
    dump_views,
    load_definitions,
    load_views,
)
from tideline.features.plan import plan_from_lake, plan_views
from tideline.lake.local import LocalLake

CUSTOMER = Entity("customer", "customer_id")
TXN = Source("txn", "transactions", "ts")
SCHEMA = pa.schema([("customer_id", pa.string()), ("ts", pa.timestamp("us", "UTC")),
                    ("amount", pa.float64()), ("category", pa.string())])


def view(*features: Feature, name: str = "spend", source: Source = TXN,
         derived: tuple[Derived, ...] = (), owner: str = "team@example.com") -> FeatureView:
    return FeatureView(name=name, entity=CUSTOMER, source=source, features=features,
                       derived=derived, owner=owner)


def test_the_churn_set_has_at_least_47_features_with_unique_names() -> None:
    names = [name for v in CHURN_VIEWS for name in v.feature_names]
    assert len(names) == len(set(names)) >= 47
    assert {w for v in CHURN_VIEWS for w in (f.window for f in v.features)} >= {7, 30, 90, None}


def test_version_follows_what_changes_values_only() -> None:
    renamed = replace(SPENDING, owner="someone@example.com", description="other words",
                      tags=("x",))
    assert renamed.version == SPENDING.version
    widened = replace(SPENDING, features=[replace(SPENDING.features[0], window=8),
                                          *SPENDING.features[1:]])
    assert widened.version != SPENDING.version


def test_views_load_from_yaml_with_the_same_version(tmp_path: Path) -> None:
    path = tmp_path / "views.yaml"
    path.write_text("""
entities: [{name: customer, key: customer_id}]
sources: [{name: txn, dataset: transactions, timestamp: ts}]
views:
  - name: spend
    entity: customer
    source: txn
    owner: team@example.com
    features:
      - {name: spend_30d, column: amount, agg: sum, window: 30}
      - {name: refunds_30d, agg: count, window: 30, filter: "category == 'refund'"}
    derived:
      - {name: refund_rate, expression: "ratio(refunds_30d, spend_30d)"}
      - {name: tier, cases: [["spend_30d > 100", high]], default: low}
""")
    [loaded] = load_views(path)
    declared = view(Feature("spend_30d", "amount", "sum", window=30),
                    Feature("refunds_30d", agg="count", window=30,
                            filter="category == 'refund'"),
                    derived=(Derived("refund_rate", "ratio(refunds_30d, spend_30d)"),
                             Derived("tier", cases=(("spend_30d > 100", "high"),),
                                     default="low")))
    assert loaded == declared and loaded.version == declared.version


def test_views_dumped_to_yaml_load_back_the_same_beside_python_ones(tmp_path: Path) -> None:
    path = tmp_path / "demo.yaml"
    path.write_text(dump_views(DEMO_VIEWS))
    loaded = load_definitions(f"tideline.demo.views:CHURN_VIEWS, {path}")
    assert loaded[:len(CHURN_VIEWS)] == list(CHURN_VIEWS)
    assert loaded[len(CHURN_VIEWS):] == list(DEMO_VIEWS)
    assert [v.version for v in loaded[len(CHURN_VIEWS):]] == [v.version for v in DEMO_VIEWS]


@pytest.mark.parametrize(("build", "message"), [
    (lambda: view(Feature("x", "amount", "sum", window=0)), "'x': window must be a positive"),
    (lambda: view(Feature("x", "amount", "sum", window=-7)), "'x': window must be a positive"),
    (lambda: view(Feature("x", "amount", "median")), "'x': unknown aggregation 'median'"),
    (lambda: view(Feature("x", agg="count"), Feature("x", "amount", "sum")),
     "duplicate feature name 'x'"),
    (lambda: view(Feature("x", agg="sum")), "'x': 'sum' needs a column"),
    (lambda: view(Feature("x", agg="share", window=7)), "'x': 'share' needs a filter"),
    (lambda: view(Feature("x", agg="count", filter="amount >")), "'x': cannot parse"),
    (lambda: view(Feature("x", agg="count", filter="__import__('os')")), "Call|unknown function"),
    (lambda: view(Feature("x", "amount", "trend_slope")), "'x': 'trend_slope' needs a window"),
    (lambda: view(Feature("x", agg="count"), derived=(Derived("r", "x / y"),)),
     "'r': refers to unknown feature\\(s\\) y"),
    (lambda: view(), "declares no features"),
    (lambda: view(Feature("x", agg="count"), owner="a@example.com\r\nBcc: all@example.com"),
     "owner must be one bare e-mail address"),
    (lambda: view(Feature("x", agg="count"), owner="a@example.com\n"),
     "owner must be one bare e-mail address"),
    (lambda: view(Feature("x", agg="count"), owner="Ann <a@example.com>, b@example.com"),
     "owner must be one bare e-mail address"),
    (lambda: view(Feature("x", agg="count"), name="../../etc"), "a view name is lower-case"),
])
def test_bad_declarations_fail_at_once_naming_view_and_feature(build, message: str) -> None:
    with pytest.raises(FeatureDefinitionError, match=message):
        build()


@pytest.mark.parametrize(("views", "message"), [
    ([view(Feature("x", "amonut", "sum", window=7))],
     "view 'spend', feature 'x': unknown column 'amonut' in source 'txn'"),
    ([view(Feature("x", agg="count", filter="categry == 'a'"))], "unknown column 'categry'"),
    ([view(Feature("x", "category", "mean", window=7))],
     "'x': 'mean' needs a numeric column, but 'category' is string"),
    ([view(Feature("x", agg="count"), source=Source("txn", "transactions", "when"))],
     "no column 'when' \\(the event time\\)"),
    ([FeatureView(name="v", entity=Entity("account", "account_id"), source=TXN,
                  features=[Feature("x", agg="count")], owner="a@example.com")],
     "no column 'account_id' \\(the entity key of 'account'\\)"),
    ([view(Feature("x", agg="count")), view(Feature("x", agg="count"), name="other")],
     "view 'other', feature 'x': the name is used by view 'spend' too"),
    ([view(Feature("x", "day", "days_since_last"))],
     "'x': 'days_since_last' needs a date or timestamp column, and 'day' is a number"),
])
def test_plan_checks_views_against_the_source_schema(views: list, message: str) -> None:
    with pytest.raises(FeatureDefinitionError, match=message):
        plan_views(views, {"txn": SCHEMA})


def test_plan_names_a_source_table_missing_from_the_lake(tmp_path: Path) -> None:
    lake = LocalLake(tmp_path / "lake")
    with pytest.raises(FeatureDefinitionError,
                       match="view 'spend': source 'txn' reads dataset 'transactions', but the "
                             "lake has no clean/transactions/ table"):
        plan_from_lake([view(Feature("x", agg="count"))], lake, lake.resolve("main"))


def test_plan_reads_only_the_columns_features_use() -> None:
    plan = plan_views([view(Feature("x", agg="count", filter="weekday >= 5"),
                            Feature("y", "amount", "max", window=3),
                            Feature("active", "day", "nunique", window=30))], {"txn": SCHEMA})
    assert plan.columns == {"txn": ("amount", "customer_id", "ts")}
