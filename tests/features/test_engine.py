"""The engine against hand-built cases, an independent pandas reference and invariants."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tideline.core.partitioning import hash_bucket
from tideline.demo.views import CHURN_VIEWS
from tideline.features.definitions import (
    AGGREGATIONS,
    DAILY,
    Derived,
    Entity,
    Feature,
    FeatureView,
    Source,
)
from tideline.features.engine import (
    Clock,
    Events,
    Spine,
    ViewComputation,
    compute_views,
    encode_entities,
)

from tests.features.conftest import AS_OF
from tests.features.reference import reference_frame

CUSTOMER = Entity("customer", "customer_id")
TXN = Source("txn", "transactions", "ts")
T = pd.Timestamp("2026-03-01", tz="UTC")
NS, DAY = pd.Timedelta(1, "ns"), pd.Timedelta(days=1)


def view(*features: Feature, derived: tuple[Derived, ...] = ()) -> FeatureView:
    return FeatureView(name="v", entity=CUSTOMER, source=TXN, features=features,
                       derived=derived, owner="owner@example.com")


def events_of(frame: pd.DataFrame, key: str = "customer_id", ts: str = "ts") -> Events:
    return Events.from_table(pa.Table.from_pandas(frame, preserve_index=False), key, ts)


def run(v: FeatureView, frame: pd.DataFrame, keys: list, times: list) -> pd.DataFrame:
    return ViewComputation(v, events_of(frame), Spine.of(keys, times)).frame()


def assert_same(actual: pd.DataFrame, expected: pd.DataFrame, rtol: float = 1e-9) -> None:
    for column in expected.columns:
        a, b = actual[column].to_numpy(), expected[column].to_numpy()
        numeric = pd.api.types.is_numeric_dtype(pd.Series(b).infer_objects().dtype)
        if numeric and pd.api.types.is_numeric_dtype(pd.Series(a).infer_objects().dtype):
            np.testing.assert_allclose(a.astype(float), b.astype(float), rtol=rtol, atol=1e-9,
                                       equal_nan=True, err_msg=column)
        else:
            assert [None if pd.isna(x) else x for x in a] == [
                None if pd.isna(x) else x for x in b], column


def test_windows_are_half_open_and_the_as_of_instant_is_excluded() -> None:
    stamps = [T - 30 * DAY - NS, T - 30 * DAY, T - 7 * DAY, T - NS, T, T + DAY]
    frame = pd.DataFrame({"customer_id": "a", "ts": stamps,
                          "amount": [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]})
    out = run(view(Feature("n7", agg="count", window=7),
                   Feature("s30", "amount", "sum", window=30),
                   Feature("all", "amount", "sum"),
                   Feature("last", "amount", "last", window=30),
                   Feature("first", "amount", "first", window=30),
                   Feature("since", agg="days_since_last"),
                   Feature("oldest", agg="days_since_first", window=30)),
              frame, ["a"], [T])
    assert out.loc[0, "n7"] == 2  # T-7d (the edge) and T-1ns; not T itself
    assert out.loc[0, "s30"] == 2.0 + 4.0 + 8.0  # T-30d is in, T-30d-1ns is out
    assert out.loc[0, "all"] == 15.0
    assert (out.loc[0, "first"], out.loc[0, "last"]) == (2.0, 8.0)
    assert out.loc[0, "since"] == 1 / 86_400e9  # one nanosecond, exactly
    assert out.loc[0, "oldest"] == 30.0


def test_each_training_row_sees_only_events_before_its_own_time() -> None:
    frame = pd.DataFrame({"customer_id": ["a", "a", "a", "b"],
                          "ts": [T - 2 * DAY, T - DAY, T, T - DAY], "amount": [1.0, 2, 4, 8]})
    out = run(view(Feature("spend", "amount", "sum", window=7),
                   Feature("n", agg="count", window=7)),
              frame, ["a", "a", "a", "b", "nobody"], [T - DAY, T, T + DAY, T - DAY, T])
    assert out["spend"].tolist() == [1.0, 3.0, 7.0, 0.0, 0.0]
    assert out["n"].tolist() == [1, 2, 3, 0, 0]


def test_empty_windows_have_the_documented_values() -> None:
    frame = pd.DataFrame({"customer_id": ["a"], "ts": [T - 60 * DAY], "amount": [5.0]})
    aggs = {"count": 0, "sum": 0.0, "mean": np.nan, "max": np.nan, "std": np.nan,
            "p50": np.nan, "daily_mean": 0.0, "trend_slope": 0.0, "trend_r2": np.nan,
            "ema_7d": 0.0, "days_since_last": np.nan}
    features = [Feature(agg, None if agg in ("count", "days_since_last") else "amount", agg,
                        window=7) for agg in aggs]
    out = run(view(*features), frame, ["a"], [T])
    for agg, expected in aggs.items():
        assert out.loc[0, agg] == pytest.approx(expected, nan_ok=True), agg


def random_events(seed: int, n: int = 600, keys: str = "abcdef") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    seconds = rng.integers(0, 70 * 86_400, n)
    seconds[::9] = (seconds[::9] // 86_400) * 86_400  # some events exactly at midnight
    return pd.DataFrame({
        "customer_id": rng.choice(list(keys), n),
        "ts": T - 70 * DAY + pd.to_timedelta(seconds, unit="s"),
        "amount": np.where(rng.random(n) < 0.05, np.nan, rng.gamma(2.0, 25.0, n).round(2)),
        "category": rng.choice(["x", "y", "z"], n, p=[.6, .3, .1]),
    })


def every_aggregation(window: int | str | None, filter_: str | None = None) -> list[Feature]:
    features = []
    for agg in sorted(AGGREGATIONS):
        if not isinstance(window, int) and agg in DAILY:  # whole days only
            continue
        if agg == "share":
            features.append(Feature(agg, agg=agg, window=window,
                                    filter=filter_ or "category == 'x'"))
            continue
        if agg == "sessions":
            features.append(Feature(agg, agg=agg, window=window, filter=filter_, gap="6h"))
            continue
        column = {"count": None, "days_since_last": None, "days_since_first": None,
                  "nunique": "category", "first": "category"}.get(agg, "amount")
        features.append(Feature(agg, column, agg, window=window, filter=filter_))
    return features


@pytest.mark.parametrize(("window", "filter_"), [
    (7, None), (30, None), (45, "category != 'z' and weekday < 5"), (None, None), ("36h", None),
    ("90m", "category == 'x'"),
    (30, "amount > 40"), (14, "category in ['y', 'z'] or hour >= 18"),
])
def test_every_aggregation_matches_a_plain_pandas_reference(window: int | str | None,
                                                            filter_: str | None) -> None:
    frame = random_events(seed=window if isinstance(window, int) else len(str(window)))
    v = view(*every_aggregation(window, filter_))
    keys = list("abcdefg") * 3
    times = [T - k * DAY - (k % 3) * pd.Timedelta(hours=5) for k in range(len(keys))]
    spine = pd.DataFrame({"key": keys, "as_of": times})
    assert_same(run(v, frame, keys, times), reference_frame(frame, v, spine))


def test_the_churn_views_match_the_reference(tables: dict[str, pd.DataFrame]) -> None:
    def events() -> dict[str, Events]:
        return {v.source.name: events_of(tables[v.source.dataset], "customer_id",
                                         v.source.timestamp) for v in CHURN_VIEWS}

    keys = [f"C{i:07d}" for i in (1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 119, 120)] + ["C9999999"]
    times = [AS_OF] * 8 + [AS_OF - 10 * DAY - pd.Timedelta(hours=3)] * 5
    out = compute_views(CHURN_VIEWS, events(), Spine.of(keys, times))
    spine = pd.DataFrame({"key": keys, "as_of": times})
    for v in CHURN_VIEWS:
        source = tables[v.source.dataset].copy()
        source[v.source.timestamp] = pd.to_datetime(source[v.source.timestamp], utc=True)
        assert_same(out, reference_frame(source, v, spine))
    assert out.loc[0, "txn_count_90d"] > 0  # the hand-picked customers are not all empty
    threaded = compute_views(CHURN_VIEWS, events(), Spine.of(keys, times), threads=3)
    pd.testing.assert_frame_equal(threaded, out)  # the same floats, whatever ran first


def test_derived_features_and_segments() -> None:
    frame = pd.DataFrame({"customer_id": ["a", "a", "b"], "ts": [T - DAY, T - 20 * DAY, T - DAY],
                          "amount": [10.0, 30.0, 5.0]})
    v = view(Feature("s7", "amount", "sum", window=7),
             Feature("s30", "amount", "sum", window=30),
             derived=(Derived("share_7_30", "ratio(s7, s30)"),
                      Derived("pace", "s7 * 30 / 7 - s30"),
                      Derived("tier", cases=(("s30 >= 40", "high"), ("s30 > 0", "low")),
                              default="none")))
    out = run(v, frame, ["a", "b", "c"], [T, T, T])
    np.testing.assert_allclose(out["share_7_30"], [0.25, 1.0, np.nan])
    np.testing.assert_allclose(out["pace"], [10 * 30 / 7 - 40, 5 * 30 / 7 - 5, 0.0])
    assert out["tier"].tolist() == ["high", "low", "none"]


def test_date_parts_are_columns_and_active_days_count_calendar_days() -> None:
    hours = [1, 5, 30, 31, 24 * 9 + 2]  # two on day -1, two on day -2, one ten days back
    frame = pd.DataFrame({"customer_id": "a",
                          "ts": [T - pd.Timedelta(hours=h, microseconds=7) for h in hours]})
    out = run(view(Feature("active_7d", "day", "nunique", window=7),
                   Feature("active_30d", "day", "nunique", window=30),
                   Feature("late_hour", "hour", "max", window=7),
                   Feature("weekdays", "weekday", "nunique")),
              frame, ["a", "b"], [T, T])
    assert out["active_7d"].tolist() == [2, 0] and out["active_30d"].tolist() == [3, 0]
    assert out.loc[0, "late_hour"] == 22  # T - 1 h - 7 us is 22:59:59.999993 the day before
    assert out.loc[0, "weekdays"] == 3


def test_conditions_count_as_numbers_in_arithmetic() -> None:
    """`(a > 0) + (b > 0)` counts the conditions that hold (2, not `or`'s True)."""
    frame = pd.DataFrame({"customer_id": ["a", "a", "b"], "ts": [T - DAY, T - 20 * DAY, T - DAY],
                          "amount": [10.0, 30.0, 5.0]})
    v = view(Feature("s7", "amount", "sum", window=7),
             Feature("s30", "amount", "sum", window=30),
             derived=(Derived("signals", "(s7 > 0) + (s30 > 20) + (s7 > 100)"),
                      Derived("both", "(s7 > 0) * (s30 > 20)"),
                      Derived("minus", "-(s7 > 0)")))
    out = run(v, frame, ["a", "b", "c"], [T, T, T])
    assert out["signals"].tolist() == [2, 1, 0]
    assert out["both"].tolist() == [1, 0, 0] and out["minus"].tolist() == [-1, -1, 0]


events_strategy = st.lists(
    st.tuples(st.sampled_from("abc"), st.integers(0, 40 * 24), st.floats(-50, 50)),
    min_size=1, max_size=60)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=events_strategy, queries=st.lists(
    st.tuples(st.sampled_from("abcd"), st.integers(0, 40 * 24)), min_size=1, max_size=5))
