"""Sketch aggregations against the exact ones on the feature engine: `approx_nunique` against
`nunique` and `approx_p50`/`approx_p95` against `p50`/`p95`, over 30- and 90-day windows.

    python benchmarks/approx_bench.py [--events 2000000] [--entities 200000] [--seed 7]

Data, generated in memory: events over 120 days, entities drawn with a Pareto skew (most have a
few events, a few have tens of thousands), a high-cardinality text column `merchant` (half the
events from 1,000 popular merchants, half from a quarter as many as there are events) and a
lognormal `amount`. One spine row per entity with events, as of the end of the data.

Each aggregation is timed by itself on a fresh `Events` (the source sorted once, not timed):
`cold` includes the per-column orders the aggregation builds once (value order, previous
occurrence, hash order), `warm` is a second as-of date a week earlier, which reuses them (what
every further date or window costs). Errors are per spine row against the exact aggregation:
the largest and the mean of |approx - exact| / |exact| over rows where exact is not 0 or null.
Every sketch value is checked against the exact one (`harness.agreement`, relative tolerance
`TOLERANCE`); the run exits 1 beyond it. Prints a table and writes
benchmarks/results/approx_bench.json (`--smoke`: benchmarks/out/approx_bench_smoke.json).
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
from harness import Timer, agreement, disagreements, results_path, verdict, write_results
from rich.console import Console
from rich.table import Table
from tideline.features.definitions import (
    DDSKETCH_ALPHA,
    HLL_PRECISION,
    Entity,
    Feature,
    FeatureView,
    Source,
)
from tideline.features.engine import Events, Spine, ViewComputation

END = pd.Timestamp("2026-10-01", tz="UTC")
DAYS = 120
TOLERANCE = {"approx_nunique": 5 * 1.04 / np.sqrt(2**HLL_PRECISION),
             "approx_p50": DDSKETCH_ALPHA * 1.001, "approx_p95": DDSKETCH_ALPHA * 1.001}
"""The relative error each sketch is allowed against the exact aggregation: five standard
errors of HyperLogLog++ at its precision (1.04 / sqrt(2^p)); DDSketch's relative accuracy."""
PAIRS = (("nunique", "approx_nunique", "merchant"), ("p50", "approx_p50", "amount"),
         ("p95", "approx_p95", "amount"))
WINDOWS = (30, 90)


def events_table(events: int, entities: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    activity = rng.pareto(1.2, entities) + 1  # most entities a few events, some thousands
    entity = rng.choice(entities, events, p=activity / activity.sum())
    merchants = max(events // 4, 1)
    merchant = np.where(rng.random(events) < 0.5, rng.integers(0, 1_000, events),
                        rng.integers(0, merchants, events))  # a popular head, a long tail
    seconds = rng.integers(0, DAYS * 86_400, events)
    return pa.table({
        "customer_id": pa.array(np.char.add("C", np.char.zfill(entity.astype(str), 7))),
        "ts": pa.array((END - pd.Timedelta(days=DAYS)).value + seconds * 10**9,
                       pa.timestamp("ns", tz="UTC")),
        "merchant": pa.array(np.char.add("m", merchant.astype(str))),
        "amount": rng.lognormal(3.5, 1.2, events).round(2),
    })


def timed(table: pa.Table, feature: Feature, keys: np.ndarray) -> tuple[np.ndarray, float,
                                                                           float]:
    view = FeatureView(name="bench", entity=Entity("customer", "customer_id"),
                       source=Source("txn", "transactions", "ts"), features=[feature],
                       owner="bench@example.com")
    events = Events.from_table(table, "customer_id", "ts")
    seconds = []
    for as_of in (END, END - pd.Timedelta(days=7)):
        spine = Spine.of(keys, [as_of] * len(keys))
        with Timer() as timer:
            values = ViewComputation(view, events, spine).compute(feature)
        seconds.append(timer.seconds)
        if as_of == END:
            result = values
    return result, seconds[0], seconds[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--entities", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--smoke", action="store_true", help="50,000 events, 5,000 entities")
    args = parser.parse_args()
    if args.smoke:
        args.events, args.entities = 50_000, 5_000
    console = Console(width=150)  # the whole table, also when piped
    table = events_table(args.events, args.entities, args.seed)
    keys = np.unique(table.column("customer_id").to_numpy(zero_copy_only=False))
    console.print(f"{args.events:,} events, {len(keys):,} entities with events, "
                  f"{len(np.unique(table.column('merchant').to_numpy(zero_copy_only=False))):,} "
                  "merchants")
    out = Table("window", "exact", "approx", "exact s cold", "approx s cold", "exact s warm",
                "approx s warm", "largest exact", "max rel. error", "mean rel. error")
    rows, checks = [], {}
    for window in WINDOWS:
        for exact_agg, approx_agg, column in PAIRS:
            exact, exact_cold, exact_warm = timed(
                table, Feature("x", column, exact_agg, window=window), keys)
            approx, approx_cold, approx_warm = timed(
                table, Feature("x", column, approx_agg, window=window), keys)
            exact, approx = exact.astype(float), approx.astype(float)
            name = f"{approx_agg}_{window}d"
            checks[name] = agreement(
                "exact", pd.DataFrame({"customer_id": keys, name: approx}),
                pd.DataFrame({"customer_id": keys, name: exact}), "customer_id",
                rtol=TOLERANCE[approx_agg], atol=0)
            compared = ~np.isnan(exact) & (exact != 0)
            error = np.abs(approx[compared] - exact[compared]) / np.abs(exact[compared])
            rows.append({"window": window, "exact": exact_agg, "approx": approx_agg,
                         "exact_seconds_cold": exact_cold, "approx_seconds_cold": approx_cold,
                         "exact_seconds_warm": exact_warm, "approx_seconds_warm": approx_warm,
                         "largest_exact": float(np.nanmax(exact)),
                         "max_relative_error": float(error.max()),
                         "mean_relative_error": float(error.mean())})
            out.add_row(f"{window}d", exact_agg, approx_agg, f"{exact_cold:.2f}",
                        f"{approx_cold:.2f}", f"{exact_warm:.2f}", f"{approx_warm:.2f}",
                        f"{np.nanmax(exact):,.6g}", f"{error.max():.4%}", f"{error.mean():.4%}")
    console.print(out)
    for line in disagreements(checks):
        console.print(f"[red]{line}[/red]")
    write_results(results_path("approx_bench", args.smoke), {
        "events": args.events, "entities": args.entities, "seed": args.seed, "smoke": args.smoke,
        "entities_with_events": len(keys), "rows": rows, "tolerance": TOLERANCE,
        "agreement": checks})
    return verdict(checks)


if __name__ == "__main__":
    sys.exit(main())
