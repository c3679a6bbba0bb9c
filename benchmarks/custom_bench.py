"""Custom views at scale: one pandas function computing distinct active days over 30 days and
a cross-source feature (the last week's mean basket times its app events of the rarest type,
standing for cancel-page visits), on the event log (`event_log.py`, 2.1M customers by default,
ingested once per size as `event_log_bench.py` does), three ways in the same run:

- **tideline**: the function as a custom view (`per="partition"`) through the build's path, one
  Ray task per entity partition running `materialize_partition` on the lake (read, windows,
  the function, its checks, the feature table written to a branch);
- **pandas**: a plain groupby per customer over the exported Parquet files, in one process;
- **modin**: the same function as a `per="table"` view, over the whole table's windows as
  Modin frames on Ray.

Each runs in a fresh interpreter, timed from outside, with its process tree's peak RSS. The
three must give the same values (active days exactly, the product within the harness's
tolerance); otherwise the run exits 1.

    python benchmarks/custom_bench.py [--customers 2100000] [--partitions N] [--smoke]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from event_log import SEED
from event_log_bench import SMOKE_CUSTOMERS, prepared
from harness import (
    Child,
    Timer,
    agreement,
    agreement_text,
    dispatch,
    results_path,
    verdict,
    write_results,
)
from rich.console import Console
from tideline.features.definitions import CustomView, Entity, Input, Source

AS_OF = date(2024, 4, 1)
WEEK = pd.Timedelta(days=7)
VISIT = 5
"""The app event type counted (5% of events)."""
FEATURES = ["active_days_30d", "basket_x_visits_7d"]
HERE = Path(__file__).parent
CUSTOMER = Entity("customer", key="customer_id")
INPUTS = (Input(Source("transactions", "transactions", "ts"), ["amount"]),
          Input(Source("app_events", "app_events", "ts"), ["event_type"]))


def engagement(transactions: pd.DataFrame, app_events: pd.DataFrame,
               spine: pd.DataFrame) -> pd.DataFrame:
    """Per spine row: distinct days with a transaction, and the last week's mean basket times
    its visits. Methods only, so that the same code runs on pandas and on Modin frames."""
    start = (spine["as_of"] - WEEK).rename("start")

    def last_week(frame: pd.DataFrame) -> pd.DataFrame:
        joined = frame.join(start)
        return joined[joined["ts"] >= joined["start"]]

    days = transactions["ts"].dt.floor("D").groupby(level="row").nunique()
    basket = last_week(transactions)["amount"].groupby(level="row").mean()
    events = last_week(app_events)
    visits = events[events["event_type"] == VISIT].groupby(level="row").size()
    out = (spine[[]].join(days.rename("days")).join(basket.rename("basket"))
           .join(visits.rename("visits")).fillna(0))
    return out.assign(active_days_30d=out["days"].astype("int64"),
                      basket_x_visits_7d=out["basket"] * out["visits"])[FEATURES]


def view(per: str) -> CustomView:
    return CustomView(name=f"engagement-{per}", entity=CUSTOMER, inputs=INPUTS,
                      function=engagement, per=per, lookback=30, features=FEATURES,
                      owner="bench@example.com")


def by_pandas(root: Path) -> pd.DataFrame:
    """The reference: a groupby per customer over the whole exported tables, for every
    customer with an event before the as-of time."""
    t = pd.Timestamp(AS_OF, tz="UTC")
    txn = pd.read_parquet(root / "data" / "transactions.parquet",
                          columns=["customer_id", "ts", "amount"])
    events = pd.read_parquet(root / "data" / "app_events.parquet",
                             columns=["customer_id", "ts", "event_type"])
    known = pd.Index(np.union1d(txn.loc[txn["ts"] < t, "customer_id"],
                                events.loc[events["ts"] < t, "customer_id"]), name="customer_id")
    month = txn[(txn["ts"] < t) & (txn["ts"] >= t - pd.Timedelta(days=30))]
    week = events[(events["ts"] < t) & (events["ts"] >= t - WEEK)]
    days = month.assign(day=month["ts"].dt.floor("D")).groupby("customer_id")["day"].nunique()
    basket = month[month["ts"] >= t - WEEK].groupby("customer_id")["amount"].mean()
    visits = week[week["event_type"] == VISIT].groupby("customer_id").size()
    out = pd.DataFrame(index=known).join(days.rename("days")).join(basket.rename("basket")) \
        .join(visits.rename("visits")).fillna(0)
    return pd.DataFrame({"active_days_30d": out["days"].astype("int64"),
                         "basket_x_visits_7d": out["basket"] * out["visits"]}).reset_index()


def by_tideline(root: Path, partitions: int | None) -> pd.DataFrame:
    """The build's path: a Ray task per entity partition, each `materialize_partition`."""
    import ray
    from tideline.core.ray_runtime import LOCAL_RAY, ray_cpus
    from tideline.core.settings import load_settings
    from tideline.features.materialize import materialize_partition, partition_count
    from tideline.features.offline import read_features
    from tideline.features.plan import measured, plan_from_lake
    from tideline.lake.local import LocalLake

    lake_dir = root / ".tideline" / "lake"
    lake = LocalLake(lake_dir)
    ref = lake.resolve("main")
    custom = view("partition")
    plan = plan_from_lake([custom], lake, ref)
    ray.init(**LOCAL_RAY)
    count = partitions or partition_count(measured(plan, lake, ref),
                                          load_settings().feature_memory_budget, ray_cpus())
    branch = f"custom-bench-{os.getpid()}"
    lake.create_branch(branch, "main")
    try:
        @ray.remote
        def partition(k: int) -> None:
            materialize_partition(LocalLake(lake_dir), ref, branch, plan, [AS_OF], k, count)

        ray.get([partition.remote(k) for k in range(count)])
        return read_features(lake, branch, custom, AS_OF)
    finally:
        lake.delete_branch(branch)


