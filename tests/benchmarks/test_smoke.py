"""Every benchmark at its smoke size (`make bench-smoke`, and so `make test`): each must run and
find tideline agreeing with its references, and must fail when a reference's output is changed.
Never timing: the figures of a smoke run mean nothing and are not looked at."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
TIMEOUT = 300
"""Seconds a smoke run may take on a loaded 2-core machine before it counts as failed."""

SMOKES = {
    # name: (script and arguments, the services it needs)
    "approx": (["approx_bench.py", "--smoke"], ()),
    "validation": (["validation_bench.py", "--smoke"], ()),
    "lake": (["lake_bench.py", "--smoke"], ()),
    "drift": (["drift_bench.py", "--smoke"], ()),
    "ingest": (["ingest_bench.py", "--data", "event-log", "--smoke"], ()),
    "store": (["store_bench.py", "--smoke", "--feast-python", "/nonexistent"], ("redis",)),
    "stream": (["stream_bench.py", "--smoke"], ("redis", "nats")),
    "train": (["train_bench.py", "--smoke"], ()),
    "feature": (["feature_bench.py", "--smoke"], ()),
    "discovery": (["discovery_bench.py", "--smoke", "--slice-only"], ()),
    "event_log": (["feature_bench.py", "--data", "event-log", "--smoke"], ()),
    "soak": (["soak.py", "--smoke"], ()),
    "tile": (["tile_bench.py", "--smoke"], ()),
}
SLOW = {"train", "feature", "discovery", "event_log", "soak", "tile"}
"""The smokes of 40 s to two minutes on a loaded 2-core machine (fresh interpreters, Ray,
Prefect's server): `make test-slow` runs them, `make bench-smoke` runs everything, so that
`make test` stays within its time."""


def run(arguments: list[str], work: Path, **env: str) -> subprocess.CompletedProcess:
    """A benchmark script in a fresh interpreter, its scratch space under `work`."""
    script, *rest = arguments
    work.mkdir(parents=True, exist_ok=True)
    # the feature, discovery and ingest smokes share their generated data (cached by size)
    shared = script in ("feature_bench.py", "discovery_bench.py", "ingest_bench.py")
    scratch = {"lake_bench.py": ["--dir", str(work)], "approx_bench.py": [],
               "validation_bench.py": [], "soak.py": ["--dir", str(work / "soak")]}.get(
        script, ["--work-dir", str(work / ("features" if shared else script[:-3]))])
    return subprocess.run([sys.executable, str(BENCHMARKS / script), *rest, *scratch],
                          capture_output=True, text=True, timeout=TIMEOUT,
                          env={**without_project(), **env}, cwd=work)


def without_project() -> dict[str, str]:
    """The suite's environment less the demo project it points at: a benchmark runs the
    project it makes (those that need the demo's say so themselves)."""
    return {k: v for k, v in os.environ.items() if k != "TIDELINE_PROJECT"}


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One scratch directory for the module: the feature, discovery and event-log smokes share
    their generated data through it."""
    return tmp_path_factory.mktemp("bench-smoke")


def services(request: pytest.FixtureRequest, names: tuple[str, ...]) -> list[str]:
    """The arguments that point a benchmark at the suite's own servers (a database of Redis
    no other test uses: the benchmarks flush it)."""
    arguments = []
    if "redis" in names:
        base = request.getfixturevalue("redis_server").url.rsplit("/", 1)[0]
        arguments += ["--redis-url", f"{base}/13"]
    if "nats" in names:
        arguments += ["--nats-url", request.getfixturevalue("nats_server").url]
    return arguments


@pytest.mark.parametrize("name", [pytest.param(name, marks=[pytest.mark.slow] if name in SLOW
                                               else []) for name in SMOKES])
def test_smoke_run_agrees(name: str, work: Path, request: pytest.FixtureRequest) -> None:
    arguments, needs = SMOKES[name]
    done = run([*arguments, *services(request, needs)], work)
    assert done.returncode == 0, (f"{name} smoke run failed ({done.returncode}):\n"
                                  f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    assert "DISAGREEMENT" not in done.stderr


def test_a_changed_reference_fails_the_run(work: Path) -> None:
    """One value of pyarrow's read-back table changed: the lake smoke must exit 1 and name the
    reference and the column."""
    done = run(["lake_bench.py", "--smoke"], work / "perturbed", TIDELINE_BENCH_PERTURB="pyarrow")
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert "DISAGREEMENT pyarrow: column f0 differs on 1 rows" in done.stderr
