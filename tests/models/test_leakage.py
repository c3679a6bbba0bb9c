"""The point-in-time audit: a training set built by the store passes it; one whose values were
read from a later snapshot is caught, feature by feature, and training leaves those out."""
from __future__ import annotations

import pandas as pd
import pytest
from tideline.demo.model import CHURN_MODEL
from tideline.features.leakage import future_leaks
from tideline.features.store import FeatureStore, TrainingSet
from tideline.models.training import TrainedModel, train_model

LATE = ["txn_count_30d", "spend_30d"]


def test_the_stores_training_set_uses_nothing_from_its_future(
        trained: tuple[FeatureStore, TrainingSet, TrainedModel],
        caplog: pytest.LogCaptureFixture) -> None:
    store, training, _ = trained
    with caplog.at_level("INFO", logger="tideline.features.leakage"):
        leaks = future_leaks(store.lake, training.ref_commit, store.views, training.frame,
                             training.features, "as_of")
    assert leaks == {}
    [line] = [r.getMessage() for r in caplog.records if "audit" in r.getMessage()]
    audited = int(line.split(" on ")[1].split(" row")[0])
    assert audited >= 1000, line  # most of the 1,500 customers' rows, at every as-of date


def test_values_from_a_later_snapshot_are_named_and_left_out(
        trained: tuple[FeatureStore, TrainingSet, TrainedModel]) -> None:
    store, training, _ = trained
    week_later = training.frame[["customer_id", "as_of"]].assign(
        as_of=lambda f: f["as_of"] + pd.Timedelta(days=7))
    later = store.get_training_set(week_later, LATE, timestamp_column="as_of", save=False)
    leaky = training.frame.assign(**{c: later.frame[c].to_numpy() for c in LATE})
    leaks = future_leaks(store.lake, training.ref_commit, store.views, leaky,
                         training.features, "as_of")
    assert set(leaks) == set(LATE)
    assert "uses data at or after the as-of time" in leaks["spend_30d"]
    assert "customer_id C" in leaks["spend_30d"]  # an example row, by key
    model = train_model(leaky, training.features, CHURN_MODEL, leaks)
    assert model.time_leaks == leaks
    assert not set(LATE) & set(model.matrix.columns)