def test_no_value_ever_uses_an_event_at_or_after_its_time(rows: list, queries: list) -> None:
    frame = pd.DataFrame(rows, columns=["customer_id", "hour", "amount"])
    frame["ts"] = T + pd.to_timedelta(frame.pop("hour"), unit="h")
    frame["category"] = np.where(frame["amount"] > 10, "x", "y")
    v = view(*every_aggregation(7), Feature("n_all", agg="count"),
             Feature("last_all", "amount", "last"))
    keys = [key for key, _ in queries]
    times = [T + pd.Timedelta(hours=hour) for _, hour in queries]
    full = run(v, frame, keys, times)
    for row, (key, t) in enumerate(zip(keys, times, strict=True)):
        past = frame[frame["ts"] < t]
        if past.empty:  # nothing before t at all: everything is as for an unknown entity
            past = frame.iloc[:0]
        alone = run(v, past, [key], [t])
        assert_same(full.iloc[[row]].reset_index(drop=True), alone, rtol=1e-9)


@settings(max_examples=25, deadline=None)
@given(partitions=st.integers(2, 5), seed=st.integers(0, 1000))
def test_partitioning_entities_does_not_change_any_value(partitions: int, seed: int) -> None:
    frame = random_events(seed, n=300, keys="abcdefghij")
    v = view(*every_aggregation(30))
    keys = np.array(list("abcdefghijk"), dtype=object)
    whole = run(v, frame, list(keys), [T] * len(keys))
    part = hash_bucket(keys, partitions)
    pieces = []
    for k in range(partitions):
        mine = keys[part == k]
        if len(mine) == 0:
            continue
        subset = frame[np.isin(frame["customer_id"], mine)]
        pieces.append(run(v, subset, list(mine), [T] * len(mine)).set_index(pd.Index(mine)))
    combined = pd.concat(pieces).loc[keys].reset_index(drop=True)
    pd.testing.assert_frame_equal(combined, whole, check_exact=True)


