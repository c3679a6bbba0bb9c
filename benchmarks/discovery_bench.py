"""Feature discovery's proof that it helps: does a model trained on the discovered features beat
(or add to) the hand-declared churn features, and is discovery's candidate computation much
faster than Featuretools DFS over the same primitives, with the same values?

    python benchmarks/discovery_bench.py [--customers 100000] [--slice-customers 50000]
        [--max-candidates 600] [--work-dir DIR] [--smoke] [--slice-only]

`--smoke` is 2,000 customers, all of them the slice: a quick check that every part runs (a
few minutes on 2 busy cores, most of it the three LightGBM fits).

Data: the demo lakes of `feature_bench.py` (`prepared_lake`: the demo generator without defects
over 2026-06-01..09-30, written as the clean tables ingestion publishes), cached under the same
work dir; the slice is the first customers of the same sequence.

1. Proof (one fresh interpreter). Labelled examples at CHURN_MODEL's as-of dates
   (`tideline.models.labels`: 10 weekly dates, the latest whose 30-day horizon the data
   covers). Then
   discovery as `flows/discover.py` runs it, but in-process (the library functions directly,
   no Prefect and no Ray, every source's events loaded once for all candidate views instead of
   once per view and partition): profile the child tables → `generate` → the candidates' values
   on the examples' spine (`compute_views`, point-in-time) → interactions of the 6 best by
   mutual information → `select` on the training split (its train and validation folds; the
   test fold is never looked at). Timed: labelling; profile + generation; candidate
   computation; interactions (screening, ranking and their computation); selection. Then
   `tideline.models.training.train_model` three times on the same examples and the same time
   split: (a) the hand-declared churn features (`tideline.demo.views.CHURN_VIEWS`, computed
   by the engine on the same spine), (b) the kept discovered features, (c) both; each reports
   the test fold's ROC-AUC and PR-AUC (LightGBM, and the logistic-regression baseline) and its time.
2. Against Featuretools (two more fresh interpreters, on the slice). Featuretools DFS with the
   nearest primitives (count, sum, mean, max, min, std, skew, num_unique, time_since_last;
   `where_primitives` count and sum with every value of each child table's categorical columns
   as interesting values, as discovery's "levels" family), max depth 1, over 7-, 30- and 90-day
   training windows at one cutoff (2026-10-01, `include_cutoff_time=False`, so a window is
   [t - w, t) as tideline's) for every customer; against discovery's profiling, generation and
   computation of all its candidates (`compute_views` on a spine of every customer at the same
   time), once on every core (`compute_views(threads=os.cpu_count())`: a process running the
   views side by side, as Ray's tasks do in the flow) and once on one thread; Featuretools runs
   on one core (its `n_jobs` fails with dask.distributed 2026.8: Featuretools 1.31 passes
   `diagnostics_port`, which `LocalCluster` no longer takes). Each case is a fresh process timed
   from outside, start-up included (`in_process_seconds`: from reading the lake to the frame
   in memory). Every Featuretools column
   whose definition (primitive, column, window, filter) has a discovery candidate is compared
   to rtol 1e-6 (atol 1e-9), after normalising Featuretools' conventions: COUNT, SUM and
   NUM_UNIQUE of an empty window are NaN there and 0 here; TIME_SINCE_LAST is in seconds and
   sees only the training window, while `days_since_last` is in days over all history, so it
   is compared in days where the last event is inside the window and must be NaN on
   Featuretools' side otherwise.

Caveats: the machine is shared (the load average before each case is recorded); discovery
computes many more candidates than DFS generates (statistics, series, ratios, sessions,
hashed buckets), so the time ratio understates the per-feature difference; discovery here is
one process, so Ray's overheads are not in these times; a model's metrics are those of one
seed. Prints tables and writes benchmarks/out/discovery_bench.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import tideline.demo
from feature_bench import AS_OF, ATOL, RTOL, PreparedLake, label, prepare, source_files
from harness import (
    Child,
    Timer,
    agreement_text,
    disagreements,
    results_path,
    verdict,
    write_results,
)
from harness import agreement as agreement_of
from rich.console import Console
from rich.table import Table
from tideline.core.settings import Settings
from tideline.demo.generator import DemoSpec
from tideline.demo.model import CHURN_MODEL
from tideline.demo.project import declared_project
from tideline.demo.views import CHURN_VIEWS, CUSTOMER, CUSTOMERS
from tideline.discovery.generate import CandidateSet, generate, interactions
from tideline.discovery.schema import ChildTable, SchemaGraph, profile
from tideline.discovery.select import SelectionRules, Selector, select
from tideline.features.engine import Events, Spine, compute_views
from tideline.features.materialize import as_of_time, load_events
from tideline.features.offline import read_source
from tideline.features.plan import plan_from_lake
from tideline.flows.discover import INTERACTING
from tideline.lake.local import LocalLake
from tideline.models.labels import label_examples, labelable_dates, load_activity
from tideline.models.training import TrainedModel, time_split, train_model

log = logging.getLogger("discovery_bench")
OWNER = "discovery-bench@example.com"
WINDOWS = (7, 30, 90)
DFS_TARGET = 20.0
"""The issue's target: discovery at least this many times faster than Featuretools DFS."""
MAX_LEVELS = 12
"""Featuretools' interesting values: every value of a text column with at most this many (the
columns discovery treats as categorical, `tideline.discovery.schema.MAX_LEVELS`)."""
FT_PRIMITIVES = ["count", "sum", "mean", "max", "min", "std", "skew", "num_unique",
                 "time_since_last"]