def by_modin(root: Path) -> pd.DataFrame:
    """The same function over the whole table's windows, as Modin frames on Ray."""
    import ray
    from tideline.core.ray_runtime import LOCAL_RAY
    from tideline.features.engine import Spine, compute_views
    from tideline.features.materialize import as_of_time, known_codes, load_events
    from tideline.features.plan import plan_from_lake
    from tideline.lake.local import LocalLake

    lake = LocalLake(root / ".tideline" / "lake")
    ref = lake.resolve("main")
    custom = view("table")
    events = load_events(lake, ref, plan_from_lake([custom], lake, ref))
    t = as_of_time(AS_OF)
    codes = known_codes(events, t)
    keys = next(iter(events.values())).keys.take(codes).to_numpy(zero_copy_only=False)
    ray.init(**LOCAL_RAY)
    spine = Spine(keys=keys, t=np.full(len(keys), t.value, dtype=np.int64), codes=codes)
    return compute_views([custom], events, spine, leading={"customer_id": keys})


def run_case(case: dict) -> dict:
    """One engine in this (fresh) process: its frame to `output`, its seconds inside."""
    root = Path(case["root"])
    with Timer() as timer:
        if case["engine"] == "pandas":
            frame = by_pandas(root)
        elif case["engine"] == "modin":
            frame = by_modin(root)
        else:
            frame = by_tideline(root, case.get("partitions"))
    frame.to_parquet(case["output"], index=False)
    return {"compute_seconds": timer.seconds, "rows": len(frame)}


def run_bench(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    customers = SMOKE_CUSTOMERS if args.smoke else args.customers
    work = Path(args.work_dir)
    project, _ = prepared(work, customers, SEED, console)
    results, frames = {}, {}
    for engine in ("tideline", "pandas", "modin"):
        output = work / "out" / f"custom-{customers}-{engine}.parquet"
        output.parent.mkdir(parents=True, exist_ok=True)
        # Ray's workers import the benchmark's function by reference, from this folder
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])])}
        with console.status(f"{engine} ({customers:,} customers)"), Timer() as timer:
            child = Child([sys.executable, __file__, "--case", json.dumps(
                {"engine": engine, "root": project.root, "output": str(output),
                 "partitions": args.partitions})], work / "logs" / f"custom-{engine}.log",
                env=env, name=f"custom_bench {engine}")
            inside = child.result()
        results[engine] = {**inside, "seconds": timer.seconds,
                           "peak_rss_bytes": child.memory.peak,
                           "peak_processes": child.memory.processes}
        frames[engine] = pd.read_parquet(output)
        console.log(f"{engine}: {timer.seconds:.1f} s ({inside['compute_seconds']:.1f} s "
                    f"inside), peak {child.memory.peak / 2**30:.2f} GiB, {inside['rows']:,} rows")
    checks = {name: agreement(name, frames["tideline"], frames[name], "customer_id", FEATURES)
              for name in ("pandas", "modin")}
    for check in checks.values():
        console.log(f"tideline vs {check['reference']}: {agreement_text(check)}")
    write_results(results_path("custom_bench", args.smoke), {
        "customers": customers, "seed": SEED, "smoke": args.smoke, "as_of": AS_OF.isoformat(),
        "features": FEATURES, "event_log": {"rows": project.rows},
        "timing": "every engine a fresh process timed from outside, start-up and reading "
                  "included; compute_seconds is the time inside",
        "cases": results, "agreement": checks})
    return verdict(checks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2_100_000)
    parser.add_argument("--partitions", type=int, help="tideline's partitions (default: sized "
                                                       "as a build sizes them)")
    parser.add_argument("--smoke", action="store_true",
                        help=f"{SMOKE_CUSTOMERS:,} customers, results to benchmarks/out/")
    parser.add_argument("--work-dir", default="/tmp/tideline-feature-bench")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    dispatch(parser.parse_args(), run_case, run_bench)


if __name__ == "__main__":
    main()
