"""Selection: which candidates earn their place, judged on the time-based training split only
(the training fold to screen, rank and cluster, the validation fold for permutation
importance; the test fold is never looked at). Every candidate ends with a status and a reason
a person can read."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform
from scipy.stats import rankdata
from tideline.models.boosting import planned, rounds_on_validation
from tideline.models.leakage import is_number, leaking, separation
from tideline.models.spec import ModelSpec
from tideline.models.training import FeatureMatrix, capped, time_split


@dataclass(frozen=True)
class SelectionRules:
    max_null_share: float = 0.95
    """A candidate missing on more of the training rows than this is dropped."""
    max_top_share: float = 0.99
    """... and one whose most common value covers more than this (near-constant)."""
    correlation: float = 0.95
    """Candidates whose rank correlations all reach this form a cluster; the one with the most
    mutual information stays."""
    min_stability: float = 0.7
    """The share of training as-of dates on which a numeric candidate must relate to the label
    in its overall direction."""
    max_selected: int = 30
    sample_rows: int = 20_000
    """Training rows (stratified) that mutual information and correlations are measured on."""
    permuted: int = 60
    """The candidates with the most LightGBM gain whose permutation importance is measured;
    the others rank below them."""
    permutation_rows: int = 50_000
    repeats: int = 3


@dataclass
class Selection:
    decisions: pd.DataFrame
    """One row per candidate: scores, `status` (kept / dropped) and `reason`, kept first."""
    kept: list[str]
    dates: dict[str, list[str]]
    train_rows: int
    valid_rows: int
    clusters: dict[str, list[str]] = field(default_factory=dict)
    """A kept candidate -> the redundant ones it stands for."""


def _codes(values: pd.Series) -> np.ndarray:
    """Numbers for measuring: numeric values with missing as the median, text as category
    codes."""
    if is_number(values):
        numbers = pd.to_numeric(values, errors="coerce").astype(float).replace(
            [np.inf, -np.inf], np.nan)
        return numbers.fillna(numbers.median() if numbers.notna().any() else 0.0).to_numpy()
    return pd.Categorical(values.astype("string")).codes.astype(float)


def _auc(x: np.ndarray, y: np.ndarray) -> float:
    """ROC-AUC of scores `x` for 0/1 labels `y` (Mann-Whitney, ties count half)."""
    positives = int(y.sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return 0.5
    ranks = rankdata(x)
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2)
                 / (positives * negatives))


BINS = 16


def _bins(values: pd.Series) -> np.ndarray:
    """Quantile bins of a number (ties share a bin; missing is bin BINS), or a text's value."""
    if not is_number(values):
        return pd.Categorical(values.astype("string")).codes.astype(np.int64) + 1
    x = pd.to_numeric(values, errors="coerce").astype(float).replace([np.inf, -np.inf], np.nan)
    missing = x.isna().to_numpy()
    ranks = np.zeros(len(x), dtype=np.int64)
    ranks[~missing] = rankdata(x.to_numpy()[~missing], method="min") - 1
    filled = max(int((~missing).sum()), 1)
    return np.where(missing, BINS, np.minimum(ranks * BINS // filled, BINS - 1))


def _lightgbm_array(x: pd.DataFrame, matrix: FeatureMatrix) -> np.ndarray:
    """A frame as LightGBM reads one: categories by their code, missing (code -1) as NaN."""
    columns = []
    for name in x.columns:
        if name in matrix.categories:
            codes = x[name].cat.codes.to_numpy().astype(float)
            codes[codes < 0] = np.nan
            columns.append(codes)
        else:
            columns.append(x[name].to_numpy(dtype=float))
    return np.column_stack(columns)


class Selector:
    def __init__(self, frame: pd.DataFrame, spec: ModelSpec, rules: SelectionRules) -> None:
        self.spec, self.rules, self.label = spec, rules, spec.label.name
        self.folds = time_split(frame, spec)
        self.y = self.folds.train[self.label].to_numpy()
        self.sample = self.folds.train.iloc[capped(len(self.y), self.y, rules.sample_rows)]
        self.mi: dict[str, float] = {}
        self.aucs: dict[str, float] = {}
        self.correlations: pd.DataFrame | None = None
        """Rank correlations of the candidates last clustered."""

    def mutual_information(self, names: Sequence[str]) -> dict[str, float]:
        """Mutual information (nats) between each candidate, binned at quantiles (missing as
        a bin of its own, text by value), and the label, on the training sample."""
        y = self.sample[self.label].to_numpy().astype(np.int64)
        for name in names:
            if name not in self.mi:
                b = _bins(self.sample[name])
                joint = np.bincount(b * 2 + y, minlength=2 * (b.max() + 1)).reshape(-1, 2)
                p = joint / joint.sum()
                expected = p.sum(axis=1, keepdims=True) * p.sum(axis=0, keepdims=True)
                with np.errstate(divide="ignore", invalid="ignore"):
                    self.mi[name] = float(np.nansum(p * np.log(p / expected)))
        return {n: self.mi[n] for n in names}

    def most_informative(self, names: Sequence[str], count: int) -> list[str]:
        """The `count` numeric candidates with the most mutual information among those neither
        screened out nor leaking (the ones whose pairs become interaction candidates: products
        and ratios of numbers)."""
        dropped = self.screen(names)
        screened = [n for n in names if n not in dropped and is_number(self.sample[n])]
        leaks = self.leaks(screened)
        mi = self.mutual_information([n for n in screened if n not in leaks])
        return sorted(mi, key=lambda n: -mi[n])[:count]

    def auc_alone(self, names: Sequence[str]) -> dict[str, float]:
        """How well each candidate alone separates the classes on the training sample
        (`tideline.models.leakage.separation`)."""
        new = [n for n in names if n not in self.aucs]
        self.aucs.update(separation(self.sample, new, self.sample[self.label].to_numpy()))
        return {n: self.aucs[n] for n in names}

    def screen(self, names: Sequence[str]) -> dict[str, str]:
        """Reasons to drop for the mostly missing and the (near-)constant."""
        out = {}
        train = self.folds.train
        for name in names:
            values = train[name]
            null = float(values.isna().mean())
            if null > self.rules.max_null_share:
                out[name] = f"mostly missing ({null:.0%} of training rows)"
                continue
            if values.nunique(dropna=True) <= 1:
                out[name] = "constant on the training rows"
                continue
            top = values.value_counts(normalize=True, dropna=False)
            if float(top.iloc[0]) > self.rules.max_top_share:
                out[name] = (f"near-constant ({float(top.iloc[0]):.1%} of training rows are "
                             f"{top.index[0]!r})")
        return out

    def leaks(self, names: Sequence[str]) -> dict[str, float]:
        """Candidates that alone separate the classes better than the spec allows."""
        return leaking(self.auc_alone(names), self.spec.leakage_auc)

    def stability(self, names: Sequence[str]) -> dict[str, float]:
        """Per numeric candidate, the share of training dates on which its AUC is on the same
        side of 0.5 as over all training rows (text candidates: 1)."""
        train = self.folds.train
        days = [np.flatnonzero(mask) for mask in
                (train["as_of"].to_numpy() == day for day in np.unique(train["as_of"]))]
        days = [rows for rows in days if 0 < self.y[rows].sum() < len(rows)]
        out = {}
        for name in names:
            if not is_number(train[name]):
                out[name] = 1.0
                continue
            x = _codes(train[name])
            overall = np.sign(_auc(x, self.y) - 0.5)
            same = [np.sign(_auc(x[rows], self.y[rows]) - 0.5) == overall for rows in days]
            out[name] = float(np.mean(same)) if same and overall != 0 else 1.0
        return out

    def clusters(self, names: Sequence[str]) -> dict[str, list[str]]:
        """Groups of candidates whose Spearman correlations all reach the threshold (complete
        linkage), each keyed by its member with the most mutual information."""
        if len(names) < 2:
            return {n: [] for n in names}
        ranks = np.column_stack([pd.Series(_codes(self.sample[n])).rank().to_numpy()
                                 for n in names])
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.nan_to_num(np.corrcoef(ranks, rowvar=False), nan=0.0)
        distance = np.clip(1 - np.abs(r), 0, None)
        np.fill_diagonal(distance, 0)
        groups = fcluster(linkage(squareform(distance, checks=False), "complete"),
                          t=1 - self.rules.correlation, criterion="distance")
        mi = self.mutual_information(names)
        self.correlations = pd.DataFrame(r, index=list(names), columns=list(names))
        out: dict[str, list[str]] = {}
        for group in np.unique(groups):
            members = [n for n, g in zip(names, groups, strict=True) if g == group]
            best = max(members, key=lambda n: (mi[n], n))
            out[best] = [n for n in members if n != best]
        return out

    def importance(self, names: list[str]) -> tuple[dict[str, float], dict[str, float]]:
        """LightGBM gain (trained on the training fold, stopped on validation; a faster
        learning rate than the model's, for ranking) and, for the `permuted` best by gain,
        permutation importance on the validation fold (mean drop in ROC-AUC when the column is
        shuffled; NaN for the others)."""
        matrix = FeatureMatrix.fit(self.folds.train, list(names))
        x, x_valid = matrix.transform(self.folds.train), matrix.transform(self.folds.valid)
        y_valid = self.folds.valid[self.label].to_numpy()
        model, _ = planned(self.spec, len(self.y))
        ranking = replace(model, params={**model.params, "learning_rate": 0.2},
                          early_stopping_rounds=20)
        booster = rounds_on_validation(x, self.y, x_valid, y_valid, ranking)
        gain = dict(zip(names, map(float, booster.feature_importance("gain")), strict=True))
        rows = capped(len(y_valid), y_valid, self.rules.permutation_rows)
        valid = _lightgbm_array(x_valid.iloc[rows], matrix)  # converted once, not per shuffle
        y_valid = y_valid[rows]
        iteration = booster.best_iteration
        base = _auc(booster.predict(valid, num_iteration=iteration), y_valid)
        rng = np.random.default_rng(0)
        drops = dict.fromkeys(names, np.nan)
        for name in sorted(names, key=lambda n: -gain[n])[:self.rules.permuted]:
            column = names.index(name)
            original = valid[:, column].copy()
            losses = []
            for _ in range(self.rules.repeats):
                valid[:, column] = original[rng.permutation(len(original))]
                losses.append(base - _auc(booster.predict(valid, num_iteration=iteration),
                                          y_valid))
            valid[:, column] = original
            drops[name] = float(np.mean(losses))
        return gain, drops


def select(frame: pd.DataFrame, names: Sequence[str], spec: ModelSpec,
           rules: SelectionRules = SelectionRules(), selector: Selector | None = None
           ) -> Selection:
    """Screen → leaks → instability → correlation clusters → LightGBM gain and permutation
    importance on validation → the best `max_selected`."""
    selector = selector or Selector(frame, spec, rules)
    reasons: dict[str, tuple[str, str]] = {}
    """Candidate -> (the step that dropped it, why)."""
    table = pd.DataFrame(index=pd.Index(list(names), name="candidate"))
    train = selector.folds.train
    table["null_share"] = [float(train[n].isna().mean()) for n in names]

    for name, why in selector.screen(names).items():
        reasons[name] = ("mostly missing" if why.startswith("mostly") else "(near-)constant", why)
    alive = [n for n in names if n not in reasons]
    for name, auc in selector.leaks(alive).items():
        reasons[name] = ("leak", f"leaks the target: ROC-AUC {auc:.3f} on its own (above "
                                 f"{spec.leakage_auc})")
    alive = [n for n in alive if n not in reasons]
    table["mutual_information"] = pd.Series(selector.mutual_information(alive))
    table["auc_alone"] = pd.Series(selector.auc_alone(alive))
    stability = selector.stability(alive)
    table["stability"] = pd.Series(stability)
    for name in alive:
        if stability.get(name, 1.0) < rules.min_stability:
            reasons[name] = ("unstable", f"unstable: relates to the label in its overall "
                                         f"direction on only {stability[name]:.0%} of training "
                                         "dates")
    alive = [n for n in alive if n not in reasons]
    clusters = selector.clusters(alive)
    for best, others in clusters.items():
        for other in others:
            r = abs(selector.correlations.loc[best, other])
            reasons[other] = ("redundant", f"redundant with {best} (|rank correlation| "
                                           f"{r:.3f})")
            table.loc[other, "cluster"] = best
        table.loc[best, "cluster"] = best
    alive = [n for n in alive if n not in reasons]
    kept: list[str] = []
    if alive:
        gain, drops = selector.importance(alive)
        table["gain"] = pd.Series(gain)
        table["permutation"] = pd.Series(drops)
        ranked = sorted(alive, key=lambda n: (-np.nan_to_num(drops[n], nan=-np.inf), -gain[n],
                                              n))
        for position, name in enumerate(ranked):
            if np.isnan(drops[name]):
                reasons[name] = ("low gain", f"LightGBM gain below the best {rules.permuted}, "
                                             "which were tested by permutation")
            elif drops[name] <= 0:
                reasons[name] = ("no help", f"no help on validation (ROC-AUC change "
                                            f"{-drops[name]:+.4f} when shuffled)")
            elif position >= rules.max_selected:
                reasons[name] = (f"beyond the best {rules.max_selected}",
                                 f"ranked {position + 1}, below the best {rules.max_selected}")
            else:
                kept.append(name)
    table["status"] = ["kept" if n in kept else "dropped" for n in table.index]
    table["step"] = [reasons[n][0] if n in reasons else "kept" for n in table.index]
    table["reason"] = [reasons[n][1] if n in reasons else
                       f"ranked {kept.index(n) + 1} by permutation importance"
                       for n in table.index]
    order = {n: i for i, n in enumerate(kept)}
    table = table.assign(_order=[order.get(n, len(order)) for n in table.index]).sort_values(
        ["_order", "status"]).drop(columns="_order")
    return Selection(decisions=table.reset_index(), kept=kept, dates=selector.folds.dates(),
                     train_rows=len(train), valid_rows=len(selector.folds.valid),
                     clusters={k: v for k, v in clusters.items() if k in kept and v})
