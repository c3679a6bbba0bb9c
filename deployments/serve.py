"""The deployments of `prefect.yaml`, served by this process (`tideline worker`): one source of
truth for names, parameters, schedules and triggers whether they run under a work pool
(`prefect deploy --all`) or here. Schedules and triggers are read exactly as `prefect deploy`
reads them."""
from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from prefect.deployments.runner import RunnerDeployment

from tideline.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PREFECT_YAML = PROJECT_ROOT / "prefect.yaml"


def deployment_specs(path: Path = PREFECT_YAML) -> list[dict[str, Any]]:
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the deployments in {path}: {exc}") from exc
    return list(doc.get("deployments") or [])


def runner_deployment(spec: dict[str, Any]) -> RunnerDeployment:
    """One `prefect.yaml` entry as a deployment this process can serve."""
    # the conversions `prefect deploy` itself applies (private helpers, pinned prefect < 3.9)
    from prefect.cli.deploy._schedules import _schedule_config_to_deployment_schedule
    from prefect.cli.deploy._triggers import _initialize_deployment_triggers

    name = spec.get("name")
    file, _, function = str(spec.get("entrypoint", "")).partition(":")
    if not name or not function:
        raise ConfigError(f"deployment {name or '?'} in prefect.yaml needs a name and an "
                          "entrypoint `path/to/file.py:flow_function`")
    module = ".".join(Path(file).with_suffix("").parts)
    try:
        flow = getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"deployment {name}: cannot load {spec['entrypoint']}: {exc}") from exc
    return flow.to_deployment(
        name=name, description=spec.get("description"), tags=spec.get("tags"),
        parameters=spec.get("parameters") or {},
        schedules=[_schedule_config_to_deployment_schedule(s)
                   for s in spec.get("schedules") or []],
        triggers=_initialize_deployment_triggers(name, [dict(t) for t in
                                                        spec.get("triggers") or []]))


def project_deployments(names: Sequence[str] = (), path: Path = PREFECT_YAML
                        ) -> list[RunnerDeployment]:
    """The named deployments of `prefect.yaml` (all of them when none are named)."""
    specs = {spec.get("name"): spec for spec in deployment_specs(path)}
    unknown = [n for n in names if n not in specs]
    if unknown:
        raise ConfigError(f"no deployment {', '.join(map(repr, unknown))} in {path}; "
                          f"deployments: {', '.join(specs)}")
    return [runner_deployment(specs[n]) for n in (names or list(specs))]


def serve_deployments(names: Sequence[str] = ()) -> None:
    """Register the deployments (and their automations) and run their flow runs here, until
    interrupted."""
    from prefect import serve

    serve(*project_deployments(names), pause_on_shutdown=False)
