"""Incremental feature builds from daily tiles against full recomputes, in the same run: the
next day's build with the earlier days' tiles present, and a backfill of consecutive daily
as-of dates against a full build per date (and one full build of every date); values
compared (rtol 1e-9).

    python benchmarks/tile_bench.py [--customers 2100000] [--days 90] [--rate 0.17]
                                    [--backfill 30] [--partitions 4] [--smoke]

The data: `--customers` customers with `--rate` card payments per customer and day (the event
log's 0.17 by default: 20 over 120 days) over `--days` days, microsecond times, one object per
day bucketed by customer, in a local lake. The view: 24 features every tile can hold (counts,
sums, means, std, extremes over 7, 30 and 90 days, a share, recency, a trend, an EMA, the last
amount). Tiles are written whatever the density (by default a build leaves a source of fewer
than `tideline.features.tiles.MIN_DENSITY` events per customer and day raw: this measures
why). Every build is a fresh process (`materialize_partition` over every partition in turn,
no Ray), timed and its process tree's peak RSS sampled from outside.

The floor: the least any build as of the next day does, however it gets its values (tiles, a
state carried from yesterday): write the feature table with the statistics monitoring keeps,
and commit. The full build over it is the most an incremental build could gain.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from harness import (
    Child,
    agreement,
    agreement_text,
    dispatch,
    peak_rss,
    results_path,
    verdict,
    write_results,
)
from tideline.features.definitions import Entity, Feature, FeatureView, Source
from tideline.features.materialize import materialize_partition
from tideline.features.offline import feature_path, read_features, write_features
from tideline.features.plan import plan_from_lake
from tideline.features.stats import summarise
from tideline.lake.buckets import bucket_count, clean_path, write_bucketed
from tideline.lake.local import LocalLake
from tideline.lake.tables import read_table

RTOL, ATOL = 1e-9, 1e-9
START = date(2024, 1, 1)
SEED = 5
CUSTOMER = Entity("customer", "customer_id")
PAYMENTS = Source("payments", "payments", "ts")
VIEW = FeatureView(
    name="payment_activity", entity=CUSTOMER, source=PAYMENTS, owner="bench@example.com",
    features=[
        *[Feature(f"payments_{w}d", agg="count", window=w) for w in (7, 30, 90)],
        *[Feature(f"spend_{w}d", "amount", "sum", window=w) for w in (7, 30, 90)],
        *[Feature(f"spend_mean_{w}d", "amount", "mean", window=w) for w in (30, 90)],
        *[Feature(f"spend_std_{w}d", "amount", "std", window=w) for w in (30, 90)],
        *[Feature(f"spend_{agg}_90d", "amount", agg, window=90) for agg in ("min", "max")],
        Feature("app_share_30d", agg="share", window=30, filter="channel == 1"),
        Feature("app_spend_30d", "amount", "sum", window=30, filter="channel == 1"),
        Feature("days_since_last_payment", agg="days_since_last"),
        Feature("spend_trend_30d", "amount", "trend_slope", window=30),
        Feature("payments_ema_30d", agg="ema_7d", window=30),
        Feature("last_amount_90d", "amount", "last", window=90),
        Feature("spend_daily_30d", "amount", "daily_mean", window=30),
        Feature("spend_var_90d", "amount", "var", window=90),
        Feature("spend_range_30d", "amount", "range", window=30),
        Feature("payments_trend_30d", agg="trend_slope", window=30),
        Feature("spend_cv_90d", "amount", "cv", window=90),
        Feature("days_since_first_payment", agg="days_since_first"),
    ])


def write_day(lake: LocalLake, day: date, customers: int, rate: float, seed: int) -> int:
    """One day of payments, as ingestion lands it; the rows written."""
    rng = np.random.default_rng([seed, day.toordinal()])
    n = rng.poisson(customers * rate)
    midnight = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 10**6)
    table = pa.table({
        "customer_id": rng.integers(0, customers, n),
        "ts": pa.array(midnight + rng.integers(0, 86_400 * 10**6, n),
                       pa.timestamp("us", tz="UTC")),
        "amount": rng.gamma(2.0, 30.0, n).round(2),
        "channel": rng.integers(0, 3, n).astype(np.int16)})
    write_bucketed(lake, "main", clean_path("payments", f"{day:%Y-%m-%d}", "bench"), table,
                   "customer_id", bucket_count(n))
    return n


def run_case(case: dict) -> dict:
    """One build in this process: `as_of` dates on branch `branch`, from tiles or `full`,
    published to main when `publish` (its tiles then serve later builds); or the floor of
    one, when `floor_of` names a build's branch."""
    lake = LocalLake(case["lake"])
    if case.get("floor_of"):
        return floor_case(lake, case)
    ref = lake.resolve("main")
    dates = [date.fromisoformat(day) for day in case["as_of"]]
    started = time.perf_counter()
    plan = plan_from_lake([VIEW], lake, ref)
    lake.create_branch(case["branch"], "main")
    results = [materialize_partition(lake, ref, case["branch"], plan, dates, k,
                                     case["partitions"], full=case["full"], min_density=0.0)
               for k in range(case["partitions"])]
    lake.commit(case["branch"], "features")
    if case.get("publish"):
        lake.merge(case["branch"], "main", message=f"publish {case['branch']}")
    return {"seconds": time.perf_counter() - started, "driver_peak_rss_bytes": peak_rss(),
            "days_from_tiles": max(r.days_from_tiles for r in results),
            "days_from_events": max(r.days_from_events for r in results),
            "rows": sum(r.rows for r in results),
            "timings": {name: round(sum(r.timings.get(name, 0.0) for r in results), 2)
                        for name in results[0].timings}}


