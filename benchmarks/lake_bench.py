"""The lake's write+commit and read overhead versus plain pyarrow on local disk, for the embedded
lake and a real lakeFS server (built from its Go module by tools/lakefs.sh, started here).

    python benchmarks/lake_bench.py [--big-gb 1.0] [--small 1000] [--repeat 3]
                                    [--backends local,lakefs]

Two loads: 1,000 small Parquet files (one commit), and one ~1 GB Parquet table. Each is timed as
plain `pyarrow.parquet.write_table` into a directory and as `tideline.lake.tables.write_table`
+ commit, then read back (`pq.read_table` vs `tideline.lake.tables.read_table`), in the same run
on the same disk.
For lakeFS, one more pass of the big table splits the time into its steps (Parquet encoding to
a spool file, the upload request, the commit; the ranged download, Parquet decoding). Prints a
table and writes benchmarks/results/lake_bench.json (`--out` elsewhere, for a trial run).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from harness import Timer, agreement, disagreements, results_path, timed, verdict, write_results
from rich.console import Console
from rich.table import Table
from tideline.lake.base import Lake
from tideline.lake.lakefs import LakeFSLake
from tideline.lake.local import LocalLake
from tideline.lake.tables import read_table, write_table

ROOT = Path(__file__).resolve().parents[1]


def small_tables(count: int) -> list[pa.Table]:
    rng = np.random.default_rng(0)
    return [
        pa.table(
            {
                "customer_id": rng.integers(0, 1_000_000, 200),
                "amount": rng.random(200),
                "category": rng.choice(["a", "b", "c"], 200),
            }
        )
        for _ in range(count)
    ]


def big_table(gigabytes: float) -> pa.Table:
    rng = np.random.default_rng(1)
    rows = int(gigabytes * 1024**3 / (8 * 8))
    columns = {f"f{i}": rng.random(rows) for i in range(6)}
    columns["customer_id"] = rng.integers(0, 2_000_000, rows)
    columns["ts"] = rng.integers(1_700_000_000, 1_760_000_000, rows)
    return pa.table(columns)


@contextmanager
def lakefs_server(work: Path) -> Iterator[tuple[str, tuple[str, str]]]:
    """A real lakeFS on a free port, its data under `work`: (endpoint, keys)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    keys = ("AKIA" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30))
    env = {**os.environ, "LAKEFS_ACCESS_KEY_ID": keys[0], "LAKEFS_SECRET_ACCESS_KEY": keys[1]}
    log = (work / "lakefs.log").open("wb")
    server = subprocess.Popen(["bash", str(ROOT / "tools" / "lakefs.sh"), "serve",
                               str(work / "lakefs"), str(port)], stdout=log,
                              stderr=subprocess.STDOUT, env=env)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 1800  # a cold machine builds lakeFS first
        while True:
            try:
                with urllib.request.urlopen(f"{endpoint}/api/v1/healthcheck", timeout=1):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"lakeFS did not start; see {work / 'lakefs.log'}") from None
                time.sleep(0.2)
        yield endpoint, keys
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def measure(lake_for: Callable[[int], Lake], plain_dir: Callable[[int], Path],
            smalls: list[pa.Table], big: pa.Table, repeat: int, backend: str,
            checks: dict[str, dict]) -> dict[str, list[float]]:
    """Every load `repeat` times; `checks[backend]` gains the big table read back from the
    lake against the same table read back by pyarrow (every value, exactly)."""
    results: dict[str, list[float]] = {k: [] for k in (
        "small_plain", "small_lake", "big_plain", "big_lake", "big_read_plain", "big_read_lake")}
    for attempt in range(repeat):
        plain, lake = plain_dir(attempt), lake_for(attempt)
        plain.mkdir(parents=True)

        def small_plain(plain: Path = plain) -> None:
            for i, table in enumerate(smalls):
                pq.write_table(table, plain / f"part-{i:05d}.parquet")

        def small_lake(lake: Lake = lake) -> None:
            for i, table in enumerate(smalls):
                write_table(lake, "main", f"small/part-{i:05d}.parquet", table)
            lake.commit("main", f"{len(smalls)} small files")

        def big_lake(lake: Lake = lake) -> None:
            write_table(lake, "main", "big/big.parquet", big)
            lake.commit("main", "big")

        results["small_plain"].append(timed(small_plain))
        results["small_lake"].append(timed(small_lake))
        results["big_plain"].append(timed(lambda: pq.write_table(big, plain / "big.parquet")))
        results["big_lake"].append(timed(big_lake))
        results["big_read_plain"].append(timed(lambda: pq.read_table(plain / "big.parquet")))
        results["big_read_lake"].append(timed(lambda: read_table(lake, "main", "big/big.parquet")))
        if attempt == repeat - 1:  # untimed: what the lake gives back against pyarrow's file
            checks[backend] = agreement(
                "pyarrow", read_table(lake, "main", "big/big.parquet").to_pandas().rename_axis(
                    "row"), pq.read_table(plain / "big.parquet").to_pandas().rename_axis("row"),
                "row", rtol=0, atol=0)
        shutil.rmtree(plain)
    return results


