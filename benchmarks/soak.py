"""Soak: many consecutive incremental pipeline runs in one long-lived process, each ingesting a
new day of data that has just arrived in the demo's source systems, watching for anything that
grows without bound.

    python benchmarks/soak.py [--runs 100] [--stages ingest,features,online] [--dir DIR]
    python benchmarks/soak.py --runs 5          # a smoke run, a few minutes

The demo's history is generated once; the four source systems start with everything before the
soak's first day (`--base-days` of it) and a base run ingests that. Before run k, day k arrives:
a new CRM export file (the customers who signed up that day), the shop database's new and
updated transactions, the helpdesk API's new and updated tickets and a new segment of the app's
event log, continuing its sequence numbers. Run k is then a plain incremental ingest (run id
`soak-NNN`, each connector from its checkpoint), the feature views built as of the day after on
Ray, and the newest values materialised into the online store, all as Prefect flows in this
process against one Ray started once (as a long-lived worker would). The demo's quality gate
applies, anomalies included: a day the gate stops arrives again with the next one, and volume
is compared per day of events, so the pair is not a spike. After each run it records:

- wall seconds of the run;
- RSS of this process and of the processes it started (its Ray, whose workers stay up between
  runs, and Prefect's ephemeral server), and the open
  file descriptors of this process;
- the lake's size on disk, its number of objects;
- reconciliation per dataset: the rows that arrived in the sources since the last published
  run = rows the run landed = rows published clean + rows quarantined (a run that breaks
  either is reported; a run the quality gate stops publishes nothing, and the next one lands
  its rows too).

At the end: growth per run of RSS, descriptors, lake size and wall time fitted over the second
half of the runs (a leak shows as a steady slope once caches are warm), the peak RSS of the whole
process tree over the soak (sampled every 0.2 s), the table of runs, the rows lost by
reconciliation (printed before any verdict), a PNG of the series and
benchmarks/results/soak.json (`--smoke`: benchmarks/out/). Exit status 1 when any run failed or
did not reconcile (`harness.agreement` of the rows landed and published against the rows
arrived, per run and dataset); a run the quality gate stopped is listed, not a failure: the
gate did its job.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness import (  # noqa: E402
    PeakMemory,
    Timer,
    agreement,
    current_rss,
    disagreements,
    results_path,
    tree_rss,
    verdict,
    write_results,
)
from tideline.demo.generator import (  # noqa: E402
    DemoData,
    DemoSpec,
    generate,
    write_api_fixture,
    write_crm_csv,
    write_event_log,
    write_sql,
)
from tideline.demo.project import PROJECT_FILE, demo_placeholders  # noqa: E402 - needs the path above
from tideline.ingestion.project import fill_placeholders  # noqa: E402

STAGES = ("ingest", "features", "online")
ARRIVAL = {"customers": "signup_date", "transactions": "updated_at", "tickets": "updated_at",
           "events": "ts"}
"""The column whose day says when a dataset's row arrives in its source system."""