FT_WHERE = ["count", "sum"]
FT_AGG = {"COUNT": "count", "SUM": "sum", "MEAN": "mean", "MAX": "max", "MIN": "min",
          "STD": "std", "SKEW": "skew", "NUM_UNIQUE": "nunique",
          "TIME_SINCE_LAST": "days_since_last"}
"""Featuretools primitive -> the engine's aggregation of the same meaning."""
ZERO_WHEN_EMPTY = {"count", "sum", "nunique"}
FT_NAME = re.compile(r"^(?P<agg>[A-Z_]+)\((?P<table>\w+)(?:\.(?P<column>\w+))?"
                     r"(?: WHERE (?P<where>\w+) = (?P<level>.+))?\) \[(?P<days>\d+)d\]$")
FT_TABLES = {  # index, time index, the columns discovery profiles (no identifiers, no times)
    "transactions": ("transaction_id", "ts", ["amount", "category", "channel"]),
    "events": ("event_id", "ts", ["event_type", "session_id", "duration_s"]),
    "tickets": ("ticket_id", "created_at", ["topic", "priority", "resolution_hours"]),
}


@dataclass(frozen=True)
class Case:
    """One measurement in a fresh interpreter: `proof`, `discovery` or `featuretools`."""

    kind: str
    lake: PreparedLake
    max_candidates: int = 600
    output: str = ""
    """Where the slice cases write their frame (and discovery its candidates' definitions)."""
    threads: int = 1
    """Views computed at once by the discovery slice (`compute_views`)."""

    @classmethod
    def from_json(cls, text: str) -> Case:
        body = json.loads(text)
        return cls(**{**body, "lake": PreparedLake(**body["lake"])})


# -- the cases (each in its own interpreter) ------------------------------------------------


def _discovery_inputs(lake: PreparedLake, max_candidates: int
                      ) -> tuple[list[ChildTable], CandidateSet]:
    """The demo project's child tables of the customer, profiled at the lake's commit, and
    their candidates."""
    local = LocalLake(lake.root)
    graph = SchemaGraph.of_project(declared_project(Settings()))
    tables = [profile(local, lake.commit, source, CUSTOMER.key, graph.tables[source.dataset])
              for source, _ in graph.children(CUSTOMER)]
    return tables, generate(CUSTOMER, tables, OWNER, max_candidates, WINDOWS)


