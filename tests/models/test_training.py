"""Training on the demo's churn data: the model learns the behaviour (well above the baseline),
the split follows time, leaks are left out, bad label sets are refused by name."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tideline.core.errors import ModelError
from tideline.demo.model import CHURN_MODEL
from tideline.features.store import FeatureStore
from tideline.models.boosting import planned
from tideline.models.labels import label_examples, labelable_dates, load_activity
from tideline.models.training import FeatureMatrix, time_split, train_model

Frame = tuple[pd.DataFrame, tuple[str, ...]]


@pytest.fixture(scope="module")
def training_frame(demo_lake_template: Path, tmp_path_factory: pytest.TempPathFactory
                   ) -> tuple[pd.DataFrame, tuple[str, ...]]:
    from tideline.demo.views import CHURN_VIEWS
    from tideline.features.registry import Registry
    from tideline.lake.local import LocalLake

    lake = LocalLake(demo_lake_template)
    store = FeatureStore(lake, Registry(f"sqlite:///{tmp_path_factory.mktemp('t') / 'r.db'}"),
                         CHURN_VIEWS)
    activity = load_activity(lake, "main", CHURN_MODEL.label)
    dates = labelable_dates(activity, CHURN_MODEL.label, CHURN_MODEL.as_of_dates,
                            CHURN_MODEL.every_days)
    training = store.get_training_set(label_examples(activity, CHURN_MODEL.label, dates),
                                      CHURN_MODEL.features, timestamp_column="as_of",
                                      save=False)
    return training.frame, training.features


def test_lightgbm_learns_churn_from_behaviour_well_above_the_baseline(training_frame: Frame
                                                                     ) -> None:
    frame, features = training_frame
    trained = train_model(frame, features, CHURN_MODEL)
    assert trained.metrics.roc_auc > 0.85
    assert trained.metrics.roc_auc > trained.baseline_metrics.roc_auc + 0.01
    assert trained.metrics.lift_top_10 > 3
    assert trained.leaks == {}
    assert trained.dates["train"][-1] < trained.dates["valid"][0] <= trained.dates["valid"][-1] \
        < trained.dates["test"][0]
    assert trained.metrics.rows == len(frame[frame["as_of"].isin(
        pd.to_datetime(trained.dates["test"], utc=True))])
    (tn, fp), (fn, tp) = trained.metrics.confusion
    assert tp + fn == trained.metrics.positives
    assert tp / (tp + fp) == pytest.approx(trained.metrics.precision)
    assert next(iter(trained.importance)) in features


def test_a_feature_that_gives_the_label_away_is_left_out(training_frame: Frame) -> None:
    """The model is the one trained without it."""
    frame, features = training_frame
    rng = np.random.default_rng(0)
    leaky = frame.assign(future_logins=frame["churned"] * 5 + rng.random(len(frame)) * 0.1)
    spec = CHURN_MODEL
    trained = train_model(leaky, [*features, "future_logins"], spec)
    assert set(trained.leaks) == {"future_logins"} and trained.leaks["future_logins"] > 0.98
    assert "future_logins" not in trained.matrix.columns
    clean = train_model(frame, features, spec)
    assert trained.metrics == clean.metrics and trained.leaks != clean.leaks == {}


def test_bad_label_sets_are_refused_by_name(training_frame: Frame) -> None:
    frame, features = training_frame
    with pytest.raises(ModelError, match="the test fold .* has a single class"):
        train_model(frame.assign(churned=np.where(frame["as_of"] >= frame["as_of"].max()
                                                  - pd.Timedelta(days=7), 0, frame["churned"])),
                    features, CHURN_MODEL)
    few = frame.assign(churned=0)
    few.loc[few.index[:5], "churned"] = 1
    with pytest.raises(ModelError, match="positive labels; at least 20"):
        time_split(few, CHURN_MODEL)
    with pytest.raises(ModelError, match="feature\\(s\\) empty_now have no value"):
        train_model(frame.assign(empty_now=np.nan), [*features, "empty_now"], CHURN_MODEL)
    with pytest.raises(ModelError, match="5 as-of dates leave none to train on"):
        replace(CHURN_MODEL, as_of_dates=5, valid_dates=2, test_dates=3)


def test_scoring_encodes_categories_as_training_did() -> None:
    matrix = FeatureMatrix.fit(pd.DataFrame({"plan": ["a", "b", None], "x": [1.0, np.inf, 2]}),
                               ["plan", "x"])
    assert matrix.categories == {"plan": ["a", "b"]}
    out = matrix.transform(pd.DataFrame({"x": [3.0, -np.inf], "plan": ["b", "new"]}))
    assert list(out.columns) == ["plan", "x"]
    assert out["plan"].cat.codes.tolist() == [1, -1]  # an unseen plan is missing
    assert out["x"].tolist()[0] == 3.0 and np.isnan(out["x"].tolist()[1])
    with pytest.raises(ModelError, match="needs feature\\(s\\) x"):
        matrix.transform(pd.DataFrame({"plan": ["a"]}))


@pytest.mark.parametrize("rows, rate, leaves, rounds, patience", [
    (15_000, 0.03, 15, 3000, 100), (60_000, 0.1, 31, 900, 30), (280_000, 0.2, 63, 450, 20)])
def test_boosting_follows_the_size_of_the_training_fold(rows: int, rate: float, leaves: int,
                                                        rounds: int, patience: int) -> None:
    spec, rule = planned(CHURN_MODEL, rows)
    assert (spec.params["learning_rate"], spec.params["num_leaves"]) == (rate, leaves)
    assert (spec.num_boost_round, spec.early_stopping_rounds) == (rounds, patience)
    assert rule.startswith(f"for {rows:,} training rows") and f"learning rate {rate}" in rule
    assert spec.params["scale_pos_weight"] == CHURN_MODEL.params["scale_pos_weight"]


def test_what_a_spec_sets_is_kept_and_the_rest_follows_it() -> None:
    own = replace(CHURN_MODEL, params={**CHURN_MODEL.params, "learning_rate": 0.05},
                  early_stopping_rounds=50)
    spec, rule = planned(own, 280_000)
    assert spec.params["learning_rate"] == 0.05 and spec.params["num_leaves"] == 63
    assert (spec.num_boost_round, spec.early_stopping_rounds) == (1800, 50)
    assert "learning rate 0" not in rule and "num leaves 63" in rule
    fixed = replace(own, params={**own.params, "num_leaves": 7}, num_boost_round=100)
    assert planned(fixed, 280_000)[1] == "the spec's own parameters"