class GrowingSources:
    """The demo's source systems under `root`, filled a day at a time from one generated
    history. Rows whose arrival column holds no time (the generator's defects) arrive first."""

    def __init__(self, root: Path, data: DemoData, spec: DemoSpec) -> None:
        self.root, self.data, self.spec = root, data, spec
        self.arrival = {name: _days(getattr(data, name)[column])
                        for name, column in ARRIVAL.items()}
        self.arrived_until: np.datetime64 | None = None
        self.next_seq = 1
        (root / "crm").mkdir(parents=True, exist_ok=True)

    @property
    def sql_url(self) -> str:
        return f"sqlite:///{(self.root / 'shop.db').resolve()}"

    @property
    def tickets_file(self) -> Path:
        return self.root / "api" / "tickets.jsonl"

    def arrive(self, until: date) -> dict[str, int]:
        """Everything before `until` not yet in the sources, into them; rows per dataset."""
        end = np.datetime64(until, "D")
        batch = {}
        for name, days in self.arrival.items():
            due = days < end
            due &= (days >= self.arrived_until) if self.arrived_until is not None else (
                due | np.isnat(days))
            batch[name] = getattr(self.data, name)[due]
        data = replace(self.data, **batch)
        first = self.arrived_until is None
        if len(data.customers):
            write_crm_csv(data, self.root / "crm" / f"customers-{until:%Y-%m-%d}.csv")
        if len(data.transactions) or first:
            write_sql(data, self.sql_url, append=not first)
        if len(data.tickets) or first:
            write_api_fixture(data, self.tickets_file, append=not first)
        if len(data.events):
            write_event_log(data, self.root / "events", first_seq=self.next_seq)
            self.next_seq += len(data.events)
        self.arrived_until = end
        return {name: len(frame) for name, frame in batch.items()}

    @contextmanager
    def project(self) -> Iterator[Path]:
        """The demo project over these sources (not the demo's own, which tideline would
        generate), its helpdesk API served: the project file."""
        with demo_placeholders(self.root, self.spec.end) as placeholders:
            text = fill_placeholders(PROJECT_FILE.read_text(encoding="utf-8"), placeholders)
            text = text.replace("\ndemo: true\n", "\ndemo: false\n", 1)
            path = self.root / "tideline.yaml"
            path.write_text(text, encoding="utf-8")
            yield path


def _days(values: pd.Series) -> np.ndarray:
    """Each value's UTC day (NaT where it is no time)."""
    stamps = pd.to_datetime(values, utc=True, errors="coerce", format="mixed")
    return stamps.dt.tz_localize(None).to_numpy().astype("datetime64[D]")


def lake_footprint(lake_dir: Path) -> tuple[int, int]:
    """Bytes on disk under the lake and its number of stored objects."""
    size = objects = 0
    for path in lake_dir.rglob("*"):
        if path.is_file():
            size += path.stat().st_size
            objects += path.parts[len(lake_dir.parts)] == "objects"
    return size, objects


def run_once(k: int, day: date, arrived: dict[str, int], stages: list[str]) -> dict:
    """Run k: an incremental ingest of the day that arrived, then (optionally) features and
    the online store."""
    from tideline.flows.build_features import build_features, materialize_online
    from tideline.flows.ingest import ingest

    run_id = f"soak-{k:03d}"
    with Timer() as timer:
        audit = ingest(run_id=run_id)
        datasets = {o.dataset: {"arrived": arrived.get(o.dataset, 0), "rows": o.rows,
                                "clean": o.clean, "quarantined": o.quarantined,
                                "rejected": o.rejected} for o in audit.outcomes}
        result: dict = {"run": k, "day": day.isoformat(), "datasets": datasets}
        if "features" in stages:
            build = build_features(run_id=run_id, as_of=[day + timedelta(days=1)])
            result["features"] = {"entities": build.entities, "features": build.features}
        if "online" in stages:
            result["online_written"] = sum(w.written for w in materialize_online())
    result["seconds"] = timer.seconds
    result["reconciled"] = all(d["arrived"] == d["rows"] == d["clean"] + d["quarantined"]
                               for d in datasets.values())
    return result