@pytest.mark.parametrize("keys", [
    ["C0000007", "C0000002", "C0000003", "C0000010", "C0000002"],  # one width: as numbers
    ["b", "a", None, "ab", "a"],  # mixed widths, a null: hashed as text
    [7, 2, 3, 10, 2], [7, 2, None, 10, 2],
])
def test_entity_codes_follow_key_order_and_agree_across_sources(keys: list) -> None:
    first, second = pa.array(keys[:3]), pa.chunked_array([pa.array(keys[3:])])
    dictionary, (a, b) = encode_entities([first, second])
    known = sorted({key for key in keys if key is not None})
    assert dictionary.to_pylist() == known
    assert [known[c] if c >= 0 else None for c in [*a, *b]] == keys


def test_microsecond_times_for_more_entities_than_one_int64_key_holds() -> None:
    """900,000 entities x microseconds over 120 days overflow entity x tick in int64: the
    ticks are ranks of the distinct times, and the windows are exact all the same."""
    rng = np.random.default_rng(11)
    entities, n = 900_000, 1_200_000
    codes = np.concatenate([np.arange(entities), rng.integers(0, entities, n - entities)])
    micros = rng.integers(0, 120 * 86_400 * 10**6, n)
    stamps = pd.to_datetime(T.value // 1000 - 120 * 86_400 * 10**6 + micros, unit="us", utc=True)
    frame = pd.DataFrame({"customer_id": np.char.add("c", codes.astype(str)), "ts": stamps,
                          "amount": rng.random(n)})
    events = events_of(frame)
    assert events.clock.distinct is not None  # the ranked clock, not the fitting one
    keys = np.asarray(events.keys.to_pylist(), dtype=object)
    out = ViewComputation(view(Feature("n7", agg="count", window=7),
                               Feature("s30", "amount", "sum", window=30),
                               Feature("since", agg="days_since_last")),
                          events, Spine.of(keys, [T] * len(keys))).frame()
    code = pd.Index(keys).get_indexer(frame["customer_id"])
    age = (T - frame["ts"]).to_numpy()
    week = (age > np.timedelta64(0)) & (age <= np.timedelta64(7, "D"))
    month = (age > np.timedelta64(0)) & (age <= np.timedelta64(30, "D"))
    np.testing.assert_array_equal(out["n7"], np.bincount(code[week], minlength=len(keys)))
    np.testing.assert_allclose(out["s30"], np.bincount(
        code[month], frame["amount"].to_numpy()[month], minlength=len(keys)), rtol=1e-9)
    newest = frame.groupby(code)["ts"].max().reindex(range(len(keys)))
    np.testing.assert_allclose(out["since"], (T - newest).dt.total_seconds() / 86_400,
                               rtol=1e-12)


def test_the_event_order_is_entity_then_time_at_any_resolution() -> None:
    rng = np.random.default_rng(5)
    codes = rng.integers(0, 500, 20_000)
    time = 1_700_000_000 * 10**9 + rng.integers(0, 10 * 365 * 86_400 * 10**9, 20_000)
    time[:100] = time[100:200]  # ties keep their input order
    clock, position, order = Clock.order(codes, time, 500)
    assert clock.distinct is not None
    np.testing.assert_array_equal(order, np.lexsort((time, codes)))
    assert (np.diff(position[order]) >= 0).all()
    np.testing.assert_array_equal(clock.distinct[position - codes * clock.span], time)
    seconds = time // 10**9 * 10**9  # whole seconds fit one key: no ranks
    whole, _, by_key = Clock.order(codes, seconds, 500)
    assert whole.distinct is None and whole.unit == 10**9
    np.testing.assert_array_equal(by_key, np.lexsort((seconds, codes)))
