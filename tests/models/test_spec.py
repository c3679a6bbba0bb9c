"""Model specs from YAML: the label's sources come from the feature views by name; mistakes
name the file and what is wrong."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from tideline.core.errors import ModelError
from tideline.demo.model import CHURN_MODEL
from tideline.demo.views import CHURN_VIEWS
from tideline.models.spec import load_model_spec

SPEC = """
name: churn
owner: retention-ds@example.com
label: {activity: [transactions, events], horizon_days: 30, active_days: 30}
features: [customer_spending:*, customer_activity:*, customer_support:*, customer_profile:*]
"""


def test_a_yaml_spec_equals_the_python_one(tmp_path: Path) -> None:
    path = tmp_path / "model.yaml"
    path.write_text(SPEC)
    spec = load_model_spec(str(path), CHURN_VIEWS)
    assert spec == CHURN_MODEL and spec.version == CHURN_MODEL.version


@pytest.mark.parametrize(("text", "error"), [
    (SPEC.replace("events]", "clicks]"), "label activity \\['clicks'\\] is not a source"),
    (SPEC.replace("owner:", "colour: red\nowner:"), "unexpected keyword argument 'colour'"),
    ("name: churn\n", "needs a mapping with a `label` mapping"),
    ("label: [", "cannot read model spec"),
])
def test_mistakes_name_the_file(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "model.yaml"
    path.write_text(text)
    with pytest.raises(ModelError, match=error):
        load_model_spec(str(path), CHURN_VIEWS)


def test_the_labels_entity_key_defaults_to_the_key_of_the_views_reading_its_activity(
        tmp_path: Path) -> None:
    views = [replace(view, entity=replace(view.entity, key="client")) for view in CHURN_VIEWS]
    path = tmp_path / "model.yaml"
    path.write_text(SPEC.replace("[customer_spending:*, customer_activity:*, customer_support:*, "
                                 "customer_profile:*]", "[customer_spending:*]")
                    .replace("[transactions, events]", "[transactions]"))
    assert load_model_spec(str(path), views).label.entity_key == "client"
