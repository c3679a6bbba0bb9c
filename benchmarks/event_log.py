"""An ordinary event log, generated apart from the demo: a project directory a new user could
have written, with two Parquet exports and the contracts and features they would declare.

    python benchmarks/event_log.py DIR [--customers 2100000] [--seed 7]

Shape (the defaults): 2.1M customers with integer keys, 42.0M card transactions and 21.0M app
events over the 120 days before 2024-04-01, times to the **microsecond** (as most event logs
have them), small integer categories. Activity varies by customer (gamma-distributed rates), a
fifth of customers stop part-way (the churners), and about 0.4% never appear. Rows come in
customer-chunk order, not time order, as an export of a sharded table would.

The directory holds `data/transactions.parquet`, `data/app_events.parquet`, `tideline.yaml`,
`project.yaml` (file sources and contracts: types, not-null, a range), `features.yaml` (47
churn features in two views: windows of 7/30/90 days, statistics, quantiles, distinct counts,
active days, shares, trends, recency, ratios, a segment) and `model.yaml`. Generation runs
100,000 customers at a time, so its memory stays small at any size.
"""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

END = datetime(2024, 4, 1, tzinfo=UTC)
DAYS = 120
DAY_US = 86_400 * 10**6
START_US = int(END.timestamp() * 10**6) - DAYS * DAY_US
CHUNK = 100_000
SEED = 7
TRANSACTIONS_PER_CUSTOMER = 21.71  # 20 on average, after the churners stop
EVENTS_PER_CUSTOMER = 10.855
CATEGORIES, CHANNELS, EVENT_TYPES = 12, 3, 6

SCHEMAS = {
    "transactions": pa.schema([("transaction_id", pa.int64()), ("customer_id", pa.int64()),
                               ("ts", pa.timestamp("us", tz="UTC")),
                               ("amount", pa.float64()), ("category", pa.int16()),
                               ("channel", pa.int16())]),
    "app_events": pa.schema([("event_id", pa.int64()), ("customer_id", pa.int64()),
                             ("ts", pa.timestamp("us", tz="UTC")),
                             ("event_type", pa.int16()), ("duration_s", pa.float64())]),
}


@dataclass(frozen=True)
class EventLog:
    """A generated project: where it is and what it holds."""

    root: str
    customers: int
    seed: int
    rows: dict[str, int]
    bytes: dict[str, int]


