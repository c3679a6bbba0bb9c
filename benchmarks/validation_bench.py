"""Validation engine throughput on a transactions-like frame, against the ingestion baseline.

    python benchmarks/validation_bench.py [--rows 1000000] [--bad 0.01] [--repeat 3]

Eight columns (ids, amount, quantity, timestamp, channel, e-mail, refund flag), `--bad` of the
rows carrying a defect (unparseable amount, bad e-mail, unknown channel, orphan customer,
duplicate; `--bad 0.9`: the worst case, most rows quarantined).
Times, median and minimum of `--repeat` runs each: `pandas.read_csv` + `to_parquet` (the
baseline), then
`validate` on the frame as read_csv gives it (numbers typed, text as object) and on the all-text
frame raw landing stores (`string` columns). The quarantine must hold exactly the rows given a
defect (`harness.agreement`); the run exits 1 otherwise. Writes
benchmarks/results/validation_bench.json (`--smoke`: benchmarks/out/).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from harness import agreement, disagreements, repeated, results_path, verdict, write_results
from rich.console import Console
from rich.table import Table
from tideline.ingestion.contracts import Contract
from tideline.ingestion.validation import validate

CONTRACT = Contract.from_dict({
    "dataset": "transactions",
    "key": ["transaction_id"],
    "columns": [
        {"name": "transaction_id", "type": "string", "regex": "t[0-9]+"},
        {"name": "customer_id", "type": "string", "nullable": False},
        {"name": "amount", "type": "float", "min": 0, "max": 10_000, "outliers": "iqr"},
        {"name": "quantity", "type": "int", "min": 1},
        {"name": "ts", "type": "timestamp", "nullable": False, "not_in_future": True},
        {"name": "channel", "type": "string", "allowed": ["web", "store", "app"]},
        {"name": "email", "type": "string", "regex": r"[^@\s]+@[^@\s]+\.[a-z]+"},
        {"name": "is_refund", "type": "bool"},
    ],
    "references": [{"column": "customer_id", "dataset": "customers", "ref_column": "customer_id"}],
    "freshness": {"column": "ts", "max_age": "400d"},
})
NOW = datetime(2026, 8, 1, tzinfo=UTC)


def transactions(rows: int, bad: float) -> tuple[pd.DataFrame, set[str], np.ndarray]:
    """The frame, the customers it may reference, and the rows given a defect."""
    rng = np.random.default_rng(0)
    customers = np.char.add("c", rng.integers(0, 200_000, rows).astype(str))
    frame = pd.DataFrame({
        "transaction_id": np.char.add("t", np.arange(rows).astype(str)),
        "customer_id": customers,
        "amount": np.round(rng.gamma(2.0, 30.0, rows), 2).astype(str),
        "quantity": rng.integers(1, 10, rows).astype(str),
        "ts": pd.date_range("2026-01-01", "2026-07-30", periods=rows, tz="UTC")
        .strftime("%Y-%m-%dT%H:%M:%SZ"),
        "channel": rng.choice(["web", "store", "app"], rows),
        "email": np.char.add(np.char.add("u", rng.integers(0, 10**6, rows).astype(str)), "@x.com"),
        "is_refund": rng.choice(["true", "false"], rows, p=[0.05, 0.95]),
    })
    defects = rng.choice(rows, int(rows * bad), replace=False)
    for i, column, value in zip(np.array_split(defects, 5), ["amount", "email", "channel",
                                "customer_id", None], ["12,5O", "nobody", "fax", "c-orphan", None],
                                strict=True):
        if column is None:  # duplicates of the first rows
            frame.iloc[i] = frame.iloc[: len(i)].to_numpy()
        else:
            frame.loc[i, column] = value
    # a duplicate is the later of two equal rows; a row of the last chunk among the first
    # rows may have been given its own values (no duplicate): what was made, not what was meant
    made = np.union1d(np.concatenate(np.array_split(defects, 5)[:4]),
                      np.flatnonzero(frame.duplicated(keep="first").to_numpy()))
    return frame, set(np.unique(customers).tolist()), made


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--bad", type=float, default=0.01)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="20,000 rows, once")
    args = parser.parse_args()
    if args.smoke:
        args.rows, args.repeat = 20_000, 1

    frame, keys, defects = transactions(args.rows, args.bad)
    refs = {"customers": keys}
    with tempfile.TemporaryDirectory() as tmp:
        csv, parquet = Path(tmp) / "tx.csv", Path(tmp) / "tx.parquet"
        frame.to_csv(csv, index=False)
        read = pd.read_csv(csv)
        text = frame.astype("string")
        runs = {
            "read_csv": repeated(args.repeat, lambda: pd.read_csv(csv)),
            "to_parquet": repeated(args.repeat, lambda: read.to_parquet(parquet)),
            "validate (read_csv frame)": repeated(
                args.repeat, lambda: validate(read, CONTRACT, references=refs, now=NOW)),
            "validate (landed text)": repeated(
                args.repeat, lambda: validate(text, CONTRACT, references=refs, now=NOW)),
        }
        result = validate(read, CONTRACT, references=refs, now=NOW)
        runs["clean.to_parquet"] = repeated(args.repeat,
                                            lambda: result.clean.to_parquet(parquet))
    timings = {name: run["median"] for name, run in runs.items()}
    baseline = timings["read_csv"] + timings["to_parquet"]
    with_validation = (timings["read_csv"] + timings["validate (read_csv frame)"]
                       + timings["clean.to_parquet"])
    rows = np.arange(args.rows)
    checks = {"quarantine": agreement(  # exactly the rows given a defect, no other
        "injected defects",
        pd.DataFrame({"row": rows, "quarantined": np.isin(rows, result.quarantine["_row"])}),
        pd.DataFrame({"row": rows, "quarantined": np.isin(rows, defects)}), "row",
        rtol=0, atol=0)}
    table = Table(title=f"validation on {args.rows:,} rows × 8 columns ({args.bad:.0%} defects)")
    for name in ("step", "median s", "min s", "rows/s (median)"):
        table.add_column(name, justify="left" if name == "step" else "right")
    for name, seconds in timings.items():
        table.add_row(name, f"{seconds:.2f}", f"{runs[name]['min']:.2f}",
                      f"{args.rows / seconds:,.0f}")
    table.add_row("read_csv + validate + to_parquet vs baseline",
                  f"{with_validation:.2f}", "", f"{with_validation / baseline:.2f}×")
    console = Console()
    console.print(table)
    console.print(f"quarantined {len(result.quarantine):,} rows, score {result.score:.2f}")
    for line in disagreements(checks):
        console.print(f"[red]{line}[/red]")
    write_results(results_path("validation_bench", args.smoke), {
        "rows": args.rows, "bad": args.bad, "repeat": args.repeat, "seconds": timings,
        "runs": runs, "agreement": checks, "smoke": args.smoke,
        "ratio_vs_baseline": with_validation / baseline,
        "quarantined": len(result.quarantine), "score": result.score,
    })
    return verdict(checks)


if __name__ == "__main__":
    sys.exit(main())
