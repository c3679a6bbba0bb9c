"""The demo's churn data (generated without defects) as clean tables in a lake, with the churn
features built at the model's as-of dates: what the training tests learn from."""
from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from tideline.demo.generator import DemoSpec, generate
from tideline.demo.model import CHURN_MODEL
from tideline.features.store import FeatureStore, TrainingSet
from tideline.lake.local import LocalLake
from tideline.models.labels import label_examples, labelable_dates, load_activity
from tideline.models.training import TrainedModel, train_model

from tests.features.built import build_features, copied_store
from tests.features.conftest import write_clean

CUSTOMERS = 1500


def demo_tables(customers: int = CUSTOMERS, seed: int = 7, drift_from: date | None = None
                ) -> dict[str, pd.DataFrame]:
    data = generate(DemoSpec(customers=customers, defect_rate=0.0, seed=seed,
                             drift_from=drift_from))
    profile = data.customers.assign(
        signup_date=pd.to_datetime(data.customers["signup_date"]).dt.date)
    return {"customers": profile.drop(columns=["updated_at"]),
            "transactions": data.transactions.assign(
                amount=pd.to_numeric(data.transactions["amount"])),
            "tickets": data.tickets, "events": data.events}


@pytest.fixture(scope="session")
def demo_lake_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Clean demo tables and the churn features at the churn model's as-of dates, on main."""
    path = tmp_path_factory.mktemp("models") / "lake"
    lake = LocalLake(path)
    write_clean(lake, demo_tables())
    dates = labelable_dates(load_activity(lake, "main", CHURN_MODEL.label),
                            CHURN_MODEL.label, CHURN_MODEL.as_of_dates, CHURN_MODEL.every_days)
    build_features(lake, dates, partitions=1)
    return path


@pytest.fixture
def demo_store(demo_lake_template: Path, tmp_path: Path) -> FeatureStore:
    return copied_store(demo_lake_template, tmp_path)


@pytest.fixture(scope="module")
def trained_once(demo_lake_template: Path, tmp_path_factory: pytest.TempPathFactory
                 ) -> tuple[Path, TrainingSet, TrainedModel]:
    """A saved training set and a model trained on it, once for the module."""
    store = copied_store(demo_lake_template, tmp_path_factory.mktemp("trained"))
    activity = load_activity(store.lake, "main", CHURN_MODEL.label)
    dates = labelable_dates(activity, CHURN_MODEL.label, CHURN_MODEL.as_of_dates,
                            CHURN_MODEL.every_days)
    training = store.get_training_set(label_examples(activity, CHURN_MODEL.label, dates),
                                      CHURN_MODEL.features, timestamp_column="as_of")
    return store.lake.root, training, train_model(training.frame, training.features, CHURN_MODEL)


@pytest.fixture
def trained(trained_once: tuple[Path, TrainingSet, TrainedModel], tmp_path: Path
            ) -> tuple[FeatureStore, TrainingSet, TrainedModel]:
    """The module's lake copied for one test (registering publishes into it)."""
    path, training, model = trained_once
    return copied_store(path, tmp_path), training, model
