"""Erasure on both lake backends: a customer's rows leave every table on main through one
published run, bucketed tables keep a layout readers can split, the audit record and erasure
list hold no key, and landing the same records again does not bring them back."""
from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tideline.ingestion.landing import land
from tideline.ingestion.sources import FileSource, Pull
from tideline.lake.base import Lake
from tideline.lake.buckets import bucket_layout, read_partition, write_bucketed
from tideline.lake.erasure import KEYS_PATH, erase_rows, erasure_list, key_digest, read_request
from tideline.lake.publish import find_published, publish
from tideline.lake.tables import read_table, write_table

GONE = "C00002"
KEPT = ("C00001", "C00003", "C000020", "C00004")
"""C000020 starts like the erased key: only the exact key goes."""
SOURCE = FileSource(name="crm", dataset="customers", timestamp_column="ts", url="unused.csv",
                    format="csv")


def records() -> list[dict]:
    keys = [*KEPT, GONE, GONE]
    return [{"customer_id": key, "ts": f"2026-07-0{1 + i % 2}T10:00:00Z", "email": f"{key}@x.io"}
            for i, key in enumerate(keys)]


def pull() -> Pull:
    return Pull(frame=pd.DataFrame(records()), checkpoint={"cursor": 6})


def every_value(lake: Lake, ref: str) -> dict[str, list]:
    """Every Parquet object on `ref` -> its values, all columns, as text."""
    found = {}
    for info in lake.list(ref):
        if info.path.endswith(".parquet"):
            table = read_table(lake, ref, info.path)
            found[info.path] = [str(v) for c in table.columns for v in c.to_pylist()]
    return found


def rows_per_table(lake: Lake, ref: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for info in lake.list(ref):
        if info.path.endswith(".parquet") and not info.path.startswith("erasure/"):
            table = "/".join(info.path.split("/")[:2])
            counts[table] = counts.get(table, 0) + read_table(lake, ref, info.path).num_rows
    return counts


@pytest.fixture
def populated(lake: Lake) -> Lake:
    """Raw, clean (bucketed by key), quarantine, feature, training-set and score tables on
    main, each holding the erased customer."""
    customers = pa.table({"customer_id": [*KEPT, GONE] * 3, "tenure": list(range(15))})
    with publish(lake, "r1", message="ingest") as run:
        land(lake, run.branch, SOURCE, pull(), run_id="r1", checkpoint_before=None)
        write_bucketed(lake, run.branch, "clean/customers/dt=2026-07-01/part-r1.parquet",
                       customers, "customer_id", buckets=4)
        write_table(lake, run.branch, "quarantine/customers/part-r1.parquet",
                    pd.DataFrame({"customer_id": [GONE, "C00003"], "reason": ["x", "y"]}))
        write_table(lake, run.branch, "quarantine/customers/part-r0.parquet",
                    pd.DataFrame({"customer_id": ["C00003"], "reason": ["z"]}))
        write_bucketed(lake, run.branch, "features/profile/as_of=2026-07-02/part-0.parquet",
                       customers.slice(0, 5), "customer_id", buckets=2)
        write_table(lake, run.branch, "training_sets/ts-1/data.parquet",
                    pd.DataFrame({"customer_id": [GONE, "C00001"], "label": [1, 0]}))
        write_table(lake, run.branch, "scores/churn/as_of=2026-07-02/scores.parquet",
                    pd.DataFrame({"customer_id": [GONE], "probability": [0.9]}))
    return lake


@pytest.mark.parametrize("lake", ["local", pytest.param("lakefs", marks=pytest.mark.service(
    "lakefs"))], indirect=True)
def test_forgetting_removes_the_rows_from_every_table_on_main(populated: Lake) -> None:
    lake = populated
    before = rows_per_table(lake, "main")
    untouched = lake.stat("main", "quarantine/customers/part-r0.parquet").checksum
    with publish(lake, "forget-q1", message="erase", metadata={"request": "q1"}) as run:
        record = erase_rows(lake, run.branch, "customer_id", [GONE], request="q1",
                            reason="ticket 7")
    assert find_published(lake, "forget-q1") is not None
    assert lake.get_commit("main").id == run.published.id

    removed = {"raw/source=crm": 2, "clean/customers": 3, "quarantine/customers": 1,
               "features/profile": 1, "training_sets/ts-1": 1, "scores/churn": 1}
    assert record.removed == removed and record.keys == 1 and record.objects == 7
    after = rows_per_table(lake, "main")
    assert after == {table: rows - removed.get(table, 0) for table, rows in before.items()}
    for path, values in every_value(lake, "main").items():
        assert GONE not in values, path
        assert f"{GONE}@x.io" not in values, path
    assert "C000020" in every_value(lake, "main")["clean/customers/dt=2026-07-01/part-r1.parquet"]
    assert lake.stat("main", "quarantine/customers/part-r0.parquet").checksum == untouched

    # the bucketed table keeps a layout a reader can split by partition
    clean = "clean/customers/dt=2026-07-01/part-r1.parquet"
    with lake.reader("main", clean) as source:
        assert bucket_layout(pq.ParquetFile(source), "customer_id") == (4, 12)
    halves = [read_partition(lake, "main", clean, ["customer_id"], "customer_id", k, 2)
              for k in range(2)]
    assert sorted(sum((h.column(0).to_pylist() for h in halves), [])) == sorted(
        read_table(lake, "main", clean).column("customer_id").to_pylist())

    # the audit record and the erasure list name the request, not the customer
    audit = lake.get("main", "erasure/requests/q1.json")
    assert GONE.encode() not in audit and b"ticket 7" in audit
    assert GONE.encode() not in lake.get("main", KEYS_PATH)
    assert read_request(lake, "main", "q1") == record
    assert erasure_list(lake, "main") == {"customer_id": frozenset({key_digest("customer_id",
                                                                               GONE)})}


@pytest.mark.parametrize("lake", ["local", pytest.param("lakefs", marks=pytest.mark.service(
    "lakefs"))], indirect=True)
def test_landing_the_same_records_again_drops_the_erased_customer(populated: Lake) -> None:
    lake = populated
    with publish(lake, "forget-q2", message="erase") as run:
        erase_rows(lake, run.branch, "customer_id", [f" {GONE} "], request="q2")
    with publish(lake, "r2", message="backfill") as run:
        record = land(lake, run.branch, SOURCE, pull(), run_id="r2", checkpoint_before=None)
    assert record.erased == 2 and record.rows == len(KEPT)
    for path, values in every_value(lake, "main").items():
        assert GONE not in values, path
    landed = [read_table(lake, "main", p).column("customer_id").to_pylist()
              for p in record.parts]
    assert sorted(sum(landed, [])) == sorted(KEPT)


def test_a_failed_erasure_leaves_main_as_it_was(tmp_path) -> None:  # noqa: ANN001
    from tideline.lake.local import LocalLake

    lake = LocalLake(tmp_path / "lake")
    with publish(lake, "r1", message="ingest") as run:
        land(lake, run.branch, SOURCE, pull(), run_id="r1", checkpoint_before=None)
    head = lake.resolve("main")
    with pytest.raises(RuntimeError), publish(lake, "forget-q1", message="erase") as run:
        erase_rows(lake, run.branch, "customer_id", [GONE], request="q1")
        raise RuntimeError("crashed before the merge")
    assert lake.resolve("main") == head and not lake.exists("main", KEYS_PATH)
    assert any(GONE in values for values in every_value(lake, "main").values())
