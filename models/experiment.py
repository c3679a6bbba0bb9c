"""Online experiments between a model's champion and a challenger: in `shadow` the challenger
scores the same customers and nothing acts on its scores; in a `split` a stable share of the
customers (a hash of the experiment's name and the entity key, so a customer stays in one arm)
gets the challenger's score as the one acted on.

Once the label horizon of a scoring day has passed, each arm's outcome is measured on the
realised labels: the primary metric, declared when the experiment starts, is a proportion
(`flagged_churn_rate`: churners among the customers flagged high-risk, higher is better;
`churn_rate`: churners among all the arm's customers, lower is better), compared with a
two-sided two-proportion z-test. The sample size per arm is fixed at the start from the
smallest effect worth detecting (`min_effect`), the champion's expected rate, `alpha` and
`power`; before both arms reach it the verdict is "too early", whatever the data look like
(looking every day and stopping at the first small p-value would inflate false positives).
"""
from __future__ import annotations

import hashlib
import html
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy.stats import norm
from tideline.core.errors import ModelError
from tideline.core.plots import figure_png
from tideline.lake.base import Lake
from tideline.lake.tables import read_frame
from tideline.models.evaluation import evaluate
from tideline.models.labels import ChurnLabel, label_examples, load_activity

Mode = Literal["shadow", "split"]
MODES: tuple[str, ...] = ("shadow", "split")
METRICS: dict[str, int] = {"flagged_churn_rate": +1, "churn_rate": -1}
"""The primary metrics and their direction: +1 when higher is better."""
ARMS = ("champion", "challenger")


@dataclass(frozen=True)
class Experiment:
    """One experiment, as declared when it starts (`tideline models experiment start`)."""

    name: str
    model: str
    champion: int
    """The champion's version when the experiment started: the control."""
    challenger: int
    mode: Mode = "shadow"
    share: float = 0.5
    """In a split, the share of customers whose acted-on score is the challenger's."""
    metric: str = "flagged_churn_rate"
    baseline: float = 0.5
    """The control's expected rate of `metric` (e.g. the champion's test precision)."""
    min_effect: float = 0.05
    """The smallest absolute difference in `metric` worth detecting."""
    alpha: float = 0.05
    power: float = 0.8
    status: Literal["running", "stopped", "concluded"] = "running"
    started_at: datetime | None = None
    outcome: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = []
        if self.mode not in MODES:
            problems.append(f"mode {self.mode!r} is not one of {', '.join(MODES)}")
        if not 0 < self.share < 1:
            problems.append(f"share {self.share} must be between 0 and 1")
        if self.metric not in METRICS:
            problems.append(f"metric {self.metric!r} is not one of {', '.join(METRICS)}")
        if not 0 < self.baseline < 1:
            problems.append(f"baseline {self.baseline} must be a rate between 0 and 1")
        if not 0 < self.min_effect < 1:
            problems.append(f"min_effect {self.min_effect} must be between 0 and 1")
        if not (0 < self.alpha < 0.5 and 0.5 <= self.power < 1):
            problems.append(f"alpha {self.alpha} must be in (0, 0.5) and power {self.power} "
                            "in [0.5, 1)")
        if self.champion == self.challenger:
            problems.append(f"the challenger v{self.challenger} is the champion itself")
        if problems:
            raise ModelError(f"experiment {self.name!r}: " + "; ".join(problems))

    @property
    def required_per_arm(self) -> int:
        """Customers each arm needs (with a measured outcome) before a verdict."""
        better = self.baseline + METRICS[self.metric] * self.min_effect
        return sample_size(self.baseline, min(max(better, 1e-6), 1 - 1e-6), self.alpha,
                           self.power)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def assign(name: str, keys: Sequence[Any] | np.ndarray, share: float) -> np.ndarray:
    """True where a key falls in the challenger's arm: the first 8 bytes of
    blake2b(name, key) as a fraction of 2⁶⁴, below `share`. The same for a key whatever else
    is scored with it, in any order, in batch and online."""
    scale = float(2**64)
    return np.fromiter(
        (int.from_bytes(hashlib.blake2b(f"{name}\x00{key}".encode(), digest_size=8).digest(),
                        "big") / scale < share for key in keys), dtype=bool, count=len(keys))


