"""Daily tiles: a build that merges tiles gives what a full recompute gives, on the churn views
and on a generated event log with new days, late events and a backfill; it reads raw events
only for the days without a valid tile, and says which features kept their source raw."""
from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tideline.demo.views import CHURN_VIEWS
from tideline.features.definitions import Derived, Entity, Feature, FeatureView, Source, View
from tideline.features.materialize import PartitionResult, materialize_partition
from tideline.features.offline import read_features
from tideline.features.plan import plan_from_lake
from tideline.features.tiles import MIN_DENSITY, TILED, tile_partitions, tile_prefix
from tideline.lake.buckets import clean_path, write_bucketed
from tideline.lake.local import LocalLake

EXACT = {"count", "min", "max", "first", "last", "days_since_last", "days_since_first",
         "trend_slope", "trend_r2"}
"""Merged from tiles, these are the same floats as a recompute's; sums and the statistics
built on them are reassociated (tolerance `RTOL`)."""
RTOL = 1e-9

CUSTOMER = Entity("customer", "customer_id")
PAYMENTS = Source("payments", "payments", "ts")
VISITS = Source("visits", "visits", "ts")
_MOMENTS = [Feature(f"amount_{agg}_{w or 'all'}", "amount", agg, window=w)
            for agg in ("sum", "mean", "min", "max", "range", "std", "var", "skew", "kurtosis",
                        "cv") for w in (7, 30, None)]
PAYMENT_VIEW = FeatureView(
    name="payment_tiles", entity=CUSTOMER, source=PAYMENTS, owner="risk@example.com",
    features=[
        *_MOMENTS,
        Feature("payments_7d", agg="count", window=7),
        Feature("payments_all", agg="count"),
        Feature("card_share_30d", agg="share", window=30, filter="method == 'card'"),
        Feature("card_sum_30d", "amount", "sum", window=30, filter="method == 'card'"),
        Feature("first_method_30d", "method", "first", window=30),
        Feature("last_method", "method", "last"),
        Feature("last_amount_7d", "amount", "last", window=7),
        Feature("days_since_last_payment", agg="days_since_last"),
        Feature("days_since_first_card", agg="days_since_first", filter="method == 'card'"),
        Feature("days_since_refund", "refunded_at", "days_since_last"),
        Feature("daily_amount_30d", "amount", "daily_mean", window=30),
        Feature("amount_trend_30d", "amount", "trend_slope", window=30),
        Feature("amount_r2_30d", "amount", "trend_r2", window=30),
        Feature("payments_ema_14d", agg="ema_7d", window=14),
        Feature("card_trend_14d", agg="trend_slope", window=14, filter="method == 'card'"),
    ],
    derived=[Derived("recent_share", "ratio(payments_7d, payments_all)")])
VISIT_VIEW = FeatureView(  # distinct pages need the events: its source stays raw
    name="visit_pages", entity=CUSTOMER, source=VISITS, owner="risk@example.com",
    features=[Feature("visits_7d", agg="count", window=7),
              Feature("pages_30d", "page", "nunique", window=30)])
VIEWS = [PAYMENT_VIEW, VISIT_VIEW]
START = date(2026, 3, 1)
DAYS = 40


def payments(rng: np.random.Generator, days: list[date], n: int, first: int = 0) -> pd.DataFrame:
    """`n` payments of 50 customers on `days`, at microsecond times (some at midnight), some
    amounts missing, some repeated (ties in extremes)."""
    day = rng.choice(days, n)
    micros = rng.integers(0, 86_400 * 10**6, n)
    micros[rng.random(n) < 0.05] = 0
    ts = pd.to_datetime(day) + pd.to_timedelta(micros, unit="us")
    amount = rng.gamma(2.0, 40.0, n).round(2)
    amount[rng.random(n) < 0.1] = np.nan
    amount[rng.random(n) < 0.1] = 25.0
    refunded = ts + pd.to_timedelta(rng.integers(-5, 2, n), unit="D")
    return pd.DataFrame({
        "payment_id": np.arange(first, first + n),
        "customer_id": [f"K{i:03d}" for i in rng.zipf(1.5, n) % 50],
        "ts": ts.tz_localize("UTC"), "amount": amount,
        "method": rng.choice(["card", "bank", "wallet"], n, p=[.5, .3, .2]),
        "refunded_at": refunded.where(rng.random(n) < 0.3).tz_localize("UTC")})


def visits(rng: np.random.Generator, days: list[date], n: int) -> pd.DataFrame:
    day = rng.choice(days, n)
    ts = pd.to_datetime(day) + pd.to_timedelta(rng.integers(0, 86_400, n), unit="s")
    return pd.DataFrame({"customer_id": [f"K{i:03d}" for i in rng.integers(0, 50, n)],
                         "ts": ts.tz_localize("UTC"), "page": rng.choice(list("abcdefg"), n)})