def lakefs_steps(lake: LakeFSLake, big: pa.Table, work: Path) -> dict[str, float]:
    """The big table's write and read on lakeFS, step by step (what `write_table` + commit and
    `read_table` do, timed apart)."""
    steps: dict[str, float] = {}
    spool = work / "spool.parquet"
    steps["write: Parquet encode to a spool file"] = timed(lambda: pq.write_table(big, spool))
    steps["write: upload request"] = timed(lambda: lake._upload("main", "steps/big.parquet", spool))
    steps["write: commit"] = timed(lambda: lake.commit("main", "big, by steps"))
    spool.unlink()
    with ExitStack() as stack:
        with Timer() as download:  # ranged download to a temp file
            source = stack.enter_context(lake.reader("main", "steps/big.parquet"))
        steps["read: ranged download"] = download.seconds
        steps["read: Parquet decode"] = timed(lambda: pq.ParquetFile(source).read())
    return steps


def run(args: argparse.Namespace) -> dict:
    work = Path(tempfile.mkdtemp(dir=args.dir, prefix="lake-bench-"))
    smalls, big = small_tables(args.small), big_table(args.big_gb)
    report: dict = {"big_bytes_in_memory": big.nbytes, "small_files": args.small,
                    "repeat": args.repeat, "backends": {}, "agreement": {}}
    checks = report["agreement"]
    try:
        if "local" in args.backends:
            results = measure(lambda n: LocalLake(work / f"lake{n}"),
                              lambda n: work / f"plain-local{n}", smalls, big, args.repeat,
                              "local", checks)
            report["backends"]["local"] = {"all_seconds": results}
        if "lakefs" in args.backends:
            with lakefs_server(work) as (endpoint, keys):
                version = subprocess.run(["bash", str(ROOT / "tools" / "lakefs.sh"), "build"],
                                         capture_output=True, text=True).stdout.strip()
                results = measure(
                    lambda n: LakeFSLake(endpoint, *keys, f"bench-{n}-{secrets.token_hex(3)}"),
                    lambda n: work / f"plain-lakefs{n}", smalls, big, args.repeat, "lakefs",
                    checks)
                steps = lakefs_steps(LakeFSLake(endpoint, *keys, "bench-steps"), big, work)
            report["backends"]["lakefs"] = {"all_seconds": results, "steps_seconds": steps,
                                            "server": Path(version).parent.name}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for backend in report["backends"].values():
        backend["median_seconds"] = {
            k: statistics.median(v) for k, v in backend["all_seconds"].items()}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big-gb", type=float, default=1.0)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backends", default="local,lakefs",
                        type=lambda text: [b.strip() for b in text.split(",") if b.strip()])
    parser.add_argument("--dir", default=None, help="scratch directory (default: system temp)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where the JSON goes (default: benchmarks/results/lake_bench.json; "
                             "a smoke run: benchmarks/out/lake_bench_smoke.json)")
    parser.add_argument("--smoke", action="store_true",
                        help="20 small files, a 0.01 GiB table, once, on the local lake only")
    args = parser.parse_args()
    if args.smoke:
        args.big_gb, args.small, args.repeat, args.backends = 0.01, 20, 1, ["local"]
    args.out = args.out or results_path("lake_bench", args.smoke)
    report = run(args)
    console = Console()
    table = Table(title=f"the lake vs plain pyarrow on local disk (median of {report['repeat']})")
    for column in ("load", "backend", "plain pyarrow (s)", "lake (s)", "lake / plain"):
        table.add_column(column)
    gib = report["big_bytes_in_memory"] / 1024**3
    for label, key in ((f"{report['small_files']:,} small files, write + commit", "small"),
                       (f"one {gib:.2f} GiB table, write + commit", "big"),
                       ("same table, read back", "big_read")):
        for name, backend in report["backends"].items():
            med = backend["median_seconds"]
            plain, lake = med[f"{key}_plain"], med[f"{key}_lake"]
            table.add_row(label, name, f"{plain:.2f}", f"{lake:.2f}", f"{lake / plain:.2f}×")
    console.print(table)
    steps = report["backends"].get("lakefs", {}).get("steps_seconds")
    if steps:
        split = Table(title="where lakeFS's time goes (the big table, one pass)")
        split.add_column("step")
        split.add_column("seconds")
        for step, seconds in steps.items():
            split.add_row(step, f"{seconds:.2f}")
        console.print(split)
    for line in disagreements(report["agreement"]):
        console.print(f"[red]{line}[/red]")
    write_results(args.out, report)
    sys.exit(verdict(report["agreement"]))


if __name__ == "__main__":
    main()
