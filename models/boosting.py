"""LightGBM as every fit of a churn model calls it: the fixed parameters, and a fit on the
training fold stopped early on the validation fold (training and the search share it)."""
from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from tideline.models.spec import ModelSpec


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
