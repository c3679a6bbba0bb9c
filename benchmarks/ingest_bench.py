"""Ingestion throughput: demo transactions from a CSV export and from PostgreSQL into the lake
through tideline, with validation, against pyarrow (CSV) and pandas (SQL) reading the same rows
to Parquet; with `--data event-log`, big Parquet exports at several sizes (`ingest_event_log`).

    python benchmarks/ingest_bench.py [--rows 10000000] [--pg-url URL] [--dir DIR]
    python benchmarks/ingest_bench.py --rows 200000      # a smoke run, well under a minute
    python benchmarks/ingest_bench.py --data event-log [--scales 1 2 4]

The demo generator makes the transactions (1% of rows per kind of defect: negative and
unparseable amounts, future times, orphan customers, duplicates) and the customers they
reference. `write_sql` loads the transactions into PostgreSQL, in a schema of the benchmark's
own (dropped at the end), and the CSV is that table exported by `COPY`, so both sources hold the
same rows in the same order.

tideline runs the ingest flow's path without Prefect: a run branch; the real connector through
`pull_and_land` (raw text partitioned by day); `audit` (validation against the demo project's
contract, with the customers as references; clean rows by day, quarantine, stats, report); the
gate; the merge into main. The customers are published to the lake beforehand, untimed.
The reference reads the same rows with `pyarrow.csv.read_csv` (every core, types inferred) and
writes them with `pyarrow.parquet.write_table`, or with `pandas.read_sql` of the query the
connector runs and `DataFrame.to_parquet`.

Each case runs in a fresh Python process: its peak RSS is its own (`VmHWM`; the peak of its
process tree, sampled, is kept too), and its CPU seconds (all threads) are reported beside the
wall-clock seconds with the machine's load average when it started, since a busy machine
stretches wall time. Prints a table and writes benchmarks/out/ingest_bench.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from datetime import time as day_start
from pathlib import Path

import pandas as pd
import psycopg
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import sqlalchemy as sa
from harness import Child, Timer, peak_rss, write_results
from rich.console import Console
from rich.table import Table
from tideline.demo.generator import DemoData, DemoSpec, generate, write_crm_csv, write_sql
from tideline.demo.project import PROJECT_FILE
from tideline.ingestion.audit import audit, enforce_gate
from tideline.ingestion.landing import pull_and_land
from tideline.ingestion.project import Project, load_project
from tideline.ingestion.sources import FileSource, Source, SqlSource
from tideline.lake.local import LocalLake
from tideline.lake.publish import publish

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
URL_ENV = "TIDELINE_BENCH_SQL_URL"
SCHEMA = "tideline_bench"
"""The benchmark's own schema (dropped at the end): the tests make and drop a `transactions`
table of their own in the same database."""
TABLE = "transactions"
QUERY = f"SELECT * FROM {TABLE} ORDER BY updated_at"
"""What the SQL connector runs for a first pull of the table (the reference runs it too)."""
SPEC = DemoSpec()
NOW = datetime.combine(SPEC.end + timedelta(days=1), day_start(), tzinfo=UTC)
CASES = ("csv", "postgres")


def demo_data(rows: int) -> DemoData:
    """The demo data of enough customers for `rows` transactions, cut to the last `rows` (the
    duplicates the generator appends stay in)."""
    pilot = generate(replace(SPEC, customers=2000))
    customers = math.ceil(rows / len(pilot.transactions) * 2000 * 1.1)
    data = generate(replace(SPEC, customers=customers))
    if len(data.transactions) < rows:
        raise SystemExit(f"{customers:,} customers made only {len(data.transactions):,} rows")
    return replace(data, transactions=data.transactions.iloc[-rows:].reset_index(drop=True))


def project(source: Source) -> Project:
    """The demo project's contracts, fed by `source` alone."""
    demo = load_project(PROJECT_FILE, demo_dir="", demo_api="http://unused",
                        validation_time=NOW.isoformat())
    return Project(sources=(source,), contracts=demo.contracts, validation_time=NOW)


def sources(work: Path) -> dict[str, Source]:
    """The customers export, and the transactions as CSV and in PostgreSQL."""
    return {
        "customers": FileSource(name="crm-customers", dataset="customers", format="csv",
                                url=str(work / "customers.csv"), timestamp_column="updated_at"),
        "csv": FileSource(name="shop-transactions", dataset="transactions", format="csv",
                          url=str(work / "transactions.csv"), timestamp_column="ts"),
        "postgres": SqlSource(name="shop-transactions", dataset="transactions", url_env=URL_ENV,
                              table=TABLE, cursor_column="updated_at", timestamp_column="ts"),
    }


def ingest(lake: LocalLake, source: Source, run_id: str, work: Path) -> dict:
    """What the ingest flow does for one source, without Prefect; what came in and its verdict."""
    with publish(lake, run_id, message=f"ingest {source.name}") as run:
        record = pull_and_land(lake, run.branch, source, run_id=run_id)
        result = audit(lake, run.branch, project(source), [record], run_id=run_id,
                       report_dir=work / "reports")
        enforce_gate(lake, run.branch, result)
    outcome = next(o for o in result.outcomes if o.dataset == source.dataset)
    return {"rows": outcome.rows, "clean": outcome.clean, "quarantined": outcome.quarantined,
            "score": outcome.score}


