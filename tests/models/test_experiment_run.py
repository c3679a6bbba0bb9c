"""An experiment on the demo's churn data, through the registry, the lake and the tasks the
flows run: shadow scores change nothing acted on; a 50/50 split acts on each arm's model; the
outcome waits for its sample size; a challenger far better (or worse) than the champion is
promoted (or retired) from the verdict, recorded in the registry's history."""
from __future__ import annotations

import html
from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from tideline.core.errors import ModelError
from tideline.demo.model import CHURN_MODEL
from tideline.features.online.sqlite import SQLiteOnlineStore
from tideline.features.store import FeatureStore, TrainingSet
from tideline.models.experiment import (
    Experiment,
    measure,
    read_scores,
    report_html,
    split_scores,
)
from tideline.models.promotion import judge
from tideline.models.registry import ModelRecord, ModelRegistry, register_model
from tideline.models.training import TrainedModel, train_model
from tideline.monitoring.events import EXPERIMENT_EVENT
from tideline.serving.api import create_app
from tideline.tasks.experiments import act_on_verdict, conclude_experiment
from tideline.tasks.scoring import score_customers

DAY = date(2026, 9, 1)
KEY = "customer_id"


@pytest.fixture(scope="module")
def blind(trained_once: tuple[Path, TrainingSet, TrainedModel]) -> TrainedModel:
    """A model trained on shuffled labels: it ranks customers at random."""
    _, training, _ = trained_once
    label = CHURN_MODEL.label.name
    shuffled = training.frame.assign(**{label: np.random.default_rng(0).permutation(
        training.frame[label].to_numpy())})
    return train_model(shuffled, training.features, CHURN_MODEL)


@pytest.fixture
def registered(trained: tuple[FeatureStore, TrainingSet, TrainedModel], blind: TrainedModel,
               tmp_path: Path) -> tuple[FeatureStore, ModelRegistry, ModelRecord, ModelRecord]:
    """v1 the real model, champion; v2 the blind one, a candidate."""
    store, training, model = trained
    registry = ModelRegistry(f"sqlite:///{tmp_path / 'models.db'}")
    good = register_model(registry, store.lake, CHURN_MODEL, model, training)
    assert judge(registry, store.lake, good, model, CHURN_MODEL.gate).promoted
    bad = register_model(registry, store.lake, CHURN_MODEL, blind, training)
    return store, registry, registry.get("churn", good.version), bad


