"""Installed, tideline is one package: a wheel of the repository puts `tideline` (and its
dist-info) into site-packages and nothing else, and the product imports from there alone."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.waiting import ROOT

CHECK = """
import sys
sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f)]  # not the checkout
sys.path.insert(0, sys.argv[1])
import tideline, tideline.core.settings, tideline.flows.pipeline, tideline.deployments.cli
assert tideline.__file__.startswith(sys.argv[1]), tideline.__file__
assert tideline.flows.pipeline.__file__.startswith(sys.argv[1]), tideline.flows.pipeline.__file__
from tideline.deployments.project import DEPLOYMENTS_FILE, SCHEMA_FILE, TEMPLATE
assert all(p.is_file() for p in (DEPLOYMENTS_FILE, SCHEMA_FILE, TEMPLATE / "tideline.yaml"))
print(len(list(TEMPLATE.rglob("*.csv"))))
"""


def test_a_wheel_installs_one_top_level_name_that_imports_on_its_own(tmp_path: Path) -> None:
    source, target = tmp_path / "source", tmp_path / "site"  # pip builds inside the source tree
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".venv", ".git", ".tideline", "build", "*.egg-info", "__pycache__", "benchmarks"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--target", str(target), str(source)],
                   check=True, capture_output=True, text=True, cwd=tmp_path)
    installed = sorted(p.name for p in target.iterdir() if p.name != "bin")
    assert installed == ["tideline", "tideline-0.1.0.dist-info"]
    assert (target / "tideline" / "demo" / "tideline.yaml").is_file()
    assert not (target / "tideline" / "tests").exists()
    done = subprocess.run([sys.executable, "-c", CHECK, str(target)], capture_output=True,
                          text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"  # the template's sample data
