"""Local lake write+commit overhead versus plain pyarrow writes to a directory.

    python benchmarks/lake_bench.py [--big-gb 1.0] [--small 1000] [--repeat 3]

Two loads: 1,000 small Parquet files (one commit), and one ~1 GB Parquet dataset. Each is timed
as plain `pyarrow.parquet.write_table` into a directory and as `lake.tables.write_table` + commit
into the local lake, on the same disk. Prints a table and writes benchmarks/out/lake_bench.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from lake.local import LocalLake
from lake.tables import read_table, write_table


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


def timed(fn) -> float:  # noqa: ANN001
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(args: argparse.Namespace) -> dict:
    work = Path(tempfile.mkdtemp(dir=args.dir))
    smalls, big = small_tables(args.small), big_table(args.big_gb)
    results: dict[str, list[float]] = {
        k: []
        for k in (
            "small_plain",
            "small_lake",
            "big_plain",
            "big_lake",
            "big_read_plain",
            "big_read_lake",
        )
    }
    try:
        for attempt in range(args.repeat):
            plain, lake_dir = work / f"plain{attempt}", work / f"lake{attempt}"
            plain.mkdir()
            lake = LocalLake(lake_dir)

            def small_plain() -> None:
                for i, table in enumerate(smalls):
                    pq.write_table(table, plain / f"part-{i:05d}.parquet")

            def small_lake() -> None:
                for i, table in enumerate(smalls):
                    write_table(lake, "main", f"small/part-{i:05d}.parquet", table)
                lake.commit("main", "1,000 small files")

            results["small_plain"].append(timed(small_plain))
            results["small_lake"].append(timed(small_lake))
            results["big_plain"].append(timed(lambda: pq.write_table(big, plain / "big.parquet")))
            results["big_lake"].append(
                timed(
                    lambda: (
                        write_table(lake, "main", "big/big.parquet", big),
                        lake.commit("main", "big"),
                    )
                )
            )
            results["big_read_plain"].append(timed(lambda: pq.read_table(plain / "big.parquet")))
            results["big_read_lake"].append(
                timed(lambda: read_table(lake, "main", "big/big.parquet"))
            )
            shutil.rmtree(plain)
            shutil.rmtree(lake_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    size = big.nbytes
    return {
        "big_bytes_in_memory": size,
        "small_files": args.small,
        "repeat": args.repeat,
        "median_seconds": {k: statistics.median(v) for k, v in results.items()},
        "all_seconds": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big-gb", type=float, default=1.0)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default=None, help="scratch directory (default: system temp)")
    report = run(parser.parse_args())
    med = report["median_seconds"]
    table = Table(title=f"local lake vs plain pyarrow (median of {report['repeat']})")
    for column in ("load", "plain pyarrow (s)", "local lake (s)", "lake / plain"):
        table.add_column(column)
    for label, key in (
        ("1,000 small files, write + commit", "small"),
        (f"one {report['big_bytes_in_memory'] / 1024**3:.2f} GiB table, write + commit", "big"),
        ("same table, read back (checksum verified)", "big_read"),
    ):
        plain, lake = med[f"{key}_plain"], med[f"{key}_lake"]
        table.add_row(label, f"{plain:.2f}", f"{lake:.2f}", f"{lake / plain:.2f}×")
    Console().print(table)
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "lake_bench.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
