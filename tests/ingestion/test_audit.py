"""The audit step: clean rows, quarantine with reasons, references across datasets, the gate."""
from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from tideline.core.errors import QualityGateFailed
from tideline.ingestion.audit import audit, clean_keys, enforce_gate
from tideline.ingestion.contracts import Contract
from tideline.ingestion.landing import land
from tideline.ingestion.project import Project
from tideline.ingestion.sources import FileSource, Pull
from tideline.lake.local import LocalLake
from tideline.lake.publish import publish
from tideline.lake.tables import read_frame, write_table

CUSTOMERS = Contract.from_dict({
    "dataset": "customers", "key": ["customer_id"],
    "columns": [{"name": "customer_id", "type": "string", "nullable": False},
                {"name": "email", "type": "string", "nullable": False},
                {"name": "updated_at", "type": "timestamp", "nullable": False}],
    "gate": {"min_score": 60},
})
ORDERS = Contract.from_dict({
    "dataset": "orders", "key": ["order_id"], "bucket_by": "customer_id",
    "columns": [{"name": "order_id", "type": "int", "nullable": False},
                {"name": "customer_id", "type": "string", "nullable": False},
                {"name": "amount", "type": "float", "min": 0},
                {"name": "ts", "type": "timestamp", "nullable": False}],
    "references": [{"column": "customer_id", "dataset": "customers",
                    "ref_column": "customer_id"}],
    "gate": {"min_score": 30},
})


def source(name: str, dataset: str, ts: str) -> FileSource:
    return FileSource(name=name, dataset=dataset, timestamp_column=ts, url="x.csv", format="csv")


PROJECT = Project(
    sources=(source("crm", "customers", "updated_at"), source("shop", "orders", "ts")),
    contracts=(ORDERS, CUSTOMERS), validation_time=datetime(2026, 8, 1, tzinfo=UTC),
)

CUSTOMER_ROWS = [
    {"customer_id": "C1", "email": "a@x.io", "updated_at": "2026-07-01T00:00:00Z"},
    {"customer_id": "C2", "email": None, "updated_at": "2026-07-01T00:00:00Z"},
    {"customer_id": "C3", "email": "c@x.io", "updated_at": "2026-07-02T00:00:00Z"},
]
ORDER_ROWS = [
    {"order_id": "1", "customer_id": "C1", "amount": "12.50", "ts": "2026-07-01T10:00:00Z"},
    {"order_id": "2", "customer_id": "C9", "amount": "3", "ts": "2026-07-01T11:00:00Z"},
    {"order_id": "3", "customer_id": "C3", "amount": "-4", "ts": "2026-07-02T10:00:00Z"},
    {"order_id": "4", "customer_id": "C3", "amount": "12,5O", "ts": "2026-07-02T12:00:00Z"},
    {"order_id": "5", "customer_id": "C3", "amount": "7", "ts": "2026-07-03T12:00:00Z"},
]


def land_all(lake: LocalLake, branch: str, run_id: str, orders: list[dict]) -> list:
    return [
        land(lake, branch, PROJECT.sources[0], Pull(pd.DataFrame(CUSTOMER_ROWS), {"n": 1}),
             run_id=run_id, checkpoint_before=None),
        land(lake, branch, PROJECT.sources[1],
             Pull(pd.DataFrame(orders), {"n": 1}, rejected=[("{oops", "malformed JSON")]),
             run_id=run_id, checkpoint_before=None),
    ]


@pytest.fixture
def lake(tmp_path: Path) -> LocalLake:
    return LocalLake(tmp_path / "lake")


def test_audit_writes_clean_quarantine_and_report(lake: LocalLake, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    records = land_all(lake, "main", "r1", ORDER_ROWS)
    result = audit(lake, "main", PROJECT, records, run_id="r1", report_dir=tmp_path / "reports")
    by = {o.dataset: o for o in result.outcomes}
    assert [o.dataset for o in result.outcomes] == ["customers", "orders"]
    assert (by["customers"].clean, by["customers"].quarantined) == (2, 1)
    # orders: orphan C9, negative amount, bad type; plus one unparseable record
    assert (by["orders"].rows, by["orders"].clean, by["orders"].quarantined) == (6, 2, 4)
    assert by["orders"].failures == {"reference:customer_id": 1, "range:amount": 1,
                                     "type:amount": 1}
    assert clean_keys(lake, "main", "orders", "order_id") == {"1", "5"}
    # each object's keys are read once per process: a second check reads only what is new
    read: list[str] = []
    reader = lake.reader

    def counted(ref: str, path: str):  # noqa: ANN202 - the lake's own context manager
        read.append(path)
        return reader(ref, path)

    monkeypatch.setattr(lake, "reader", counted)
    assert clean_keys(lake, "main", "orders", "order_id") == {"1", "5"} and read == []
    write_table(lake, "main", "clean/orders/dt=2026-07-02/part-r2.parquet",
                pd.DataFrame({"order_id": [7, None]}))
    assert clean_keys(lake, "main", "orders", "order_id") == {"1", "5", "7"}
    assert read == ["clean/orders/dt=2026-07-02/part-r2.parquet"]
    quarantine = read_frame(lake, "main", "quarantine/orders/part-r1.parquet")
    assert quarantine["_rules"].tolist() == ["reference:customer_id", "range:amount",
                                             "type:amount"]
    assert "12,5O" in quarantine["_reason"].iloc[2]
    assert read_frame(lake, "main", "quarantine/orders/rejected-r1.parquet")["reason"].tolist() \
        == ["malformed JSON"]
    clean = read_frame(lake, "main", "clean/orders/dt=2026-07-01/part-r1.parquet")
    assert clean["amount"].tolist() == [12.5] and str(clean["ts"].dtype) == "datetime64[ns, UTC]"
    with lake.reader("main", "clean/orders/dt=2026-07-01/part-r1.parquet") as handle:
        layout = json.loads(pq.read_schema(handle).metadata[b"tideline.buckets"])
    assert layout == {"key": "customer_id", "count": 1, "row_groups": [0]}  # few rows: 1 bucket
    assert Path(result.local_report).read_text().count("orders") > 0
    assert lake.exists("main", "reports/quality/r1.html") and result.passed


def test_failed_gate_keeps_branch_and_main(lake: LocalLake, tmp_path: Path) -> None:
    main_before = lake.resolve("main")
    bad = [dict(row, amount="-1") for row in ORDER_ROWS]
    with pytest.raises(QualityGateFailed, match="orders") as info, \
            publish(lake, "r2", message="ingest") as run:
        records = land_all(lake, run.branch, "r2", bad)
        result = audit(lake, run.branch, PROJECT, records, run_id="r2",
                       report_dir=tmp_path / "reports")
        enforce_gate(lake, run.branch, result)
    assert "quality-r2.html" in str(info.value)
    assert lake.resolve("main") == main_before
    kept = lake.get_commit("run-r2")
    assert kept.metadata["gate"] == "failed"
    assert lake.exists("run-r2", "quarantine/orders/part-r2.parquet")
