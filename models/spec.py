"""Model specifications as data: what to predict (a label), from which features, how to split
time, train and judge. A spec's version is a hash of everything that changes the model."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from tideline.core.addresses import valid_address
from tideline.core.errors import ModelError
from tideline.core.project import is_project_file, section
from tideline.features.definitions import FeatureView
from tideline.models.labels import ChurnLabel


@dataclass(frozen=True)
class PromotionGate:
    """A candidate becomes champion only with at least these test metrics and, when there is a
    champion, a test ROC-AUC higher than the champion's on the same rows by `margin`."""

    min_roc_auc: float = 0.65
    min_pr_auc: float = 0.0
    margin: float = 0.002


@dataclass(frozen=True)
class ModelSpec:
    name: str
    label: ChurnLabel
    features: tuple[str, ...]
    """Feature references as the store takes them: `feature`, `view:feature`, `view:*`."""
    owner: str
    as_of_dates: int = 10
    """Training examples at this many as-of dates ..."""
    every_days: int = 7
    """... this many days apart, the latest whose label horizon the data covers."""
    valid_dates: int = 2
    test_dates: int = 2
    """The latest dates are the test fold, the ones before them validation, the rest training."""
    params: dict[str, Any] = field(default_factory=lambda: {
        # regularised trees; churners weigh three times a stayer (about 1 in 14 examples
        # churns). The learning rate and the number of leaves, unless given here, follow the
        # size of the training fold (`tideline.models.boosting.planned`)
        "min_data_in_leaf": 50, "feature_fraction": 0.5, "bagging_fraction": 0.8,
        "bagging_freq": 1, "lambda_l2": 5.0, "scale_pos_weight": 3.0})
    num_boost_round: int | None = None
    """Rounds at most; None: by the learning rate (`tideline.models.boosting.planned`)."""
    early_stopping_rounds: int | None = None
    """Rounds without gain on validation before boosting stops; None: by the learning rate."""
    search_trials: int = 0
    """Hyper-parameter sets to try (`tideline.models.search`); 0 or 1 trains with `params` alone."""
    search_seconds: float = 300.0
    """The search's time budget."""
    leakage_auc: float = 0.98
    """A feature that alone separates the classes better than this is treated as a leak."""
    gate: PromotionGate = PromotionGate()

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", tuple(self.features))
        if self.test_dates < 1 or self.valid_dates < 1:
            raise ModelError(f"model {self.name!r}: needs at least one validation and one test "
                             "date")
        if self.as_of_dates < self.valid_dates + self.test_dates + 1:
            raise ModelError(f"model {self.name!r}: {self.as_of_dates} as-of dates leave none "
                             f"to train on after {self.valid_dates} validation and "
                             f"{self.test_dates} test dates")
        if not valid_address(self.owner):
            raise ModelError(f"model {self.name!r}: owner must be one bare e-mail address "
                             f"(local@domain), got {self.owner!r}")

    @property
    def version(self) -> str:
        body = asdict(self)
        body.pop("owner")
        text = json.dumps(body, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def load_model_spec(spec: str, views: Sequence[FeatureView] = ()) -> ModelSpec:
    """A spec from `module:attribute`, from a project file's `model` section (a mapping, or a
    string naming either of the others), or from a YAML file whose label names its activity
    sources by the names the feature views (`views`) give them:

        name: churn
        owner: ds@example.com
        label: {activity: [payments], entity_key: client, horizon_days: 30, active_days: 30}
        features: ["payments_spend:*"]
        as_of_dates: 8        # and any other ModelSpec field
    """
    if is_project_file(spec):
        path = Path(spec)
        body = section(path, "model")
        if body is None:
            raise ModelError(f"{path}: no `model` section")
        if isinstance(body, str):
            return load_model_spec(body, views)
        return spec_of(body, views, f"{path}: model")
    if spec.endswith((".yaml", ".yml")):
        try:
            body = yaml.safe_load(Path(spec).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ModelError(f"cannot read model spec {spec}: {exc}") from exc
        return spec_of(body, views, f"model spec {spec}")
    import importlib

    module, _, attribute = spec.partition(":")
    try:
        found = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ModelError(f"cannot load model spec {spec!r}: {exc}; give `module:attribute` "
                         "or a .yaml file") from exc
    if not isinstance(found, ModelSpec):
        raise ModelError(f"{spec!r} is a {type(found).__name__}, not a ModelSpec")
    return found


def spec_of(body: Any, views: Sequence[FeatureView], where: str) -> ModelSpec:
    """A spec from a mapping whose label names its activity sources by the views' names for
    them (its `entity_key`, unless given, the key of the views reading them); `where` names
    the file and section in errors."""
    if not isinstance(body, dict) or not isinstance(body.get("label"), dict):
        raise ModelError(f"{where}: needs a mapping with a `label` mapping")
    body = dict(body)
    sources = {source.name: source for view in views for source in view.sources}
    label = dict(body.pop("label"))
    names = label.pop("activity", [])
    unknown = [n for n in names if n not in sources]
    if unknown or not names:
        raise ModelError(f"{where}: label activity {unknown or names!r} is not a source of the "
                         f"feature views ({', '.join(sorted(sources)) or 'none'})")
    keys = {view.entity.key for view in views for source in view.sources
            if source.name in names}
    if "entity_key" not in label and len(keys) == 1:  # the key the views give the entity
        label["entity_key"] = keys.pop()
    gate = body.pop("gate", {})
    try:
        return ModelSpec(label=ChurnLabel(activity=tuple(sources[n] for n in names), **label),
                         gate=PromotionGate(**gate), **body)
    except TypeError as exc:
        raise ModelError(f"{where}: {exc}") from exc