def write_days(lake: LocalLake, dataset: str, frame: pd.DataFrame, run: str) -> None:
    """One object per day, as ingestion lands a run (a later run adds objects to a day)."""
    for day, rows in frame.groupby(frame["ts"].dt.strftime("%Y-%m-%d")):
        write_bucketed(lake, "main", clean_path(dataset, day, run), rows.reset_index(drop=True),
                       "customer_id", 2)


def build(lake: LocalLake, views: list[View], as_of: list[date], full: bool,
          partitions: int = 2, min_density: float = 0.0) -> tuple[str, list[PartitionResult]]:
    """A build on its own branch, published to main (so the next build sees its tiles); by
    default tiling every source, however few its events a day."""
    ref = lake.resolve("main")
    plan = plan_from_lake(views, lake, ref)
    branch = f"build-{len(lake.log('main', 1000))}"
    lake.create_branch(branch, "main")
    results = [materialize_partition(lake, ref, branch, plan, as_of, k, partitions, full=full,
                                     min_density=min_density) for k in range(partitions)]
    lake.commit(branch, "features")
    lake.merge(branch, "main", message=f"publish {branch}")
    return branch, results


def assert_same(lake: LocalLake, views: list[View], as_of: list[date], incremental: str,
                full: str) -> None:
    """Every feature equal: exactly where merging keeps the floats, else to `RTOL`."""
    for view in views:
        aggs = {f.name: f.agg for f in view.features}
        for day in as_of:
            merged, recomputed = (read_features(lake, ref, view, day) for ref in (incremental,
                                                                                  full))
            assert merged.columns.tolist() == recomputed.columns.tolist()
            assert merged[view.entity.key].tolist() == recomputed[view.entity.key].tolist()
            for name in view.feature_names:
                a, b = merged[name], recomputed[name]
                if a.dtype == object or aggs.get(name) in EXACT:
                    pd.testing.assert_series_equal(a, b, check_exact=True, obj=name)
                else:
                    np.testing.assert_allclose(a.to_numpy(float), b.to_numpy(float), rtol=RTOL,
                                               atol=1e-12, err_msg=f"{view.name}.{name} {day}")


def test_every_tiled_aggregation_is_covered() -> None:
    assert {f.agg for f in PAYMENT_VIEW.features} == TILED


@pytest.fixture
def event_log(tmp_path: Path) -> LocalLake:
    """Forty days of 3,000 payments (3.6 a customer and active day) and 1,500 visits."""
    return forty_days(tmp_path / "lake", 3000)


def forty_days(root: Path, count: int) -> LocalLake:
    lake = LocalLake(root)
    rng = np.random.default_rng(11)
    days = [START + timedelta(days=k) for k in range(DAYS)]
    write_days(lake, "payments", payments(rng, days, count), "a")
    write_days(lake, "visits", visits(rng, days, 1500), "a")
    lake.commit("main", "forty days")
    return lake


def test_incremental_equals_full_through_new_days_late_events_and_a_backfill(
        event_log: LocalLake) -> None:
    lake, rng = event_log, np.random.default_rng(12)
    end = START + timedelta(days=DAYS)
    first, results = build(lake, VIEWS, [end], full=False)  # no tiles yet: all raw, all written
    assert {(r.days_from_tiles, r.days_from_events) for r in results} == {(0, 2 * DAYS)}
    assert results[0].untiled == ("visit_pages.pages_30d: nunique needs the events",)
    assert len(lake.list("main", tile_prefix(PAYMENT_VIEW))) == 2 * DAYS  # a day, a partition
    assert not lake.list("main", tile_prefix(VISIT_VIEW))
    recomputed, _ = build(lake, VIEWS, [end], full=True)
    assert_same(lake, VIEWS, [end], first, recomputed)

    # the next day lands, with late events of an old day (another object in its dt=)
    write_days(lake, "payments", payments(rng, [end], 80, first=10_000), "b")
    late = payments(rng, [end - timedelta(days=5)], 30, first=20_000)
    write_days(lake, "payments", late, "late")
    write_days(lake, "visits", visits(rng, [end], 40), "b")
    lake.commit("main", "a new day and late events")
    dates = [end + timedelta(days=1)]
    incremental, results = build(lake, VIEWS, dates, full=False)
    # payments: the new day and the late one raw, the other 39 from tiles; visits all raw
    assert {(r.days_from_tiles, r.days_from_events) for r in results} == {
        (DAYS - 1, 2 + DAYS + 1)}
    recomputed, _ = build(lake, VIEWS, dates, full=True)
    assert_same(lake, VIEWS, dates, incremental, recomputed)

    # a backfill rewrites an old day: only its tile is recomputed, for every as-of date
    day = START + timedelta(days=3)
    path = clean_path("payments", f"{day:%Y-%m-%d}", "a")
    lake.delete("main", path)
    write_days(lake, "payments", payments(rng, [day], 60, first=30_000), "backfill")
    lake.commit("main", "backfill a day")
    dates = [end - timedelta(days=k) for k in (3, 2, 1, 0)] + [end + timedelta(days=1)]
    incremental, results = build(lake, VIEWS, dates, full=False)
    assert {r.days_from_tiles for r in results} == {DAYS}
    assert {r.days_from_events - (DAYS + 1) for r in results} == {1}
    recomputed, _ = build(lake, VIEWS, dates, full=True)
    assert_same(lake, VIEWS, dates, incremental, recomputed)
    # the rewritten day's old tile is gone: one tile per day and partition
    assert len(lake.list("main", tile_prefix(PAYMENT_VIEW))) == 2 * (DAYS + 1)


