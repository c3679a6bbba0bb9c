"""The deployments of `prefect.yaml`, served by this process (`tideline worker`): one source of
truth for names, parameters, schedules and triggers whether they run under a work pool
(`prefect deploy --all`) or here. Schedules and triggers are read exactly as `prefect deploy`
reads them."""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml
from prefect.deployments.runner import RunnerDeployment
from tideline.core.database import shown
from tideline.core.errors import ConfigError
from tideline.core.settings import Settings

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
        concurrency_limit=spec.get("concurrency_limit"),
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


def deploy_all(pool: str = "tideline") -> None:
    """`prefect deploy --all` from the project directory against PREFECT_API_URL, creating the
    process work pool first when the server does not have it."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(pool)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
    env = {**os.environ, "TIDELINE_PROJECT_DIR": str(PROJECT_ROOT)}
    done = subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"],
                          cwd=PROJECT_ROOT, env=env)
    if done.returncode:
        raise ConfigError(f"prefect deploy --all failed (exit {done.returncode}); see above")


def serve_deployments(names: Sequence[str] = ()) -> None:
    """Register the deployments (and their automations) and run their flow runs here, until
    interrupted."""
    from prefect import serve

    serve(*project_deployments(names), pause_on_shutdown=False)