def floor_case(lake: LocalLake, case: dict) -> dict:
    """Write the feature table of `floor_of`'s build again (read before the clock starts) on
    `branch`, every partition with its statistics, and commit."""
    day, count = date.fromisoformat(case["as_of"][0]), case["partitions"]
    parts = [read_table(lake, case["floor_of"], feature_path(VIEW, day, k, count)).to_pandas()
             for k in range(count)]
    lake.create_branch(case["branch"], "main")
    statistics = 0.0
    started = time.perf_counter()
    for k, frame in enumerate(parts):
        write_features(lake, case["branch"], VIEW, day, k, count, frame)
        begun = time.perf_counter()
        summarise(frame, VIEW.feature_names)
        statistics += time.perf_counter() - begun
    lake.commit(case["branch"], "features")
    return {"seconds": time.perf_counter() - started, "driver_peak_rss_bytes": peak_rss(),
            "rows": sum(len(frame) for frame in parts),
            "timings": {"statistics": round(statistics, 2)}}


def measure(work: Path, name: str, **case: object) -> dict:
    load = os.getloadavg()[0]
    child = Child.case(__file__, {**case, "branch": name}, work / "logs" / f"{name}.log")
    result = {**child.measured(), "load_average_before": load}
    days = (f", days from tiles {result['days_from_tiles']}, from events "
            f"{result['days_from_events']}" if "days_from_tiles" in result else "")
    print(f"{name}: {result['seconds']:.1f} s, peak {result['tree_peak_rss_bytes'] / 2**30:.2f}"
          f" GiB{days}", file=sys.stderr)
    return result


def compare(lake: LocalLake, incremental: str, full: list[str], dates: list[date]) -> dict:
    """The incremental build's tables (one branch) against the full builds' (a branch per
    as-of date, in order), every customer at every date."""
    def rows(refs: list[str]) -> pd.DataFrame:
        frame = pd.concat([read_features(lake, ref, VIEW, day).assign(as_of=f"{day}")
                           for ref, day in zip(refs, dates, strict=True)], ignore_index=True)
        frame["row"] = frame.pop("customer_id").astype(str) + "@" + frame.pop("as_of")
        return frame

    return agreement("full build", rows([incremental] * len(dates)), rows(full), key="row",
                     rtol=RTOL, atol=ATOL)


