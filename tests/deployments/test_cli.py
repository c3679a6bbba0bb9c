"""The `tideline` command line as a user meets it."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tideline.deployments.cli import app
from tideline.lake.local import LocalLake
from typer.testing import CliRunner

from tests.waiting import CLI

runner = CliRunner()


@pytest.fixture
def lake(data_dir: Path) -> LocalLake:
    lake = LocalLake(data_dir / "lake")
    lake.put("main", "raw/a.csv", b"id\n1\n")
    lake.commit("main", "load a", {"run_id": "r1"})
    return lake


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args), terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


def test_every_command_has_help() -> None:
    for command in (
        [],
        ["init"],
        ["demo"],
        ["plan"],
        ["doctor"],
        ["schema"],
        ["run"],
        ["lake"],
        ["lake", "init"],
        ["lake", "branches"],
        ["lake", "log"],
        ["lake", "diff"],
        ["lake", "show"],
        ["lake", "tag"],
        ["lake", "tags"],
        ["features"],
        ["features", "build"],
        ["features", "list"],
        ["features", "describe"],
        ["features", "diff"],
        ["features", "materialize"],
        ["serve"],
        ["train"],
        ["score"],
        ["models"],
        ["models", "list"],
        ["models", "describe"],
        ["models", "promote"],
        ["models", "lineage"],
        ["lineage"],
    ):
        assert "Usage" in invoke(*command, "--help")


def test_log_shows_id_message_metadata_and_time(lake: LocalLake) -> None:
    out = invoke("lake", "log", "main")
    head = lake.get_commit("main")
    assert head.id[:12] in out and "load a" in out and "run_id=r1" in out
    assert f"{head.created_at:%Y-%m-%d %H:%M}" in out
    assert "Repository created" in out


def test_diff_lists_changes(lake: LocalLake) -> None:
    lake.put("main", "raw/b.csv", b"id\n2\n")
    lake.delete("main", "raw/a.csv")
    lake.commit("main", "swap")
    out = invoke("lake", "diff", "main~1", "main")
    assert "added" in out and "raw/b.csv" in out and "removed" in out and "raw/a.csv" in out
    assert "2 change(s)" in out


def test_show_tag_and_branches(lake: LocalLake) -> None:
    assert "raw/a.csv" in invoke("lake", "show", "main")
    invoke("lake", "tag", "v1")
    assert "v1" in invoke("lake", "tags")
    assert lake.tags()["v1"] == lake.resolve("main")
    assert "main" in invoke("lake", "branches")


def test_errors_are_one_line_without_traceback(lake: LocalLake, data_dir: Path) -> None:
    for args, expected in (
        (["lake", "log", "nosuch"], "nosuch"),
        (["lake", "show", "main", "../etc"], "../etc"),
        (["lake", "tag", "bad tag"], "bad tag"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "tideline.deployments.cli", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1
        assert expected in done.stderr and "error:" in done.stderr
        assert "Traceback" not in done.stderr + done.stdout


def test_invalid_settings_are_a_clear_error(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIDELINE_LAKE_BACKEND", "lakefs")
    done = subprocess.run(
        [sys.executable, "-m", "tideline.deployments.cli", "lake", "log"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "TIDELINE_LAKEFS_ENDPOINT" in done.stderr and "Traceback" not in done.stderr


def test_features_list_describe_and_diff(data_dir: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    from dataclasses import replace
    from datetime import date

    import pandas as pd
    from tideline.demo.views import PROFILE
    from tideline.deployments.cli import common
    from tideline.features.definitions import Feature
    from tideline.features.registry import Registry
    from tideline.features.stats import profile_features

    monkeypatch.setattr(common.console, "width", 250)  # wide tables keep each cell on one line
    data_dir.mkdir(parents=True)
    registry = Registry(f"sqlite:///{data_dir / 'registry.db'}")
    frame = pd.DataFrame({"tenure_days": [10, 20, None], "plan": ["basic", "plus", "plus"],
                          "monthly_fee": [9.99, 19.99, 19.99]})
    day = date(2026, 9, 1)
    registry.record_build("r7", "a" * 64, "b" * 64, [PROFILE], {(PROFILE.name, day): 3},
                          {(PROFILE.name, day): profile_features(frame, PROFILE.feature_names)})
    newer = replace(PROFILE, features=(*PROFILE.features, Feature("region", "region", "last")))
    registry.register_views([newer])

    listed = invoke("features", "list")
    assert "customer_profile" in listed and newer.version in listed
    described = invoke("features", "describe", f"customer_profile@{PROFILE.version}")
    assert "crm-team@example.com" in described and "last(plan)" in described
    assert "33.3%" in described and "plus" in described  # null rate, top value
    assert "r7" in described and "aaaaaaaaaaaa" in described  # lineage
    assert "customer_profile" in invoke("features", "describe", "monthly_fee")
    diff = invoke("features", "diff", PROFILE.version, newer.version)
    assert "+ region" in diff
    as_json = json.loads(invoke("features", "describe", f"customer_profile@{PROFILE.version}",
                                "--format", "json"))
    assert as_json["owner"] == "crm-team@example.com"
    stats = {row["feature"]: row for row in as_json[
        "features (statistics of the newest materialisation)"]}
    assert stats["tenure_days"]["null rate"] == pytest.approx(1 / 3)  # numbers stay numbers
    rows = list(csv.DictReader(io.StringIO(invoke("features", "list", "--format", "csv"))))
    assert [(r["view"], r["version"]) for r in rows] == [("customer_profile", newer.version)]
    piped = subprocess.run([*CLI, "features", "list"], capture_output=True, text=True,
                           check=True, env={k: v for k, v in os.environ.items()
                                            if k != "COLUMNS"})  # as in a script or CI log
    row = next(line for line in piped.stdout.splitlines() if "customer_profile" in line)
    assert "crm-team@example.com" in row and len(row) > 80  # one line, nothing cut
    result = runner.invoke(app, ["features", "describe", "nope"])
    assert result.exit_code != 0 and "no feature view or feature named 'nope'" in str(
        result.exception)