def sample_size(p1: float, p2: float, alpha: float, power: float) -> int:
    """Customers per arm for a two-sided two-proportion z-test at `alpha` to detect the
    difference between `p1` and `p2` with probability `power` (equal arms)."""
    if p1 == p2:
        raise ModelError(f"no sample size detects a difference of 0 (both rates {p1})")
    z_a, z_b = norm.ppf(1 - alpha / 2), norm.ppf(power)
    pooled = (p1 + p2) / 2
    n = (z_a * math.sqrt(2 * pooled * (1 - pooled))
         + z_b * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))) ** 2 / (p1 - p2) ** 2
    return math.ceil(n)


@dataclass(frozen=True)
class ArmOutcome:
    """One arm's outcome on the realised labels."""

    arm: str
    model: str
    customers: int
    flagged: int
    churned: int
    """Churners among the customers the metric counts (flagged ones, or all)."""
    counted: int
    """The customers the metric counts: its denominator."""
    rate: float
    low: float
    high: float
    """The rate's 95% Wilson interval."""
    metrics: dict[str, float]
    """ROC-AUC, PR-AUC, precision, recall and F1 of the arm's acted-on scores."""


@dataclass(frozen=True)
class Verdict:
    status: Literal["too early", "significant", "not significant", "shadow"]
    winner: Literal["champion", "challenger"] | None
    difference: float
    """Challenger's rate minus the champion's."""
    low: float
    high: float
    """The difference's (1 - alpha) Wald interval."""
    p_value: float
    required_per_arm: int
    needed_for_observed: int | None
    """Customers per arm that the difference observed would need for `power`."""
    message: str


def wilson(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    if not n:
        return 0.0, 1.0
    p = successes / n
    centre, spread = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n), (centre + spread) / (1 + z * z / n)


def compare(control: ArmOutcome, treatment: ArmOutcome, experiment: Experiment) -> Verdict:
    """The fixed-sample two-proportion z-test on the primary metric, or "too early" before
    both arms have `required_per_arm` counted customers."""
    n1, n2 = control.counted, treatment.counted
    p1, p2 = control.rate, treatment.rate
    difference = p2 - p1
    required = experiment.required_per_arm
    spread = math.sqrt(p1 * (1 - p1) / max(n1, 1) + p2 * (1 - p2) / max(n2, 1))
    z_ci = norm.ppf(1 - experiment.alpha / 2)
    low, high = difference - z_ci * spread, difference + z_ci * spread
    pooled = (control.churned + treatment.churned) / max(n1 + n2, 1)
    se = math.sqrt(pooled * (1 - pooled) * (1 / max(n1, 1) + 1 / max(n2, 1)))
    p_value = float(2 * norm.sf(abs(difference) / se)) if se > 0 else 1.0
    observed = sample_size(p1, p2, experiment.alpha, experiment.power) if (
        0 < p1 < 1 and 0 < p2 < 1 and p1 != p2) else None
    if min(n1, n2) < required:
        return Verdict("too early", None, difference, low, high, p_value, required, observed,
                       f"{min(n1, n2):,} of the {required:,} customers per arm fixed at the "
                       f"start have an outcome; no verdict before then")
    if p_value >= experiment.alpha:
        return Verdict("not significant", None, difference, low, high, p_value, required,
                       observed, f"{experiment.metric} differs by {difference:+.4f} "
                       f"(p = {p_value:.3g} ≥ {experiment.alpha}): no winner")
    better = difference * METRICS[experiment.metric] > 0
    winner: Literal["champion", "challenger"] = "challenger" if better else "champion"
    return Verdict("significant", winner, difference, low, high, p_value, required, observed,
                   f"{experiment.metric} differs by {difference:+.4f} (p = {p_value:.3g} < "
                   f"{experiment.alpha}): the {winner} is better")


def arm_outcome(arm: str, model: str, labels: np.ndarray, probability: np.ndarray,
                flagged: np.ndarray, metric: str, threshold: float) -> ArmOutcome:
    """An arm's outcome from its customers' realised labels (1: churned), the acted-on
    probabilities and whether each was flagged high-risk."""
    labels, flagged = np.asarray(labels, dtype=bool), np.asarray(flagged, dtype=bool)
    counted = flagged if metric == "flagged_churn_rate" else np.ones_like(labels)
    churned, n = int(labels[counted].sum()), int(counted.sum())
    low, high = wilson(churned, n)
    scores = {}
    if 0 < labels.sum() < len(labels):
        m = evaluate(labels.astype(int), np.asarray(probability, dtype=float), threshold)
        scores = {k: round(float(getattr(m, k)), 6)
                  for k in ("roc_auc", "pr_auc", "precision", "recall", "f1")}
    return ArmOutcome(arm, model, len(labels), int(flagged.sum()), churned, n,
                      churned / n if n else 0.0, low, high, scores)


