"""Point-in-time training sets from the offline store: the as-of rule checked against pandas'
merge_asof, TTLs, saving and tagging, reproducibility from a tag, and bad entity tables."""
from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tideline.core.errors import RetrievalError
from tideline.demo.views import ACTIVITY, CHURN_VIEWS, PROFILE, SPENDING
from tideline.features.definitions import Feature
from tideline.features.materialize import as_of_time
from tideline.features.offline import read_features
from tideline.features.store import FeatureStore

from tests.features.built import AS_OF, build_features, copied_store

FEATURES = ["spend_30d", "txn_count_7d", "last_category", "value_segment",
            "customer_activity:logins_7d", "plan", "tenure_days"]


@pytest.fixture
def store(lake_template: Path, tmp_path: Path) -> FeatureStore:
    return copied_store(lake_template, tmp_path)


def entity_rows(n: int = 400, seed: int = 1) -> pd.DataFrame:
    """Random customers (some unknown) at random times around the as-of dates, a tenth exactly
    on a materialisation's midnight, with a label."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"C{i:07d}" for i in rng.integers(1, 126, n)])  # > 120: unknown
    start = pd.Timestamp("2026-07-25", tz="UTC")
    times = start + pd.to_timedelta(rng.integers(0, 50 * 86_400, n), unit="s")
    exact = rng.random(n) < 0.1
    times = times.where(~exact, pd.DatetimeIndex([as_of_time(AS_OF[k]) for k in
                                                  rng.integers(0, 3, n)]))
    return pd.DataFrame({"customer_id": ids, "event_timestamp": times,
                         "churned": rng.integers(0, 2, n)})


def reference(store: FeatureStore, rows: pd.DataFrame, view, names: list[str],
              ttl_days: int | None = None) -> pd.DataFrame:
    """The same join by pandas.merge_asof over every materialisation, stacked long."""
    snapshots = pd.concat([read_features(store.lake, "main", view, day).assign(
        as_of=as_of_time(day)) for day in AS_OF])
    snapshots["as_of"] = snapshots["as_of"].dt.as_unit("ns")
    left = rows.reset_index().sort_values("event_timestamp")
    left["event_timestamp"] = left["event_timestamp"].dt.as_unit("ns")
    joined = pd.merge_asof(left, snapshots.sort_values("as_of")[["customer_id", "as_of", *names]],
                           left_on="event_timestamp", right_on="as_of", by="customer_id",
                           direction="backward", allow_exact_matches=True,
                           tolerance=pd.Timedelta(days=ttl_days) if ttl_days else None)
    if ttl_days:  # merge_asof's tolerance is inclusive; the TTL ends before as_of + ttl
        late = joined["event_timestamp"] >= joined["as_of"] + pd.Timedelta(days=ttl_days)
        joined.loc[late, names] = None
    text = [n for n in names if joined[n].dtype == object]
    joined[text] = joined[text].where(joined[text].notna(), None)  # Arrow gives None, not NaN
    return joined.set_index("index").sort_index()[names]


def test_each_row_gets_the_newest_materialisation_at_or_before_its_time(
        store: FeatureStore) -> None:
    rows = entity_rows()
    result = store.get_training_set(rows, FEATURES, save=False)

    assert list(result.frame.columns) == [*rows.columns, *[f.split(":")[-1] for f in FEATURES]]
    pd.testing.assert_frame_equal(result.frame[rows.columns], rows)  # input order, labels kept
    for view in (SPENDING, ACTIVITY, PROFILE):
        names = [c for c in result.frame.columns if c in view.feature_names]
        expected = reference(store, rows, view, names)
        pd.testing.assert_frame_equal(result.frame[names], expected, check_dtype=False,
                                      check_names=False)
    before = rows["event_timestamp"] < as_of_time(AS_OF[0])
    assert before.any() and result.frame.loc[before, "spend_30d"].isna().all()
    assert result.as_of == {v.name: [f"{d:%Y-%m-%d}" for d in AS_OF]
                            for v in (SPENDING, ACTIVITY, PROFILE)}


def test_a_row_exactly_at_midnight_sees_that_days_table_and_not_a_later_one(
        store: FeatureStore) -> None:
    t = as_of_time(AS_OF[1])
    rows = pd.DataFrame({"customer_id": ["C0000001"] * 3,
                         "event_timestamp": [t - pd.Timedelta("1ns"), t,
                                             as_of_time(AS_OF[2]) - pd.Timedelta("1ns")]})
    values = store.get_training_set(rows, ["spend_30d"], save=False).frame["spend_30d"]
    tables = [read_features(store.lake, "main", SPENDING, d).set_index("customer_id")
              for d in AS_OF]
    assert list(values) == [tables[0].at["C0000001", "spend_30d"],
                            tables[1].at["C0000001", "spend_30d"],
                            tables[1].at["C0000001", "spend_30d"]]


def test_values_past_the_ttl_are_null(store: FeatureStore) -> None:
    short = replace(SPENDING, ttl_days=5)
    store.views = [short if v.name == SPENDING.name else v for v in store.views]
    rows = entity_rows(seed=2)
    result = store.get_training_set(rows, ["spend_30d", "txn_count_30d"], save=False).frame
    expected = reference(store, rows, SPENDING, ["spend_30d", "txn_count_30d"], ttl_days=5)
    pd.testing.assert_frame_equal(result[["spend_30d", "txn_count_30d"]], expected,
                                  check_dtype=False, check_names=False)
    late = rows["event_timestamp"] >= as_of_time(AS_OF[2]) + pd.Timedelta(days=5)
    assert late.any() and result.loc[late, "spend_30d"].isna().all()


def test_a_saved_training_set_is_tagged_recorded_and_reproducible(store: FeatureStore) -> None:
    rows = entity_rows(100)
    first = store.get_training_set(rows, FEATURES)
    head = store.lake.resolve("main")

    assert store.lake.tags()[first.tag] == first.lake_commit == head
    assert first.ref_commit == store.lake.get_commit(head).parents[0]
    assert store.lake.exists(first.tag, first.path)
    recorded = store.registry.training_set(first.name)
    assert (recorded["lake_commit"], recorded["row_count"]) == (first.lake_commit, 100)
    assert recorded["views"] == {v.name: v.version for v in (SPENDING, ACTIVITY, PROFILE)}

    again = store.get_training_set(rows, FEATURES)  # same inputs, same commit: no new work
    assert again.name == first.name and store.lake.resolve("main") == head
    pd.testing.assert_frame_equal(again.frame, first.frame)
    pd.testing.assert_frame_equal(store.load_training_set(first.name).frame, first.frame)

    # new definitions and a newer materialisation land on main; the tag still reproduces
    changed = replace(SPENDING, features=tuple(
        replace(f, window=29) if f.name == "spend_30d" else f for f in SPENDING.features))
    build_features(store.lake, [date(2026, 9, 1)], views=[changed])
    store.views = [changed if v.name == SPENDING.name else v for v in store.views]
    moved = store.get_training_set(rows, ["spend_30d"], save=False).frame["spend_30d"]
    assert not moved.equals(first.frame["spend_30d"])
    store.views = list(CHURN_VIEWS)
    replay = store.get_training_set(rows, FEATURES, ref=first.ref_commit, save=False)
    pd.testing.assert_frame_equal(replay.frame, first.frame)


def test_time_zones_are_converted_and_naive_means_utc(store: FeatureStore) -> None:
    rows = entity_rows(50, seed=4)
    utc = store.get_training_set(rows, ["spend_30d"], save=False).frame
    zoned = rows.assign(event_timestamp=[t.tz_convert("America/New_York") if k % 2 else
                                         t.tz_convert("Asia/Tokyo")
                                         for k, t in enumerate(rows["event_timestamp"])])
    pd.testing.assert_series_equal(
        store.get_training_set(zoned, ["spend_30d"], save=False).frame["spend_30d"],
        utc["spend_30d"])
    naive = rows.assign(event_timestamp=rows["event_timestamp"].dt.tz_localize(None))
    pd.testing.assert_series_equal(
        store.get_training_set(naive, ["spend_30d"], save=False).frame["spend_30d"],
        utc["spend_30d"])


def test_bad_entity_tables_and_feature_names_are_clear_errors(store: FeatureStore) -> None:
    rows = entity_rows(10)
    with pytest.raises(RetrievalError, match="no timestamp column 'ts' .*customer_id, "
                                             "event_timestamp, churned"):
        store.get_training_set(rows, ["spend_30d"], timestamp_column="ts")
    mixed = rows.astype({"event_timestamp": object})
    mixed.loc[3, "event_timestamp"] = pd.Timestamp("2026-08-20 10:00")
    with pytest.raises(RetrievalError, match="mixes values with and without a time zone "
                                             "\\(row 3 has none\\)"):
        store.get_training_set(mixed, ["spend_30d"])
    with pytest.raises(RetrievalError, match="no column 'customer_id'"):
        store.get_training_set(rows.rename(columns={"customer_id": "id"}), ["spend_30d"])
    with pytest.raises(RetrievalError, match="unknown feature 'spend_31d'"):
        store.get_training_set(rows, ["spend_31d"])
    with pytest.raises(RetrievalError, match="view 'customer_spending' has no feature 'x'"):
        store.get_training_set(rows, ["customer_spending:x"])
    assert store.lake.tags() == {}  # nothing was saved


def test_features_with_clashing_names_must_be_qualified(store: FeatureStore) -> None:
    twin = replace(ACTIVITY, name="activity_again")
    build_features(store.lake, [AS_OF[2]], views=[twin])
    store.views = [*CHURN_VIEWS, twin]
    rows = entity_rows(30)
    with pytest.raises(RetrievalError, match="'logins_7d' is ambiguous: it is defined by "
                                             "customer_activity:logins_7d, "
                                             "activity_again:logins_7d"):
        store.get_training_set(rows, ["logins_7d"])
    frame = store.get_training_set(rows, ["customer_activity:logins_7d",
                                          "activity_again:logins_7d"], save=False).frame
    assert {"customer_activity__logins_7d", "activity_again__logins_7d"} <= set(frame.columns)
    # the twin was built alone, so its population is the customers with events only
    late = (rows["event_timestamp"] >= as_of_time(AS_OF[2])) & frame[
        "activity_again__logins_7d"].notna()
    assert late.sum() >= 3
    pd.testing.assert_series_equal(frame.loc[late, "customer_activity__logins_7d"],
                                   frame.loc[late, "activity_again__logins_7d"],
                                   check_names=False)


def test_a_view_never_materialised_is_named(store: FeatureStore) -> None:
    fresh = replace(SPENDING, features=(*SPENDING.features,
                                        Feature("spend_3d", "amount", "sum", window=3)))
    store.views = [fresh]
    with pytest.raises(RetrievalError, match=f"'customer_spending' version {fresh.version} has "
                                             "no materialised feature table"):
        store.get_training_set(entity_rows(5), ["spend_3d"])
