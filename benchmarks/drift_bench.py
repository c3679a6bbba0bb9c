"""Drift report at scale: Evidently's DataDriftPreset run directly on whole frames, against
tideline's `detect_drift` (the same tests in numpy/scipy) serially and on Ray, and Evidently's
HTML report on a sample (issue "Monitoring", benchmark `drift_bench`).

    python benchmarks/drift_bench.py [--rows 1000000] [--features 47] [--seed 0]
        [--skip-evidently] [--skip-render] [--work-dir DIR] [--smoke]

Data (generated, seeded, cached as Parquet under the work dir): churn-like features, `--rows`
rows a side. Columns mix spend amounts (lognormal, some null), counts (Poisson, and a few with
at most 5 distinct values), shares in [0, 1] (beta, some null), durations, ratios with
infinities where the denominator is zero (some also null), text categoricals (two with nulls)
and a boolean flag. The current frame is an independent draw of the same distributions, with
drift injected into a third of the columns at set strengths from clear (0.6) to borderline
(0.09 .. 0.105, around the 0.1 threshold) to slight (0.03), and one column whose only change is
more nulls (nulls are not values: no drift). Numbers drift by a scale factor (or a shifted
Poisson mean / integer range) sized so the normed Wasserstein distance is about the strength;
categories and few-valued counts by mixing in another distribution (for one text column a new
category) until the Jensen-Shannon distance is the strength.

Engines, each in a fresh interpreter that reads the frames (untimed), while this process
samples the RSS of its process tree every 0.2 s (`harness.PeakMemory`; for Ray: driver, GCS,
raylet and workers; summed RSS counts pages shared through the object store once per process, so
it is an upper bound); the child also reports its own peak (`VmHWM`) and its RSS with only the
frames loaded:
- `evidently`: `Report([DataDriftPreset()]).run(current, reference)` on the full frames, as
  `Dataset`s whose data definition gives each column tideline's kind (numeric dtype: numerical,
  else categorical), so both sides pick the test for the same type; Evidently's own inference
  would call an integer column with at most 10 values categorical. Infinities become NaN first
  (untimed, `prep_seconds`): Evidently drops them only in columns that also hold a NaN.
  Scores are the `ValueDrift` metrics of `snapshot.dict()`; the verdict applies the method's
  rule with the threshold in the metric's config (K-S drifts at p <= threshold, chi-square and
  Z below it, distances at or above it).
- `serial`: `detect_drift(reference, current, policies, parallel=False)`.
- `ray`: `ray.init` on a fresh local cluster (all CPUs; timed apart), then
  `detect_drift(..., parallel=True)` (one task per group of columns, one group per CPU).
- `render`: `render_report` (Evidently's drift + summary HTML) on its default 50k-row sample,
  with the serial run's results; its scores on the sample are compared too.

Prints a table (wall time, peak memory, speed-up over Evidently, verdicts and methods that
differ from Evidently's, largest score difference) and the columns with injected drift or a
different verdict, and writes benchmarks/results/drift_bench.json (a smoke run:
benchmarks/out/drift_bench_smoke.json). Exits 1 when a full-frame engine's verdicts differ
from Evidently's (`harness.agreement`, exactly; with --skip-evidently, Ray's from the serial
run's).
The issue's target: Ray at least 3x faster than Evidently directly, with the same verdicts.
`--smoke`: 20,000 rows, no Ray and no HTML report, under a minute on an idle machine (Evidently's
fixed cost and Ray's start-up are most of it).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from harness import (
    Child,
    ChildFailed,
    Timer,
    agreement,
    current_rss,
    disagreements,
    dispatch,
    peak_rss,
    results_path,
    verdict,
    write_results,
)
from rich.console import Console
from rich.table import Table
from tideline.monitoring.drift import METHODS, ColumnDrift, ColumnPolicy, column_kind, detect_drift

DATA_VERSION = 1
"""Bump when the generated frames change, to invalidate cached ones."""
SPEEDUP_TARGET = 3.0
SMOKE_ROWS = 20_000
STRENGTHS: list[float | str] = [0.6, 0.35, 0.25, 0.2, 0.15, 0.12, 0.11, 0.105, 0.102, 0.098,
                                0.095, 0.09, 0.07, 0.05, 0.03, "nulls"]
"""Drift injected into the drifted columns (in a seeded order): the distance aimed at, or
more nulls only."""
NULLS_ADDED = 0.15
ENGINES = {"evidently": "Evidently DataDriftPreset, full frames",
           "serial": "tideline detect_drift, serial",
           "ray": "tideline detect_drift, Ray",
           "render": "Evidently HTML (render_report) on a sample"}


# -- data ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Feature:
    name: str
    kind: str
    """amount | count | uniform | few | share | duration | ratio | cat | bool"""
    params: tuple = ()
    nulls: float = 0.0
    infs: float = 0.0


FEATURES = [
    Feature("spend_7d", "amount", (3.0, 1.0)),
    Feature("txn_count_7d", "count", (3.0,)),
    Feature("plan", "cat", (("basic", "standard", "premium", "business"),
                            (0.45, 0.3, 0.2, 0.05))),
    Feature("spend_30d", "amount", (4.2, 1.0)),
    Feature("txn_count_30d", "count", (12.0,)),
    Feature("share_online_30d", "share", (2.0, 3.0), nulls=0.03),
    Feature("tickets_90d", "few", ((0, 1, 2, 3, 4), (0.7, 0.18, 0.07, 0.03, 0.02))),
    Feature("avg_txn_amount_30d", "amount", (3.3, 0.7), nulls=0.03),
    Feature("logins_7d", "count", (5.0,)),
    Feature("country", "cat", (("DE", "FR", "NL", "BE", "AT", "CH", "IT", "ES", "PT", "PL",
                                "SE", "DK"),
                               (0.22, 0.18, 0.1, 0.08, 0.07, 0.06, 0.08, 0.07, 0.03, 0.05,
                                0.03, 0.03))),
    Feature("spend_90d", "amount", (5.3, 1.1)),
    Feature("logins_30d", "count", (20.0,)),
    Feature("failed_payments_90d", "few", ((0, 1, 2, 3), (0.85, 0.1, 0.03, 0.02))),
    Feature("share_weekend_txn", "share", (2.0, 5.0), nulls=0.03),
    Feature("days_since_last_login", "duration", ("exponential", 6.0)),
    Feature("monthly_fee", "amount", (3.2, 0.4)),
    Feature("sessions_30d", "count", (25.0,)),
    Feature("payment_method", "cat", (("card", "paypal", "bank_transfer", "wallet"),
                                      (0.55, 0.25, 0.15, 0.05)), nulls=0.01),
    Feature("spend_growth_30d", "ratio", (4.2, 1.0), infs=0.02),
    Feature("plan_changes_365d", "few", ((0, 1, 2), (0.8, 0.15, 0.05))),
    Feature("share_discounted", "share", (1.0, 4.0)),
    Feature("max_txn_amount_90d", "amount", (4.5, 1.2), nulls=0.02),
    Feature("events_7d", "count", (40.0,)),
    Feature("autopay", "bool", (0.6,)),
    Feature("avg_session_minutes", "duration", ("gamma", 2.0, 6.0)),
    Feature("devices", "few", ((1, 2, 3, 4), (0.5, 0.3, 0.15, 0.05))),
    Feature("tenure_days", "uniform", (0, 2000)),
    Feature("refund_amount_90d", "amount", (2.5, 1.3), nulls=0.4),
    Feature("share_failed_logins", "share", (0.5, 8.0), nulls=0.05),
    Feature("tickets_365d", "count", (1.5,)),
    Feature("channel_pref", "cat", (("web", "app", "store"), (0.5, 0.4, 0.1))),
    Feature("login_trend_7d", "ratio", (1.6, 0.6), nulls=0.02, infs=0.01),
    Feature("days_since_last_ticket", "duration", ("exponential", 60.0), nulls=0.6),
    Feature("avg_resolution_hours", "duration", ("gamma", 1.5, 10.0), nulls=0.6),
    Feature("spend_per_login", "ratio", (4.2, 1.0), infs=0.03),
    Feature("share_mobile_sessions", "share", (3.0, 2.0)),
    Feature("txn_count_90d", "count", (36.0,)),
    Feature("support_contacts_30d", "few", ((0, 1, 2), (0.9, 0.07, 0.03))),
    Feature("balance", "amount", (5.0, 1.5)),
    Feature("share_spend_top_category", "share", (4.0, 3.0)),
    Feature("referral_count", "few", ((0, 1), (0.95, 0.05))),
    Feature("age_band", "cat", (("18-24", "25-34", "35-44", "45-54", "55-64", "65+"),
                                (0.12, 0.26, 0.24, 0.18, 0.12, 0.08)), nulls=0.05),
    Feature("avg_basket_items", "count", (4.0,), nulls=0.03),
    Feature("days_to_renewal", "uniform", (0, 365)),
    Feature("ticket_rate_90d", "ratio", (0.0, 0.8), nulls=0.02, infs=0.005),
    Feature("discount_amount_30d", "amount", (1.5, 1.0), nulls=0.3),
    Feature("share_app_logins", "share", (5.0, 5.0)),
]
NEW_CATEGORY = {"plan": "family"}
"""A text column whose drift is a category the reference never saw."""


def features(count: int) -> list[Feature]:
    """`count` features: the 47 above, repeated with a suffix when more are asked for."""
    return [Feature(f"{f.name}_{k // len(FEATURES) + 1}" if k >= len(FEATURES) else f.name,
                    f.kind, f.params, f.nulls, f.infs)
            for k in range(count) for f in [FEATURES[k % len(FEATURES)]]]


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = [np.nansum(np.where(a > 0, a * np.log(a / m), 0.0)) for a in (p, q)]
    return float(np.sqrt(max(sum(kl) / 2, 0.0)))


def mixed(p: np.ndarray, q: np.ndarray, strength: float) -> np.ndarray:
    """(1 - a) p + a q with the mixing share a found by bisection so that the Jensen-Shannon
    distance to p is `strength` (or q itself when even that is closer)."""
    if js_distance(p, q) <= strength:
        return q
    low, high = 0.0, 1.0
    for _ in range(60):
        a = (low + high) / 2
        low, high = (a, high) if js_distance(p, (1 - a) * p + a * q) < strength else (low, a)
    return (1 - high) * p + high * q


def draw(feature: Feature, rows: int, rng: np.random.Generator,
         strength: float | None) -> np.ndarray:
    """One column's values, drifted by `strength` (the distance aimed at) when given."""
    kind, params = feature.kind, feature.params
    if kind in ("few", "cat", "bool"):
        if kind == "bool":
            values, p = np.array([False, True]), np.array([1 - params[0], params[0]])
        else:
            values, p = np.array(params[0], dtype=object), np.array(params[1], dtype=float)
            p = p / p.sum()
        if strength is not None:
            if feature.name in NEW_CATEGORY:
                values = np.append(values, NEW_CATEGORY[feature.name])
                p, q = np.append(p, 0.0), np.eye(len(values))[-1]
            else:
                q = p[::-1].copy()  # the popular values become the rare ones
                if js_distance(p, q) < strength:  # (a flag: not far enough) or all the rarest
                    q = np.eye(len(p))[np.argmin(p)]
            p = mixed(p, q, strength)
        out = values[rng.choice(len(values), rows, p=p)]
        return out.astype(int) if kind == "few" else out
    if kind == "count":
        lam = params[0]
        if strength is not None:  # W1(Poisson(l), Poisson(l')) = l' - l; normed by sqrt(l)
            lam = lam + strength * math.sqrt(lam)
        return rng.poisson(lam, rows)
    if kind == "uniform":
        low, high = params
        shift = 0 if strength is None else round(strength * (high - low) / math.sqrt(12))
        return rng.integers(low, high + 1, rows) + shift
    if kind == "amount":
        values = np.round(rng.lognormal(params[0], params[1], rows), 2)
    elif kind == "share":
        values = rng.beta(params[0], params[1], rows)
    elif kind == "duration":
        values = (rng.exponential(params[1], rows) if params[0] == "exponential"
                  else rng.gamma(params[1], params[2], rows))
    else:  # ratio: this period over the last, infinite where the last had nothing
        values = rng.lognormal(params[0], params[1], rows) / rng.lognormal(
            params[0], params[1], rows)
        values[rng.random(rows) < feature.infs] = np.inf
    if strength is not None:  # scaled by 1 + k: the normed Wasserstein distance is k mean/std
        finite = values[np.isfinite(values)]
        k = strength * float(np.std(finite)) / float(np.mean(finite))
        values = values * (1 - k if kind == "share" else 1 + k)  # shares stay in [0, 1]
    return values


