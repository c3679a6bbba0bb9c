"""`tideline server` on the machine's real PostgreSQL: the Prefect server comes up with the UI,
every deployment of the packaged prefect.yaml is registered and served (the demo project has no
prefect.yaml of its own; schedules and the drift automation included); a `pipeline` run started
through the API completes on the demo data and shows, with its artifacts, in the Prefect UI in
headless Chromium (screenshots kept with the test's files); `tideline deploy` (prefect deploy
--all) registers the same file for a work pool, by module entrypoints, its runs pulled into the
project directory; stopping the command (SIGTERM) stops the server."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from tideline.demo.project import PROJECT_FILE
from tideline.deployments.serve import deployment_specs

from tests.services import skip_or_fail
from tests.waiting import CLI, wait_for


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    missing = [b for b in ("chromium", "chromedriver") if shutil.which(b) is None]
    if missing:
        skip_or_fail(f"{' and '.join(missing)} not installed (`make test` installs them)")
    options = Options()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1440,1000"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def _shows(driver: Any, url: str, texts: list[str], screenshot: Path) -> None:
    """Open `url` and wait until the rendered page holds every text; keep a screenshot."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    try:
        WebDriverWait(driver, 90, poll_frequency=1).until(
            lambda d: all(t in d.find_element(By.TAG_NAME, "body").text for t in texts))
    finally:
        driver.save_screenshot(str(screenshot))
    print(f"screenshot: {screenshot}")


@pytest.mark.slow
@pytest.mark.service("postgres")
def test_server_on_postgres_registers_and_serves_every_deployment(
        postgres_database: str, tmp_path: Path) -> None:
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    project = tmp_path / "project"
    project.mkdir()
    shutil.copyfile(PROJECT_FILE, project / "tideline.yaml")
    # this project, not the suite's default (the demo beside the sources)
    env = {**os.environ, "TIDELINE_PROJECT": str(project),
           "TIDELINE_DATA_DIR": str(tmp_path / "data"),
           "TIDELINE_PREFECT_DATABASE_URL": postgres_database.replace("+psycopg", "+asyncpg")}
    log = (tmp_path / "server.log").open("w")
    command = subprocess.Popen([*CLI, "server", "--port", str(port)], cwd=project, env=env,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def deployments() -> list[dict]:
            if command.poll() is not None:
                raise AssertionError((tmp_path / "server.log").read_text()[-3000:])
            try:
                found = httpx.post(f"{api}/deployments/filter", json={"limit": 50}, timeout=5)
            except httpx.HTTPError:
                return []
            return found.json() if len(found.json()) == len(deployment_specs()) else []

        found = wait_for("every deployment", deployments, timeout=180)
        assert {d["name"] for d in found} == {s["name"] for s in deployment_specs()}
        schedules = {d["name"]: [s["schedule"].get("cron") for s in d["schedules"]]
                     for d in found}
        assert schedules["ingest"] == ["5 * * * *"] and schedules["retrain"] == []
        def automations() -> list[dict]:  # created after the deployments it triggers
            return [a for a in httpx.post(f"{api}/automations/filter", json={}, timeout=5).json()
                    if a["name"] == "retrain-on-drift"]

        (drift,) = wait_for("the drift automation", automations, timeout=60)
        assert drift["trigger"]["expect"] == ["tideline.drift.detected"]
        assert drift["trigger"]["within"] == 1800
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200  # the UI

        def scheduled() -> list[dict]:  # the scheduler fills in the hourly ingest runs
            return httpx.post(f"{api}/flow_runs/filter", timeout=10, json={
                "deployments": {"name": {"any_": ["ingest"]}},
                "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}, "limit": 10}).json()

        assert all(r["expected_start_time"][14:16] == "05" for r in wait_for(
            "scheduled ingest runs", scheduled, timeout=120))

        # a pipeline run, started as the UI's "Quick run" does, served by `tideline server`
        pipeline = next(d for d in found if d["name"] == "pipeline")
        started = httpx.post(f"{api}/deployments/{pipeline['id']}/create_flow_run", json={},
                             timeout=10).json()

        def finished() -> dict | None:
            run = httpx.get(f"{api}/flow_runs/{started['id']}", timeout=10).json()
            return run if run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED",
                                                   "CANCELLED") else None

        run = wait_for("the pipeline run", finished, timeout=600)
        assert run["state"]["type"] == "COMPLETED", run["state"]
        driver = _browser()
        try:
            ui = f"http://127.0.0.1:{port}"
            _shows(driver, f"{ui}/deployments", [s["name"] for s in deployment_specs()],
                   tmp_path / "ui-deployments.png")
            _shows(driver, f"{ui}/runs/flow-run/{run['id']}", [run["name"], "Completed"],
                   tmp_path / "ui-pipeline-run.png")
            _shows(driver, f"{ui}/artifacts", ["pipeline-summary", "drifted-features",
                                               "model-metrics"], tmp_path / "ui-artifacts.png")
        finally:
            driver.quit()

        # the same prefect.yaml through `tideline deploy` (prefect deploy --all), for a pool
        deployed = subprocess.run([*CLI, "deploy"], cwd=project,
                                  env={**env, "PREFECT_API_URL": api},
                                  capture_output=True, text=True, timeout=300)
        assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
        pooled = httpx.post(f"{api}/deployments/filter", json={"limit": 50}, timeout=5).json()
        assert {d["work_pool_name"] for d in pooled} == {"tideline"} and len(pooled) == len(
            deployment_specs())
        assert {d["entrypoint"] for d in pooled} == {s["entrypoint"]
                                                    for s in deployment_specs()}
        assert {str(d["pull_steps"]) for d in pooled} == {str([{
            "prefect.deployments.steps.set_working_directory": {
                "directory": str(project.resolve())}}])}
    finally:
        children = psutil.Process(command.pid).children(recursive=True)
        command.send_signal(signal.SIGTERM)
        try:
            command.wait(90)
            _, alive = psutil.wait_procs(children, timeout=30)
        finally:  # whatever happened, leave no server behind on the test database
            for process in children:
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.kill()
            log.close()
    assert alive == [], "the Prefect server outlived `tideline server`"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{api}/health", timeout=2)