def scored(store: FeatureStore, registry: ModelRegistry, experiment: Experiment
           ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    champion = registry.get(experiment.model, experiment.champion)
    challenger = registry.get(experiment.model, experiment.challenger)
    _, first = score_customers.fn(store, champion, CHURN_MODEL, DAY)
    _, second = score_customers.fn(store, challenger, CHURN_MODEL, DAY)
    acted, rows = split_scores(experiment, first, second, KEY, DAY)
    return first, acted, rows


def record_rows(store: FeatureStore, experiment: Experiment, rows: pd.DataFrame) -> None:
    from tideline.lake.tables import write_table
    from tideline.models.experiment import scores_path

    write_table(store.lake, "main", scores_path(experiment.name, DAY), rows)
    store.lake.commit("main", f"experiment {experiment.name}")


def thresholds(registry: ModelRegistry, e: Experiment) -> dict[str, float]:
    return {"champion": registry.get(e.model, e.champion).threshold,
            "challenger": registry.get(e.model, e.challenger).threshold}


def test_shadow_then_split_on_the_demo(
        registered: tuple[FeatureStore, ModelRegistry, ModelRecord, ModelRecord],
        tmp_path: Path) -> None:
    store, registry, good, bad = registered
    shadow = registry.start_experiment(Experiment(
        "shadow-1", "churn", good.version, bad.version, mode="shadow", baseline=0.5))
    with pytest.raises(ModelError, match="shadow-1.*is running"):
        registry.start_experiment(replace(shadow, name="another"))
    champion, acted, rows = scored(store, registry, shadow)
    # shadow: what is acted on is the champion's, to the last digit; both are recorded
    pd.testing.assert_frame_equal(acted[champion.columns], champion)
    assert (acted["model"] == good.ref).all() and (rows["arm"] == "champion").all()
    assert not np.allclose(rows["probability_champion"], rows["probability_challenger"])

    registry.end_experiment("shadow-1", "stopped", {"stopped": "by hand"})
    split = registry.start_experiment(Experiment(
        "split-1", "churn", good.version, bad.version, mode="split", share=0.5,
        baseline=0.5, min_effect=0.05))
    _, acted, rows = scored(store, registry, split)
    on = (rows["arm"] == "challenger").to_numpy()
    assert 0.4 < on.mean() < 0.6
    np.testing.assert_array_equal(acted["probability"].to_numpy()[on],
                                  rows["probability_challenger"].to_numpy()[on])
    np.testing.assert_array_equal(acted["probability"].to_numpy()[~on],
                                  rows["probability_champion"].to_numpy()[~on])
    assert set(acted.loc[on, "model_version"]) == {bad.version}
    # scoring again puts every customer in the same arm
    _, _, again = scored(store, registry, split)
    assert (again["arm"] == rows["arm"]).all()

    # online, the same arms: the champion or the challenger answers, both are recorded
    store._online = SQLiteOnlineStore(tmp_path / "online.db")
    store.materialize_online()
    asked = [*rows[KEY].iloc[:30], "C9999999"]
    body = TestClient(create_app(store, registry, "churn")).post("/predict", json={
        "entities": asked}).json()
    assert body["model"] == good.ref and body["experiment"] == "split-1"
    arms = dict(zip(rows[KEY], rows["arm"], strict=True))
    assert [p["model"] for p in body["predictions"][:-1]] == [
        bad.ref if arms[key] == "challenger" else good.ref for key in asked[:-1]]
    recorded = registry.predictions("split-1")
    assert list(recorded["entity_id"]) == asked[:-1]  # the unknown customer is not recorded
    assert list(recorded["arm"]) == [arms[key] for key in asked[:-1]]

    record_rows(store, split, rows)
    assert len(read_scores(store.lake, "main", "split-1")) == len(rows)
    measured = measure(store.lake, "main", CHURN_MODEL.label, split, thresholds(registry, split))
    assert measured is not None and measured.days == (f"{DAY}",)
    assert sum(a.customers for a in measured.arms) == len(rows)
    # 1,500 customers: far fewer flagged per arm than the 1,500-odd the test needs
    assert measured.verdict.status == "too early" and measured.verdict.winner is None
    assert conclude_experiment.fn(registry, measured, {"html": "", "commit": ""}) is None
    assert registry.experiment("split-1").status == "running"


@pytest.mark.parametrize("challenger_wins", [True, False])
def test_a_clear_verdict_promotes_or_retires_the_challenger(
        registered: tuple[FeatureStore, ModelRegistry, ModelRecord, ModelRecord],
        challenger_wins: bool, prefect_server: None) -> None:
    store, registry, good, bad = registered
    if challenger_wins:  # the blind model is the champion, the real one challenges it
        registry.set_champion(bad, {"by": "test"})
    champion, challenger = (bad, good) if challenger_wins else (good, bad)
    # 1,500 customers flag too few for a small effect: 30 points need 42 per arm
    split = registry.start_experiment(Experiment(
        "split-2", "churn", champion.version, challenger.version, mode="split",
        baseline=0.4, min_effect=0.3))
    assert split.required_per_arm == 42
    _, _, rows = scored(store, registry, split)
    record_rows(store, split, rows)
    measured = measure(store.lake, "main", CHURN_MODEL.label, split, thresholds(registry, split))
    assert measured is not None and measured.verdict.status == "significant"
    assert measured.verdict.winner == ("challenger" if challenger_wins else "champion")
    page = report_html(measured)
    assert f"<b>significant</b>: {html.escape(measured.verdict.message)}" in page
    assert 'src="data:image/png;base64,' in page and "42 customers per arm" in page
    event = conclude_experiment.fn(registry, measured, {"html": "r.html", "commit": "c"})
    assert event is not None and event.delivered and event.event == EXPERIMENT_EVENT
    concluded = registry.experiment("split-2")
    assert concluded.status == "concluded"
    assert concluded.outcome["verdict"]["winner"] == measured.verdict.winner

    action = act_on_verdict.fn(registry, concluded)
    assert act_on_verdict.fn(registry, concluded) == action  # acting twice changes nothing
    after = registry.get("churn", challenger.version)
    if challenger_wins:
        assert action == f"{challenger.ref} promoted to champion"
        assert registry.champion("churn").version == challenger.version
    else:
        assert action == f"{challenger.ref} retired" and after.stage == "archived"
        assert registry.champion("churn").version == champion.version
    last = registry.events("churn")[-1]
    assert last["version"] == challenger.version
    assert last["detail"]["experiment"] == "split-2"
