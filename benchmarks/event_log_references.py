"""The 47 churn features of the event-log project (`event_log.py`'s `features.yaml`) as of one
date, written by hand in polars (lazy) and DuckDB SQL over the two Parquet exports, as a user
would write them without tideline. They share no code with tideline's engine.

Semantics, from the definitions' wording: a w-day window at as-of time t (midnight UTC) holds
the events with time in [t - w days, t); a customer is in the output when they have an event
before t in either export. Sample standard deviation, linear quantiles; a trend is the
least-squares line through the window's daily totals (day 0 the oldest, empty days 0). Counts,
sums, distinct counts and slopes of a customer without events in the window are 0, other
statistics null; a ratio with a zero denominator is null. Weekday and hour are the UTC
timestamp's (Monday 0), a day is the UTC calendar day.
"""
from __future__ import annotations

from datetime import UTC, date, datetime

import duckdb
import numpy as np
import pandas as pd
import polars as pl

ZERO_WHEN_EMPTY = [
    "txn_7d", "txn_30d", "txn_90d", "spend_7d", "spend_30d", "spend_90d", "categories_30d",
    "categories_90d", "channels_90d", "active_days_30d", "active_days_90d", "night_txn_30d",
    "spend_trend_90d", "txn_trend_30d", "events_7d", "events_30d", "events_90d", "logins_7d",
    "logins_30d", "support_30d", "event_types_30d", "app_days_30d", "time_in_app_30d",
    "events_trend_30d"]
COUNTS = [name for name in ZERO_WHEN_EMPTY
          if not name.startswith(("spend_", "time_")) and "trend" not in name]
DAY_US = 86_400 * 10**6


def _midnight(as_of: date) -> datetime:
    return datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC)


def slope(window: int, sy, sxy):  # noqa: ANN001, ANN201 (polars expressions or numbers)
    """The least-squares slope through daily totals y at x = 0 (oldest) .. w - 1, from Σy and
    Σxy (empty days add nothing to them)."""
    sx, sxx = window * (window - 1) / 2, (window - 1) * window * (2 * window - 1) / 6
    return (window * sxy - sx * sy) / (window * sxx - sx**2)


def add_derived(frame: pd.DataFrame) -> pd.DataFrame:
    """The 8 derived features (the same for both references: they cost nothing next to the
    windowed ones)."""

    def ratio(a: pd.Series, b: pd.Series) -> pd.Series:
        return (a / b).where(b != 0)

    spend = frame["spend_90d"]
    return frame.assign(
        spend_ratio_30_90=ratio(frame["spend_30d"], spend),
        txn_pace_7_30=ratio(frame["txn_7d"] * 30, frame["txn_30d"] * 7),
        avg_ticket_7d=ratio(frame["spend_7d"], frame["txn_7d"]),
        spend_segment=np.select([spend >= 1999.995, spend >= 499.995, frame["txn_90d"] > 0],
                                ["high", "medium", "low"], "none"),
        events_ratio_7_30=ratio(frame["events_7d"], frame["events_30d"]),
        support_share_30d=ratio(frame["support_30d"], frame["events_30d"]),
        login_weeks_signal=((frame["logins_7d"] > 0).astype(int)
                            + (frame["logins_30d"] > 4).astype(int)),
        app_minutes_per_day_30d=ratio(frame["time_in_app_30d"] / 60, frame["app_days_30d"]),
    )


def _finish(frame: pd.DataFrame) -> pd.DataFrame:
    frame[ZERO_WHEN_EMPTY] = frame[ZERO_WHEN_EMPTY].fillna(0)
    return add_derived(frame.astype({name: np.int64 for name in COUNTS}))


# -- polars (lazy) -------------------------------------------------------------------------