def frames(rows: int, count: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Reference, current, and the drift injected per column."""
    chosen = features(count)
    order = list(np.random.default_rng([seed, 99]).permutation(count))
    for name in NEW_CATEGORY:  # always among the drifted, first (the clearest drift)
        order.sort(key=lambda i: chosen[i].name != name)
    order = order[:round(count / 3)]
    injected = {chosen[i].name: STRENGTHS[k % len(STRENGTHS)] for k, i in enumerate(order)}
    sides = []
    for side in (0, 1):
        columns = {}
        for i, feature in enumerate(chosen):
            rng = np.random.default_rng([seed, side, i])
            drift = injected.get(feature.name) if side else None
            values = draw(feature, rows, rng, drift if isinstance(drift, float) else None)
            nulls = feature.nulls + (NULLS_ADDED if side and drift == "nulls" else 0.0)
            if nulls:
                missing = rng.random(rows) < nulls
                if values.dtype.kind in "iu":
                    values = values.astype(float)
                values = values.astype(object) if values.dtype.kind in "bO" else values
                values[missing] = None if values.dtype == object else np.nan
            columns[feature.name] = values
        sides.append(pd.DataFrame(columns))
    return sides[0], sides[1], injected


@dataclass(frozen=True)
class Data:
    reference: str
    current: str
    rows: int
    features: int
    seed: int
    injected: dict
    kinds: dict
    seconds: float


def prepare(rows: int, count: int, seed: int, work: Path) -> Data:
    """The frames for (rows, count, seed), generated on first use and cached as Parquet."""
    key = f"drift-{rows}-{count}-seed{seed}-v{DATA_VERSION}"
    ready = work / f"{key}.json"
    if ready.exists():
        return Data(**json.loads(ready.read_text()))
    with Timer() as timer:
        reference, current, injected = frames(rows, count, seed)
        paths = [work / f"{key}-{side}.parquet" for side in ("reference", "current")]
        reference.to_parquet(paths[0], index=False)
        current.to_parquet(paths[1], index=False)
    data = Data(str(paths[0]), str(paths[1]), rows, count, seed, injected,
                {c: column_kind(reference[c]) for c in reference.columns}, timer.seconds)
    ready.write_text(json.dumps(asdict(data)))
    return data


# -- one engine, in a fresh interpreter -------------------------------------------------------


def loaded(data: Data) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, ColumnPolicy]]:
    reference, current = pd.read_parquet(data.reference), pd.read_parquet(data.current)
    return reference, current, {c: ColumnPolicy() for c in reference.columns}


def results_of(drifts: list[ColumnDrift]) -> dict[str, dict]:
    return {d.column: {"kind": d.kind, "method": d.method, "score": d.score,
                       "threshold": d.threshold, "drifted": d.drifted, "effect": d.effect,
                       "note": d.note} for d in drifts}


def evidently_verdict(label: str, score: float, threshold: float) -> bool:
    """Evidently's rule for its method: K-S p-values drift at or below the threshold, the
    other p-values below it, distances at or above it."""
    if "p_value" in label:
        return score <= threshold if label.startswith("K-S") else score < threshold
    return score >= threshold


def evidently_results(snapshot_dict: dict) -> dict[str, dict]:
    names = {m.label: m.name for m in METHODS.values()}
    found = {}
    for metric in snapshot_dict["metrics"]:
        config = metric["config"]
        if config.get("type") != "evidently:metric_v2:ValueDrift":
            continue
        score, threshold = float(metric["value"]), float(config["threshold"])
        found[config["column"]] = {
            "method": names.get(config["method"], config["method"]), "score": score,
            "threshold": threshold,
            "drifted": evidently_verdict(config["method"], score, threshold)}
    return found


def run_evidently(data: Data) -> dict:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    reference, current, _ = loaded(data)
    rss_loaded = current_rss()
    with Timer() as prep:
        for frame in (reference, current):  # Evidently keeps inf in a column without NaN
            for column in frame.columns[[k.kind == "f" for k in frame.dtypes]]:
                frame[column] = frame[column].replace([np.inf, -np.inf], np.nan)
    definition = DataDefinition(
        numerical_columns=[c for c, k in data.kinds.items() if k == "num"],
        categorical_columns=[c for c, k in data.kinds.items() if k == "cat"])
    with Timer() as timer, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snapshot = Report([DataDriftPreset()]).run(
            Dataset.from_pandas(current, data_definition=definition),
            Dataset.from_pandas(reference, data_definition=definition))
        found = snapshot.dict()
    return {"seconds": timer.seconds, "prep_seconds": prep.seconds, "rss_loaded_bytes": rss_loaded,
            "driver_peak_rss_bytes": peak_rss(), "results": evidently_results(found)}


def run_tideline(data: Data, parallel: bool) -> dict:
    reference, current, policies = loaded(data)
    rss_loaded = current_rss()
    init = None
    if parallel:
        import ray

        with Timer() as start:
            # a fresh local cluster, never one that `ray start` left announced
            ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False,
                     log_to_driver=False, logging_level="warning")
        init = start.seconds
    with Timer() as timer:
        drifts = detect_drift(reference, current, policies, parallel=parallel)
    if parallel:
        ray.shutdown()
    return {"seconds": timer.seconds, "ray_init_seconds": init, "rss_loaded_bytes": rss_loaded,
            "driver_peak_rss_bytes": peak_rss(), "results": results_of(drifts)}


def run_render(data: Data, serial: dict, work: Path) -> dict:
    from tideline.monitoring.evidently_report import render_report

    reference, current, policies = loaded(data)
    rss_loaded = current_rss()
    drifts = [ColumnDrift(column=c, reference_rows=0, current_rows=0, **r)
              for c, r in serial.items()]
    with Timer() as timer:
        run = render_report(reference, current, drifts, policies, work / "drift_report.html")
    by_column = {d.column: d for d in drifts}
    results = {}
    for column, score in run.scores.items():
        d = by_column[column]
        label = METHODS[d.method].label
        results[column] = {"method": d.method, "score": score, "threshold": d.threshold,
                           "drifted": evidently_verdict(label, score, d.threshold)}
    return {"seconds": timer.seconds, "rss_loaded_bytes": rss_loaded, "sampled": run.sampled,
            "html_bytes": run.path.stat().st_size, "driver_peak_rss_bytes": peak_rss(),
            "results": results}


def run_case(body: dict) -> dict:
    work = Path(body["work"])
    if body["case"] == "prepare":
        return asdict(prepare(body["rows"], body["features"], body["seed"], work))
    data = Data(**body["data"])
    if body["case"] == "evidently":
        return run_evidently(data)
    if body["case"] == "render":
        return run_render(data, body["serial"], work)
    return run_tideline(data, parallel=body["case"] == "ray")


# -- comparing --------------------------------------------------------------------------------


def verdict_frame(results: dict[str, dict]) -> pd.DataFrame:
    """An engine's verdict per column, for `harness.agreement`."""
    return pd.DataFrame([{"column": column, "drifted": bool(result["drifted"])}
                         for column, result in results.items()])


def compare(expected: dict[str, dict], actual: dict[str, dict]) -> dict:
    """Verdicts, methods and scores of `actual` against `expected`, on the columns both
    tested."""
    common = [c for c in expected if c in actual]
    verdicts = [c for c in common if expected[c]["drifted"] != actual[c]["drifted"]]
    methods = [c for c in common if expected[c]["method"] != actual[c]["method"]]
    gaps = {c: abs(expected[c]["score"] - actual[c]["score"]) for c in common}
    finite = {c: g for c, g in gaps.items() if not math.isnan(g)}
    worst = max(finite, key=finite.__getitem__) if finite else None
    return {"compared": len(common), "missing": sorted(set(expected) - set(actual)),
            "verdicts_differ": verdicts, "methods_differ": methods,
            "max_score_diff": finite[worst] if worst else float("nan"),
            "max_score_diff_column": worst,
            "nan_mismatch": [c for c in common if math.isnan(gaps[c])
                             and not (math.isnan(expected[c]["score"])
                                      and math.isnan(actual[c]["score"]))]}


# -- the run ----------------------------------------------------------------------------------


def gib(value: float | None) -> str:
    return "—" if value is None else f"{value / 2**30:.2f}"


def report(console: Console, data: Data, runs: dict[str, dict], checks: dict[str, dict],
           baseline: str, failures: dict[str, str]) -> None:
    table = Table(title=f"drift report: {data.rows:,} current × {data.rows:,} reference rows × "
                        f"{data.features} features ({os.cpu_count()} CPUs)")
    for column in ("engine", "rows tested", "wall s", "Ray init s", "RSS frames loaded (GiB)",
                   "peak RSS driver (GiB)", "peak RSS tree (GiB)", f"speed-up vs {baseline}",
                   "verdicts differ", "methods differ", "max |Δscore|", "load avg before"):
        table.add_column(column, justify="left" if column == "engine" else "right")
    base = runs.get(baseline)
    for engine, run in runs.items():
        check = checks.get(engine)
        speed = "—"
        if base and engine != baseline:
            speed = f"{base['seconds'] / run['seconds']:.1f}×"
            if run.get("ray_init_seconds") is not None:
                total = run["seconds"] + run["ray_init_seconds"]
                speed += f" ({base['seconds'] / total:.1f}× with init)"
        differ = "—" if check is None else (
            f"{len(check['verdicts_differ'])} of {check['compared']}"
            + (f": {', '.join(check['verdicts_differ'])}" if check["verdicts_differ"] else ""))
        table.add_row(
            ENGINES[engine], "50k sample" if engine == "render" else f"{data.rows:,}",
            f"{run['seconds']:.1f}",
            "—" if run.get("ray_init_seconds") is None else f"{run['ray_init_seconds']:.1f}",
            gib(run["rss_loaded_bytes"]), gib(run["driver_peak_rss_bytes"]),
            gib(run["tree_peak_rss_bytes"]), speed, differ,
            "—" if check is None else str(len(check["methods_differ"])),
            "—" if check is None else f"{check['max_score_diff']:.2e}",
            f"{run['load_average_before']:.1f}")
    for engine, error in failures.items():
        table.add_row(ENGINES[engine], "failed", *[""] * 9, error.splitlines()[0][:40])
    console.print(table)

    scored = {engine: run["results"] for engine, run in runs.items()}
    reference = scored.get(baseline) or next(iter(scored.values()))
    shown = [c for c in reference if c in data.injected or any(
        c in check["verdicts_differ"] for check in checks.values())]
    detail = Table(title="columns with injected drift or a differing verdict "
                         "(score, * = drifted)")
    for column in ("column", "kind", "method", "injected", *scored):
        detail.add_column(column, justify="left" if column in ("column", "kind", "method")
                          else "right")
    for column in shown:
        cells = []
        for results in scored.values():
            r = results.get(column)
            cells.append("—" if r is None else f"{r['score']:.4g}{' *' if r['drifted'] else ''}")
        injected = data.injected.get(column, "")
        detail.add_row(column, data.kinds[column], reference[column]["method"],
                       f"{injected:g}" if isinstance(injected, float) else str(injected),
                       *cells)
    console.print(detail)
    drifted = {engine: sum(r["drifted"] for r in results.values())
               for engine, results in scored.items()}
    console.print("drifted columns: " + ", ".join(f"{e} {n}" for e, n in drifted.items()))


def run_bench(args: argparse.Namespace) -> int:
    console = Console(width=None if sys.stdout.isatty() else 200)
    rows = SMOKE_ROWS if args.smoke else args.rows
    work = Path(args.work_dir)
    (work / "logs").mkdir(parents=True, exist_ok=True)
    with console.status(f"frames: {rows:,} rows × {args.features} features (cached)"):
        data = Data(**Child.case(__file__, {"case": "prepare", "rows": rows,
                                            "features": args.features, "seed": args.seed,
                                            "work": str(work)}, work / "logs" / "prepare.log"
                                 ).result())
    console.log(f"frames ready ({data.seconds:.0f} s to generate when not cached); drift "
                f"injected into {len(data.injected)} of {data.features} columns")
    engines = [e for e in ("evidently", "serial", "ray", "render")
               if not (e == "evidently" and args.skip_evidently)
               and not (e == "render" and (args.skip_render or args.smoke))
               and not (e == "ray" and args.smoke)]  # a smoke run checks values: Ray's start
    # is most of its time, and the serial run computes the same per-column results
    runs: dict[str, dict] = {}
    failures: dict[str, str] = {}
    body = {"data": asdict(data), "work": str(work)}
    for engine in engines:
        if engine == "render" and "serial" not in runs:
            continue
        load = os.getloadavg()[0]  # anything else running skews the timing: say so
        extra = {"serial": runs["serial"]["results"]} if engine == "render" else {}
        try:
            with console.status(ENGINES[engine]):
                result = Child.case(__file__, {**body, **extra, "case": engine},
                                    work / "logs" / f"{engine}.log").measured()
        except ChildFailed as error:
            if engine != "render":
                raise
            failures[engine] = str(error)
            console.log(f"[red]{ENGINES[engine]} failed[/red]: {error}")
            continue
        runs[engine] = {**result, "load_average_before": load}
        init = result.get("ray_init_seconds")
        console.log(f"{ENGINES[engine]}: {result['seconds']:.1f} s"
                    + (f" (+ {init:.1f} s ray.init)" if init is not None else "")
                    + f", peak RSS {gib(result['tree_peak_rss_bytes'])} GiB")
    baseline = "evidently" if "evidently" in runs else "serial"
    checks = {engine: compare(runs[baseline]["results"], run["results"])
              for engine, run in runs.items() if engine != baseline}
    report(console, data, runs, checks, baseline, failures)
    full = [e for e in ("serial", "ray") if e in checks]
    # the verdicts of every full-frame engine against the baseline's, by column, exactly
    verdicts = {f"{baseline} vs {e}": agreement(
        baseline, verdict_frame(runs[e]["results"]), verdict_frame(runs[baseline]["results"]),
        "column", ["drifted"], rtol=0, atol=0) for e in full}
    disagree = {e: checks[e]["verdicts_differ"] for e in full if checks[e]["verdicts_differ"]}
    summary: dict = {"baseline": baseline, "full_frame_verdicts_agree": not disagree}
    if baseline == "evidently" and "ray" in runs:
        ray_run = runs["ray"]
        summary["ray_speedup"] = runs["evidently"]["seconds"] / ray_run["seconds"]
        summary["ray_speedup_with_init"] = runs["evidently"]["seconds"] / (
            ray_run["seconds"] + ray_run["ray_init_seconds"])
        summary["serial_speedup"] = runs["evidently"]["seconds"] / runs["serial"]["seconds"]
        met = summary["ray_speedup"] >= SPEEDUP_TARGET and not disagree
        console.print(f"Ray vs Evidently directly: {summary['ray_speedup']:.1f}× faster "
                      f"({summary['ray_speedup_with_init']:.1f}× counting ray.init), verdicts "
                      f"{'the same' if not disagree else 'DIFFER'} (target ≥ {SPEEDUP_TARGET:g}× "
                      f"with the same verdicts: {'met' if met else 'NOT met'})")
    if "render" in checks:
        sample = checks["render"]["verdicts_differ"]
        console.print(f"Evidently on the 50k sample: {len(sample)} verdict(s) differ from the "
                      f"full frames{': ' + ', '.join(sample) if sample else ''}")
    out = write_results(results_path("drift_bench", args.smoke), {
        "agreement": verdicts, "cores": os.cpu_count(),
        "rows": rows, "features": data.features, "seed": data.seed, "smoke": args.smoke,
        "cpus": os.cpu_count(), "data": asdict(data), "runs": runs, "checks": checks,
        "failures": failures, "summary": summary})
    console.log(f"written to {out}")
    for line in disagreements(verdicts):
        console.print(f"[red]{line}[/red]")
    return verdict(verdicts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows a side")
    parser.add_argument("--features", type=int, default=len(FEATURES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-evidently", action="store_true",
                        help="no direct Evidently run (Ray is compared with the serial run)")
    parser.add_argument("--skip-render", action="store_true",
                        help="no HTML report on the sample (a smoke run has none)")
    parser.add_argument("--smoke", action="store_true",
                        help=f"{SMOKE_ROWS:,} rows a side, under a minute")
    parser.add_argument("--work-dir", default="/tmp/tideline-drift-bench")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    dispatch(parser.parse_args(), run_case, run_bench)


if __name__ == "__main__":
    main()
