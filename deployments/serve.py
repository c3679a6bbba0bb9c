"""The deployments of the project's `prefect.yaml` (else the one shipped with tideline), served by
this process (`tideline worker`) or registered for a work pool (`tideline deploy`): one source
of truth for names, parameters, schedules and triggers. Schedules and triggers are converted
into Prefect's public objects as `prefect deploy` reads them."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml
from prefect.client.schemas.actions import DeploymentScheduleCreate
from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule, RRuleSchedule
from prefect.deployments.runner import RunnerDeployment
from prefect.events import DeploymentTriggerTypes
from pydantic import BaseModel, TypeAdapter, ValidationError
from tideline.core.database import shown
from tideline.core.errors import ConfigError
from tideline.core.settings import Settings

PACKAGED_DEPLOYMENTS = Path(__file__).resolve().parent / "prefect.yaml"
"""The deployments shipped with tideline (package data `tideline/deployments/prefect.yaml`)."""

SCHEDULE_KINDS = ("cron", "interval", "rrule")
SCHEDULE_KEYS = frozenset({*SCHEDULE_KINDS, "timezone", "anchor_date", "day_or", "active",
                           "parameters", "slug", "replaces"})
"""The keys of a `schedules` entry `prefect deploy` reads (it ignores any other silently)."""

_TRIGGER = TypeAdapter(DeploymentTriggerTypes)


def deployments_file(settings: Settings) -> Path:
    """The project's `prefect.yaml` (beside its `tideline.yaml`) when it has one, else the
    deployments shipped with tideline."""
    if settings.project_dir is not None:
        own = settings.project_dir / "prefect.yaml"
        if own.is_file():
            return own
    return PACKAGED_DEPLOYMENTS


def deployment_specs(path: Path = PACKAGED_DEPLOYMENTS) -> list[dict[str, Any]]:
    """The `deployments` entries of a `prefect.yaml`."""
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the deployments in {path}: {exc}") from exc
    specs = (doc or {}).get("deployments") if isinstance(doc, Mapping) else None
    if not isinstance(specs, list) or not all(isinstance(s, Mapping) for s in specs):
        raise ConfigError(f"{path} needs a `deployments:` list of mappings (prefect.yaml "
                          "format)")
    return [dict(s) for s in specs]


def convert_schedule(deployment: str, entry: Mapping[str, Any]) -> DeploymentScheduleCreate:
    """One `schedules` entry of a deployment (cron, interval or rrule, with timezone,
    anchor_date, day_or, active, parameters, slug, replaces) as `prefect deploy` builds it."""
    where = f"deployment {deployment!r}: schedule {entry!r}"
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where} is not a mapping")
    unknown = sorted(set(entry) - SCHEDULE_KEYS)
    kinds = [k for k in SCHEDULE_KINDS if entry.get(k)]
    if unknown:
        raise ConfigError(f"{where}: unknown key {', '.join(unknown)} (prefect deploy would "
                          f"ignore it); known: {', '.join(sorted(SCHEDULE_KEYS))}")
    if len(kinds) != 1:
        raise ConfigError(f"{where}: give exactly one of {', '.join(SCHEDULE_KINDS)}")
    timezone = entry.get("timezone")
    try:
        if kinds == ["cron"]:
            schedule: Any = CronSchedule(**_given(cron=entry["cron"], timezone=timezone,
                                                  day_or=entry.get("day_or")))
        elif kinds == ["interval"]:
            interval = entry["interval"]  # seconds, a timedelta or an ISO 8601 duration
            if isinstance(interval, int | float):
                interval = timedelta(seconds=interval)
            schedule = IntervalSchedule(**_given(interval=interval, timezone=timezone,
                                                 anchor_date=entry.get("anchor_date")))
        else:  # an RRULE string, or the JSON of an RRuleSchedule
            try:
                fields = json.loads(entry["rrule"])
            except json.JSONDecodeError:
                fields = {"rrule": entry["rrule"]}
            schedule = RRuleSchedule(**{**fields, **_given(timezone=timezone)})
        return DeploymentScheduleCreate(schedule=schedule, **_given(
            active=entry.get("active"), parameters=entry.get("parameters") or None,
            slug=entry.get("slug") or None, replaces=entry.get("replaces") or None))
    except (ValidationError, ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def convert_triggers(deployment: str, entries: Sequence[Mapping[str, Any]]
                     ) -> list[DeploymentTriggerTypes]:
    """A deployment's `triggers` (event, metric, compound or sequence) as `prefect deploy`
    builds them: unnamed ones are called `<deployment>__automation_<n>`; a key the trigger
    type does not have is an error rather than silently dropped."""
    triggers = []
    for n, entry in enumerate(entries, start=1):
        if not isinstance(entry, Mapping):
            raise ConfigError(f"deployment {deployment!r}: trigger {n} is not a mapping")
        spec = {"name": f"{deployment}__automation_{n}", **entry}
        where = f"deployment {deployment!r}: trigger {spec['name']!r}"
        try:
            trigger = _TRIGGER.validate_python(spec)
        except ValidationError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        unknown = sorted(set(spec) - _field_names(trigger))
        if unknown:
            raise ConfigError(f"{where}: unknown key {', '.join(unknown)} for a "
                              f"{spec.get('type', 'event')} trigger")
        triggers.append(trigger)
    return triggers


def _given(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _field_names(model: BaseModel) -> set[str]:
    fields = type(model).model_fields
    return set(fields) | {f.alias for f in fields.values() if f.alias}


def _load_flow(name: str, entrypoint: str, base: Path) -> Any:
    """The flow of an entrypoint: a module path (`tideline.flows.train:train`) or a file
    relative to the deployments file (`flows/mine.py:my_flow`)."""
    from prefect.exceptions import MissingFlowError, ScriptError
    from prefect.flows import load_flow_from_entrypoint

    target, _, function = entrypoint.rpartition(":")
    if target.endswith(".py") and not Path(target).is_absolute():
        entrypoint = f"{base / target}:{function}"
    try:
        return load_flow_from_entrypoint(entrypoint, use_placeholder_flow=False)
    except (ImportError, AttributeError, ValueError, MissingFlowError, ScriptError) as exc:
        raise ConfigError(f"deployment {name!r}: cannot load the flow {entrypoint}: "
                          f"{exc}") from exc


def runner_deployment(spec: Mapping[str, Any], base: Path = PACKAGED_DEPLOYMENTS.parent
                      ) -> RunnerDeployment:
    """One `prefect.yaml` entry as a deployment this process can serve."""
    from prefect.types.entrypoint import EntrypointType

    name, entrypoint = spec.get("name"), str(spec.get("entrypoint") or "")
    if not name or ":" not in entrypoint:
        raise ConfigError(f"deployment {name or '?'} needs a name and an entrypoint "
                          "`package.module:flow_function` (or `path/to/file.py:flow_function`)")
    schedules = [convert_schedule(name, s) for s in spec.get("schedules") or []]
    triggers = convert_triggers(name, spec.get("triggers") or [])
    flow = _load_flow(name, entrypoint, base)
    return flow.to_deployment(
        name=name, description=spec.get("description"), tags=spec.get("tags"),
        parameters=spec.get("parameters") or {},
        concurrency_limit=spec.get("concurrency_limit"), schedules=schedules,
        triggers=triggers,
        # registered by module, not by a path relative to wherever this process started
        entrypoint_type=EntrypointType.MODULE_PATH)


def project_deployments(names: Sequence[str] = (), path: Path = PACKAGED_DEPLOYMENTS
                        ) -> list[RunnerDeployment]:
    """The named deployments of a `prefect.yaml` (all of them when none are named)."""
    specs = {spec.get("name"): spec for spec in deployment_specs(path)}
    unknown = [n for n in names if n not in specs]
    if unknown:
        raise ConfigError(f"no deployment {', '.join(map(repr, unknown))} in {path}; "
                          f"deployments: {', '.join(map(str, specs))}")
    try:
        return [runner_deployment(specs[n], path.parent) for n in (names or list(specs))]
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


@contextmanager
def prefect_server(settings: Settings, host: str = "127.0.0.1", port: int = 4200,
                   timeout: float = 120.0) -> Iterator[str]:
    """A Prefect server (API, UI and the services automations need) as a child process, on
    `prefect_database_url` or SQLite in the data directory; yields its API URL."""
    url = (settings.prefect_database_url.get_secret_value() if settings.prefect_database_url
           else f"sqlite+aiosqlite:///{(settings.data_dir / 'prefect.db').resolve()}")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PREFECT_SERVER_DATABASE_CONNECTION_URL": url,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_UI_API_URL": f"http://{host}:{port}/api"}
    api = f"http://{host}:{port}/api"
    # its own session: Ctrl-C stops the deployments served here first, then this stops it
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host",
                               host, "--port", str(port)], env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if server.poll() is not None:
                raise ConfigError(f"the Prefect server exited with code {server.returncode}; "
                                  f"is port {port} free and the database {shown(url)} "
                                  "reachable?")
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise ConfigError(f"the Prefect server did not answer on {api} within "
                                  f"{timeout:.0f} s")
            time.sleep(0.5)
        yield api
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()


def deploy_all(settings: Settings, pool: str = "tideline") -> None:
    """`prefect deploy --all` of the project's deployments file (`deployments_file`) from the
    project directory against PREFECT_API_URL, creating the process work pool first when the
    server does not have it. The pull step of each deployment moves its worker into
    TIDELINE_PROJECT_DIR, set here to the project directory."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(pool)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
    project = (settings.project_dir or Path.cwd()).resolve()
    path = deployments_file(settings)
    env = {**os.environ, "TIDELINE_PROJECT_DIR": str(project)}
    done = subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all",
                           "--prefect-file", str(path)], cwd=project, env=env)
    if done.returncode:
        raise ConfigError(f"prefect deploy --all --prefect-file {path} failed (exit "
                          f"{done.returncode}); see above")


def serve_deployments(settings: Settings, names: Sequence[str] = ()) -> None:
    """Register the project's deployments (and their automations) and run their flow runs
    here, until interrupted."""
    from prefect import serve

    serve(*project_deployments(names, deployments_file(settings)), pause_on_shutdown=False)
