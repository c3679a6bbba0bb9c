"""LightGBM as every fit of a churn model calls it: the parameters a spec leaves open chosen
for the size of the data, the fixed ones, and a fit on the training fold stopped early on the
validation fold (training and the search share it)."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from tideline.models.spec import ModelSpec

TIERS = ((100_000, 0.2, 63), (20_000, 0.1, 31), (0, 0.03, 15))
"""(training rows from, learning rate, leaves): a few thousand customers' weeks are easy to
overfit and are fitted slowly with small trees; hundreds of thousands of examples carry more
interactions and would take thousands of small steps."""
TOTAL_STEP = 90.0
"""Rounds at most, times the learning rate: 3,000 rounds at 0.03, 450 at 0.2."""


def planned(spec: ModelSpec, rows: int) -> tuple[ModelSpec, str]:
    """`spec` with what it leaves open chosen for `rows` training rows, and the rule that chose
    it, in words: the learning rate and leaves of the size's tier, at most `TOTAL_STEP` /
    learning rate rounds, and patience of 3 / learning rate rounds (at least 20), so that a
    large training set is fitted in hundreds of rounds instead of thousands."""
    start, rate, leaves = next(tier for tier in TIERS if rows >= tier[0])
    tier = f"{rows:,} training rows (tier from {start:,})"
    chosen: dict[str, Any] = {}
    if "learning_rate" not in spec.params:
        chosen["learning_rate"] = rate
    if "num_leaves" not in spec.params:
        chosen["num_leaves"] = leaves
    params = {**spec.params, **chosen}
    rate = float(params.get("learning_rate", rate))
    rounds = spec.num_boost_round or round(TOTAL_STEP / rate)
    patience = spec.early_stopping_rounds or max(20, round(3 / rate))
    why = [f"{k.replace('_', ' ')} {v}" for k, v in chosen.items()]
    if spec.num_boost_round is None:
        why.append(f"at most {rounds} rounds ({TOTAL_STEP:g} / learning rate)")
    if spec.early_stopping_rounds is None:
        why.append(f"stop after {patience} rounds without gain (3 / learning rate, at least 20)")
    rule = f"for {tier}: " + "; ".join(why) if why else "the spec's own parameters"
    return replace(spec, params=params, num_boost_round=rounds,
                   early_stopping_rounds=patience), rule


def lightgbm_params(spec: ModelSpec, params: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"objective": "binary", "metric": "auc", "verbosity": -1, "seed": 7,
            "deterministic": True, "force_col_wise": True,
            **(spec.params if params is None else params)}


def rounds_on_validation(x: pd.DataFrame, y: np.ndarray, x_valid: pd.DataFrame,
                         y_valid: np.ndarray, spec: ModelSpec) -> lgb.Booster:
    """LightGBM on the training fold, stopped early on the validation fold."""
    train = lgb.Dataset(x, y, free_raw_data=False)
    valid = lgb.Dataset(x_valid, y_valid, reference=train)
    return lgb.train(lightgbm_params(spec), train, num_boost_round=spec.num_boost_round,
                     valid_sets=[valid],
                     callbacks=[lgb.early_stopping(spec.early_stopping_rounds, verbose=False)])
