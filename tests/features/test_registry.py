"""The feature registry on SQLite and on the machine's real PostgreSQL: versions, prose updates,
builds with statistics, diffs, the versioned schema."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from tideline.core.errors import FeatureDefinitionError, RegistryError
from tideline.demo.views import ACTIVITY, ENGAGEMENT, PROFILE, SPENDING
from tideline.features.definitions import Feature
from tideline.features.registry import MIGRATIONS, Registry, metadata
from tideline.features.stats import profile_features

from tests.features.built import doc_queries


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.service("postgres"))])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Registry]:
    if request.param == "sqlite":
        registry = Registry(f"sqlite:///{tmp_path / 'registry.db'}")
    else:
        registry = Registry(request.getfixturevalue("postgres_database"))
        with registry.engine.begin() as connection:  # the database is shared by the module
            for table in reversed(metadata.sorted_tables):
                if table.name != "registry_schema":
                    connection.execute(sa.delete(table))
    yield registry
    registry.close()


T0 = datetime(2026, 10, 1, tzinfo=UTC)
T1 = datetime(2026, 10, 2, tzinfo=UTC)


def test_a_new_view_version_is_added_and_the_old_one_stays_readable(registry: Registry) -> None:
    registry.register_views([SPENDING], now=T0)
    changed = replace(SPENDING, features=(*SPENDING.features,
                                          Feature("spend_14d", "amount", "sum", window=14)))
    registry.register_views([changed], now=T1)

    versions = registry.versions(SPENDING.name)
    assert [v.version for v in versions] == [SPENDING.version, changed.version]
    assert registry.view(SPENDING.name).version == changed.version
    old = registry.view(SPENDING.name, SPENDING.version[:6])
    assert old.feature_view() == SPENDING  # the declaration comes back as it was
    assert [f["name"] for f in registry.features(old)] == SPENDING.feature_names
    assert registry.views()[0].created_at == T1


def test_prose_changes_update_the_version_in_place(registry: Registry) -> None:
    registry.register_views([SPENDING], now=T0)
    moved = replace(SPENDING, owner="retention@example.com", tags=("churn", "money"))
    assert moved.version == SPENDING.version
    registry.register_views([moved], now=T1)

    record = registry.view(SPENDING.name)
    assert (record.owner, record.tags) == ("retention@example.com", ("churn", "money"))
    assert (record.created_at, record.updated_at) == (T0, T1)
    assert len(registry.versions(SPENDING.name)) == 1


def test_a_build_records_lineage_and_statistics_once(registry: Registry) -> None:
    frame = pd.DataFrame({"monthly_fee": [0, 2, np.nan, 4], "plan": ["a", "b", "b", None]})
    stats = {(PROFILE.name, date(2026, 9, 1)): profile_features(frame, ["monthly_fee", "plan"])}
    for _ in range(2):  # recording a re-run changes nothing
        registry.record_build("r1", "c" * 64, "p" * 64, [PROFILE],
                              {(PROFILE.name, date(2026, 9, 1)): 4}, stats, now=T0)

    [done] = registry.materializations(PROFILE.name)
    assert (done.run_id, done.as_of, done.rows, done.version) == (
        "r1", date(2026, 9, 1), 4, PROFILE.version)
    assert (done.source_commit, done.published_commit) == ("c" * 64, "p" * 64)
    plan, fee = registry.stats(PROFILE.name, PROFILE.version)
    assert (fee.null_rate, fee.min_value, fee.max_value, fee.mean_value) == (
        0.25, 0.0, 4.0, 2.0)
    assert fee.p50 == 2.0
    assert (plan.null_rate, plan.distinct_count, plan.top_value) == (0.25, 2, "b")


def test_diff_names_what_changed(registry: Registry) -> None:
    changed = replace(SPENDING, owner="x@example.com", features=(
        *[f if f.name != "spend_7d" else replace(f, window=8) for f in SPENDING.features
          if f.name != "weekend_share_90d"],
        Feature("spend_14d", "amount", "sum", window=14)))
    registry.register_views([SPENDING], now=T0)
    registry.register_views([changed], now=T1)

    diff = registry.diff(f"{SPENDING.name}@{SPENDING.version}", changed.version[:8])
    assert diff.changed == {"owner": (SPENDING.owner, "x@example.com")}
    assert diff.added == ("spend_14d",)
    assert diff.removed == ("weekend_share_90d",)
    assert diff.features_changed == {"spend_7d": {"window_days": (7, 8)}}


def test_unknown_and_ambiguous_names_are_clear_errors(registry: Registry) -> None:
    registry.register_views([SPENDING, ACTIVITY], now=T0)
    with pytest.raises(FeatureDefinitionError, match="no feature view 'nope'.*customer_activity"):
        registry.view("nope")
    with pytest.raises(FeatureDefinitionError, match="'zzzz' is no view name or version"):
        registry.find_version("zzzz")


def test_the_schema_is_versioned_and_a_newer_one_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert Registry(url).schema_version == len(MIGRATIONS)
    Registry(url).register_views([SPENDING])  # reopening migrates nothing and keeps the rows
    assert len(Registry(url).views()) == 1
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE registry_schema SET version = 99"))
    with pytest.raises(RegistryError, match="schema version 99, newer"):
        Registry(url)


def test_an_unreachable_database_is_a_clear_error() -> None:
    with pytest.raises(RegistryError, match="cannot open the metadata database at "
                                            "postgresql\\+psycopg://tideline:\\*\\*\\*@127.0.0.1:1"):
        Registry("postgresql+psycopg://tideline:secret@127.0.0.1:1/none?connect_timeout=2")


def test_the_documented_registry_queries_answer(registry: Registry) -> None:
    frame = pd.DataFrame({"monthly_fee": [9.99, None, None, 19.99], "plan": ["a", "b", "b", "b"],
                          "tenure_days": [1, 2, 3, 4]})
    day = date(2026, 9, 1)
    registry.record_build("r1", "c" * 64, "p" * 64, [PROFILE, SPENDING],
                          {(PROFILE.name, day): 4},
                          {(PROFILE.name, day): profile_features(frame, PROFILE.feature_names)})
    nulls, owners = doc_queries("registry")
    with registry.engine.connect() as connection:
        top = connection.execute(sa.text(nulls)).all()
        by_owner = connection.execute(sa.text(owners)).all()
    assert [(r.feature, r.null_rate) for r in top] == [("monthly_fee", 0.5), ("plan", 0.0),
                                                      ("tenure_days", 0.0)]
    assert [(r.owner, r.view_name, r.features) for r in by_owner] == [
        (PROFILE.owner, PROFILE.name, 3), (SPENDING.owner, SPENDING.name, 35)]


def test_a_custom_view_is_registered_with_its_function_sources_and_reads(
        registry: Registry) -> None:
    registry.register_views([SPENDING, ENGAGEMENT], now=T0)
    record = registry.view(ENGAGEMENT.name)
    assert (record.version, record.source, record.source_timestamp) == (
        ENGAGEMENT.version, "transactions,events", "ts,ts")
    assert record.definition["function"] == "tideline.demo.views:engagement"
    assert record.definition["reads"] == {SPENDING.name: SPENDING.version}
    rows = registry.features(record)
    assert [(f["name"], f["kind"]) for f in rows] == [
        ("active_days_30d", "custom"), ("basket_x_cancel_7d", "custom"),
        ("spend_per_active_day", "derived")]
    assert {rows[0]["aggregation"], rows[0]["window_days"]} == {
        "tideline.demo.views:engagement", 30}
    with pytest.raises(FeatureDefinitionError, match="runs a function or reads other views"):
        record.feature_view()