def slope(values: list[float]) -> float:
    """Least-squares growth per run over the second half of the runs."""
    half = values[len(values) // 2:]
    if len(half) < 2:
        return 0.0
    return float(np.polyfit(np.arange(len(half)), half, 1)[0])


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r["run"] for r in runs]
    series = [("seconds per run", [r["seconds"] for r in runs]),
              ("driver RSS (MB)", [r["rss"] / 1e6 for r in runs]),
              ("Ray + Prefect RSS (MB)", [r["ray_rss"] / 1e6 for r in runs]),
              ("open fds", [r["fds"] for r in runs]),
              ("lake size (MB)", [r["lake_bytes"] / 1e6 for r in runs])]
    figure, axes = plt.subplots(len(series), 1, figsize=(8, 2 * len(series)), sharex=True)
    for axis, (label, values) in zip(axes, series, strict=True):
        axis.plot(x, values, marker=".")
        axis.set_ylabel(label, fontsize=8)
        axis.grid(alpha=0.3)
    axes[-1].set_xlabel("run")
    figure.suptitle("tideline soak: consecutive incremental runs")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--stages", default=",".join(STAGES),
                        help=f"comma-separated, from {', '.join(STAGES)} (ingest always runs)")
    parser.add_argument("--base-days", type=int, default=14,
                        help="days of history the base run lands before the first soak run")
    parser.add_argument("--customers", type=int, default=30_000,
                        help="customers in the generated history (the demo has 3,000: a day of "
                             "it is a dozen tickets, too few for the quality gate's score and "
                             "volume checks to be steady)")
    parser.add_argument("--dir", default=None, help="data directory (default: a new temp dir)")
    parser.add_argument("--smoke", action="store_true",
                        help="2 runs of 2,000 customers, ingest only; results to benchmarks/out/")
    args = parser.parse_args()
    if args.smoke:
        args.runs, args.customers, args.stages = 2, 2_000, "ingest"
    stages = args.stages.split(",")
    unknown = set(stages) - set(STAGES)
    if unknown:
        parser.error(f"unknown stages: {', '.join(sorted(unknown))}")
    data_dir = Path(args.dir or tempfile.mkdtemp(prefix="tideline-soak-"))
    os.environ["TIDELINE_DATA_DIR"] = str(data_dir)
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_HOME", str(data_dir / "prefect"))  # its own run database
    # a loaded machine can take longer than Prefect's 20 s to start its ephemeral server
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    spec = DemoSpec(customers=args.customers)
    first = spec.start + timedelta(days=args.base_days)
    if args.runs > (spec.end - first).days + 1:
        parser.error(f"the demo's history has {(spec.end - first).days + 1} days after "
                     f"the base run's {args.base_days}")
    console = Console()
    with console.status("generating the demo's history"):
        sources = GrowingSources(data_dir / "sources", generate(spec), spec)
        sources.arrive(first)
    with sources.project() as project_file, PeakMemory() as memory:
        os.environ["TIDELINE_PROJECT"] = str(project_file)
        runs, stopped, failures = soak(console, sources, first, args.runs, stages, data_dir)
    checks = reconciliation(runs)
    report(console, runs, stopped, failures, data_dir, memory.peak, checks, args.smoke)
    return 1 if failures or not runs or verdict(checks) else 0


def reconciliation(runs: list[dict]) -> dict[str, dict]:
    """Per run and dataset, what the run landed and published (clean + quarantined) against
    what arrived in the sources (`harness.agreement`, exactly)."""
    ours, arrived = [], []
    for run in runs:
        for dataset, d in run["datasets"].items():
            key = f"run {run['run']}: {dataset}"
            ours.append({"run": key, "landed": d["rows"],
                         "published": d["clean"] + d["quarantined"]})
            arrived.append({"run": key, "landed": d["arrived"], "published": d["arrived"]})
    if not ours:
        return {}
    return {"sources": agreement("sources", pd.DataFrame(ours), pd.DataFrame(arrived), "run",
                                 rtol=0, atol=0)}