def test_the_churn_views_merged_from_tiles_equal_a_recompute(
        churn_lake: tuple[LocalLake, str]) -> None:
    lake, _ = churn_lake
    as_of = [date(2026, 8, 20)]
    build(lake, CHURN_VIEWS, as_of, full=False)  # writes the tiles
    later = [date(2026, 8, 21), date(2026, 9, 1)]
    incremental, results = build(lake, CHURN_VIEWS, later, full=False)
    assert min(r.days_from_tiles for r in results) > 0
    recomputed, _ = build(lake, CHURN_VIEWS, later, full=True)
    assert_same(lake, CHURN_VIEWS, later, incremental, recomputed)


def test_a_full_build_reads_no_tiles_and_writes_none(event_log: LocalLake) -> None:
    _, results = build(event_log, VIEWS, [START + timedelta(days=DAYS)], full=True)
    assert {(r.days_from_tiles, r.days_from_events) for r in results} == {(0, 2 * DAYS)}
    assert not event_log.list("main", "features/tiles/")


def test_an_entity_known_only_from_old_days_is_in_the_table(event_log: LocalLake) -> None:
    """A customer whose one payment is older than every window of the view still has a row
    (its counts 0), from a tile as from a recompute."""
    lake = event_log
    old = payments(np.random.default_rng(13), [START], 1, first=40_000).assign(
        customer_id="OLD")
    write_days(lake, "payments", old, "old")
    lake.commit("main", "a customer of the first day only")
    view = FeatureView(name="recent_payments", entity=CUSTOMER, source=PAYMENTS,
                       owner="risk@example.com",
                       features=[Feature("payments_7d", agg="count", window=7)])
    end = START + timedelta(days=DAYS)
    build(lake, [view], [end], full=False)
    incremental, results = build(lake, [view], [end + timedelta(days=1)], full=False)
    assert {r.days_from_tiles for r in results} == {DAYS}
    recomputed, _ = build(lake, [view], [end + timedelta(days=1)], full=True)
    assert_same(lake, [view], [end + timedelta(days=1)], incremental, recomputed)
    table = read_features(lake, incremental, view, end + timedelta(days=1))
    assert table.set_index("customer_id").loc["OLD", "payments_7d"] == 0


def test_a_source_of_too_few_events_a_day_gets_no_tiles(tmp_path: Path) -> None:
    """1.5 payments per customer and active day: a tile would stand for hardly more than one
    event, so the build reads the events, writes no tile and says why."""
    sparse = forty_days(tmp_path / "lake", 300)
    end = START + timedelta(days=DAYS)
    _, (result,) = build(sparse, VIEWS, [end], full=False, partitions=1,
                         min_density=MIN_DENSITY)
    assert (result.days_from_tiles, result.days_from_events) == (0, 2 * DAYS)
    (reason,) = [r for r in result.untiled if r.startswith("payments:")]
    assert reason.endswith(f"events per entity and day (tiles pay from {MIN_DENSITY:g})")
    assert float(reason.split()[1]) < MIN_DENSITY
    assert not sparse.list("main", "features/tiles/")



def test_tiles_serve_only_builds_of_their_partition_count(event_log: LocalLake) -> None:
    """A tile holds one entity partition's entities: a build of another count reads raw
    events, and says so through `tile_partitions`, which the build flow sizes by."""
    end = START + timedelta(days=DAYS)
    assert tile_partitions(event_log, "main", VIEWS) is None
    build(event_log, VIEWS, [end], full=False, partitions=2)
    assert tile_partitions(event_log, "main", VIEWS) == 2
    _, results = build(event_log, VIEWS, [end + timedelta(days=1)], full=False, partitions=3)
    assert {(r.days_from_tiles, r.days_from_events) for r in results} == {(0, 2 * DAYS)}
    assert tile_partitions(event_log, "main", VIEWS) == 3
    _, results = build(event_log, VIEWS, [end + timedelta(days=1)], full=False, partitions=3)
    assert {r.days_from_tiles for r in results} == {DAYS}
