"""The feature engine on an ordinary event log, through the product's own path: `tideline
ingest` loads the exports, `tideline features build` (a fresh process, default settings,
start-up included) builds the 47 churn features, against the same features hand-written in
polars (lazy) and DuckDB over the same Parquet exports, in the same run, values compared.

    python benchmarks/feature_bench.py --data event-log [--customers 2100000]
        [--work-dir DIR] [--calibrate 2 4 8]

Data: `event_log.py` (2.1M customers, 42.0M transactions, 21.0M app events over 120 days,
microsecond times, integer keys), generated once per size and cached under the work dir, and
ingested into a new lake by every run (the ingest's time and memory are reported, not
compared: `ingest_bench.py --data event-log` compares them). Cases, each in a fresh
process while this one samples the RSS of its whole process tree (Prefect's server, Ray's GCS,
raylet and workers included) every 0.2 s:

- `tideline features build --as-of 2024-04-01`, and with four weekly as-of dates;
- `--calibrate N...`: the same build with `--partitions N`, whose peaks give the memory model
  that picks the default partition count (`tideline.features.materialize`);
- polars and DuckDB, each on all cores.

Every tideline build's partitions report where their time went (read, sort, windows,
reductions, write) in the build's manifest; the table shows the slowest partition's split.
Agreement: both references against tideline's table as of 2024-04-01 (`harness.agreement`,
rtol 1e-6), every customer and feature; the run exits 1 on any difference. Every case is a
fresh process timed from outside, start-up included on both sides; `--repeat N` runs every
case N times, interleaved, and reports the median and the minimum. Targets on the 2-core
machine: build ≤ the fastest reference, peak RSS of the tree ≤ 8 GiB, four dates ≤ 2× one.
Writes benchmarks/results/feature_bench_event_log.json (`--smoke`: 5,000 customers, one build,
to benchmarks/out/).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import asdict
from datetime import date
from pathlib import Path

import pandas as pd
from event_log import PROJECT_FILES, SEED, EventLog
from event_log_references import REFERENCES
from harness import (
    ATOL,
    RTOL,
    Child,
    Timer,
    agreement_text,
    disagreements,
    project_env,
    results_path,
    spread,
    verdict,
    write_results,
)
from harness import agreement as agreement_of
from rich.console import Console
from rich.table import Table
from tideline.features.definitions import load_views
from tideline.features.offline import read_features
from tideline.lake.local import LocalLake

AS_OF = date(2024, 4, 1)
WEEKLY = (date(2024, 3, 11), date(2024, 3, 18), date(2024, 3, 25), AS_OF)
MEMORY_TARGET = 8 * 2**30
SMOKE_CUSTOMERS = 5_000
DATA_VERSION = 1
"""Bump when the generator changes, to invalidate cached projects."""
HERE = Path(__file__).parent
TIDELINE = str(Path(sys.executable).with_name("tideline"))
PHASES = ("read", "sort", "windows", "reductions", "write")


def prepared(work: Path, customers: int, seed: int, console: Console) -> tuple[EventLog, dict]:
    """The generated project (cached) ingested into a new lake by this checkout's `tideline
    ingest`, so the build reads objects as the code now writes them; and the ingest's
    measurements."""
    root = work / f"event-log-{customers}-seed{seed}-v{DATA_VERSION}"
    described = root / "event_log.json"
    if described.exists():  # the data is cached; the project's files are rewritten as they are now
        for name, text in PROJECT_FILES.items():
            (root / name).write_text(text)
        log = EventLog(**json.loads(described.read_text()))
    else:
        shutil.rmtree(root, ignore_errors=True)
        with console.status(f"generating {customers:,} customers' event log"):
            log = EventLog(**json.loads(Child(
                [sys.executable, str(HERE / "event_log.py"), str(root), "--customers",
                 str(customers), "--seed", str(seed)], work / "logs" / "generate.log").output()))
    shutil.rmtree(root / ".tideline", ignore_errors=True)
    with console.status("tideline ingest"):
        ingest = run_cli(["ingest"], root, work / "logs" / "ingest.log")
    console.log(f"ingested in {ingest['seconds']:.0f} s, peak "
                f"{ingest['peak_rss_bytes'] / 2**30:.2f} GiB")
    return log, ingest


def run_cli(arguments: list[str], cwd: Path, log: Path) -> dict:
    """`tideline ARGS` in `cwd`: its wall time and its process tree's peak RSS."""
    with Timer() as timer:
        child = Child([TIDELINE, *arguments], log, cwd=cwd, env=project_env(),
                      name="tideline " + " ".join(arguments))
        child.output()
    return {"seconds": timer.seconds, "peak_rss_bytes": child.memory.peak,
            "peak_processes": child.memory.processes}


def build(project: EventLog, work: Path, name: str, dates: tuple[date, ...],
          partitions: int | None = None) -> dict:
    """One `tideline features build`, with its partitions' time split from the manifest."""
    run_id = f"bench-{name.replace(' ', '-')}-{os.getpid()}-{time.time_ns()}"  # one per run
    arguments = ["features", "build", "--run-id", run_id,
                 *(f"--as-of={day.isoformat()}" for day in dates),
                 *([f"--partitions={partitions}"] if partitions else [])]
    result = run_cli(arguments, Path(project.root), work / "logs" / f"{name}.log")
    lake = LocalLake(Path(project.root) / ".tideline" / "lake")
    manifest = json.loads(lake.get("main", f"features/_runs/{run_id}.json"))
    parts = manifest["partitions"]
    slowest = max(parts, key=lambda part: part["seconds"])
    return {**result, "engine": "tideline", "dates": len(dates), "partitions": len(parts),
            "partition_seconds": [part["seconds"] for part in parts],
            "slowest_partition": {phase: slowest["timings"].get(phase, 0.0)
                                  for phase in PHASES},
            "entities": sum(part["entities"] for part in parts)}


def reference(project: EventLog, work: Path, engine: str) -> dict:
    """A reference in a fresh process, timed from outside as the CLI is (interpreter start,
    imports, reading Parquet, writing the result); its in-process compute time apart."""
    output = work / "out" / f"event-log-{engine}.parquet"
    with Timer() as timer:
        child = Child.case(__file__, {"engine": engine, "root": project.root,
                                      "output": str(output)}, work / "logs" / f"{engine}.log")
        result = child.result()
    return {"compute_seconds": result["seconds"], "seconds": timer.seconds, "engine": engine,
            "dates": 1, "peak_rss_bytes": child.memory.peak,
            "peak_processes": child.memory.processes, "output": str(output)}


def run_case(case: dict) -> dict:
    """A reference in this fresh process: the features of the exports, written for the
    agreement check."""
    files = {name: str(Path(case["root"]) / "data" / f"{name}.parquet")
             for name in ("transactions", "app_events")}
    with Timer() as timer:
        frame = REFERENCES[case["engine"]](files, AS_OF)
    frame.to_parquet(case["output"])
    return {"seconds": timer.seconds}


def agreement(project: EventLog, results: dict[str, dict]) -> dict[str, dict]:
    root = Path(project.root)
    lake = LocalLake(root / ".tideline" / "lake")
    ours = pd.concat([read_features(lake, "main", view, AS_OF).set_index(view.entity.key)
                      for view in load_views(root / "features.yaml")], axis=1)
    return {name: agreement_of(name, ours, pd.read_parquet(result["output"]), "customer_id")
            for name, result in results.items() if result["engine"] in REFERENCES}


def summarise(results: dict[str, dict], calibration: dict[str, dict]) -> dict:
    one = results["tideline build"]
    four = results.get("tideline build, 4 dates", one)
    references = {name: r["seconds"] for name, r in results.items() if r["engine"] != "tideline"}
    fastest = min(references, key=references.__getitem__)
    tideline_peak = max(one["peak_rss_bytes"], four["peak_rss_bytes"])  # default settings
    return {
        "build_seconds": one["seconds"], "fastest_reference": fastest,
        "build_over_fastest_reference": one["seconds"] / references[fastest],
        "four_dates_over_one": four["seconds"] / one["seconds"],
        "default_partitions": one["partitions"],
        "tideline_peak_rss_bytes": tideline_peak,
        "targets_met": {
            "build_at_most_fastest_reference": one["seconds"] <= references[fastest],
            "peak_rss_at_most_8_gib": tideline_peak <= MEMORY_TARGET,
            "four_dates_at_most_twice_one": four["seconds"] <= 2 * one["seconds"]},
        "by_partitions": {r["partitions"]: {"seconds": r["seconds"],
                                            "peak_rss_bytes": r["peak_rss_bytes"]}
                          for r in (one, *calibration.values())},
    }


def report(console: Console, project: EventLog, results: dict[str, dict],
           checks: dict[str, dict], summary: dict, ingest: dict) -> None:
    table = Table(title=f"47 churn features, {project.customers:,} customers, µs times: "
                        "tideline vs hand-written")
    for column in ("case", "seconds", "peak RSS (GiB)", "partitions", "slowest partition: "
                   + " / ".join(PHASES), "agreement"):
        table.add_column(column, justify="left" if column in ("case", "agreement") else "right")
    for name, r in results.items():
        check = checks.get(name)
        agree = "—" if check is None else agreement_text(check)
        split = (" / ".join(f"{r['slowest_partition'][p]:.1f}" for p in PHASES)
                 + f" of {max(r['partition_seconds']):.1f} s") if r["engine"] == "tideline" \
            else "—"
        table.add_row(name, f"{r['seconds']:.1f}", f"{r['peak_rss_bytes'] / 2**30:.2f}",
                      str(r.get("partitions", "—")), split, agree)
    console.print(table)
    met = summary["targets_met"]
    for line in (
            f"build vs the fastest reference ({summary['fastest_reference']}): "
            f"{summary['build_over_fastest_reference']:.2f}× its time (target ≤ 1×: "
            f"{'met' if met['build_at_most_fastest_reference'] else 'MISSED'})",
            f"peak RSS of the default builds' process trees: "
            f"{summary['tideline_peak_rss_bytes'] / 2**30:.2f} GiB (target ≤ 8 GiB: "
            f"{'met' if met['peak_rss_at_most_8_gib'] else 'MISSED'})",
            f"4 weekly as-of dates: {summary['four_dates_over_one']:.2f}× one (target ≤ 2×: "
            f"{'met' if met['four_dates_at_most_twice_one'] else 'MISSED'})",
            f"ingest (not compared): {ingest['seconds']:.0f} s, peak "
            f"{ingest['peak_rss_bytes'] / 2**30:.2f} GiB"):
        console.print(line)
    for line in disagreements(checks):
        console.print(line)


def run_bench(args: argparse.Namespace) -> int:
    console = Console(width=None if sys.stdout.isatty() else 160)
    if args.smoke:
        args.customers = SMOKE_CUSTOMERS
    work = Path(args.work_dir)
    for folder in ("logs", "out"):
        (work / folder).mkdir(parents=True, exist_ok=True)
    project, ingest = prepared(work, args.customers, SEED, console)
    results: dict[str, dict] = {}
    plan = [*([] if args.smoke else [  # the smoke run checks agreement: one build does
                ("tideline build, 4 dates",
                 lambda: build(project, work, "build-4-dates", WEEKLY))]),
            ("tideline build", lambda: build(project, work, "build", (AS_OF,))),
            *((engine, lambda engine=engine: reference(project, work, engine))
              for engine in REFERENCES)]
    runs: dict[str, list[dict]] = {name: [] for name, _ in plan}
    for attempt in range(args.repeat):  # every case as often, interleaved: load hits all alike
        for name, run in plan:
            with console.status(f"{name} ({attempt + 1} of {args.repeat})"):
                load = os.getloadavg()[0]
                runs[name].append({**run(), "load_average_before": load})
            console.log(f"{name}: {runs[name][-1]['seconds']:.1f} s, peak "
                        f"{runs[name][-1]['peak_rss_bytes'] / 2**30:.2f} GiB")
    for name, done in runs.items():  # the median run stands for the case; every run is kept
        timing = spread([r["seconds"] for r in done])
        middle = min(done, key=lambda r: abs(r["seconds"] - timing["median"]))
        results[name] = {**middle, "seconds": timing["median"], "timing": timing,
                         "peak_rss_bytes": max(r["peak_rss_bytes"] for r in done),
                         "load_average_before": [r["load_average_before"] for r in done]}
    with console.status("checking that every engine computed the same features"):
        checks = agreement(project, results)  # against the single-date build's tables
    calibration = {}
    for count in args.calibrate:
        name = f"tideline build --partitions {count}"
        with console.status(name):
            calibration[name] = build(project, work, f"build-{count}", (AS_OF,), count)
        console.log(f"{name}: {calibration[name]['seconds']:.1f} s, peak "
                    f"{calibration[name]['peak_rss_bytes'] / 2**30:.2f} GiB")
    summary = summarise(results, calibration)
    report(console, project, {**results, **calibration}, checks, summary, ingest)
    write_results(results_path("feature_bench_event_log", args.smoke), {
                        "customers": args.customers, "seed": SEED, "smoke": args.smoke,
                        "repeat": args.repeat, "cores": os.cpu_count(),
                        "timing": "every case a fresh process timed from outside, start-up "
                                  "included; seconds is the median of the runs",
                        "event_log": asdict(project), "as_of": AS_OF.isoformat(),
                        "weekly": [day.isoformat() for day in WEEKLY], "rtol": RTOL,
                        "atol": ATOL, "ingest": ingest, "cases": results,
                        "calibration": calibration, "agreement": checks,
                        "summary": summary})
    return verdict(checks)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calibrate", type=int, nargs="*", default=[],
                        help="also build with these partition counts (the memory model)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs of every case (the median counts; median and min shown)")
    parser.add_argument("--smoke", action="store_true",
                        help=f"{SMOKE_CUSTOMERS:,} customers, results to benchmarks/out/")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2_100_000)
    parser.add_argument("--work-dir", default="/tmp/tideline-feature-bench")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    add_arguments(parser)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
    else:
        sys.exit(run_bench(args))


if __name__ == "__main__":
    main()