def outcomes(scored: pd.DataFrame, labels: pd.DataFrame, key: str, label: str,
             experiment: Experiment, thresholds: dict[str, float]
             ) -> tuple[list[ArmOutcome], Verdict]:
    """Each arm's outcome and the verdict, from the experiment's scored rows (`key`, `as_of`,
    `arm`, and per model `probability_<arm>`, `risk_<arm>`) joined to the realised labels
    (`key`, `as_of`, `label`). In a split each arm is judged by its own acted-on scores; in
    shadow both models are judged on every customer (no significance test: the same
    customers, and nothing was acted on)."""
    joined = scored.merge(labels[[key, "as_of", label]], on=[key, "as_of"], how="inner")
    if joined.empty:
        raise ModelError(f"experiment {experiment.name!r}: no scored customer has a realised "
                         "label yet; wait until the label horizon has passed")
    arms = []
    for arm in ARMS:
        rows = joined if experiment.mode == "shadow" else joined[
            joined["arm"] == arm]
        version = experiment.champion if arm == "champion" else experiment.challenger
        arms.append(arm_outcome(arm, f"{experiment.model}:v{version}",
                                rows[label].to_numpy(), rows[f"probability_{arm}"].to_numpy(),
                                (rows[f"risk_{arm}"] == "high").to_numpy(), experiment.metric,
                                thresholds[arm]))
    verdict = compare(arms[0], arms[1], experiment)
    if experiment.mode == "shadow":
        verdict = Verdict("shadow", None, verdict.difference, verdict.low, verdict.high,
                          verdict.p_value, verdict.required_per_arm, verdict.needed_for_observed,
                          "shadow: both models scored the same customers and nothing acted on "
                          "the challenger; put it in a split to judge it")
    return arms, verdict


# -- scores and outcomes in the lake -----------------------------------------------------------


def scores_path(name: str, day: date) -> str:
    return f"experiments/{name}/as_of={day:%Y-%m-%d}/scores.parquet"


def split_scores(experiment: Experiment, champion: pd.DataFrame, challenger: pd.DataFrame,
                 key: str, day: date) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The acted-on scores (the champion's, but in a split the challenger's for its arm, with
    the `model` and `model_version` each row was scored with) and the experiment's rows:
    both models' scores of every customer, with the arm. Both score frames hold the same
    customers in the same order (the same population, or the same request)."""
    keys = champion[key].to_numpy()
    if len(challenger) != len(keys) or not (challenger[key].to_numpy() == keys).all():
        raise ModelError(f"experiment {experiment.name!r}: the challenger scored other "
                         f"customers than the champion ({len(challenger):,} against "
                         f"{len(keys):,}); both must score the same population")
    both = {f"{column}_{arm}": frame[column].to_numpy()
            for arm, frame in (("champion", champion), ("challenger", challenger))
            for column in ("probability", "risk", "reasons")}
    on = assign(experiment.name, keys, experiment.share) if experiment.mode == "split" else (
        np.zeros(len(keys), dtype=bool))
    arms = np.where(on, "challenger", "champion")
    acted = champion.copy()
    for column in ("probability", "risk", "reasons"):
        acted[column] = np.where(on, both[f"{column}_challenger"], both[f"{column}_champion"])
    acted["model"] = np.where(on, f"{experiment.model}:v{experiment.challenger}",
                              f"{experiment.model}:v{experiment.champion}")
    acted["model_version"] = np.where(on, experiment.challenger, experiment.champion)
    rows = pd.DataFrame({
        key: keys, "as_of": pd.Timestamp(day, tz="UTC"), "arm": arms,
        **{f"{column}_{arm}": both[f"{column}_{arm}"]
           for arm in ARMS for column in ("probability", "risk")}})
    return acted, rows


def read_scores(lake: Lake, ref: str, name: str) -> pd.DataFrame:
    """Every day's experiment rows of `name` at `ref` (empty when nothing was scored yet)."""
    parts = [read_frame(lake, ref, info.path) for info in lake.list(ref, f"experiments/{name}/")
             if info.path.endswith("/scores.parquet")]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


