"""Registering models with their artifacts, the promotion gate and its history, loading a
model back."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from tideline.core.errors import ModelError
from tideline.demo.model import CHURN_MODEL
from tideline.features.store import FeatureStore, TrainingSet
from tideline.models.promotion import judge
from tideline.models.registry import ModelRegistry, load_model, register_model
from tideline.models.spec import PromotionGate
from tideline.models.training import TrainedModel

Trained = tuple[FeatureStore, TrainingSet, TrainedModel]


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
