"""The deployments file as tideline reads it: the packaged `prefect.yaml` (module entrypoints, so
an installed wheel runs it) converts whole; schedules and triggers become the same objects
`prefect deploy` builds; a bad entry names its deployment; a project's own `prefect.yaml`
wins over the packaged one."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.client.schemas.actions import DeploymentScheduleCreate
from tideline.core.errors import ConfigError
from tideline.core.settings import Settings
from tideline.deployments.serve import (
    PACKAGED_DEPLOYMENTS,
    convert_schedule,
    convert_triggers,
    deployment_specs,
    deployments_file,
    project_deployments,
)

from tests.waiting import ROOT

SPECS = deployment_specs(PACKAGED_DEPLOYMENTS)

SCHEDULES = [
    {"cron": "5 * * * *", "timezone": "UTC"},
    {"cron": "0 8 * * 1", "timezone": "Europe/Paris", "day_or": False, "active": False},
    {"interval": 600, "anchor_date": "2026-01-01T00:00:00Z", "parameters": {"run_id": "x"},
     "slug": "every-ten", "replaces": "old-slug"},
    {"interval": 90.5, "anchor_date": "2026-01-01T00:00:00+01:00", "timezone": "UTC"},
    {"interval": "PT1H", "anchor_date": "2026-03-01T12:00:00Z"},
    {"rrule": "RRULE:FREQ=WEEKLY;BYDAY=MO,WE", "timezone": "America/New_York"},
    {"rrule": '{"rrule": "RRULE:FREQ=DAILY", "timezone": "Asia/Tokyo"}', "timezone": "UTC"},
    {"rrule": "RRULE:FREQ=DAILY"},
]

TRIGGERS = [
    [{"type": "event", "match": {"prefect.resource.id": "x.*"}, "expect": ["a.b"]}],
    [{"type": "event", "name": "n", "enabled": False, "match_related": {
        "prefect.resource.role": "feature"}, "after": ["a.start"], "expect": ["a.end"],
      "for_each": ["prefect.resource.id"], "posture": "Proactive", "threshold": 2,
      "within": 60, "parameters": {"p": "{{ event.payload.p | default(1) }}"}}],
    [{"type": "compound", "require": "any", "within": 120, "triggers": [
        {"type": "event", "expect": ["a"]}, {"type": "event", "expect": ["b"]}]}],
]


def test_packaged_entrypoints_are_modules_of_the_installed_package() -> None:
    assert SPECS and all(s["entrypoint"].startswith("tideline.flows.")
                         and ".py:" not in s["entrypoint"] for s in SPECS)
    assert ROOT.joinpath("prefect.yaml").resolve() == PACKAGED_DEPLOYMENTS


def test_every_packaged_deployment_converts() -> None:
    deployments = {d.name: d for d in project_deployments((), PACKAGED_DEPLOYMENTS)}
    assert set(deployments) == {s["name"] for s in SPECS}
    assert [s.schedule.cron for s in deployments["ingest"].schedules] == ["5 * * * *"]
    assert deployments["retrain"].schedules == [] and deployments["ingest"].triggers == []
    assert deployments["ingest"].schedules[0].schedule.timezone == "UTC"
    assert deployments["pipeline"].concurrency_limit == 1
    assert deployments["retrain"].entrypoint == "tideline.flows.retrain.retrain"
    assert convert_triggers("d", TRIGGERS[0])[0].name == "d__automation_1"
    (drift,) = deployments["retrain"].triggers
    assert drift.name == "retrain-on-drift" and drift.expect == {"tideline.drift.detected"}
    assert drift.within == timedelta(minutes=30) and drift.threshold == 1
    assert drift.parameters == {"report": "{{ event.payload.report }}",
                                "reasons": "{{ event.payload.reasons }}"}


# The oracle below is Prefect's own private conversion in `prefect deploy`; tideline's product
# code must not import it, but while Prefect is pinned <3.9 it is the reference to match.
# Drop these two tests (or re-check them) when the pin moves.
@pytest.mark.parametrize("entry", SCHEDULES + [s for spec in SPECS
                                               for s in spec.get("schedules") or []])
def test_schedules_convert_as_prefect_deploy_does(entry: dict[str, Any]) -> None:
    from prefect.cli.deploy._schedules import _schedule_config_to_deployment_schedule

    expected = DeploymentScheduleCreate(**_schedule_config_to_deployment_schedule(dict(entry)))
    assert convert_schedule("d", entry) == expected


@pytest.mark.parametrize("entries", TRIGGERS + [spec["triggers"] for spec in SPECS
                                                if spec.get("triggers")])
def test_triggers_convert_as_prefect_deploy_does(entries: list[dict[str, Any]]) -> None:
    from prefect.cli.deploy._triggers import _initialize_deployment_triggers

    expected = _initialize_deployment_triggers("d", [dict(e) for e in entries])
    assert convert_triggers("d", entries) == expected


@pytest.mark.parametrize(("schedule", "why"), [
    ({"every": "day"}, "unknown key every"),
    ({"timezone": "UTC"}, "exactly one of cron, interval, rrule"),
    ({"cron": "5 * * * *", "interval": 60}, "exactly one of"),
    ({"cron": "61 * * * *"}, "cron"),
    ({"cron": "5 * * * *", "timezone": "Mars/Olympus"}, "timezone"),
    ({"rrule": "FREQ=SOMETIMES"}, "rrule"),
    ({"interval": "often"}, "interval"),
    ("hourly", "not a mapping"),
])
def test_a_bad_schedule_names_its_deployment_and_file(tmp_path: Path, schedule: Any,
                                                       why: str) -> None:
    path = _deployments(tmp_path, {"name": "nightly", "entrypoint":
                                   "tideline.flows.ingest:ingest", "schedules": [schedule]})
    with pytest.raises(ConfigError, match=why) as caught:
        project_deployments((), path)
    assert str(path) in str(caught.value) and "deployment 'nightly'" in str(caught.value)


@pytest.mark.parametrize(("trigger", "why"), [
    ({"type": "event", "expect": ["a"], "withn": 60}, "unknown key withn"),
    ({"type": "event", "expect": ["a"], "posture": "Sometimes"}, "posture"),
    ({"type": "telepathy"}, "telepathy"),
    (["a"], "not a mapping"),
])
def test_a_bad_trigger_names_its_deployment(trigger: Any, why: str) -> None:
    with pytest.raises(ConfigError, match=why) as caught:
        convert_triggers("retrain", [trigger])
    assert "deployment 'retrain'" in str(caught.value)


def test_an_entrypoint_that_does_not_load_names_its_deployment(tmp_path: Path) -> None:
    path = _deployments(tmp_path, {"name": "mine", "entrypoint": "tideline.flows.nope:flow"})
    with pytest.raises(ConfigError, match="deployment 'mine': cannot load"):
        project_deployments((), path)


def test_a_projects_own_prefect_yaml_comes_first(tmp_path: Path) -> None:
    project = Settings.model_construct(project=tmp_path / "tideline.yaml")
    assert deployments_file(project) == PACKAGED_DEPLOYMENTS
    assert deployments_file(Settings.model_construct(project=None)) == PACKAGED_DEPLOYMENTS
    own = _deployments(tmp_path, {"name": "mine", "entrypoint": "flows/mine.py:mine"})
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "mine.py").write_text(
        "from prefect import flow\n\n\n@flow\ndef mine(n: int = 1) -> int:\n    return n\n")
    assert deployments_file(project) == own
    (deployment,) = project_deployments((), deployments_file(project))
    assert deployment.name == "mine" and deployment.flow_name == "mine"


def _deployments(directory: Path, *specs: Any) -> Path:
    path = directory / "prefect.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "deployments": list(specs)}))
    return path
