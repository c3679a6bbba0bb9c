"""Decision-path contributions: they sum exactly to the raw score, credit each split's change of
expected value to the split's feature (checked on a tree worked by hand), and mostly agree with
TreeSHAP on the top feature; the probability scoring derives from them is LightGBM's own."""
from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest
from tideline.models.explain import contributions, path_tables


@pytest.fixture(scope="module")
def booster_and_x() -> tuple[lgb.Booster, np.ndarray]:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4000, 6))
    x[rng.random(x.shape) < 0.05] = np.nan
    logit = 1.5 * np.nan_to_num(x[:, 0]) - np.nan_to_num(x[:, 1]) * np.nan_to_num(x[:, 2])
    y = rng.random(4000) < 1 / (1 + np.exp(-logit))
    booster = lgb.train({"objective": "binary", "verbosity": -1, "num_leaves": 15, "seed": 1},
                        lgb.Dataset(x, y), num_boost_round=60)
    return booster, x


def test_contributions_sum_to_the_raw_score(booster_and_x: tuple[lgb.Booster, np.ndarray]
                                            ) -> None:
    booster, x = booster_and_x
    tables, bias = path_tables(booster)
    pushes = contributions(booster, tables, x)
    assert pushes.shape == (len(x), 6)
    np.testing.assert_allclose(pushes.sum(axis=1) + bias, booster.predict(x, raw_score=True),
                               atol=1e-10)
    np.testing.assert_allclose(1 / (1 + np.exp(-(pushes.sum(axis=1) + bias))),
                               booster.predict(x), atol=1e-12)
    assert np.abs(pushes[:, 3:]).mean() < np.abs(pushes[:, :3]).mean() / 5  # noise features


def test_a_split_credits_its_feature_with_the_change_of_expected_value() -> None:
    """One stump on feature 1: a row going left gets (left leaf - root) on feature 1 only."""
    x = np.array([[0.0, v] for v in np.linspace(-1, 1, 200)])
    y = x[:, 1] > 0
    booster = lgb.train({"objective": "binary", "verbosity": -1, "num_leaves": 2,
                         "min_data_in_leaf": 5, "learning_rate": 1.0}, lgb.Dataset(x, y),
                        num_boost_round=1)
    tree = booster.dump_model()["tree_info"][0]["tree_structure"]
    root, left, right = (tree["internal_value"], tree["left_child"]["leaf_value"],
                         tree["right_child"]["leaf_value"])
    tables, bias = path_tables(booster)
    assert bias == pytest.approx(root)
    pushes = contributions(booster, tables, x[[0, -1]])
    np.testing.assert_allclose(pushes, [[0.0, left - root], [0.0, right - root]])


def test_the_top_reason_is_mostly_treeshaps(booster_and_x: tuple[lgb.Booster, np.ndarray]
                                            ) -> None:
    """Not the same attribution: path credit favours splits near the root (here 74% of rows
    share TreeSHAP's top feature)."""
    booster, x = booster_and_x
    pushes = contributions(booster, path_tables(booster)[0], x[:500])
    shap = booster.predict(x[:500], pred_contrib=True)[:, :-1]
    assert (pushes.argmax(axis=1) == shap.argmax(axis=1)).mean() > 0.7
