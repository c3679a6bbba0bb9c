"""Ingestion of big Parquet exports: `tideline ingest` of the event log's two files (card
transactions and app events, integer keys, microsecond times, in export order) at several sizes,
against pyarrow reading and writing the same rows, each in a fresh process.

    python benchmarks/ingest_bench.py --data event-log [--scales 1 2 4] [--work-dir DIR]

Sizes are scales of 2.1M customers (1 = 42.0M transactions and 21.0M app events); each size's
files come from `event_log.py` (cached under the work dir, the features benchmark's cache is
shared). Cases:
- `tideline ingest`: the CLI in a fresh project directory (the files linked in, no lake yet),
  start-up and the Prefect server included, default settings: landing by day, validation
  against the event log's contracts (types, not-null, a range, the key), clean rows by day,
  quarantine, report, the merge into main.
- pyarrow: both files read and written back with `pyarrow.parquet` (a batch of 1M rows at a
  time, the default writer), the least a copy of the rows costs.

Peak memory is the RSS of the whole process tree, sampled (the Prefect server included). The
run fails unless tideline's counts are the files' rows, every row clean (the exports have no
defects). Results: benchmarks/results/ingest_bench_event_log.json.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from event_log import PROJECT_FILES, SEED, EventLog
from harness import (
    Child,
    Timer,
    agreement,
    disagreements,
    project_env,
    results_path,
    spread,
    verdict,
    write_results,
)
from rich.console import Console
from rich.table import Table
from tideline.ingestion.audit import load_audit
from tideline.lake.local import LocalLake

HERE = Path(__file__).parent
SMOKE_CUSTOMERS = 5_000
TIDELINE = str(Path(sys.executable).with_name("tideline"))
CUSTOMERS = 2_100_000
FILES = ("transactions", "app_events")


def generated(work: Path, customers: int, console: Console) -> EventLog:
    """The event log's files for `customers` (cached)."""
    root = work / f"event-log-{customers}-seed{SEED}-v1"
    described = root / "event_log.json"
    if not described.exists():
        shutil.rmtree(root, ignore_errors=True)
        with console.status(f"generating {customers:,} customers' event log"):
            Child([sys.executable, str(HERE / "event_log.py"), str(root), "--customers",
                   str(customers), "--seed", str(SEED)], work / "logs" / "generate.log").output()
    return EventLog(**json.loads(described.read_text()))


def ingest(log: EventLog, work: Path) -> dict:
    """`tideline ingest` in a new project directory holding links to the files."""
    project = work / "ingest" / f"event-log-{log.customers}"
    shutil.rmtree(project, ignore_errors=True)
    (project / "data").mkdir(parents=True)
    for name, text in PROJECT_FILES.items():
        (project / name).write_text(text)
    for name in FILES:
        (project / "data" / f"{name}.parquet").symlink_to(
            Path(log.root) / "data" / f"{name}.parquet")
    with Timer() as timer:
        child = Child([TIDELINE, "ingest", "--run-id", "bench"], work / "logs" / "ingest.log",
                      env=project_env(),
                      cwd=project, name="tideline ingest")
        child.output()
    lake = LocalLake(project / ".tideline" / "lake")
    outcomes = {o.dataset: asdict(o) for o in load_audit(lake, "main", "bench").outcomes}
    shutil.rmtree(project)
    return {"seconds": timer.seconds, "peak_rss_bytes": child.memory.peak,
            "peak_processes": child.memory.processes, "outcomes": outcomes}


def copy_with_pyarrow(log: EventLog, work: Path) -> dict:
    """The reference in a fresh process, timed from outside as `tideline ingest` is."""
    with Timer() as timer:
        child = Child.case(__file__, {"root": log.root, "out": str(work / "out")},
                           work / "logs" / "pyarrow.log")
        result = child.result()
    return {**result, "in_process_seconds": result["seconds"], "seconds": timer.seconds,
            "peak_rss_bytes": child.memory.peak,
            "peak_processes": child.memory.processes}


def run_case(case: dict) -> dict:
    """The reference, in this fresh process: each file read and written a batch at a time."""
    out = Path(case["out"])
    out.mkdir(parents=True, exist_ok=True)
    rows, counts = 0, {}
    with Timer() as timer:
        for name in FILES:
            # without pre_buffer, which keeps every row group read in memory (and is slower)
            source = pq.ParquetFile(Path(case["root"]) / "data" / f"{name}.parquet",
                                    pre_buffer=False)
            with pq.ParquetWriter(out / f"{name}.parquet", source.schema_arrow) as writer:
                for batch in source.iter_batches(batch_size=1_000_000):
                    writer.write_batch(batch)
                    rows += batch.num_rows
                    counts[name] = counts.get(name, 0) + batch.num_rows
    for name in FILES:
        (out / f"{name}.parquet").unlink()
    return {"seconds": timer.seconds, "rows": rows, "rows_by_file": counts}


