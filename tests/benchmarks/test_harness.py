"""The benchmarks' shared agreement check (`benchmarks/harness.py`): values, not shapes, per
column within the stated tolerance, aligned on the key, rows missing on either side counted,
and the perturbation a smoke test uses to prove a run fails."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

HARNESS = Path(__file__).resolve().parents[2] / "benchmarks" / "harness.py"


@pytest.fixture(scope="module")
def harness():  # noqa: ANN201 - the benchmarks' harness module, not a package of ours
    spec = importlib.util.spec_from_file_location("bench_harness", HARNESS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def frame(keys: list[str], **columns: list) -> pd.DataFrame:
    return pd.DataFrame({"customer_id": keys, **columns})


def test_values_within_tolerance_agree_in_any_row_order(harness) -> None:  # noqa: ANN001
    ours = frame(["a", "b", "c"], spend=[1.0, 2.0, np.nan], plan=["x", None, "z"])
    theirs = frame(["c", "a", "b"], spend=[np.nan, 1.0 + 1e-9, 2.0], plan=["z", "x", None])
    check = harness.agreement("polars", ours, theirs, "customer_id")
    assert check["agrees"], check
    assert (check["compared_rows"], check["columns_compared"]) == (3, 2)
    assert harness.verdict({"polars": check}) == 0


def test_a_value_beyond_tolerance_names_reference_column_and_key(harness, capsys) -> None:  # noqa: ANN001
    ours = frame(["a", "b"], spend=[1.0, 2.0])
    theirs = frame(["a", "b"], spend=[1.0, 2.001])
    check = harness.agreement("duckdb", ours, theirs, "customer_id", rtol=1e-6)
    assert not check["agrees"]
    assert check["columns"]["spend"]["rows"] == 1
    assert check["columns"]["spend"]["example"] == {"customer_id": "b", "tideline": "2.0",
                                                   "duckdb": "2.001"}
    assert harness.verdict({"duckdb": check}) == 1
    assert "DISAGREEMENT duckdb: column spend differs on 1 rows" in capsys.readouterr().err
    # a looser stated tolerance accepts it
    assert harness.agreement("duckdb", ours, theirs, "customer_id", rtol=1e-3)["agrees"]


def test_rows_missing_on_either_side_disagree(harness) -> None:  # noqa: ANN001
    check = harness.agreement("feast", frame(["a", "b"], x=[1, 2]), frame(["b", "c"], x=[2, 3]),
                              "customer_id")
    assert (check["missing_rows"], check["extra_rows"], check["compared_rows"]) == (1, 1, 1)
    assert not check["agrees"]
    assert "1 of tideline's rows missing" in harness.disagreements({"feast": check})[0]


def test_mapped_columns_and_exact_flags(harness) -> None:  # noqa: ANN001
    ours = frame(["a"], drifted=[True])
    theirs = frame(["a"], DRIFT=[False])
    check = harness.agreement("evidently", ours, theirs, "customer_id", {"drifted": "DRIFT"})
    assert list(check["columns"]) == ["drifted"]


def test_perturbation_changes_only_the_named_reference(harness, monkeypatch) -> None:  # noqa: ANN001
    ours = frame(["a", "b"], spend=[1.0, 2.0], plan=["x", "y"])
    monkeypatch.setenv(harness.PERTURB, "polars")
    assert harness.agreement("duckdb", ours, ours.copy(), "customer_id")["agrees"]
    check = harness.agreement("polars", ours, ours.copy(), "customer_id")
    assert list(check["columns"]) == ["spend"] and check["columns"]["spend"]["rows"] == 1


def test_spread_reports_median_and_minimum(harness) -> None:  # noqa: ANN001
    assert harness.spread([3.0, 1.0, 2.0, 10.0]) == {
        "runs": 4, "seconds": [3.0, 1.0, 2.0, 10.0], "median": 2.5, "min": 1.0}
