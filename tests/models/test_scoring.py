"""Batch scores and online predictions from the champion: the same numbers for the same
customer and day, risk segments at the model's threshold, refusals a client can act on."""
from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from tideline.core.errors import ModelError
from tideline.demo.model import CHURN_MODEL
from tideline.demo.views import SPENDING
from tideline.features.online.sqlite import SQLiteOnlineStore
from tideline.features.store import FeatureStore, TrainingSet
from tideline.models.labels import active_at, load_activity
from tideline.models.promotion import judge
from tideline.models.registry import ModelRegistry, register_model
from tideline.models.training import TrainedModel
from tideline.serving.api import create_app
from tideline.tasks.scoring import champion_for, score_customers


def test_batch_scores_and_online_predictions_agree(
        trained: tuple[FeatureStore, TrainingSet, TrainedModel], tmp_path: Path) -> None:
    store, training, model = trained
    registry = ModelRegistry(f"sqlite:///{tmp_path / 'models.db'}")
    record = register_model(registry, store.lake, CHURN_MODEL, model, training)
    assert judge(registry, store.lake, record, model, CHURN_MODEL.gate).promoted
    champion = registry.champion("churn")

    day, scores = score_customers.fn(store, champion, CHURN_MODEL, None)
    assert day == date(2026, 9, 1)  # the newest day every view has a table for
    active = active_at(load_activity(store.lake, "main", CHURN_MODEL.label), CHURN_MODEL.label,
                       day)
    assert list(scores["customer_id"]) == list(active["customer_id"])
    assert ((scores["probability"] > 0) & (scores["probability"] < 1)).all()
    high = scores["probability"] >= champion.threshold
    assert (scores.loc[high, "risk"] == "high").all() and (scores.loc[~high, "risk"] != "high"
                                                           ).all()
    assert scores.loc[high, "reasons"].str.len().gt(0).all()
    registry.save_scores(champion, day, scores, "customer_id")
    registry.save_scores(champion, day, scores, "customer_id")  # scoring a day again replaces
    with registry.engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM scores")).scalar() == len(scores)
    assert registry.forget_scores([scores["customer_id"].iloc[0], "nobody"]) == 1  # erasure
    with registry.engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM scores")).scalar() == len(
            scores) - 1

    store._online = SQLiteOnlineStore(tmp_path / "online.db")
    store.materialize_online()
    client = TestClient(create_app(store, registry, "churn"))
    sample = scores.sample(40, random_state=1)
    response = client.post("/predict", json={"entities": [*sample["customer_id"], "C9999999"]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "churn:v1"
    online = body["predictions"]
    np.testing.assert_allclose([p["probability"] for p in online[:-1]], sample["probability"],
                               rtol=1e-12)
    assert [p["risk"] for p in online[:-1]] == list(sample["risk"])
    assert ["; ".join(p["reasons"]) for p in online[:-1]] == list(sample["reasons"])
    assert online[-1] == {"entity": "C9999999", "probability": None, "risk": None,
                          "reasons": [], "model": "churn:v1"}
    assert body["experiment"] is None

    changed = replace(SPENDING, features=SPENDING.features[1:], derived=())
    store.views = [changed if v.name == SPENDING.name else v for v in store.views]
    conflict = client.post("/predict", json={"entities": ["C0000001"]})
    assert conflict.status_code == 409 and "customer_spending" in conflict.json()["detail"]


def test_no_champion_and_mismatched_versions_are_named(
        trained: tuple[FeatureStore, TrainingSet, TrainedModel], tmp_path: Path) -> None:
    store, _, _ = trained
    registry = ModelRegistry(f"sqlite:///{tmp_path / 'models.db'}")
    response = TestClient(create_app(store, registry, "churn")).post("/predict",
                                                            json={"entities": ["C1"]})
    assert response.status_code == 404 and "no champion" in response.json()["detail"]
    with pytest.raises(ModelError, match="no champion to score with"):
        champion_for.fn(registry, store, CHURN_MODEL)
