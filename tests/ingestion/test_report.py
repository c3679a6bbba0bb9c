"""The validation report: every dataset and rule shown, data escaped, plots embedded, compact."""

from __future__ import annotations

import base64
import csv
import io
import re
from datetime import UTC, datetime

import pandas as pd
import pytest
from tideline.ingestion.contracts import Contract
from tideline.ingestion.report import SAMPLE_ROWS, render_csv, render_html
from tideline.ingestion.validation import ValidationResult, validate

NOW = datetime(2026, 7, 2, tzinfo=UTC)
XSS = "<script>alert(1)</script>"

ORDERS = Contract.from_dict({
    "dataset": "orders", "key": ["order_id"],
    "columns": {"order_id": {"type": "string"}, "amount": {"type": "float", "min": 0,
                                                         "outliers": "iqr"},
                "status": {"type": "string", "allowed": ["paid", "refunded"]}},
})
CUSTOMERS = Contract.from_dict({
    "dataset": "customers",
    "columns": {"customer_id": {"type": "string", "unique": True},
                "age": {"type": "int", "min": 18, "max": 120}},
})


@pytest.fixture(scope="module")
def results() -> dict[str, ValidationResult]:
    orders = pd.DataFrame({
        "order_id": [f"o{i}" for i in range(40)] + ["o1"],
        "amount": [str(10 + i % 7) for i in range(39)] + ["12,5O", "3"],
        "status": ["paid"] * 38 + [XSS, "paid", "refunded"],
    })
    customers = pd.DataFrame({"customer_id": ["c1", "c2", "c3"], "age": ["30", "7", "41"],
                              "nickname<b>": ["x", "y", "z"]})
    return {"orders": validate(orders, ORDERS, now=NOW),
            "customers": validate(customers, CUSTOMERS, now=NOW)}


@pytest.fixture(scope="module")
def html(results: dict[str, ValidationResult]) -> str:
    return render_html(results, title="Nightly <ingest>", run_id="run-1 & co")


def test_user_supplied_strings_are_escaped(html: str) -> None:
    assert XSS not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Nightly &lt;ingest&gt;" in html and "run-1 &amp; co" in html
    assert "nickname&lt;b&gt;" in html and "nickname<b>" not in html  # an unexpected column
    assert "<script" not in html


def test_every_dataset_and_rule_is_in_the_page(html: str,
                                               results: dict[str, ValidationResult]) -> None:
    for name, result in results.items():
        assert f">{name}</a>" in html
        for rule, column in zip(result.rules["rule"], result.rules["column"], strict=True):
            assert re.search(rf"<td>{rule}</td><td>{column}</td>", html), (name, rule, column)
    assert "type:amount" in html and "allowed:status" in html and "range:age" in html
    assert "FAIL" in html  # both datasets fail their gate at min_score 95


def test_plots_are_embedded_png(html: str) -> None:
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    # two failure charts, and distributions for the two datasets with numeric columns
    assert len(images) == 4
    assert all(base64.b64decode(image).startswith(b"\x89PNG") for image in images)
    assert "http" not in html.replace("http-equiv", "")  # self-contained


def test_quarantine_sample_is_capped(results: dict[str, ValidationResult]) -> None:
    frame = pd.DataFrame({"order_id": [f"o{i}" for i in range(100)],
                          "amount": ["-1"] * 100, "status": ["paid"] * 100})
    many = validate(frame, ORDERS, now=NOW)
    assert len(many.quarantine) == 100
    page = render_html({"orders": many}, title="t", run_id="r")
    assert len(re.findall(r"below min 0", page)) == SAMPLE_ROWS
    assert len(page) < 200_000


def test_csv_has_one_row_per_dataset_and_rule(results: dict[str, ValidationResult]) -> None:
    rows = list(csv.DictReader(io.StringIO(render_csv(results))))
    assert len(rows) == sum(len(r.rules) for r in results.values())
    by_check = {(r["dataset"], r["rule"], r["column"]): r for r in rows}
    assert by_check["orders", "type", "amount"]["failed_rows"] == "1"
    assert by_check["orders", "duplicate_key", "order_id"]["failed_rows"] == "1"
    assert by_check["customers", "range", "age"]["failed_rows"] == "1"
    assert float(by_check["customers", "range", "age"]["failure_rate"]) == pytest.approx(1 / 3)
    assert {r["gate_passed"] for r in rows} == {"False"}
    assert rows[0].keys() >= {"dataset", "rule", "column", "failed_rows", "failure_rate",
                              "score", "gate_passed"}
