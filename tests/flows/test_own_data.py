"""A user's own transaction file, through configuration alone (docs/examples/own-transactions):
a CSV whose columns are named the user's way becomes validated tables, features and a churn
model with its metrics, with no code (scoring and monitoring are the demo pipeline's own
flows, run on whatever the configuration names)."""
from __future__ import annotations

from pathlib import Path

import pytest
from tideline.demo.generator import DemoSpec, generate
from tideline.flows.build_features import build_features
from tideline.flows.ingest import ingest
from tideline.flows.train import train

from tests.waiting import ROOT

EXAMPLE = ROOT / "docs" / "examples" / "own-transactions"


@pytest.mark.slow
def test_a_transaction_file_becomes_features_and_a_model_through_config_alone(
        ray_cluster: str, prefect_server: None, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payments = generate(DemoSpec(customers=900, defect_rate=0.0, seed=5)).transactions.rename(
        columns={"transaction_id": "payment_id", "customer_id": "client", "ts": "paid_at",
                 "amount": "value"})[["payment_id", "client", "paid_at", "value"]]
    (data_dir.parent / "payments").mkdir()
    payments.to_csv(data_dir.parent / "payments" / "export-2026-09.csv", index=False)
    for name, file in (("PROJECT_FILE", "project.yaml"), ("FEATURE_VIEWS", "features.yaml"),
                       ("MODEL_SPEC", "model.yaml")):
        monkeypatch.setenv(f"TIDELINE_{name}", str(EXAMPLE / file))

    audit = ingest(run_id="own")
    (outcome,) = audit.outcomes
    assert (outcome.dataset, outcome.rows, outcome.quarantined) == ("payments", len(payments), 0)
    features = build_features(run_id="own")
    assert features.features == 11 and features.entities == payments["client"].nunique()
    assert features.as_of == ("2026-10-01",)  # the day after the file's last payment
    model = train(run_id="own").model
    assert model.name == "payment_churn" and model.stage == "champion"
    assert model.roc_auc > 0.75 and model.roc_auc > model.baseline_metrics["roc_auc"] - 0.02
    assert set(model.metrics) >= {"roc_auc", "pr_auc", "precision", "recall", "f1"}
