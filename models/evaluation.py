"""How good a churn model is on held-out rows: ROC-AUC, PR-AUC, precision / recall / F1 at a
threshold, lift in the top 10%, Brier score and the confusion matrix; and the plots people
would rather look at (ROC and precision-recall curves, confusion matrix)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from sklearn import metrics
from tideline.core.plots import save_png


@dataclass(frozen=True)
class Metrics:
    rows: int
    positives: int
    roc_auc: float
    pr_auc: float
    """Average precision."""
    threshold: float
    precision: float
    recall: float
    f1: float
    lift_top_10: float
    """Churn rate among the 10% highest scores over the overall churn rate."""
    brier: float
    confusion: tuple[tuple[int, int], tuple[int, int]]
    """[[true negatives, false positives], [false negatives, true positives]]."""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def best_f1_threshold(y: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold with the highest F1 (chosen on validation rows, used on test)."""
    precision, recall, thresholds = metrics.precision_recall_curve(y, scores)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(thresholds[int(np.argmax(f1[:-1]))]) if len(thresholds) else 0.5


def evaluate(y: np.ndarray, scores: np.ndarray, threshold: float) -> Metrics:
    y = np.asarray(y).astype(int)
    predicted = scores >= threshold
    top = np.argsort(-scores, kind="stable")[:max(1, len(scores) // 10)]
    rate = y.mean()
    return Metrics(
        rows=len(y), positives=int(y.sum()),
        roc_auc=float(metrics.roc_auc_score(y, scores)),
        pr_auc=float(metrics.average_precision_score(y, scores)),
        threshold=float(threshold),
        precision=float(metrics.precision_score(y, predicted, zero_division=0)),
        recall=float(metrics.recall_score(y, predicted, zero_division=0)),
        f1=float(metrics.f1_score(y, predicted, zero_division=0)),
        lift_top_10=float(y[top].mean() / rate) if rate else 0.0,
        brier=float(metrics.brier_score_loss(y, scores)),
        confusion=tuple(tuple(int(v) for v in row)
                        for row in metrics.confusion_matrix(y, predicted, labels=[0, 1])))


LAYOUT = {"curves": {"left": 0.06, "right": 0.985, "bottom": 0.12, "top": 0.93,
                     "wspace": 0.2},
          "confusion": {"left": 0.24, "right": 0.96, "bottom": 0.14, "top": 0.91}}
"""The plots' margins, fixed rather than measured from every label by `tight_layout`, which
costs more than drawing."""


def save_plots(y: np.ndarray, curves: dict[str, np.ndarray], threshold: float,
               directory: Path) -> dict[str, Path]:
    """ROC and precision-recall curves of every scored model, and the first model's confusion
    matrix at the threshold, as PNG files."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    figure = Figure(figsize=(10, 4.2))
    roc, pr = figure.subplots(1, 2)
    figure.subplots_adjust(**LAYOUT["curves"])
    for name, scores in curves.items():
        fpr, tpr, _ = metrics.roc_curve(y, scores)
        roc.plot(fpr, tpr, label=f"{name} (AUC {metrics.roc_auc_score(y, scores):.3f})")
        precision, recall, _ = metrics.precision_recall_curve(y, scores)
        pr.plot(recall, precision,
                label=f"{name} (AP {metrics.average_precision_score(y, scores):.3f})")
    roc.plot([0, 1], [0, 1], color="grey", linestyle=":")
    roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test)")
    pr.axhline(np.mean(y), color="grey", linestyle=":")
    pr.set(xlabel="recall", ylabel="precision", title="Precision-recall (test)")
    for axes in (roc, pr):
        axes.legend(loc="lower right" if axes is roc else "upper right")
    paths["curves"] = directory / "curves.png"
    save_png(figure, paths["curves"], dpi=110)

    first = next(iter(curves.values()))
    matrix = metrics.confusion_matrix(y, first >= threshold, labels=[0, 1])
    figure = Figure(figsize=(4, 3.6))
    axes = figure.subplots()
    figure.subplots_adjust(**LAYOUT["confusion"])
    axes.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        axes.text(j, i, f"{count:,}", ha="center", va="center",
                  color="white" if count > matrix.max() / 2 else "black")
    axes.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["stays", "churns"],
             yticklabels=["stayed", "churned"], xlabel="predicted", ylabel="actual",
             title=f"{next(iter(curves))} at {threshold:.2f}")
    paths["confusion"] = directory / "confusion.png"
    save_png(figure, paths["confusion"], dpi=110)
    return paths