def run_bench(args: argparse.Namespace) -> int:
    if args.smoke:
        args.customers, args.days, args.backfill, args.partitions = 2_000, 40, 5, 2
    work = Path(args.work_dir)
    root = work / f"lake-{args.customers}-{args.days}-{args.rate}"
    if root.exists():
        import shutil

        shutil.rmtree(root)
    lake = LocalLake(root)
    first = START
    end = first + timedelta(days=args.days)  # the seed build's as-of: `days` days before it
    rows = sum(write_day(lake, first + timedelta(days=k), args.customers, args.rate, SEED)
               for k in range(args.days))
    lake.commit("main", f"{args.days} days of payments")
    common = {"lake": str(root), "partitions": args.partitions}
    cases = {"seed": measure(work, "seed", as_of=[f"{end}"], full=False, publish=True,
                             **common)}
    rows += write_day(lake, end, args.customers, args.rate, SEED)  # the next day lands
    lake.commit("main", "the next day")
    nxt = [f"{end + timedelta(days=1)}"]
    cases["next_day_incremental"] = measure(work, "next_day_incremental", as_of=nxt,
                                            full=False, **common)
    cases["next_day_full"] = measure(work, "next_day_full", as_of=nxt, full=True, **common)
    cases["next_day_floor"] = measure(work, "next_day_floor", as_of=nxt,
                                      floor_of="next_day_full", **common)
    statistics = cases["next_day_floor"]["timings"]["statistics"]  # in both builds alike
    checks = {"next_day": compare(lake, "next_day_incremental", ["next_day_full"],
                                  [end + timedelta(days=1)])}
    summary = {"next_day_speedup": cases["next_day_full"]["seconds"]
               / cases["next_day_incremental"]["seconds"],
               "next_day_ceiling": cases["next_day_full"]["seconds"]
               / cases["next_day_floor"]["seconds"],
               "next_day_ceiling_without_statistics": (
                   cases["next_day_full"]["seconds"] - statistics)
               / (cases["next_day_floor"]["seconds"] - statistics),
               "next_day_rss_ratio": cases["next_day_incremental"]["tree_peak_rss_bytes"]
               / cases["next_day_full"]["tree_peak_rss_bytes"]}
    if args.backfill:
        backfill = [end + timedelta(days=1 - k) for k in range(args.backfill)][::-1]
        cases["backfill_incremental"] = measure(work, "backfill_incremental",
                                                as_of=[f"{d}" for d in backfill], full=False,
                                                **common)
        fulls = [measure(work, f"backfill_full_{d}", as_of=[f"{d}"], full=True, **common)
                 for d in backfill]
        cases["backfill_full_one_build"] = measure(work, "backfill_full_one_build",
                                                   as_of=[f"{d}" for d in backfill], full=True,
                                                   **common)
        cases["backfill_full_each"] = {
            "seconds": sum(c["seconds"] for c in fulls),
            "tree_peak_rss_bytes": max(c["tree_peak_rss_bytes"] for c in fulls),
            "builds": fulls}
        checks["backfill"] = compare(lake, "backfill_incremental",
                                     [f"backfill_full_{d}" for d in backfill], backfill)
        summary["backfill_speedup"] = (cases["backfill_full_each"]["seconds"]
                                       / cases["backfill_incremental"]["seconds"])
        summary["backfill_speedup_over_one_full_build"] = (
            cases["backfill_full_one_build"]["seconds"]
            / cases["backfill_incremental"]["seconds"])
    for name, check in checks.items():
        print(f"{name}: {agreement_text(check)}")
    print(json.dumps(summary, indent=1))
    write_results(results_path(args.name, args.smoke), {
        "smoke": args.smoke, "customers": args.customers, "days": args.days, "rate": args.rate,
        "source_rows": rows, "partitions": args.partitions, "backfill": args.backfill,
        "features": len(VIEW.features), "cores": os.cpu_count(),
        "timing": "every build a fresh process timed from inside (planning, reads, tiles, "
                  "merge, writes and the commit); peak RSS of its process tree",
        "cases": cases, "agreement": checks, "summary": summary})
    return verdict(checks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2_100_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--rate", type=float, default=0.17,
                        help="payments per customer and day")
    parser.add_argument("--backfill", type=int, default=30,
                        help="consecutive as-of dates (0: none)")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--name", default="tile_bench",
                        help="results/<name>.json (runs of other sizes side by side)")
    parser.add_argument("--work-dir", default="/tmp/tideline-tile-bench")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    dispatch(parser.parse_args(), run_case, run_bench)


if __name__ == "__main__":
    main()