def _times(rng: np.random.Generator, owners: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """A microsecond time for each row, uniform over its customer's active span."""
    return START_US + (rng.random(len(owners)) * stop[owners]).astype(np.int64)


def _chunk(rng: np.random.Generator, first: int, size: int, ids: dict[str, int]
           ) -> dict[str, pa.Table]:
    activity = rng.gamma(1.5, 1 / 1.5, size)  # mean 1, most customers quiet, some very busy
    absent = rng.random(size) < 0.004
    stop = np.where(rng.random(size) < 0.2, rng.uniform(0.3, 0.95, size), 1.0) * DAYS * DAY_US
    customer = np.arange(first, first + size, dtype=np.int64)
    tables = {}
    for name, mean in (("transactions", TRANSACTIONS_PER_CUSTOMER),
                       ("app_events", EVENTS_PER_CUSTOMER)):
        counts = np.where(absent, 0, rng.poisson(activity * mean * stop / (DAYS * DAY_US)))
        owners = np.repeat(np.arange(size), counts)
        n = len(owners)
        columns = {SCHEMAS[name].names[0]: np.arange(ids[name], ids[name] + n, dtype=np.int64),
                   "customer_id": customer[owners], "ts": _times(rng, owners, stop)}
        ids[name] += n
        if name == "transactions":
            taste = rng.integers(0, CATEGORIES, size)  # each customer's usual category
            usual = rng.random(n) < 0.6
            columns |= {
                "amount": np.round(rng.lognormal(3.2, 0.9, n) * (0.5 + activity[owners]), 2),
                "category": np.where(usual, taste[owners],
                                     rng.integers(0, CATEGORIES, n)).astype(np.int16),
                "channel": rng.choice(CHANNELS, n, p=[0.55, 0.35, 0.10]).astype(np.int16)}
        else:
            columns |= {
                "event_type": rng.choice(EVENT_TYPES, n,
                                         p=[0.3, 0.3, 0.15, 0.1, 0.1, 0.05]).astype(np.int16),
                "duration_s": np.round(rng.exponential(45.0, n), 3)}
        order = rng.permutation(n)  # an export's row order: not by time, not by customer
        tables[name] = pa.table({key: value[order] for key, value in columns.items()},
                                schema=SCHEMAS[name])
    return tables


def generate(root: Path, customers: int, seed: int = SEED) -> EventLog:
    """Write the project under `root` (data files replaced, config files rewritten)."""
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    ids = {name: 1 for name in SCHEMAS}
    writers = {name: pq.ParquetWriter(data / f"{name}.parquet", schema)
               for name, schema in SCHEMAS.items()}
    try:
        for chunk in range(math.ceil(customers / CHUNK)):
            rng = np.random.default_rng([seed, chunk])
            first = chunk * CHUNK + 1
            for name, table in _chunk(rng, first, min(CHUNK, customers - first + 1),
                                      ids).items():
                writers[name].write_table(table, row_group_size=1_000_000)
    finally:
        for writer in writers.values():
            writer.close()
    for name, text in PROJECT_FILES.items():
        (root / name).write_text(text)
    log = EventLog(root=str(root), customers=customers, seed=seed,
                   rows={name: count - 1 for name, count in ids.items()},
                   bytes={name: (data / f"{name}.parquet").stat().st_size for name in SCHEMAS})
    (root / "event_log.json").write_text(json.dumps(asdict(log), indent=2))
    return log


PROJECT_FILES = {
    "tideline.yaml": """\
# An event-log project: run `tideline ingest` then `tideline features build` from here.
settings:
  project_file: project.yaml
  feature_views: features.yaml
  model_spec: model.yaml
""",
    "project.yaml": """\
sources:
  - name: card-transactions
    kind: file
    dataset: transactions
    description: Card transactions export, one row per transaction.
    url: "data/transactions.parquet"
    format: parquet
    timestamp_column: ts
  - name: app-events
    kind: file
    dataset: app_events
    description: Mobile app events export, one row per event.
    url: "data/app_events.parquet"
    format: parquet
    timestamp_column: ts

contracts:
  - dataset: transactions
    key: [transaction_id]
    bucket_by: customer_id
    columns:
      - {name: transaction_id, type: int, nullable: false}
      - {name: customer_id, type: int, nullable: false}
      - {name: ts, type: timestamp, nullable: false}
      - {name: amount, type: float, nullable: false, min: 0}
      - {name: category, type: int, nullable: false}
      - {name: channel, type: int, nullable: false}
  - dataset: app_events
    key: [event_id]
    bucket_by: customer_id
    columns:
      - {name: event_id, type: int, nullable: false}
      - {name: customer_id, type: int, nullable: false}
      - {name: ts, type: timestamp, nullable: false}
      - {name: event_type, type: int, nullable: false}
      - {name: duration_s, type: float, nullable: false, min: 0}
""",
    "features.yaml": """\
entities:
  - {name: customer, key: customer_id}
sources:
  - {name: transactions, dataset: transactions, timestamp: ts}
  - {name: app_events, dataset: app_events, timestamp: ts}
views:
  - name: spending
    entity: customer
    source: transactions
    owner: payments-analytics@example.com
    description: How much, how often and on what each customer spends.
    features:
      - {name: txn_7d, agg: count, window: 7}
      - {name: txn_30d, agg: count, window: 30}
      - {name: txn_90d, agg: count, window: 90}
      - {name: spend_7d, column: amount, agg: sum, window: 7}
      - {name: spend_30d, column: amount, agg: sum, window: 30}
      - {name: spend_90d, column: amount, agg: sum, window: 90}
      - {name: avg_amount_30d, column: amount, agg: mean, window: 30}
      - {name: avg_amount_90d, column: amount, agg: mean, window: 90}
      - {name: max_amount_90d, column: amount, agg: max, window: 90}
      - {name: min_amount_90d, column: amount, agg: min, window: 90}
      - {name: std_amount_90d, column: amount, agg: std, window: 90}
      - {name: median_amount_90d, column: amount, agg: p50, window: 90}
      - {name: p95_amount_90d, column: amount, agg: p95, window: 90}
      - {name: categories_30d, column: category, agg: nunique, window: 30}
      - {name: categories_90d, column: category, agg: nunique, window: 90}
      - {name: channels_90d, column: channel, agg: nunique, window: 90}
      - {name: active_days_30d, column: day, agg: nunique, window: 30}
      - {name: active_days_90d, column: day, agg: nunique, window: 90}
      - {name: online_share_30d, agg: share, window: 30, filter: "channel == 1"}
      - {name: store_share_90d, agg: share, window: 90, filter: "channel == 2"}
      - {name: weekend_share_90d, agg: share, window: 90, filter: "weekday >= 5"}
      - {name: night_txn_30d, agg: count, window: 30, filter: "hour < 6"}
      - {name: days_since_last_txn, agg: days_since_last}
      - {name: days_since_first_txn, agg: days_since_first}
      - {name: spend_trend_90d, column: amount, agg: trend_slope, window: 90}
      - {name: txn_trend_30d, agg: trend_slope, window: 30}
    derived:
      - {name: spend_ratio_30_90, expression: "ratio(spend_30d, spend_90d)"}
      - {name: txn_pace_7_30, expression: "ratio(txn_7d * 30, txn_30d * 7)"}
      - {name: avg_ticket_7d, expression: "ratio(spend_7d, txn_7d)"}
      - name: spend_segment  # thresholds between cents: a sum's rounding cannot cross them
        cases:
          - ["spend_90d >= 1999.995", "high"]
          - ["spend_90d >= 499.995", "medium"]
          - ["txn_90d > 0", "low"]
        default: none
  - name: app_usage
    entity: customer
    source: app_events
    owner: product-analytics@example.com
    description: How each customer uses the app.
    features:
      - {name: events_7d, agg: count, window: 7}
      - {name: events_30d, agg: count, window: 30}
      - {name: events_90d, agg: count, window: 90}
      - {name: logins_7d, agg: count, window: 7, filter: "event_type == 0"}
      - {name: logins_30d, agg: count, window: 30, filter: "event_type == 0"}
      - {name: support_30d, agg: count, window: 30, filter: "event_type == 5"}
      - {name: event_types_30d, column: event_type, agg: nunique, window: 30}
      - {name: app_days_30d, column: day, agg: nunique, window: 30}
      - {name: time_in_app_30d, column: duration_s, agg: sum, window: 30}
      - {name: avg_duration_30d, column: duration_s, agg: mean, window: 30}
      - {name: p75_duration_90d, column: duration_s, agg: p75, window: 90}
      - {name: days_since_last_event, agg: days_since_last}
      - {name: events_trend_30d, agg: trend_slope, window: 30}
    derived:
      - {name: events_ratio_7_30, expression: "ratio(events_7d, events_30d)"}
      - {name: support_share_30d, expression: "ratio(support_30d, events_30d)"}
      - {name: login_weeks_signal, expression: "(logins_7d > 0) + (logins_30d > 4)"}
      - {name: app_minutes_per_day_30d, expression: "ratio(time_in_app_30d / 60, app_days_30d)"}
""",
    "model.yaml": """\
# Churn: no transaction in the 30 days after the as-of date, for customers active in the 30
# before.
name: card_churn
owner: payments-analytics@example.com
label: {activity: [transactions], entity_key: customer_id, horizon_days: 30, active_days: 30}
features: ["spending:*", "app_usage:*"]
as_of_dates: 4
""",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--customers", type=int, default=2_100_000)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    print(json.dumps(asdict(generate(args.root, args.customers, args.seed)), indent=2))


if __name__ == "__main__":
    main()
