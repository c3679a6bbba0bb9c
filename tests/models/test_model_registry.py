"""Registering models with their artifacts, the promotion gate and its history, loading a
model back, lineage down to the feature builds."""
from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from features.churn import CHURN_VIEWS
from features.registry import Registry
from features.store import FeatureStore, TrainingSet
from lake.local import LocalLake
from models.churn import CHURN_MODEL
from models.labels import label_examples, labelable_dates, load_activity
from models.promotion import judge
from models.registry import ModelRegistry, load_model, register_model
from models.spec import PromotionGate
from models.training import TrainedModel, train_model
from tideline.errors import ModelError

Trained = tuple[FeatureStore, TrainingSet, TrainedModel]


@pytest.fixture(scope="module")
def trained_once(demo_lake_template: Path, tmp_path_factory: pytest.TempPathFactory
                 ) -> tuple[Path, TrainingSet, TrainedModel]:
    """A saved training set and a model trained on it, once for the module."""
    path = tmp_path_factory.mktemp("trained") / "lake"
    shutil.copytree(demo_lake_template, path)
    store = FeatureStore(LocalLake(path), Registry(f"sqlite:///{path.parent / 'r.db'}"),
                         CHURN_VIEWS)
    activity = load_activity(store.lake, "main", CHURN_MODEL.label)
    dates = labelable_dates(activity, CHURN_MODEL.label, CHURN_MODEL.as_of_dates,
                            CHURN_MODEL.every_days)
    training = store.get_training_set(label_examples(activity, CHURN_MODEL.label, dates),
                                      CHURN_MODEL.features, timestamp_column="as_of")
    return path, training, train_model(training.frame, training.features, CHURN_MODEL)


@pytest.fixture
def trained(trained_once: tuple[Path, TrainingSet, TrainedModel], tmp_path: Path
            ) -> tuple[FeatureStore, TrainingSet, TrainedModel]:
    """The module's lake copied for one test (registering publishes into it)."""
    path, training, model = trained_once
    shutil.copytree(path, tmp_path / "lake")
    store = FeatureStore(LocalLake(tmp_path / "lake"),
                         Registry(f"sqlite:///{tmp_path / 'r.db'}"), CHURN_VIEWS)
    return store, training, model


def test_the_first_model_becomes_champion_and_an_equal_one_does_not(
        trained: Trained, tmp_path: Path) -> None:
    store, training, model = trained
    registry = ModelRegistry(f"sqlite:///{tmp_path / 'models.db'}")
    first = register_model(registry, store.lake, CHURN_MODEL, model, training)
    assert (first.version, first.stage) == (1, "candidate")
    assert store.lake.tags()["model-churn-v1"] == first.artifact_commit
    for name in ("model.txt", "baseline.joblib", "card.json", "curves.png", "confusion.png",
                 "importance.csv"):
        assert store.lake.exists("main", f"models/churn/v1/{name}")
    assert first.training_set_tag == training.tag and first.feature_views == training.views

    decision = judge(registry, store.lake, first, model, CHURN_MODEL.gate)
    assert decision.promoted and decision.champion is None
    assert registry.champion("churn").version == 1

    loaded = load_model(store.lake, registry.get("churn"))
    np.testing.assert_allclose(loaded.predict(model.test_frame), model.test_scores["lightgbm"])

    second = register_model(registry, store.lake, CHURN_MODEL, model, training)
    decision = judge(registry, store.lake, second, model, CHURN_MODEL.gate)
    assert not decision.promoted and decision.champion == "churn:v1"
    assert decision.champion_roc_auc == pytest.approx(model.metrics.roc_auc)
    assert "does not beat the champion churn:v1" in decision.reasons[0]
    assert decision.compared_on.startswith("the candidate's test fold")
    assert [(e["version"], e["event"]) for e in registry.events("churn")] == [
        (1, "registered"), (1, "promoted"), (2, "registered"), (2, "kept as candidate")]

    strict = judge(registry, store.lake, second, model, PromotionGate(min_roc_auc=0.99))
    assert any("below the minimum 0.99" in r for r in strict.reasons)

    registry.set_champion(second, {"by": "hand"})
    assert [(r.version, r.stage) for r in registry.models("churn")] == [
        (1, "archived"), (2, "champion")]


def test_version_numbers_skip_an_orphaned_tag_and_missing_artifacts_are_named(
        trained: Trained, tmp_path: Path) -> None:
    store, training, model = trained
    registry = ModelRegistry(f"sqlite:///{tmp_path / 'models.db'}")
    store.lake.tag("model-churn-v4", "main")  # a run that died after publishing
    record = register_model(registry, store.lake, CHURN_MODEL, model, training)
    assert record.version == 5
    with pytest.raises(ModelError, match="churn:v5: its artifacts at models/churn/nowhere"):
        load_model(store.lake, replace(record, artifact_path="models/churn/nowhere"))
    with pytest.raises(ModelError, match="no model named 'other'.*churn"):
        registry.get("other")
    with pytest.raises(ModelError, match="has no version 9"):
        registry.get("churn", 9)
