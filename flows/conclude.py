"""Conclude: an experiment's verdict (`tideline.experiment.concluded`) → the challenger
promoted when it won, retired when it lost → its owner told. Started by the event's automation
(`prefect.yaml`), or by hand with the experiment's name."""
from __future__ import annotations

from prefect import flow, get_run_logger
from tideline.core.errors import ModelError
from tideline.core.settings import flow_settings
from tideline.flows.hooks import FAILURE_HOOKS
from tideline.models.registry import open_model_registry
from tideline.tasks.experiments import act_on_verdict, tell_owner


@flow(name="conclude", **FAILURE_HOOKS)
def conclude(experiment: str) -> str:
    """concluded experiment → promote or retire the challenger → e-mail its owner."""
    settings = flow_settings()
    registry = open_model_registry(settings)
    found = registry.experiment(experiment)
    if found.status != "concluded":
        raise ModelError(f"experiment {experiment!r} is {found.status}, not concluded: "
                         "nothing to act on")
    action = act_on_verdict(registry, found)
    deliveries = tell_owner(settings, registry, found, action)
    get_run_logger().info("experiment %s: %s; owner told: %s", experiment, action,
                          all(d.sent for d in deliveries))
    return action