@dataclass(frozen=True)
class Measured:
    """An experiment's outcome so far: the days measured, each arm, the verdict."""

    experiment: Experiment
    days: tuple[str, ...]
    waiting: tuple[str, ...]
    """Days scored whose label horizon has not passed yet."""
    arms: tuple[ArmOutcome, ...]
    verdict: Verdict

    def as_dict(self) -> dict[str, Any]:
        return {"experiment": self.experiment.name, "model": self.experiment.model,
                "mode": self.experiment.mode, "metric": self.experiment.metric,
                "days": list(self.days), "waiting": list(self.waiting),
                "arms": [asdict(arm) for arm in self.arms], "verdict": asdict(self.verdict)}


def measure(lake: Lake, ref: str, label: ChurnLabel, experiment: Experiment,
            thresholds: dict[str, float]) -> Measured | None:
    """The outcome of every scored day whose horizon has passed at `ref`; None before any
    day has."""
    scored = read_scores(lake, ref, experiment.name)
    if scored.empty:
        return None
    activity = load_activity(lake, ref, label)
    end = activity.last_day + timedelta(days=1)
    days = sorted(set(scored["as_of"].dt.date))
    ready = [d for d in days if d + timedelta(days=label.horizon_days) <= end]
    waiting = tuple(f"{d}" for d in days if d not in ready)
    if not ready:
        return None
    labels = label_examples(activity, label, ready)
    scored = scored[scored["as_of"].dt.date.isin(ready)]
    arms, verdict = outcomes(scored, labels, label.entity_key, label.name, experiment,
                             thresholds)
    return Measured(experiment, tuple(f"{d}" for d in ready), waiting, tuple(arms), verdict)


def report_html(measured: Measured) -> str:
    """A page people read: the verdict, each arm's rate with its interval (a plot), counts,
    model metrics on the realised labels."""
    e, v = measured.experiment, measured.verdict
    figure = Figure(figsize=(6, 3.2))
    axes = figure.subplots()
    rates = [arm.rate for arm in measured.arms]
    errors = [[arm.rate - arm.low for arm in measured.arms],
              [arm.high - arm.rate for arm in measured.arms]]
    axes.bar([f"{arm.arm}\n{arm.model}" for arm in measured.arms], rates, yerr=errors,
             capsize=8, color=["#8da0cb", "#fc8d62"])
    axes.set_ylabel(e.metric.replace("_", " "))
    axes.set_title(f"{e.name}: {v.status}")
    rows = "".join(
        f"<tr><td>{html.escape(a.arm)}</td><td>{html.escape(a.model)}</td>"
        f"<td>{a.customers:,}</td><td>{a.flagged:,}</td><td>{a.churned:,} / {a.counted:,}</td>"
        f"<td>{a.rate:.4f} [{a.low:.4f}, {a.high:.4f}]</td>"
        + "".join(f"<td>{a.metrics.get(k, float('nan')):.4f}</td>"
                  for k in ("roc_auc", "pr_auc", "precision", "recall", "f1")) + "</tr>"
        for a in measured.arms)
    needed = f"{v.needed_for_observed:,}" if v.needed_for_observed else "—"
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>Experiment {html.escape(e.name)}</title></head><body style="font-family:sans-serif">
<h1>Experiment {html.escape(e.name)}: {html.escape(e.model)} v{e.champion} (champion) vs
v{e.challenger} (challenger)</h1>
<p><b>{html.escape(v.status)}</b>: {html.escape(v.message)}</p>
<p>Mode {e.mode}{f", {e.share:.0%} of customers on the challenger" if e.mode == "split" else ""};
primary metric <code>{e.metric}</code> declared at the start, alpha {e.alpha}, power {e.power},
smallest effect {e.min_effect} from {e.baseline:.3f}: {v.required_per_arm:,} customers per arm
needed. Difference {v.difference:+.4f}, interval [{v.low:+.4f}, {v.high:+.4f}], p = {v.p_value:.3g};
the difference observed would need {needed} per arm.</p>
<p>Days measured: {", ".join(measured.days)}; waiting for their label horizon:
{", ".join(measured.waiting) or "none"}.</p>
<img alt="rates by arm" src="data:image/png;base64,{figure_png(figure)}">
<table border="1" cellpadding="4"><tr><th>arm</th><th>model</th><th>customers</th>
<th>flagged</th><th>churned / counted</th><th>rate [95%]</th><th>ROC-AUC</th><th>PR-AUC</th>
<th>precision</th><th>recall</th><th>F1</th></tr>{rows}</table></body></html>
"""