def polars_features(files: dict[str, str], as_of: date) -> pd.DataFrame:
    """Per export, read once and sorted by customer; then one group-by over the whole history
    whose aggregations take each window's rows by a condition on the row's age in days
    (recency and the population come from the same group-by), and one over the 90-day
    lookback for the exact quantiles.

    Why this shape: every aggregation of the first group-by is one the streaming engine runs
    natively (in parallel); `quantile` is not, and a group-by holding one falls back to the
    in-memory engine as a whole, so the quantiles get a narrow group-by of their own. With
    2M customers the per-customer states of a group-by outgrow the CPU caches; rows sorted by
    customer update them in order, and the in-memory group-by takes sorted keys as slices.
    (Sorting inside the lazy plan does not do it: the optimiser drops a sort before an
    unordered group-by, and an ordered one runs as a slower sorted group-by.)"""
    t = _midnight(as_of)
    t_us = int(t.timestamp()) * 10**6
    us = pl.col("ts").dt.epoch("us")  # day, weekday and hour (UTC) by integer arithmetic

    def scan(dataset: str) -> pl.LazyFrame:
        return (pl.scan_parquet(files[dataset]).filter(pl.col("ts") < t)
                .with_columns(age=(t_us - 1 - us) // DAY_US)  # whole days before t: 0 the last
                .sort("customer_id").collect(engine="in-memory").lazy())

    def within(days: int) -> pl.Expr:
        return pl.col("age") < days

    def windowed(days: int, value: pl.Expr) -> pl.Expr:
        """`value` on the window's rows, null elsewhere (aggregations skip nulls)."""
        return pl.when(within(days)).then(value)

    def distinct_days(days: int) -> pl.Expr:
        """Distinct days in the window: `n_unique` counts the nulls outside it as one."""
        return windowed(days, pl.col("age")).n_unique() - (~within(days)).any().cast(pl.UInt32)

    def distinct_codes(days: int, code: pl.Expr) -> pl.Expr:
        """Distinct small codes (0 <= code < 63) in the window, as the set bits of the OR of
        2**code: cheaper than `n_unique` on these Int16 columns."""
        return (pl.when(within(days)).then(pl.lit(2, pl.Int64).pow(code)).otherwise(0)
                .bitwise_or().bitwise_count_ones())

    def trend(days: int, y: pl.Expr) -> pl.Expr:
        """Σy and Σxy over the daily totals are sums over the rows (x = days - 1 - age)."""
        return slope(days, windowed(days, y).sum(),
                     windowed(days, (days - 1 - pl.col("age")) * y).sum())

    def days_before(stamp_us: pl.Expr) -> pl.Expr:
        return (t_us - stamp_us) / 86_400e6

    amount, one = pl.col("amount"), pl.lit(1.0)
    duration, event_type = pl.col("duration_s"), pl.col("event_type")
    tx, ev = scan("transactions"), scan("app_events")
    spending = tx.group_by("customer_id").agg(
        days_before(us.max()).alias("days_since_last_txn"),
        days_before(us.min()).alias("days_since_first_txn"),
        *(within(w).sum().alias(f"txn_{w}d") for w in (7, 30, 90)),
        *(windowed(w, amount).sum().alias(f"spend_{w}d") for w in (7, 30, 90)),
        avg_amount_30d=windowed(30, amount).mean(), avg_amount_90d=windowed(90, amount).mean(),
        max_amount_90d=windowed(90, amount).max(), min_amount_90d=windowed(90, amount).min(),
        std_amount_90d=windowed(90, amount).std(),
        categories_30d=distinct_codes(30, pl.col("category")),
        categories_90d=distinct_codes(90, pl.col("category")),
        channels_90d=distinct_codes(90, pl.col("channel")),
        active_days_30d=distinct_days(30),
        active_days_90d=distinct_days(90),
        online_share_30d=windowed(30, pl.col("channel") == 1).mean(),
        store_share_90d=windowed(90, pl.col("channel") == 2).mean(),
        weekend_share_90d=windowed(90, (us // DAY_US + 3) % 7 >= 5).mean(),  # 1970-01-01: Thu
        night_txn_30d=(within(30) & (us % DAY_US < 6 * 3_600 * 10**6)).sum(),
        spend_trend_90d=trend(90, amount),
        txn_trend_30d=trend(30, one),
    ).join(tx.filter(within(90)).group_by("customer_id").agg(
        median_amount_90d=amount.quantile(0.5, "linear"),
        p95_amount_90d=amount.quantile(0.95, "linear")), on="customer_id", how="left")
    usage = ev.group_by("customer_id").agg(
        days_before(us.max()).alias("days_since_last_event"),
        *(within(w).sum().alias(f"events_{w}d") for w in (7, 30, 90)),
        logins_7d=(within(7) & (event_type == 0)).sum(),
        logins_30d=(within(30) & (event_type == 0)).sum(),
        support_30d=(within(30) & (event_type == 5)).sum(),
        event_types_30d=distinct_codes(30, event_type),
        app_days_30d=distinct_days(30),
        time_in_app_30d=windowed(30, duration).sum(),
        avg_duration_30d=windowed(30, duration).mean(),
        events_trend_30d=trend(30, one),
    ).join(ev.filter(within(90)).group_by("customer_id").agg(
        p75_duration_90d=duration.quantile(0.75, "linear")), on="customer_id", how="left")
    recency = ["days_since_last_txn", "days_since_first_txn", "days_since_last_event"]
    frame = (spending.join(usage, on="customer_id", how="full", coalesce=True)
             .select("customer_id", *recency, pl.exclude("customer_id", *recency))
             .sort("customer_id").collect(engine="streaming"))
    return _finish(frame.to_pandas())


# -- DuckDB SQL ----------------------------------------------------------------------------

DUCKDB_QUERY = """
CREATE MACRO slope(w, sy, sxy) AS
    (w * sxy - w * (w - 1) / 2 * sy) / (w * (w - 1) * w * (2 * w - 1) / 6 - (w * (w - 1) / 2) ** 2);
CREATE MACRO days_before(stamp) AS (epoch_us(TIMESTAMPTZ '{t}') - epoch_us(stamp)) / 86400e6;

CREATE TEMP TABLE features AS
WITH
tx AS (SELECT *, DATE '{day}' - CAST(ts AS DATE) - 1 AS age
       FROM read_parquet('{transactions}') WHERE ts < TIMESTAMPTZ '{t}'),
tx_daily AS (SELECT customer_id, age, sum(amount) AS amount, count(*) AS n
             FROM tx WHERE age < 90 GROUP BY ALL),
tx_trend AS (
    SELECT customer_id, slope(90, sum(amount), sum((89 - age) * amount)) AS spend_trend_90d,
        slope(30, sum(n) FILTER (age < 30), sum((29 - age) * n) FILTER (age < 30))
            AS txn_trend_30d
    FROM tx_daily GROUP BY ALL),
spending AS (
    SELECT customer_id,
        count(*) FILTER (age < 7) AS txn_7d,
        count(*) FILTER (age < 30) AS txn_30d,
        count(*) FILTER (age < 90) AS txn_90d,
        sum(amount) FILTER (age < 7) AS spend_7d,
        sum(amount) FILTER (age < 30) AS spend_30d,
        sum(amount) FILTER (age < 90) AS spend_90d,
        avg(amount) FILTER (age < 30) AS avg_amount_30d,
        avg(amount) FILTER (age < 90) AS avg_amount_90d,
        max(amount) FILTER (age < 90) AS max_amount_90d,
        min(amount) FILTER (age < 90) AS min_amount_90d,
        stddev_samp(amount) FILTER (age < 90) AS std_amount_90d,
        quantile_cont(amount, [0.5, 0.95]) FILTER (age < 90) AS quantiles_90d,
        count(DISTINCT category) FILTER (age < 30) AS categories_30d,
        count(DISTINCT category) FILTER (age < 90) AS categories_90d,
        count(DISTINCT channel) FILTER (age < 90) AS channels_90d,
        count(DISTINCT age) FILTER (age < 30) AS active_days_30d,
        count(DISTINCT age) FILTER (age < 90) AS active_days_90d,
        avg((channel = 1)::DOUBLE) FILTER (age < 30) AS online_share_30d,
        avg((channel = 2)::DOUBLE) FILTER (age < 90) AS store_share_90d,
        avg((isodow(ts) >= 6)::DOUBLE) FILTER (age < 90) AS weekend_share_90d,
        count(*) FILTER (age < 30 AND hour(ts) < 6) AS night_txn_30d,
        days_before(max(ts)) AS days_since_last_txn,
        days_before(min(ts)) AS days_since_first_txn
    FROM tx GROUP BY customer_id),
ev AS (SELECT *, DATE '{day}' - CAST(ts AS DATE) - 1 AS age
       FROM read_parquet('{app_events}') WHERE ts < TIMESTAMPTZ '{t}'),
ev_trend AS (
    SELECT customer_id, slope(30, sum(n), sum((29 - age) * n)) AS events_trend_30d
    FROM (SELECT customer_id, age, count(*) AS n FROM ev WHERE age < 30 GROUP BY ALL)
    GROUP BY ALL),
usage AS (
    SELECT customer_id,
        count(*) FILTER (age < 7) AS events_7d,
        count(*) FILTER (age < 30) AS events_30d,
        count(*) FILTER (age < 90) AS events_90d,
        count(*) FILTER (age < 7 AND event_type = 0) AS logins_7d,
        count(*) FILTER (age < 30 AND event_type = 0) AS logins_30d,
        count(*) FILTER (age < 30 AND event_type = 5) AS support_30d,
        count(DISTINCT event_type) FILTER (age < 30) AS event_types_30d,
        count(DISTINCT age) FILTER (age < 30) AS app_days_30d,
        sum(duration_s) FILTER (age < 30) AS time_in_app_30d,
        avg(duration_s) FILTER (age < 30) AS avg_duration_30d,
        quantile_cont(duration_s, 0.75) FILTER (age < 90) AS p75_duration_90d,
        days_before(max(ts)) AS days_since_last_event
    FROM ev GROUP BY customer_id),
population AS (SELECT customer_id FROM tx UNION SELECT customer_id FROM ev)
SELECT customer_id, spending.* EXCLUDE (customer_id, quantiles_90d),
    quantiles_90d[1] AS median_amount_90d, quantiles_90d[2] AS p95_amount_90d,
    tx_trend.* EXCLUDE (customer_id), usage.* EXCLUDE (customer_id),
    ev_trend.* EXCLUDE (customer_id)
FROM population
LEFT JOIN spending USING (customer_id) LEFT JOIN tx_trend USING (customer_id)
LEFT JOIN usage USING (customer_id) LEFT JOIN ev_trend USING (customer_id)
ORDER BY customer_id;
"""


def duckdb_features(files: dict[str, str], as_of: date) -> pd.DataFrame:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    con.execute(DUCKDB_QUERY.format(t=_midnight(as_of).isoformat(), day=as_of.isoformat(),
                                    **files))
    return _finish(con.sql("SELECT * FROM features").df())


REFERENCES = {"polars": polars_features, "duckdb": duckdb_features}
