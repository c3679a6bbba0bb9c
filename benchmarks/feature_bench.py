"""Feature engine throughput: the churn feature set (`tideline.demo.views`: 48 windowed and 9
derived features) computed by tideline on Ray, against the same features hand-written in DuckDB
SQL, polars (lazy) and plain pandas groupby, and Featuretools DFS on a slice.

    python benchmarks/feature_bench.py [--customers 2100000] [--work-dir DIR]
        [--scale-customers 500000 1000000] [--slice-customers 50000] [--slice-partitions 2]
        [--partitions 8]
    python benchmarks/feature_bench.py --data event-log [--customers 2100000] [--calibrate N...]

The second form is the product's path on an ordinary event log (microsecond times): see
`event_log_bench.py`. The rest of this text is about the first, the demo's tables.

Data: the demo generator without defects over 2026-06-01..09-30, generated 50,000 customers at a
time and written to a local lake as the typed clean tables ingestion publishes (one Parquet
object per dataset and day, in hash buckets of the customer id: `tideline.lake.buckets`),
committed on main. Lakes are cached under the work dir, keyed by
the spec, so re-runs skip generation; the smaller ones (scaling points, the Featuretools slice)
hold the first customers of the same sequence.

tideline runs `materialize_partition` (the function the Prefect task wraps) as one Ray task per
hash partition, writing to a branch that is then committed, as of 2026-10-01 and for four weekly
dates; timed from submitting the tasks to the commit (Ray's start-up is reported apart). Each
reference reads the same Parquet objects from the lake's object store and computes the 57
features as of 2026-10-01; its output must equal tideline's (read back with `read_features`) to
rtol 1e-6. Featuretools runs deep feature synthesis with the nearest primitives over 30- and
90-day training windows, and is compared on the features that have a twin in the churn set.

Every measurement runs in a fresh interpreter while this process samples the RSS of its process
tree (the driver and, for tideline, Ray's GCS, raylet and workers) every 0.2 s; peak memory is
the largest sum. Summed RSS counts a page shared by several processes once per process, so for
Ray it is an upper bound. Prints a table and writes benchmarks/out/feature_bench.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import re
import shutil
import sys
from dataclasses import asdict, dataclass, replace
from datetime import date
from pathlib import Path

import event_log_bench
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import ray
from feature_references import FEATURETOOLS_TWINS, REFERENCES, Files
from harness import (
    ATOL,
    RTOL,
    Child,
    Timer,
    agreement_text,
    disagreements,
    results_path,
    tree_rss,
    verdict,
    write_results,
)
from harness import agreement as agreement_of
from rich.console import Console
from rich.table import Table
from tideline.demo.generator import DemoSpec, generate
from tideline.demo.views import CHURN_VIEWS
from tideline.features.materialize import materialize_partition
from tideline.features.offline import read_features
from tideline.features.plan import plan_from_lake
from tideline.lake.buckets import clean_path, write_bucketed
from tideline.lake.local import LocalLake

AS_OF = date(2026, 10, 1)
WEEKLY = (date(2026, 9, 10), date(2026, 9, 17), date(2026, 9, 24), AS_OF)
MEMORY_TARGET = 8 * 2**30
PUBLISHED = {"seconds": 2.8, "features": 47, "customers": 2_100_000,
             "engine": "a distributed SQL engine"}
FEATURES = [name for view in CHURN_VIEWS for name in view.feature_names]

CHUNK_CUSTOMERS = 50_000
"""Customers generated at a time (bounds the generator's memory); a lake of n customers is the
first chunks of the same sequence, so the smaller lakes are slices of the larger ones."""
DATA_VERSION = 4
"""Bump when the prepared lake's layout or types change, to invalidate cached lakes."""

TIMESTAMP = pa.timestamp("ns", tz="UTC")
SCHEMAS = {
    "transactions": pa.schema([("transaction_id", pa.int64()), ("customer_id", pa.string()),
                               ("ts", TIMESTAMP), ("amount", pa.float64()),
                               ("category", pa.string()), ("channel", pa.string()),
                               ("updated_at", TIMESTAMP)]),
    "events": pa.schema([("event_id", pa.string()), ("customer_id", pa.string()),
                         ("ts", TIMESTAMP), ("event_type", pa.string()),
                         ("session_id", pa.string()), ("duration_s", pa.float64())]),
    "tickets": pa.schema([("ticket_id", pa.int64()), ("customer_id", pa.string()),
                          ("created_at", TIMESTAMP), ("topic", pa.string()),
                          ("priority", pa.string()), ("resolution_hours", pa.float64()),
                          ("updated_at", TIMESTAMP)]),
    "customers": pa.schema([("customer_id", pa.string()), ("email", pa.string()),
                            ("country", pa.string()), ("plan", pa.string()),
                            ("signup_date", pa.date32()), ("monthly_fee", pa.float64()),
                            ("updated_at", TIMESTAMP)]),
}
DAY_COLUMN = {"transactions": "ts", "events": "ts", "tickets": "created_at",
              "customers": "updated_at"}
"""The column whose UTC day picks a row's `dt=` partition, as ingestion does."""
ENTITY_KEY = "customer_id"
"""Every dataset's clean rows are bucketed by it, as the demo contracts' `bucket_by` says."""
ROW_IDS = {"transactions": "transaction_id", "tickets": "ticket_id"}
"""Sequential ids renumbered across chunks (event ids are random uuids)."""


@dataclass(frozen=True)
class PreparedLake:
    """A lake holding the clean tables of one generated population, committed on main."""

    root: str
    commit: str
    customers: int
    rows: dict[str, int]

    @property
    def source_rows(self) -> int:
        return sum(self.rows.values())


def _typed(dataset: str, frame: pd.DataFrame, first_customer: int,
           first_row: int) -> pa.Table:
    """A generated dataset as its clean table: typed columns, customer ids (and row ids)
    renumbered to continue after the chunks before."""
    columns = {}
    for field in SCHEMAS[dataset]:
        values = frame[field.name]
        if field.name == "customer_id":
            number = pc.add(pc.cast(pc.utf8_slice_codeunits(pa.array(values), 1), pa.int64()),
                            first_customer)
            values = pc.binary_join_element_wise(
                "C", pc.utf8_lpad(pc.cast(number, pa.string()), 7, "0"), "")
        elif field.name == ROW_IDS.get(dataset):
            values = values + first_row
        elif field.type == pa.float64():
            values = pd.to_numeric(values)  # a few amounts come as text, as exports have them
        columns[field.name] = pa.array(values).cast(field.type)
    return pa.table(columns, schema=SCHEMAS[dataset])


def prepared_lake(work: Path, customers: int, spec: DemoSpec) -> PreparedLake:
    """The lake for `customers` of `spec`, generated chunk by chunk on first use and cached on
    disk (keyed by the spec) for later runs."""
    key = (f"lake-{customers}-seed{spec.seed}-{spec.start:%Y%m%d}-{spec.end:%Y%m%d}"
           f"-v{DATA_VERSION}")
    root, ready = work / key, work / key / "prepared.json"
    if ready.exists():
        return PreparedLake(**json.loads(ready.read_text()))
    shutil.rmtree(root, ignore_errors=True)
    days: dict[str, dict[date, list[pa.Table]]] = {name: {} for name in SCHEMAS}
    ids = {name: 0 for name in ROW_IDS}
    for chunk in range(math.ceil(customers / CHUNK_CUSTOMERS)):
        size = min(CHUNK_CUSTOMERS, customers - chunk * CHUNK_CUSTOMERS)
        data = generate(replace(spec, customers=size, seed=spec.seed + chunk, defect_rate=0))
        for dataset in SCHEMAS:
            table = _typed(dataset, getattr(data, dataset), chunk * CHUNK_CUSTOMERS,
                           ids.get(dataset, 0))
            if dataset in ids:
                ids[dataset] += len(table)
            _split_by_day(table, DAY_COLUMN[dataset], days[dataset])
    lake = LocalLake(root)
    rows = {}
    for dataset, by_day in days.items():
        rows[dataset] = 0
        for day in sorted(by_day):
            table = pa.concat_tables(by_day.pop(day))
            write_bucketed(lake, "main", clean_path(dataset, f"{day:%Y-%m-%d}", "bench"), table,
                           ENTITY_KEY)
            rows[dataset] += len(table)
    commit = lake.commit("main", f"feature bench: {customers:,} demo customers",
                         {"customers": str(customers), **{k: str(v) for k, v in rows.items()}})
    prepared = PreparedLake(root=str(root), commit=commit.id, customers=customers, rows=rows)
    ready.write_text(json.dumps(asdict(prepared)))
    return prepared


def _split_by_day(table: pa.Table, column: str, into: dict[date, list[pa.Table]]) -> None:
    """Append each UTC day's rows of `table` (in their order) to `into[day]`."""
    day = pc.cast(table.column(column), pa.date32()).to_numpy(zero_copy_only=False)
    order = np.argsort(day, kind="stable")
    ordered, day = table.take(order), day[order]
    edges = np.flatnonzero(np.diff(day.astype(np.int64))) + 1
    for start, stop in zip(np.r_[0, edges], np.r_[edges, len(day)], strict=True):
        into.setdefault(day[start].astype(date), []).append(ordered.slice(start, stop - start))


def source_files(lake: PreparedLake) -> Files:
    """Each clean table's Parquet objects, as files in the local lake's object store (its
    layout: objects/<first two hex digits>/<rest of the SHA-256>)."""
    local = LocalLake(lake.root)
    return {dataset: [str(local.root / "objects" / info.checksum[:2] / info.checksum[2:])
                      for info in local.list(lake.commit, f"clean/{dataset}/")]
            for dataset in SCHEMAS}


# -- one measurement, in a fresh interpreter -----------------------------------------------


@dataclass(frozen=True)
class Case:
    """An engine over a prepared lake: tideline on Ray, or a reference of `REFERENCES`."""

    name: str
    engine: str
    lake: PreparedLake
    dates: tuple[str, ...] = (AS_OF.isoformat(),)
    workers: int = 2
    partitions: int = 2
    output: str = ""
    """Where a reference writes its features, for the agreement check."""

    @property
    def branch(self) -> str:
        return "bench-" + re.sub(r"[^A-Za-z0-9_-]+", "-", self.name).strip("-")

    @classmethod
    def from_json(cls, text: str) -> Case:
        body = json.loads(text)
        return cls(**{**body, "lake": PreparedLake(**body["lake"]), "dates": tuple(body["dates"])})


def run_case(case: Case) -> dict:
    if case.engine == "tideline":
        return run_tideline(case)
    files = source_files(case.lake)
    with Timer() as timer:
        frame = REFERENCES[case.engine](files, date.fromisoformat(case.dates[0]))
    frame.to_parquet(case.output)
    return {"in_process_seconds": timer.seconds}


def run_tideline(case: Case) -> dict:
    """The churn views for every partition as Ray tasks into a fresh branch, then its commit."""
    with Timer() as everything:  # from planning, as the references from reading Parquet
        result = _run_tideline(case)
    return {**result, "in_process_seconds": everything.seconds}


def _run_tideline(case: Case) -> dict:
    lake = LocalLake(case.lake.root)
    plan = plan_from_lake(CHURN_VIEWS, lake, case.lake.commit)
    if case.branch in lake.branches():
        lake.delete_branch(case.branch)
    lake.create_branch(case.branch, case.lake.commit)
    dates = [date.fromisoformat(day) for day in case.dates]
    with Timer() as start:
        # a fresh local cluster: never one that `ray start` or a test's Cluster left announced
        ray.init(address="local", num_cpus=case.workers, include_dashboard=False,
                 logging_level="warning", log_to_driver=False)
    idle, _ = tree_rss(os.getpid())
    task = ray.remote(max_retries=0)(materialize_partition)
    with Timer() as build:
        results = ray.get([task.remote(lake, case.lake.commit, case.branch, plan, dates,
                                       partition, case.partitions)
                           for partition in range(case.partitions)])
        lake.commit(case.branch, f"feature bench: {case.name}",
                    {"source_commit": case.lake.commit,
                     **{f"version.{name}": version for name, version in plan.versions.items()}})
    ray.shutdown()
    return {"build_seconds": build.seconds, "ray_start_seconds": start.seconds,
            "ray_idle_rss_bytes": idle, "partition_seconds": [r.seconds for r in results],
            "feature_rows": sum(r.rows for r in results)}


def measure(case: Case, work: Path) -> dict:
    """A case in a fresh interpreter, timed from outside: every engine from the same point
    (interpreter start, imports, Ray's start and planning for tideline, reading Parquet for the
    references); `in_process_seconds` is the secondary in-process figure."""
    load = os.getloadavg()[0]  # anything else running skews the timing: say so
    with Timer() as timer:
        result = Child.case(__file__, asdict(case),
                            work / "logs" / f"{case.branch}.log").measured()
    result["seconds"] = timer.seconds
    peak, processes = result.pop("tree_peak_rss_bytes"), result.pop("tree_peak_processes")
    return {**result, "engine": case.engine, "customers": case.lake.customers,
            "dates": len(case.dates), "source_rows": case.lake.source_rows,
            **({"workers": case.workers, "partitions": case.partitions}
               if case.engine == "tideline" else {"workers": None, "partitions": None}),
            "rows_per_second": case.lake.source_rows / result["seconds"],
            "peak_rss_bytes": peak, "peak_processes": processes,
            "load_average_before": load}


def prepare(customers: int, work: Path, seed: int) -> PreparedLake:
    """The cached lake, generated in a fresh interpreter when missing (so this process stays
    small while the measurements run)."""
    return PreparedLake(**Child([sys.executable, __file__, "--prepare", str(customers), "--seed",
                                 str(seed), "--work-dir", str(work)],
                                work / "logs" / f"prepare-{customers}.log").result())


# -- agreement -----------------------------------------------------------------------------


def tideline_features(lake: PreparedLake, branch: str, as_of: date) -> pd.DataFrame:
    """Every churn view's features as written by a tideline case, by customer id."""
    local = LocalLake(lake.root)
    return pd.concat([read_features(local, branch, view, as_of).set_index(view.entity.key)
                      for view in CHURN_VIEWS], axis=1)


def agreement(cases: dict[str, Case], results: dict[str, dict]) -> dict[str, dict]:
    """Each reference against the tideline case on the same lake, as of AS_OF."""
    checks = {}
    for name, case in cases.items():
        if case.engine == "tideline" or name not in results:
            continue
        twin = next(c for c in cases.values() if c.engine == "tideline"
                    and c.lake == case.lake and c.dates == case.dates)
        expected = tideline_features(case.lake, twin.branch, AS_OF)
        actual = pd.read_parquet(case.output)
        if case.engine == "featuretools":
            distinct = [c for c in FEATURETOOLS_TWINS if c.startswith("NUM_UNIQUE(")]
            actual[distinct] = actual[distinct].fillna(0)  # null, not 0, for no events
            checks[name] = agreement_of(case.engine, expected, actual, ENTITY_KEY,
                                        {ours: theirs for theirs, ours
                                         in FEATURETOOLS_TWINS.items()})
        else:
            checks[name] = agreement_of(case.engine, expected, actual, ENTITY_KEY, FEATURES)
    return checks


# -- the run -------------------------------------------------------------------------------


def label(customers: int) -> str:
    return f"{customers / 1e6:g}M" if customers >= 1_000_000 else f"{customers / 1e3:g}k"


def plan_cases(args: argparse.Namespace, lakes: dict[int, PreparedLake],
               work: Path) -> dict[str, Case]:
    """The measurements, by name, in the order they run."""
    size, main = label(args.customers), lakes[args.customers]

    def tideline(lake: PreparedLake, **changes: object) -> Case:
        return replace(Case("", "tideline", lake, workers=args.workers,
                            partitions=args.partitions), **changes)

    def reference(engine: str, lake: PreparedLake) -> Case:
        name = f"{engine} {label(lake.customers)}"
        return Case(name, engine, lake, output=str(work / "out" / f"{name}.parquet"))

    cases = [tideline(main, name=f"tideline {size}"),
             *(reference(engine, main) for engine in ("duckdb", "polars", "pandas"))]
    if args.smoke:  # agreement only: one build against every reference
        if importlib.util.find_spec("featuretools") is not None:
            cases.append(reference("featuretools", main))
        return {case.name: case for case in cases}
    cases.append(tideline(main, name=f"tideline {size} 4 dates",
                          dates=tuple(day.isoformat() for day in WEEKLY)))
    if args.workers != 1:
        cases.append(tideline(main, name=f"tideline {size} 1 worker", workers=1))
    if args.partitions > 1:  # a partition reads only its buckets: fewer hold more at once
        cases.append(tideline(main, name=f"tideline {size} {args.partitions // 2} partitions",
                              partitions=args.partitions // 2))
    cases += [tideline(lakes[n], name=f"tideline {label(n)}") for n in sorted(lakes)
              if n not in (args.customers, args.slice_customers)]
    if args.slice_customers != args.customers:
        cases.append(tideline(lakes[args.slice_customers], partitions=args.slice_partitions,
                              name=f"tideline {label(args.slice_customers)}"))
    if importlib.util.find_spec("featuretools") is not None:
        cases.append(reference("featuretools", lakes[args.slice_customers]))
    return {case.name: case for case in cases}


def summarise(args: argparse.Namespace, results: dict[str, dict]) -> dict:
    size = label(args.customers)
    seconds = results[f"tideline {size}"]["seconds"]
    references = {engine: results[f"{engine} {size}"]["seconds"]
                  for engine in ("duckdb", "polars", "pandas")}
    fastest = min(references, key=references.__getitem__)
    ours = [r for r in results.values() if r["engine"] == "tideline"]
    scaling = {label(r["customers"]): r["seconds"] / (r["customers"] / 1e6) for r in ours
               if (r["dates"], r["workers"], r["partitions"]) == (1, args.workers,
                                                                  args.partitions)}
    published_rate = PUBLISHED["features"] * PUBLISHED["customers"] / PUBLISHED["seconds"]
    summary = {
        "tideline_seconds": seconds,
        "fastest_reference": fastest,
        "vs_fastest_reference": seconds / references[fastest],
        "four_dates_over_one": results.get(f"tideline {size} 4 dates", {"seconds": seconds})[
            "seconds"] / seconds,
        "seconds_per_million_customers": dict(sorted(scaling.items(),
                                                     key=lambda item: item[1])),
        "tideline_peak_rss_bytes": max(r["peak_rss_bytes"] for r in ours),
        "feature_values_per_second": len(FEATURES) * args.customers / seconds,
        "published_feature_values_per_second": published_rate,
        "published_over_tideline": published_rate / (len(FEATURES) * args.customers / seconds),
    }
    if f"tideline {size} 1 worker" in results:
        summary["speedup_1_to_n_workers"] = results[f"tideline {size} 1 worker"][
            "seconds"] / seconds
    featuretools = results.get(f"featuretools {label(args.slice_customers)}")
    if featuretools:
        summary["featuretools_over_tideline"] = featuretools["seconds"] / results[
            f"tideline {label(args.slice_customers)}"]["seconds"]
    return summary


def report(console: Console, results: dict[str, dict], checks: dict[str, dict],
           summary: dict, workers: int) -> None:
    table = Table(title=f"churn features ({len(FEATURES)}): tideline on Ray vs references")
    for column in ("case", "customers", "as-of dates", "Ray workers", "seconds",
                   "source rows/s", "peak RSS (GiB)", "load avg before",
                   "agreement with tideline"):
        table.add_column(column, justify="left" if column in ("case", "agreement with tideline")
                         else "right")
    for name, result in results.items():
        check = checks.get(name)
        agree = "—" if check is None else agreement_text(check)
        table.add_row(name, f"{result['customers']:,}", str(result["dates"]),
                      str(result["workers"] or "—"), f"{result['seconds']:.1f}",
                      f"{result['rows_per_second']:,.0f}",
                      f"{result['peak_rss_bytes'] / 2**30:.2f}",
                      f"{result['load_average_before']:.1f}", agree)
    console.print(table)
    lines = [
        f"tideline vs the fastest reference ({summary['fastest_reference']}): "
        f"{summary['vs_fastest_reference']:.2f}× its time (target ≤ 1×)",
        f"4 weekly as-of dates: {summary['four_dates_over_one']:.2f}× the single date "
        "(target < 2×)",
        "seconds per million customers: " + ", ".join(
            f"{size} {value:.1f} s" for size, value in summary[
                "seconds_per_million_customers"].items()),
        f"tideline peak memory (summed RSS, driver + Ray): "
        f"{summary['tideline_peak_rss_bytes'] / 2**30:.2f} GiB (target < "
        f"{MEMORY_TARGET / 2**30:.0f} GiB)",
    ]
    if "speedup_1_to_n_workers" in summary:
        lines.append(f"1 → {workers} Ray workers: {summary['speedup_1_to_n_workers']:.2f}× "
                     "faster")
    if "featuretools_over_tideline" in summary:
        lines.append(f"Featuretools DFS: {summary['featuretools_over_tideline']:.1f}× "
                     "tideline's time on the same slice (target ≥ 20×)")
    else:
        lines.append("Featuretools: not installed (`pip install featuretools`; it needs "
                     "pandas < 3), skipped")
    lines += disagreements(checks)
    lines.append(
        f"calibration: published {PUBLISHED['features']} features for "
        f"{PUBLISHED['customers'] / 1e6:g}M customers in {PUBLISHED['seconds']} s on "
        f"{PUBLISHED['engine']} ({summary['published_feature_values_per_second'] / 1e6:.0f}M "
        f"feature values/s); tideline here: {summary['feature_values_per_second'] / 1e6:.1f}M "
        f"feature values/s on {os.cpu_count()} cores, {summary['published_over_tideline']:.0f}× "
        "slower")
    for line in lines:
        console.print(line)


def run_bench(args: argparse.Namespace) -> int:
    console = Console(width=None if sys.stdout.isatty() else 150)  # logs get the whole table
    if args.smoke:  # the discovery smoke's lake (2,000 customers), shared through the work dir
        args.customers, args.slice_customers, args.scale_customers = 2_000, 2_000, []
        args.partitions = args.slice_partitions = 2
    work = Path(args.work_dir)
    for folder in ("logs", "out"):
        (work / folder).mkdir(parents=True, exist_ok=True)
    args.slice_customers = min(args.slice_customers, args.customers)
    sizes = {args.customers, args.slice_customers,
             *(n for n in args.scale_customers if n < args.customers)}
    lakes = {}
    for customers in sorted(sizes):
        with console.status(f"lake of {customers:,} customers (generated on first use)"):
            lakes[customers] = prepare(customers, work, args.seed)
    cases = plan_cases(args, lakes, work)
    results = {}
    for name, case in cases.items():
        with console.status(name):
            results[name] = measure(case, work)
        console.log(f"{name}: {results[name]['seconds']:.1f} s, peak "
                    f"{results[name]['peak_rss_bytes'] / 2**30:.2f} GiB")
    with console.status("checking that every engine computed the same features"):
        checks = agreement(cases, results)
    summary = summarise(args, results)
    report(console, results, checks, summary, args.workers)
    write_results(results_path("feature_bench", args.smoke), {
        "smoke": args.smoke, "cores": os.cpu_count(),
        "timing": "every case a fresh process timed from outside (interpreter start, Ray's "
                  "start and planning included); in_process_seconds is secondary",
        "customers": args.customers, "partitions": args.partitions, "workers": args.workers,
        "as_of": AS_OF.isoformat(), "weekly": [day.isoformat() for day in WEEKLY],
        "features": len(FEATURES), "rtol": RTOL, "atol": ATOL,
        "lakes": {label(n): asdict(lake) for n, lake in lakes.items()},
        "cases": results, "agreement": checks, "summary": summary,
        "published": PUBLISHED})
    return verdict(checks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2_100_000)
    parser.add_argument("--scale-customers", type=int, nargs="*", default=[500_000, 1_000_000],
                        help="smaller lakes for the scaling rows (those below --customers)")
    parser.add_argument("--slice-customers", type=int, default=50_000,
                        help="the slice Featuretools and tideline both run on")
    parser.add_argument("--slice-partitions", type=int, default=2,
                        help="hash partitions for the slice (2, the product's default "
                             "TIDELINE_FEATURE_PARTITIONS: its day objects hold one bucket, "
                             "so each partition reads them whole)")
    parser.add_argument("--workers", type=int, default=2, help="Ray CPUs (tasks at once)")
    parser.add_argument("--partitions", type=int, default=8,
                        help="hash partitions (Ray tasks), each holding 1/n of the data; 8 "
                             "divides the bucket counts of the large objects from 0.5M "
                             "customers up")
    parser.add_argument("--seed", type=int, default=DemoSpec().seed)
    parser.add_argument("--work-dir", default="/tmp/tideline-feature-bench")
    parser.add_argument("--data", choices=("demo", "event-log"), default="demo",
                        help="the demo's churn tables (whole-second times), or an ordinary "
                             "event log through `tideline ingest` and `tideline features "
                             "build` (event_log_bench.py)")
    event_log_bench.add_arguments(parser)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--prepare", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.data == "event-log":
        sys.exit(event_log_bench.run_bench(args))
    if args.case:
        print(json.dumps(run_case(Case.from_json(args.case))))
    elif args.prepare:
        lake = prepared_lake(Path(args.work_dir), args.prepare, DemoSpec(seed=args.seed))
        print(json.dumps(asdict(lake)))
    else:
        sys.exit(run_bench(args))


if __name__ == "__main__":
    main()
