"""A demo lake whose customers drift from 2 September, with the churn features at the model's
as-of dates and on 1 October, and a champion trained on it: what the monitor compares."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

from tideline.demo.model import CHURN_MODEL
from tideline.demo.views import CHURN_VIEWS
from tideline.features.registry import Registry
from tideline.features.store import FeatureStore
from tideline.lake.local import LocalLake
from tideline.models.labels import label_examples, labelable_dates, load_activity
from tideline.models.registry import ModelRecord, ModelRegistry, register_model
from tideline.models.training import train_model

from tests.features.built import build_features
from tests.features.conftest import write_clean
from tests.models.conftest import demo_tables

DRIFT_FROM = date(2026, 9, 2)
OCTOBER = date(2026, 10, 1)


@dataclass(frozen=True)
class Monitored:
    store: FeatureStore
    registry: ModelRegistry
    champion: ModelRecord


def build_monitored(root: Path) -> Monitored:
    """Built once per session (the `monitored` fixture); read-only for the tests."""
    lake = LocalLake(root / "lake")
    write_clean(lake, demo_tables(drift_from=DRIFT_FROM))
    activity = load_activity(lake, "main", CHURN_MODEL.label)
    dates = labelable_dates(activity, CHURN_MODEL.label, CHURN_MODEL.as_of_dates,
                            CHURN_MODEL.every_days)
    build_features(lake, [*dates, OCTOBER], partitions=1)
    store = FeatureStore(lake, Registry(f"sqlite:///{root / 'registry.db'}"), CHURN_VIEWS)
    training = store.get_training_set(label_examples(activity, CHURN_MODEL.label, dates),
                                      CHURN_MODEL.features, timestamp_column="as_of")
    trained = train_model(training.frame, training.features, CHURN_MODEL)
    registry = ModelRegistry(f"sqlite:///{root / 'models.db'}")
    record = register_model(registry, lake, CHURN_MODEL, trained, training)
    registry.set_champion(record, {"test": True})
    return Monitored(store=store, registry=registry, champion=registry.get("churn"))