def _events(lake: PreparedLake, views: list) -> dict[str, Events]:
    """Every source the views read, loaded once for all of them (one entity partition)."""
    local = LocalLake(lake.root)
    return load_events(local, lake.commit, plan_from_lake(views, local, lake.commit))


def _metrics(trained: TrainedModel, columns: list[str], seconds: float) -> dict:
    m, b = trained.metrics, trained.baseline_metrics
    return {"features_asked": len(columns), "features_used": len(trained.matrix.columns),
            "leaks_left_out": sorted(trained.leaks),
            "roc_auc": m.roc_auc, "pr_auc": m.pr_auc, "lift_top_10": m.lift_top_10,
            "f1": m.f1, "baseline_roc_auc": b.roc_auc, "baseline_pr_auc": b.pr_auc,
            "test_rows": m.rows, "test_positives": m.positives, "seconds": seconds,
            "top_features": list(trained.importance)[:10]}


def run_proof(case: Case) -> dict:
    """Part 1: discovery on the labelled examples, then three models on one time split."""
    spec, seconds = CHURN_MODEL, {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[name] = now - clock
        clock = now
        log.info("%s: %.1f s", name, seconds[name])  # in the case's log, should it not finish

    local = LocalLake(case.lake.root)
    activity = load_activity(local, case.lake.commit, spec.label)
    dates = labelable_dates(activity, spec.label, spec.as_of_dates, spec.every_days)
    examples = label_examples(activity, spec.label, dates).reset_index(drop=True)
    spine = Spine.of(examples[CUSTOMER.key].to_numpy(), examples["as_of"])
    lap("labels")

    tables, generated = _discovery_inputs(case.lake, case.max_candidates)
    lap("profile_and_generate")
    events = _events(case.lake, generated.views)
    values = compute_views(generated.views, events, spine)
    lap("compute_candidates")

    # as flows/discover.py: the 6 best (by mutual information) of the screened, non-leaking
    # candidates pair up; their interactions are computed and join the selection
    frame = pd.concat([examples, values], axis=1)
    candidates, names, rules = dict(generated.candidates), list(values.columns), SelectionRules()
    first = Selector(frame, spec, rules)
    best = first.most_informative(names, INTERACTING)
    extra = interactions([candidates[n] for n in best], tables, CUSTOMER, OWNER, candidates)
    candidates.update(extra.candidates)
    more = compute_views(extra.views, events, spine)
    new = [c for c in more.columns if c in extra.candidates]
    frame = pd.concat([frame, more[new]], axis=1)
    del events, values, more
    lap("interactions")

    selector = Selector(frame, spec, rules)
    selector.mi.update(first.mi)
    selection = select(frame, [*names, *new], spec, rules, selector)
    lap("selection")

    hand_names = [n for view in CHURN_VIEWS for n in view.feature_names]
    hand = compute_views(CHURN_VIEWS, _events(case.lake, list(CHURN_VIEWS)), spine)
    lap("hand_features")
    data = pd.concat([examples, hand, frame[selection.kept]], axis=1)
    del frame
    models = {}
    for name, columns in (("hand-declared", hand_names), ("discovered", selection.kept),
                          ("both", [*hand_names, *selection.kept])):
        with Timer() as timer:
            trained = train_model(data, columns, spec)
        models[name] = _metrics(trained, columns, timer.seconds)
        log.info("model %s: %s", name, json.dumps(models[name]))
    folds = time_split(data, spec)
    decisions = selection.decisions
    return {
        "seconds": seconds, "models": models, "dates": folds.dates(),
        "examples": len(examples), "positives": int(examples[spec.label.name].sum()),
        "fold_rows": {f: len(getattr(folds, f)) for f in ("train", "valid", "test")},
        "generated": len(generated.candidates), "over_budget": generated.over_budget,
        "candidate_views": len(generated.views), "interactions": len(new),
        "computed": len(names) + len(new), "kept": selection.kept,
        "kept_families": dict(Counter(candidates[n].family for n in selection.kept)),
        "kept_sources": dict(Counter(candidates[n].source for n in selection.kept)),
        "steps": dict(Counter(decisions["step"])),
        "hand_features": len(hand_names),
    }


def run_discovery_slice(case: Case) -> dict:
    """Part 2, tideline's side: every candidate for every customer of the slice as of AS_OF."""
    with Timer() as timer:
        tables, generated = _discovery_inputs(case.lake, case.max_candidates)
        keys = read_source(LocalLake(case.lake.root), case.lake.commit, CUSTOMERS, CUSTOMER.key,
                           [CUSTOMER.key]).column(CUSTOMER.key).unique().to_numpy(
                               zero_copy_only=False)
        events = _events(case.lake, generated.views)
        frame = compute_views(generated.views, events,
                              Spine.of(keys, [as_of_time(AS_OF)] * len(keys)),
                              leading={CUSTOMER.key: keys}, threads=case.threads)
    frame.to_parquet(case.output)
    definitions = {c.name: [c.feature.agg, c.feature.column, c.feature.window, c.feature.filter]
                   for c in generated.candidates.values() if c.feature is not None}
    Path(case.output).with_suffix(".json").write_text(json.dumps(definitions))
    return {"seconds": timer.seconds, "candidates": len(generated.candidates),
            "declared": len(definitions), "customers": len(keys),
            "families": dict(Counter(c.family for c in generated.candidates.values()))}


def featuretools_frame(files: dict[str, list[str]], as_of: date) -> pd.DataFrame:
    """DFS over the three child tables of the customers, one call per training window."""
    import featuretools as ft  # optional: only this case needs it

    es = ft.EntitySet("discovery")
    customers = pd.read_parquet(files["customers"], columns=["customer_id"]).drop_duplicates()
    es.add_dataframe(dataframe_name="customers", dataframe=customers, index="customer_id")
    for name, (index, stamp, columns) in FT_TABLES.items():
        frame = pd.read_parquet(files[name], columns=[index, "customer_id", stamp, *columns])
        text = [c for c in columns if not pd.api.types.is_numeric_dtype(frame[c])]
        es.add_dataframe(dataframe_name=name, dataframe=frame, index=index, time_index=stamp,
                         logical_types={"customer_id": "Categorical",
                                        **dict.fromkeys(text, "Categorical")})
        es.add_relationship("customers", "customer_id", name, "customer_id")
        levels = {c: frame[c].dropna().unique().tolist() for c in text}
        interesting = {c: v for c, v in levels.items() if len(v) <= MAX_LEVELS}
        if interesting:
            es.add_interesting_values(dataframe_name=name, values=interesting)
    cutoff = pd.DataFrame({"customer_id": customers["customer_id"],
                           "time": pd.Timestamp(as_of, tz="UTC")})
    matrices = []
    for days in WINDOWS:
        matrix = ft.dfs(entityset=es, target_dataframe_name="customers", cutoff_time=cutoff,
                        training_window=f"{days} days", agg_primitives=FT_PRIMITIVES,
                        where_primitives=FT_WHERE, trans_primitives=[], max_depth=1,
                        include_cutoff_time=False, features_only=False)[0]
        matrices.append(matrix.add_suffix(f" [{days}d]"))
    return pd.concat(matrices, axis=1).rename_axis("customer_id").reset_index()


def run_featuretools_slice(case: Case) -> dict:
    files = source_files(case.lake)
    with Timer() as timer:
        frame = featuretools_frame(files, AS_OF)
    frame.to_parquet(case.output)
    return {"seconds": timer.seconds, "candidates": frame.shape[1] - 1, "customers": len(frame)}


CASES = {"proof": run_proof, "discovery": run_discovery_slice,
         "featuretools": run_featuretools_slice}


def measure(case: Case, work: Path) -> dict:
    """A case in a fresh interpreter, timed from outside (start-up and imports included, the
    same starting point for both engines); the case's own time is `in_process_seconds`."""
    load = os.getloadavg()[0]
    # the demo's declared sources and contracts describe the lake: its project file
    env = {**os.environ, "TIDELINE_PROJECT": os.environ.get("TIDELINE_PROJECT") or str(
        Path(tideline.demo.__file__).parent / "tideline.yaml")}
    with Timer() as timer:
        result = Child.case(__file__, asdict(case), work / "logs" / f"discovery-{case.kind}-"
                            f"{case.threads}-{case.lake.customers}.log", env).measured()
    result["in_process_seconds"], result["seconds"] = result["seconds"], timer.seconds
    result["peak_rss_bytes"] = result.pop("tree_peak_rss_bytes")
    return {**result, "load_average_before": load}


# -- agreement ------------------------------------------------------------------------------


def twin(column: str, definitions: dict[str, tuple]) -> str | None:
    """The discovery candidate defined as the Featuretools column is, if any."""
    found = FT_NAME.match(column)
    if found is None or found["agg"] not in FT_AGG:
        return None
    agg, days = FT_AGG[found["agg"]], int(found["days"])
    table, column_name = found["table"], found["column"]
    if agg == "days_since_last":  # over all history here: TIME_SINCE_LAST(table.<time index>)
        want = [agg, None, None, None]
    else:
        want = [agg, column_name, days,
                f"{found['where']} == {found['level']!r}" if found["where"] else None]
    for name, definition in definitions.items():
        if name.startswith(f"{table}_") and list(definition) == want:
            return name
    return None


def agreement(ours: pd.DataFrame, theirs: pd.DataFrame, definitions: dict[str, tuple]) -> dict:
    """Every Featuretools column with a discovery twin, compared (`harness.agreement`, by
    customer) after normalising Featuretools' conventions to discovery's."""
    expected, actual = {}, {}
    without_twin, pairs = [], {}
    for column in theirs.columns:
        if column == "customer_id":
            continue
        name = twin(column, definitions)
        if name is None:
            without_twin.append(column)
            continue
        pairs[column] = name
        agg, days = FT_AGG[FT_NAME.match(column)["agg"]], int(FT_NAME.match(column)["days"])
        mine = ours[name].to_numpy(float)
        other = theirs[column].to_numpy(float)
        if agg in ZERO_WHEN_EMPTY:
            other = np.nan_to_num(other, nan=0.0)
        if agg == "days_since_last":
            other = other / 86_400
            mine = np.where(mine <= days, mine, np.nan)
        expected[column], actual[column] = mine, other
    found = agreement_of(
        "featuretools", pd.DataFrame(expected, index=pd.Index(ours["customer_id"],
                                                               name="customer_id")),
        pd.DataFrame(actual, index=pd.Index(theirs["customer_id"], name="customer_id")),
        "customer_id", list(pairs), rtol=RTOL, atol=ATOL)
    found.update(pairs=pairs, without_twin=without_twin,
                 values_compared=found["compared_rows"] * len(pairs))
    return found


# -- the run --------------------------------------------------------------------------------


def report_proof(console: Console, proof: dict, args: argparse.Namespace) -> dict:
    seconds = proof["seconds"]
    discovery_seconds = (seconds["profile_and_generate"] + seconds["compute_candidates"]
                         + seconds["interactions"])
    table = Table(title=f"churn on {proof['examples']:,} labelled examples of "
                        f"{label(args.customers)} customers; test fold "
                        f"{', '.join(proof['dates']['test'])} ({proof['fold_rows']['test']:,} "
                        "rows)")
    for column in ("features", "asked", "used", "ROC-AUC", "PR-AUC", "lift@10%",
                   "baseline ROC-AUC", "baseline PR-AUC", "train s"):
        table.add_column(column, justify="left" if column == "features" else "right")
    for name, m in proof["models"].items():
        table.add_row(name, str(m["features_asked"]), str(m["features_used"]),
                      f"{m['roc_auc']:.4f}", f"{m['pr_auc']:.4f}", f"{m['lift_top_10']:.2f}",
                      f"{m['baseline_roc_auc']:.4f}", f"{m['baseline_pr_auc']:.4f}",
                      f"{m['seconds']:.1f}")
    console.print(table)
    families = ", ".join(f"{k} {v}" for k, v in proof["kept_families"].items())
    console.print(
        f"discovery: {proof['generated']} candidates generated ({proof['over_budget']} over "
        f"the budget of {args.max_candidates}) + {proof['interactions']} interactions → "
        f"{len(proof['kept'])} kept ({families}); steps: "
        f"{', '.join(f'{k} {v}' for k, v in proof['steps'].items())}")
    console.print(
        f"times: labels {seconds['labels']:.1f} s; generation + computation "
        f"{discovery_seconds:.1f} s (profile + generate {seconds['profile_and_generate']:.1f}, "
        f"candidates {seconds['compute_candidates']:.1f}, interactions "
        f"{seconds['interactions']:.1f}); selection {seconds['selection']:.1f} s; hand-declared "
        f"features {seconds['hand_features']:.1f} s; peak RSS "
        f"{proof['peak_rss_bytes'] / 2**30:.2f} GiB")
    return {"discovery_seconds": discovery_seconds, "selection_seconds": seconds["selection"],
            **{metric: {name: m[metric] for name, m in proof["models"].items()}
               for metric in ("roc_auc", "pr_auc")}}


def report_slice(console: Console, slice_: dict, check: dict, args: argparse.Namespace
                 ) -> dict:
    ours, one, theirs = slice_["discovery"], slice_["discovery 1 thread"], slice_["featuretools"]
    ratio, ratio_one = theirs["seconds"] / ours["seconds"], theirs["seconds"] / one["seconds"]
    cores = os.cpu_count() or 1
    table = Table(title=f"candidates for {ours['customers']:,} customers as of {AS_OF} "
                        f"({label(args.slice_customers)} slice)")
    for column in ("engine", "candidates", "seconds", "candidates/s", "peak RSS (GiB)",
                   "load avg before"):
        table.add_column(column, justify="left" if column == "engine" else "right")
    for name, result in ((f"tideline discovery, {cores} threads", ours),
                         ("tideline discovery, 1 thread", one),
                         ("Featuretools DFS (one core)", theirs)):
        table.add_row(name, str(result["candidates"]), f"{result['seconds']:.1f}",
                      f"{result['candidates'] / result['seconds']:.1f}",
                      f"{result['peak_rss_bytes'] / 2**30:.2f}",
                      f"{result['load_average_before']:.1f}")
    console.print(table)
    console.print(f"Featuretools DFS takes {ratio:.1f}× discovery's time on this machine's "
                  f"{cores} cores (target ≥ {DFS_TARGET:g}×: "
                  f"{'met' if ratio >= DFS_TARGET else 'NOT met'}), {ratio_one:.1f}× its time "
                  "on one thread; both computed the same frame")
    console.print(
        f"agreement: {check['columns_compared']} Featuretools features have a discovery twin "
        f"({check['values_compared']:,} values over {check['compared_rows']:,} customers): "
        f"{agreement_text(check)} (rtol {RTOL:g}); "
        f"{len(check['without_twin'])} without a twin ({', '.join(check['without_twin'])})")
    for line in disagreements({"featuretools": check}):
        console.print(f"  {line}")
    return {"featuretools_over_discovery": ratio, "target_met": ratio >= DFS_TARGET,
            "featuretools_over_discovery_one_thread": ratio_one,
            "agreement": f"{check['columns_compared'] - len(check['columns'])} of "
                         f"{check['columns_compared']} agree"}


def run_bench(args: argparse.Namespace) -> int:
    """The slice comparison first (minutes), then the proof (its three trainings are the
    longest part); the JSON is rewritten after each, so an interrupted run keeps the first."""
    console = Console(width=None if sys.stdout.isatty() else 150)
    work = Path(args.work_dir)
    for folder in ("logs", "out"):
        (work / folder).mkdir(parents=True, exist_ok=True)
    args.slice_customers = min(args.slice_customers, args.customers)
    lakes = {}
    for customers in sorted({args.slice_customers} if args.slice_only
                            else {args.customers, args.slice_customers}):
        with console.status(f"lake of {customers:,} customers (generated on first use)"):
            lakes[customers] = prepare(customers, work, args.seed)
    result: dict = {
        "customers": args.customers, "slice_customers": args.slice_customers,
        "max_candidates": args.max_candidates, "as_of": AS_OF.isoformat(), "rtol": RTOL,
        "atol": ATOL, "cpus": os.cpu_count(), "discovery_mode": "in-process (no Ray)",
        "timing": "every case a fresh process timed from outside, start-up included, once "
                  "each; discovery on every core, Featuretools on one (its n_jobs fails)",
        "lakes": {label(n): asdict(lake) for n, lake in lakes.items()}, "summary": {}}

    def save() -> None:
        write_results(results_path("discovery_bench", args.smoke), result)

    slice_, outputs = {}, {}
    for name, kind, threads in (("discovery", "discovery", os.cpu_count() or 1),
                                ("discovery 1 thread", "discovery", 1),
                                ("featuretools", "featuretools", 1)):
        outputs[name] = work / "out" / f"{name.replace(' ', '-')}-{args.slice_customers}.parquet"
        with console.status(f"{name} on the {label(args.slice_customers)} slice"):
            slice_[name] = measure(Case(kind, lakes[args.slice_customers], args.max_candidates,
                                        str(outputs[name]), threads), work)
        console.log(f"{name}: {slice_[name]['seconds']:.1f} s")
    ours = pd.read_parquet(outputs["discovery"])
    pd.testing.assert_frame_equal(pd.read_parquet(outputs["discovery 1 thread"]), ours)
    definitions = json.loads(outputs["discovery"].with_suffix(".json").read_text())
    check = agreement(ours, pd.read_parquet(outputs["featuretools"]), definitions)
    result.update(slice=slice_, agreement=check)
    result["summary"].update(report_slice(console, slice_, check, args))
    save()
    if args.slice_only:
        return verdict({"featuretools": check})
    with console.status(f"proof on {label(args.customers)} customers"):
        proof = measure(Case("proof", lakes[args.customers], args.max_candidates), work)
    result["proof"] = proof
    result["summary"].update(report_proof(console, proof, args))
    save()
    return verdict({"featuretools": check})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--slice-customers", type=int, default=50_000,
                        help="the slice Featuretools and discovery both run on")
    parser.add_argument("--max-candidates", type=int, default=600,
                        help="discovery's candidate budget (the flow's default)")
    parser.add_argument("--smoke", action="store_true",
                        help="2,000 customers, all of them the slice, for a quick check")
    parser.add_argument("--slice-only", action="store_true",
                        help="only the comparison with Featuretools (minutes), no proof")
    parser.add_argument("--seed", type=int, default=DemoSpec().seed)
    parser.add_argument("--work-dir", default="/tmp/tideline-feature-bench",
                        help="shared with feature_bench.py: its cached lakes are reused")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        handler = logging.StreamHandler()  # stderr: the case's log (Prefect owns the root's)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
        case = Case.from_json(args.case)
        print(json.dumps(CASES[case.kind](case), default=str))
        return
    if args.smoke:
        args.customers, args.slice_customers = 2_000, 2_000
    sys.exit(run_bench(args))


if __name__ == "__main__":
    main()
