"""Installed anywhere: the wheel in a fresh venv, in a directory that has nothing to do with the
repository, runs `init`, `plan`, `run`, `server` (serving the project's own deployments) and
`deploy`. The venv gets only the wheel; its dependencies are read from the suite's venv (a
path, so the checkout's editable install is not among them), which keeps the test off the
network."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
from pathlib import Path

import httpx
import pytest
import yaml

from tests.services import free_port
from tests.waiting import ROOT, wait_for


@pytest.mark.slow
def test_the_wheel_outside_the_repository_inits_plans_runs_serves_and_deploys(
        tmp_path: Path) -> None:
    source, venv, home = tmp_path / "source", tmp_path / "venv", tmp_path / "elsewhere"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".venv", ".git", ".tideline", "build", "*.egg-info", "__pycache__", "benchmarks",
        "tideline-demo"))
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    site = Path(subprocess.run([venv / "bin" / "python", "-c", "import sysconfig; print("
                                "sysconfig.get_paths()['purelib'])"], check=True,
                               capture_output=True, text=True).stdout.strip())
    (site / "suite-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--no-deps",
                    str(source)], check=True, capture_output=True, cwd=tmp_path)
    shutil.rmtree(source)  # nothing of the checkout is left to lean on
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TIDELINE_", "PREFECT_API_URL", "RAY_ADDRESS"))}
    env["PATH"] = f"{venv / 'bin'}:{env['PATH']}"

    def tideline(*args: str, cwd: Path = home / "shop", timeout: float = 900,
                 **extra: str) -> str:
        done = subprocess.run(["tideline", *args], cwd=cwd, env={**env, **extra},
                              capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, (args, done.stdout[-3000:], done.stderr[-3000:])
        return " ".join(done.stdout.split())

    where = subprocess.run([venv / "bin" / "python", "-c", "import tideline; print("
                            "tideline.__file__)"], env=env, capture_output=True, text=True,
                           cwd=home).stdout
    assert where.startswith(str(site)), where
    assert tideline("init", "shop", cwd=home).endswith("tideline plan && tideline run")
    assert "payment_behaviour │ added" in tideline("plan")
    out = tideline("run", "--run-id", "first")
    assert "payment_churn:v1 is the champion" in out and "features drifted" in out

    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(["tideline", "server", "--port", str(port)], cwd=home / "shop",
                              env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    names = {d["name"] for d in yaml.safe_load((home / "shop" / "prefect.yaml").read_text())
             ["deployments"]}
    try:
        def served() -> list[dict]:
            if server.poll() is not None:
                raise AssertionError((tmp_path / "server.log").read_text()[-3000:])
            try:
                found = httpx.post(f"{api}/deployments/filter", json={"limit": 50}, timeout=5)
            except httpx.HTTPError:
                return []
            return found.json() if len(found.json()) == len(names) else []

        found = wait_for("the project's deployments", served, timeout=240)
        assert {d["name"] for d in found} == names
        assert all(d["entrypoint"].startswith("tideline.flows.") for d in found)
        tideline("deploy", timeout=300, PREFECT_API_URL=api)
        pooled = httpx.post(f"{api}/deployments/filter", json={"limit": 50}, timeout=5).json()
        assert {d["work_pool_name"] for d in pooled} == {"tideline"}
        assert {d["name"] for d in pooled} == names
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
