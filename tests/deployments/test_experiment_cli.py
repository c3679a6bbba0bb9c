"""`tideline models experiment start|status|stop` on a project's registry: what a user types,
what they read back, and the refusals they can act on."""
from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from tideline.core.settings import load_settings
from tideline.models.registry import ModelRecord, open_model_registry
from typer.testing import CliRunner


def record(version: int, stage: str) -> ModelRecord:
    metrics = {"precision": 0.42, "positives": 300, "rows": 1000}
    return ModelRecord(
        name="churn", version=version, stage=stage, spec_version="s1", owner="ml@example.com",
        roc_auc=0.8, pr_auc=0.5, metrics=metrics, baseline_metrics=metrics, params={},
        threshold=0.4, features=["f"], feature_views={"v": "1"}, training_set="ts",
        training_set_tag="training-set-ts", training_set_commit="c", feature_commit="c",
        code_version="test", artifact_path=f"models/churn/v{version}", artifact_commit="c",
        created_at=datetime.now(UTC))


def test_start_status_stop(data_dir: Path) -> None:
    from tideline.deployments.cli import app

    registry = open_model_registry(load_settings())
    registry.add(record(1, "champion"), {})
    registry.add(record(2, "candidate"), {})
    runner = CliRunner()

    def tideline(*args: str, code: int = 0) -> str:
        """The output, or the error's message (`main` prints a TidelineError as one line)."""
        done = runner.invoke(app, ["models", "experiment", *args], terminal_width=200)
        assert done.exit_code == code, done.output
        return done.output if done.exception is None or code == 2 else str(done.exception)

    shown = tideline("start", "churn:2", "--mode", "split", "--share", "0.3")
    assert "experiment churn-v1-vs-v2-split" in shown and "30% of customers" in shown
    assert "flagged_churn_rate from 0.420" in shown  # the champion's test precision
    started = registry.experiment("churn-v1-vs-v2-split")
    assert (started.mode, started.share, started.baseline, started.status) == (
        "split", 0.3, 0.42, "running")
    assert f"{started.required_per_arm:,} customers per arm" in shown
    assert "is running; stop it first" in tideline("start", "churn:2", code=1)
    listing = tideline("status", "--format", "csv")
    assert "churn-v1-vs-v2-split,churn,1,2,split,0.3,flagged_churn_rate" in listing
    assert "not measured yet" in tideline("status", "churn-v1-vs-v2-split")
    assert "stopped" in tideline("stop", "churn-v1-vs-v2-split")
    assert registry.experiment("churn-v1-vs-v2-split").status == "stopped"
    assert "is not running" in tideline("stop", "churn-v1-vs-v2-split", code=1)
    assert "the challenger v1 is the champion itself" in tideline("start", "churn:1", code=1)
    assert "give MODEL:VERSION" in tideline("start", "churn", code=2)