def prepare(rows: int, url: str, work: Path) -> None:
    """Both sources of the transactions, the customers CSV, and a lake holding the customers."""
    data = demo_data(rows)
    write_crm_csv(data, work / "customers.csv")
    write_sql(data, url)
    conninfo = sa.make_url(url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(conninfo) as conn, conn.cursor() as cursor, cursor.copy(
            f"COPY {TABLE} TO STDOUT WITH (FORMAT csv, HEADER)") as copy, open(
            work / "transactions.csv", "wb") as out:
        for block in copy:
            out.write(block)
    lake = LocalLake(work / "lake")
    ingest(lake, sources(work)["customers"], "customers", work)


def run_case(case: str, runner: str, work: Path) -> dict:
    """One measurement, in this (fresh) process: seconds, CPU seconds, rows, peak RSS."""
    out = work / f"{case}-{runner}"
    load = os.getloadavg()[0]
    if runner == "tideline":
        shutil.copytree(work / "lake", out / "lake")
        source = sources(work)[case]
        with Timer() as timer:
            result = ingest(LocalLake(out / "lake"), source, "bench", out)
    else:
        out.mkdir()
        with Timer() as timer:
            if case == "csv":
                table = pa_csv.read_csv(work / "transactions.csv")
                pq.write_table(table, out / "transactions.parquet")
                rows = table.num_rows
            else:
                engine = sa.create_engine(os.environ[URL_ENV])
                frame = pd.read_sql(sa.text(QUERY), engine)
                engine.dispose()
                frame.to_parquet(out / "transactions.parquet")
                rows = len(frame)
        result = {"rows": rows}
    # VmHWM, not ru_maxrss: this benchmark's parent holds the generated data (`peak_rss`)
    result.update(seconds=timer.seconds, cpu_seconds=timer.cpu_seconds,
                  peak_rss_bytes=peak_rss(), load_average=load)
    shutil.rmtree(out)
    return result


def measure(case: str, runner: str, url: str, work: Path) -> dict:
    """`run_case` in a fresh interpreter, the peak RSS of its process tree sampled."""
    return Child([sys.executable, __file__, "--case", case, "--runner", runner, "--dir",
                  str(work)], work / "logs" / f"{case}-{runner}.log",
                 env={**os.environ, URL_ENV: url}).measured()


def main() -> None:
    if "--data" in sys.argv:  # the event log's Parquet files (`ingest_event_log.py`)
        import ingest_event_log

        parser = argparse.ArgumentParser(description=ingest_event_log.__doc__.splitlines()[0])
        parser.add_argument("--data", choices=("event-log",), required=True)
        parser.add_argument("--case", help=argparse.SUPPRESS)
        ingest_event_log.add_arguments(parser)
        args = parser.parse_args()
        sys.exit(ingest_event_log.run_bench(args))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument("--dir", default=None, help="scratch directory (default: system temp)")
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--runner", choices=("tideline", "reference"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.runner, Path(args.dir))))
        return
    main_bench(args)


def main_bench(args: argparse.Namespace) -> None:
    console = Console(width=max(Console().width, 110))
    work = Path(tempfile.mkdtemp(dir=args.dir))
    url = sa.make_url(args.pg_url)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
    url = url.update_query_dict({"options": f"-csearch_path={SCHEMA}"}).render_as_string(False)
    try:
        with console.status(f"generating {args.rows:,} transactions"):
            prepare(args.rows, url, work)
        results = {}
        for case in CASES:
            for runner in ("reference", "tideline"):
                with console.status(f"{case}: {runner}"):
                    results[f"{case}/{runner}"] = measure(case, runner, url, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        engine.dispose()
    report(console, args.rows, results)


def report(console: Console, rows: int, results: dict[str, dict]) -> None:
    table = Table(title=f"{rows:,} demo transactions into Parquet: pandas, and tideline with "
                  "validation (each case in a fresh process)")
    for name in ("source", "path", "seconds", "rows/s", "vs pandas", "CPU s", "peak RSS MiB",
                 "load avg", "quarantined"):
        table.add_column(name, justify="left" if name in ("source", "path") else "right")
    summary = {"rows": rows, "cases": results, "ratio": {}}
    for case in CASES:
        reference = results[f"{case}/reference"]
        for runner in ("reference", "tideline"):
            result = results[f"{case}/{runner}"]
            table.add_row(
                case, "pandas" if runner == "reference" else "tideline",
                f"{result['seconds']:.1f}", f"{result['rows'] / result['seconds']:,.0f}",
                f"{result['seconds'] / reference['seconds']:.2f}×",
                f"{result['cpu_seconds']:.0f}", f"{result['peak_rss_bytes'] / 2**20:,.0f}",
                f"{result['load_average']:.1f}", f"{result.get('quarantined', '')}")
        summary["ratio"][case] = results[f"{case}/tideline"]["seconds"] / reference["seconds"]
    console.print(table)
    write_results(Path(__file__).parent / "out" / "ingest_bench.json", summary)


if __name__ == "__main__":
    main()