def run_bench(args: argparse.Namespace) -> int:
    console = Console(width=None if sys.stdout.isatty() else 160)
    work = Path(args.work_dir)
    (work / "logs").mkdir(parents=True, exist_ok=True)
    sizes, checks = [], {}
    if args.smoke:
        args.scales = [SMOKE_CUSTOMERS / CUSTOMERS]
    for scale in args.scales:
        log = generated(work, round(CUSTOMERS * scale), console)
        rows = sum(log.rows[name] for name in FILES)
        runs: dict[str, list[dict]] = {"pyarrow": [], "tideline ingest": []}
        for attempt in range(args.repeats):  # the sides alternate, so both see the same load
            for name, run in (("pyarrow", lambda: copy_with_pyarrow(log, work)),
                              ("tideline ingest", lambda: ingest(log, work))):
                with console.status(f"{name}, {rows:,} rows, run {attempt + 1}"):
                    load = os.getloadavg()[0]
                    runs[name].append({**run(), "load_average_before": load})
                console.log(f"{scale:g}×: {name} {runs[name][-1]['seconds']:.1f} s, peak "
                            f"{runs[name][-1]['peak_rss_bytes'] / 2**30:.2f} GiB")
        # the median run's figures, each side's spread, and the highest peak of all its runs
        measured = {}
        for name, done in runs.items():
            times = spread([r["seconds"] for r in done])
            measured[name] = {**sorted(done, key=lambda r: r["seconds"])[len(done) // 2],
                              "seconds": times["median"], "min_seconds": times["min"],
                              "runs": times["runs"], "every_seconds": times["seconds"],
                              "peak_rss_bytes": max(r["peak_rss_bytes"] for r in done)}
        outcomes = measured["tideline ingest"]["outcomes"]
        copied = measured["pyarrow"]["rows_by_file"]
        # every row of the files read, and clean (the generator makes no defects), as many as
        # pyarrow copied
        checks[f"{scale:g}x"] = agreement(
            "pyarrow", pd.DataFrame([{"file": name, "rows": outcomes.get(name, {}).get("rows"),
                                      "clean": outcomes.get(name, {}).get("clean")}
                                     for name in FILES]),
            pd.DataFrame([{"file": name, "rows": copied.get(name), "clean": copied.get(name)}
                          for name in FILES]), "file", rtol=0, atol=0)
        sizes.append({"scale": scale, "customers": log.customers, "rows": log.rows,
                      "bytes": log.bytes, "cases": measured,
                      "ratio": measured["tideline ingest"]["seconds"]
                      / measured["pyarrow"]["seconds"]})
    table = Table(title="tideline ingest vs pyarrow read + write, event-log Parquet files")
    for column in ("scale", "rows", "pyarrow s", "tideline s", "× pyarrow", "tideline peak GiB",
                   "pyarrow peak GiB"):
        table.add_column(column, justify="right")
    for size in sizes:
        cases = size["cases"]
        table.add_row(f"{size['scale']:g}×", f"{sum(size['rows'].values()):,}",
                      f"{cases['pyarrow']['seconds']:.1f}",
                      f"{cases['tideline ingest']['seconds']:.1f}", f"{size['ratio']:.2f}",
                      f"{cases['tideline ingest']['peak_rss_bytes'] / 2**30:.2f}",
                      f"{cases['pyarrow']['peak_rss_bytes'] / 2**30:.2f}")
    console.print(table)
    for line in disagreements(checks):
        console.print(f"[red]wrong counts[/red] {line}")
    write_results(results_path("ingest_bench_event_log", args.smoke), {
        "sizes": sizes, "agreement": checks, "cores": os.cpu_count(),
        "timing": "each side a fresh process timed from outside"})
    return verdict(checks)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `ingest_bench.py --data event-log`."""
    parser.add_argument("--scales", type=float, nargs="*", default=[1.0, 2.0, 4.0],
                        help="sizes, as scales of 2.1M customers")
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs of each side at each size (median and minimum reported)")
    parser.add_argument("--work-dir", default="/tmp/tideline-feature-bench")
    parser.add_argument("--smoke", action="store_true",
                        help=f"{SMOKE_CUSTOMERS:,} customers, results to benchmarks/out/")


if __name__ == "__main__":  # a case in a fresh process (`Child.case`)
    case_parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    case_parser.add_argument("--case", required=True)
    print(json.dumps(run_case(json.loads(case_parser.parse_args().case))))
