"""The hyper-parameter search: the spec's parameters first, distinct draws after, the best
trial on the validation fold wins, the budget stops it, and trials on Ray score exactly as
trials here."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from tideline.demo.model import CHURN_MODEL
from tideline.models.search import candidates, run_trial, search
from tideline.models.training import FeatureMatrix, time_split, train_model

from tests.models.test_training import Frame, training_frame  # noqa: F401 - the fixture

SEARCH = replace(CHURN_MODEL, search_trials=3, search_seconds=300, num_boost_round=120,
                 early_stopping_rounds=15)
"""Few, short trials: the search's logic, not the model's quality, is under test."""


def folds(frame: Frame) -> tuple:
    data, columns = frame
    split = time_split(data, CHURN_MODEL)
    matrix = FeatureMatrix.fit(split.train, columns)
    return (matrix.transform(split.train), split.train["churned"].to_numpy(),
            matrix.transform(split.valid), split.valid["churned"].to_numpy())


def test_candidates_start_from_the_spec_and_are_distinct() -> None:
    sets = candidates(SEARCH, 6)
    assert sets[0] == CHURN_MODEL.params and len(sets) == 6
    assert len({tuple(sorted(s.items())) for s in sets}) == 6
    assert candidates(SEARCH, 6) == sets  # seeded


def test_the_best_validation_trial_is_the_model(training_frame: Frame) -> None:  # noqa: F811
    data, columns = training_frame
    model = train_model(data, columns, SEARCH)
    planned = {**CHURN_MODEL.params, "learning_rate": 0.03, "num_leaves": 15}  # the demo's size
    assert len(model.trials) == 3 and model.trials[0].params == planned
    assert model.params == max(model.trials, key=lambda t: t.valid_auc).params
    assert all(0.5 < t.valid_auc < 1 and t.rounds > 0 for t in model.trials)


def test_trials_on_ray_score_as_trials_here(training_frame: Frame,  # noqa: F811
                                            ray_cluster: str) -> None:
    x, y, xv, yv = folds(training_frame)
    params, on_ray = search(x, y, xv, yv, SEARCH)
    here = [run_trial(p, x, y, xv, yv, SEARCH) for p in candidates(SEARCH, 3)]
    assert [t.valid_auc for t in on_ray] == pytest.approx([t.valid_auc for t in here], abs=1e-12)
    assert params == here[int(np.argmax([t.valid_auc for t in here]))].params


def test_the_budget_stops_the_search(training_frame: Frame) -> None:  # noqa: F811
    x, y, xv, yv = folds(training_frame)
    _, trials = search(x, y, xv, yv, replace(SEARCH, search_trials=6, search_seconds=0.01))
    assert 1 <= len(trials) < 6
