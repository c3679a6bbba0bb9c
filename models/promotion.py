"""The promotion gate: a candidate becomes champion only when its test metrics clear the
spec's minimums and it beats the current champion, scored on the same held-out rows, by the
spec's margin. Either way the comparison is recorded."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from sklearn.metrics import roc_auc_score
from tideline.lake.base import Lake
from tideline.models.registry import ModelRecord, ModelRegistry, load_model
from tideline.models.spec import PromotionGate
from tideline.models.training import TrainedModel


@dataclass(frozen=True)
class GateDecision:
    promoted: bool
    reasons: tuple[str, ...]
    candidate: str
    candidate_roc_auc: float
    champion: str | None = None
    champion_roc_auc: float | None = None
    compared_on: str = ""


def judge(registry: ModelRegistry, lake: Lake, record: ModelRecord, trained: TrainedModel,
          gate: PromotionGate) -> GateDecision:
    """Decide, and promote when the candidate passes; the decision is stored as an event."""
    auc = trained.metrics.roc_auc
    reasons = []
    if auc < gate.min_roc_auc:
        reasons.append(f"test ROC-AUC {auc:.4f} is below the minimum {gate.min_roc_auc}")
    if trained.metrics.pr_auc < gate.min_pr_auc:
        reasons.append(f"test PR-AUC {trained.metrics.pr_auc:.4f} is below the minimum "
                       f"{gate.min_pr_auc}")
    champion = registry.champion(record.name)
    champion_auc, on = None, ""
    if champion is not None:
        rows = trained.test_frame
        if set(champion.features) <= set(rows.columns) and all(
                record.feature_views.get(v) == version
                for v, version in champion.feature_views.items()):
            score = load_model(lake, champion).predict(rows)
            champion_auc = float(roc_auc_score(trained.test_labels, score))
            on = f"the candidate's test fold ({len(rows):,} rows)"
        else:  # other feature versions: its features for these rows are not in the store
            champion_auc = champion.roc_auc
            on = "the champion's own test fold (its features are at other versions)"
        if auc < champion_auc + gate.margin:
            reasons.append(f"test ROC-AUC {auc:.4f} does not beat the champion "
                           f"{champion.ref}'s {champion_auc:.4f} by the margin {gate.margin}")
    decision = GateDecision(promoted=not reasons, reasons=tuple(reasons), candidate=record.ref,
                            candidate_roc_auc=auc, champion=champion and champion.ref,
                            champion_roc_auc=champion_auc, compared_on=on)
    if decision.promoted:
        registry.set_champion(record, asdict(decision))
    else:
        registry.note(record, "kept as candidate", asdict(decision))
    return decision


def recorded_decision(registry: ModelRegistry, record: ModelRecord) -> GateDecision:
    """The gate's decision on a version, as it was recorded."""
    for event in reversed(registry.events(record.name)):
        if event["version"] == record.version and event["event"] in ("promoted",
                                                                      "kept as candidate"):
            detail = event["detail"]
            if "candidate" in detail:
                return GateDecision(**{**detail, "reasons": tuple(detail["reasons"])})
    return GateDecision(promoted=record.stage == "champion", reasons=(), candidate=record.ref,
                        candidate_roc_auc=record.roc_auc)
