"""Experiments' statistics: assignment is stable and balanced; the fixed-sample test detects a
known effect at its declared power, calls no winner on no effect more often than alpha, and
never before the sample size fixed at the start."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tideline.core.errors import ModelError
from tideline.models.experiment import (
    ArmOutcome,
    Experiment,
    assign,
    compare,
    outcomes,
    sample_size,
    wilson,
)

SPLIT = Experiment("exp-1", "churn", champion=1, challenger=2, mode="split", baseline=0.30,
                   min_effect=0.05)


@settings(max_examples=50, deadline=None)
@given(keys=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=200, unique=True),
       share=st.floats(0.05, 0.95), seed=st.integers(0, 2**32 - 1))
def test_a_customer_stays_in_one_arm_whatever_else_is_scored(keys: list[str], share: float,
                                                              seed: int) -> None:
    arms = dict(zip(keys, assign("exp-1", keys, share), strict=True))
    shuffled = [keys[i] for i in np.random.default_rng(seed).permutation(len(keys))]
    assert dict(zip(shuffled, assign("exp-1", shuffled, share), strict=True)) == arms
    alone = {key: bool(assign("exp-1", [key], share)[0]) for key in keys[:5]}
    assert alone == {key: arms[key] for key in keys[:5]}
    # a larger share only moves customers into the challenger's arm
    assert all(assign("exp-1", keys, min(share + 0.04, 0.99))[np.array(list(arms.values()))])


@pytest.mark.parametrize("share", [0.5, 0.2])
def test_assignment_is_balanced_and_differs_by_experiment(share: float) -> None:
    keys = [f"C{i:07d}" for i in range(40_000)]
    arms = assign("exp-1", keys, share)
    sigma = np.sqrt(share * (1 - share) / len(keys))
    assert abs(arms.mean() - share) < 4 * sigma
    other = assign("exp-2", keys, share)
    # independent experiments: agreement as chance has it, not the same arms
    chance = share * share + (1 - share) * (1 - share)
    assert abs((arms == other).mean() - chance) < 0.02


def arm(name: str, churned: int, n: int) -> ArmOutcome:
    low, high = wilson(churned, n)
    return ArmOutcome(name, name, n, n, churned, n, churned / n, low, high, {})


def significant_share(experiment: Experiment, p_champion: float, p_challenger: float,
                      runs: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    n = experiment.required_per_arm
    calls = [compare(arm("champion", int(a), n), arm("challenger", int(b), n), experiment)
             for a, b in zip(rng.binomial(n, p_champion, runs), rng.binomial(n, p_challenger, runs),
                             strict=True)]
    return float(np.mean([c.status == "significant" for c in calls]))


def test_a_known_effect_is_detected_at_the_declared_power() -> None:
    n = SPLIT.required_per_arm
    assert n == sample_size(0.30, 0.35, 0.05, 0.8) and 1300 < n < 1500  # textbook: ~1,377
    detected = significant_share(SPLIT, 0.30, 0.35, runs=1500, seed=1)
    assert abs(detected - 0.80) < 0.04, detected


def test_no_effect_is_called_about_alpha_of_the_time() -> None:
    false_positives = significant_share(SPLIT, 0.30, 0.30, runs=3000, seed=2)
    assert abs(false_positives - 0.05) < 0.015, false_positives


def test_no_winner_before_the_sample_size_fixed_at_the_start() -> None:
    n = SPLIT.required_per_arm - 1
    verdict = compare(arm("champion", int(0.1 * n), n), arm("challenger", int(0.9 * n), n),
                      SPLIT)
    assert verdict.status == "too early" and verdict.winner is None
    assert verdict.p_value < 1e-12  # the data look decisive; the answer is still no
    assert f"{n:,} of the {SPLIT.required_per_arm:,} customers" in verdict.message


def test_the_winner_follows_the_metric_direction() -> None:
    n = 5000
    better = compare(arm("champion", 1500, n), arm("challenger", 1800, n), SPLIT)
    assert better.status == "significant" and better.winner == "challenger"
    assert better.low < 0.06 < better.high and better.needed_for_observed < n
    lower = Experiment("exp-3", "churn", 1, 2, mode="split", metric="churn_rate",
                       baseline=0.3, min_effect=0.05)
    assert compare(arm("champion", 1500, n), arm("challenger", 1800, n),
                   lower).winner == "champion"  # more churn is worse


def test_outcomes_judge_each_arm_by_its_own_acted_on_scores() -> None:
    rng = np.random.default_rng(5)
    n = 20_000
    keys = [f"C{i}" for i in range(n)]
    churned = rng.random(n) < 0.3
    champion_p = np.clip(0.3 + 0.2 * (churned - 0.3) + rng.normal(0, 0.2, n), 0, 1)
    challenger_p = np.clip(0.3 + 0.5 * (churned - 0.3) + rng.normal(0, 0.2, n), 0, 1)
    day = pd.Timestamp("2026-10-01", tz="UTC")
    scored = pd.DataFrame({
        "customer_id": keys, "as_of": day,
        "arm": np.where(assign("exp-1", keys, 0.5), "challenger", "champion"),
        "probability_champion": champion_p, "probability_challenger": challenger_p,
        "risk_champion": np.where(champion_p >= 0.5, "high", "low"),
        "risk_challenger": np.where(challenger_p >= 0.5, "high", "low")})
    labels = pd.DataFrame({"customer_id": keys, "as_of": day, "churned": churned.astype(int)})
    arms, verdict = outcomes(scored, labels, "customer_id", "churned", SPLIT,
                             {"champion": 0.5, "challenger": 0.5})
    assert [a.arm for a in arms] == ["champion", "challenger"]
    assert sum(a.customers for a in arms) == n
    in_arm = scored["arm"] == "challenger"
    flagged = in_arm & (scored["risk_challenger"] == "high")
    assert arms[1].counted == flagged.sum()
    assert arms[1].churned == churned[flagged.to_numpy()].sum()
    assert arms[1].metrics["roc_auc"] > arms[0].metrics["roc_auc"]
    assert verdict.status == "significant" and verdict.winner == "challenger"
    shadow = Experiment("exp-1", "churn", 1, 2, mode="shadow", baseline=0.3)
    arms, verdict = outcomes(scored, labels, "customer_id", "churned", shadow,
                             {"champion": 0.5, "challenger": 0.5})
    assert [a.customers for a in arms] == [n, n] and verdict.status == "shadow"
    with pytest.raises(ModelError, match="no scored customer has a realised label"):
        outcomes(scored, labels.assign(as_of=day + pd.Timedelta(days=1)), "customer_id",
                 "churned", SPLIT, {"champion": 0.5, "challenger": 0.5})


def test_a_bad_declaration_names_every_problem() -> None:
    with pytest.raises(ModelError, match="share 1.5 .* metric 'auc'"):
        Experiment("x", "churn", 1, 2, share=1.5, metric="auc")
    with pytest.raises(ModelError, match="the challenger v1 is the champion itself"):
        Experiment("x", "churn", 1, 1)