def soak(console: Console, sources: GrowingSources, first: date, count: int,
         stages: list[str], data_dir: Path) -> tuple[list[dict], list[str], list[str]]:
    """The base run, then `count` runs each after a day's arrival: their records, the runs the
    quality gate stopped (their rows land with the next run) and what went wrong."""
    from tideline.core.errors import QualityGateFailed
    from tideline.core.ray_runtime import ensure_ray
    from tideline.flows.ingest import ingest

    if "features" in stages:
        ensure_ray()
    with console.status(f"base run: everything before {first}"):
        ingest(run_id="soak-base")
    me = psutil.Process()
    runs: list[dict] = []
    failures: list[str] = []
    stopped: list[str] = []
    with Progress(console=console) as progress:
        task = progress.add_task("soak", total=count)
        pending: Counter[str] = Counter()  # arrived, not yet published
        for k in range(count):
            day = first + timedelta(days=k)
            pending.update(sources.arrive(day + timedelta(days=1)))
            try:
                result = run_once(k, day, dict(pending), stages)
            except QualityGateFailed as exc:
                stopped.append(f"run {k}: {exc}")
                progress.advance(task)
                continue
            except Exception as exc:  # a soak records a failed run and goes on
                failures.append(f"run {k}: {type(exc).__name__}: {exc}")
                progress.advance(task)
                continue
            pending.clear()
            result["rss"], result["fds"] = current_rss(), me.num_fds()
            # the processes this one started: its Ray's raylet, GCS and workers, and Prefect's
            # ephemeral server (not those of any other Ray on the machine)
            result["ray_rss"] = tree_rss(os.getpid(), children_only=True)[0]
            result["lake_bytes"], result["lake_objects"] = lake_footprint(data_dir / "lake")
            runs.append(result)
            if not result["reconciled"]:
                failures.append(f"run {k}: arrived != landed != clean + quarantined: "
                                f"{result['datasets']}")
            progress.advance(task)
    return runs, stopped, failures


def report(console: Console, runs: list[dict], stopped: list[str], failures: list[str],
           data_dir: Path, peak_tree_rss: int, checks: dict[str, dict], smoke: bool) -> None:
    table = Table(title=f"soak: {len(runs)} runs in {data_dir}")
    for column in ("run", "day", "s", "rows in", "clean", "quarantined", "RSS MB", "children MB",
                   "fds", "lake MB", "objects"):
        table.add_column(column, justify="right")
    step = max(1, len(runs) // 20)
    for r in runs[::step] + ([runs[-1]] if runs and (len(runs) - 1) % step else []):
        rows = sum(d["rows"] for d in r["datasets"].values())
        clean = sum(d["clean"] for d in r["datasets"].values())
        quarantined = sum(d["quarantined"] for d in r["datasets"].values())
        table.add_row(str(r["run"]), r["day"], f"{r['seconds']:.1f}", f"{rows:,}", f"{clean:,}",
                      f"{quarantined:,}", f"{r['rss'] / 1e6:.0f}", f"{r['ray_rss'] / 1e6:.0f}",
                      str(r["fds"]), f"{r['lake_bytes'] / 1e6:.1f}", f"{r['lake_objects']:,}")
    console.print(table)
    growth = {name: slope([r[key] for r in runs]) for name, key in
              (("rss_bytes_per_run", "rss"), ("ray_rss_bytes_per_run", "ray_rss"),
               ("fds_per_run", "fds"), ("lake_bytes_per_run", "lake_bytes"),
               ("seconds_per_run", "seconds"))}
    console.print("growth per run over the second half: " + ", ".join(
        f"{name} {value:,.1f}" for name, value in growth.items())
        + f"; peak RSS of the process tree {peak_tree_rss / 1e6:,.0f} MB")
    arrived = sum(d["arrived"] for r in runs for d in r["datasets"].values())
    published = sum(d["clean"] + d["quarantined"] for r in runs for d in r["datasets"].values())
    console.print(f"reconciliation: {arrived:,} rows arrived, {published:,} published clean or "
                  f"quarantined, rows lost {arrived - published:,}")
    for line in disagreements(checks):
        console.print(f"[red]{line}[/red]")
    for gate in stopped:
        console.print(f"[yellow]stopped by the quality gate: {gate}[/yellow]")
    for failure in failures:
        console.print(f"[red]{failure}[/red]")
    out = results_path("soak", smoke)
    write_results(out, {"runs": runs, "growth": growth, "peak_tree_rss_bytes": peak_tree_rss,
                        "stopped_by_gate": stopped, "failures": failures,
                        "rows_arrived": arrived, "rows_published": published,
                        "rows_lost": arrived - published, "agreement": checks})
    if runs:
        plot(runs, out.with_suffix(".png"))
    console.print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    sys.exit(main())
