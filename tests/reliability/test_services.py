"""Services restarted under a running stage, on private servers of the module's own (the
session's are never touched): PostgreSQL crashing in the middle of a SQL
source's read costs a retry, or a clear error and nothing published, never a short or doubled
pull; NATS JetStream restarted while the stream processor consumes costs a reconnect, never an
event."""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from tideline.core.errors import SourceUnavailable
from tideline.core.settings import load_settings
from tideline.features.online.sqlite import SQLiteOnlineStore
from tideline.ingestion.connectors.sql import SqlConnector
from tideline.ingestion.landing import checkpoint_path, pull_and_land, read_checkpoint
from tideline.ingestion.sources import SqlSource
from tideline.lake.base import MAIN
from tideline.lake.local import LocalLake
from tideline.lake.publish import publish, run_branch_name
from tideline.streaming.processor import StreamConfig, open_processor

from tests.features.conftest import AS_OF, churn_tables
from tests.features.test_engine import assert_same
from tests.reliability.conftest import Ledger
from tests.services import Nats, Postgres, start_or_skip
from tests.streaming.test_processor import as_json, lake_before, online_values
from tests.streaming.test_state import VIEWS, batch_values


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL server of this module's own, to crash and restart."""
    server = start_or_skip("postgres", Postgres.create)
    yield server
    server.close()


ROWS = 3000
CHUNK = 200


def order(i: int) -> dict:
    return {"id": i, "customer_id": f"C{i % 97:05d}", "amount": f"{i}.25",
            "ts": datetime(2026, 7, 1, tzinfo=UTC) + timedelta(minutes=7 * i)}


@pytest.fixture
def orders(postgres: Postgres, monkeypatch: pytest.MonkeyPatch) -> Iterator[sa.Table]:
    """A fresh `orders` table of ROWS rows on the private server, its URL in TEST_PG_URL."""
    postgres.ensure_up()
    engine = sa.create_engine(postgres.url)
    table = sa.Table("orders", sa.MetaData(), sa.Column("id", sa.Integer),
                     sa.Column("customer_id", sa.Text), sa.Column("amount", sa.Numeric(12, 2)),
                     sa.Column("ts", sa.DateTime(timezone=True)))
    table.drop(engine, checkfirst=True)
    table.create(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), [order(i) for i in range(1, ROWS + 1)])
    engine.dispose()
    monkeypatch.setenv("TEST_PG_URL", postgres.url)
    yield table


def insert(postgres: Postgres, table: sa.Table, ids: range) -> None:
    engine = sa.create_engine(postgres.url)
    with engine.begin() as conn:
        conn.execute(table.insert(), [order(i) for i in ids])
    engine.dispose()


SOURCE = SqlSource(name="shop-orders", dataset="orders", timestamp_column="ts",
                   url_env="TEST_PG_URL", table="orders", cursor_column="id", chunk_rows=CHUNK)


def stop_after_chunks(monkeypatch: pytest.MonkeyPatch, chunks: int,
                      fault: Callable[[], None]) -> list[int]:
    """Call `fault` once, after the connector has read `chunks` chunks of a result (the next
    fetch then goes to a server that is gone). Returns the chunk counts of every read."""
    reads: list[int] = []
    partitions = sa.engine.CursorResult.partitions

    def faulty(self: sa.engine.CursorResult, size: int | None = None) -> Iterator:
        reads.append(0)
        for chunk in partitions(self, size):
            yield chunk
            reads[-1] += 1
            if reads[-1] == chunks and len(reads) == 1:
                fault()

    monkeypatch.setattr(sa.engine.CursorResult, "partitions", faulty)
    return reads


def landed_ids(lake: LocalLake, ref: str) -> list[int]:
    """Every `id` under the source's raw partitions at `ref`, in no particular order."""
    ids: list[int] = []
    for info in lake.list(ref, f"raw/source={SOURCE.name}/dt="):
        with lake.reader(ref, info.path) as handle:
            ids += [int(v) for v in pq.read_table(handle, columns=["id"]).column("id").to_pylist()]
    return ids


def ingest(lake: LocalLake, run_id: str) -> None:
    with publish(lake, run_id, message="ingest shop-orders") as run:
        pull_and_land(lake, run.branch, SOURCE, run_id=run_id)


def test_postgres_stopped_mid_read_is_retried_to_exactly_the_source_rows(
        postgres: Postgres, orders: sa.Table, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        ledger: Ledger) -> None:
    """PostgreSQL crashes (`pg_ctl stop -m immediate`) after 3 of a pull's 15 chunks and is
    back 1.5 s later: the connector retries with backoff and the run publishes exactly the
    table's rows, none twice, none missing, with the checkpoint at the largest id; then the
    same happens to an incremental pull of 1000 new rows, which lands exactly those."""
    lake = LocalLake(tmp_path / "lake")

    def crash() -> None:
        postgres.stop()
        postgres.restart_after(1.5)

    reads = stop_after_chunks(monkeypatch, 3, crash)
    started = time.monotonic()
    ingest(lake, "r1")
    took = time.monotonic() - started
    postgres.ensure_up()
    ledger.fault()
    ids = landed_ids(lake, MAIN)
    ledger.reconcile("PostgreSQL crashed mid-pull", ROWS, len(ids))
    assert len(reads) >= 2 and reads[0] == 3, reads  # it failed after 3 chunks, then re-read
    assert sorted(ids) == list(range(1, ROWS + 1)), "each row exactly once"
    assert read_checkpoint(lake, MAIN, SOURCE.name) == {"cursor": ROWS, "cursor_type": "int"}
    assert took < 15

    insert(postgres, orders, range(ROWS + 1, ROWS + 1001))
    reads = stop_after_chunks(monkeypatch, 2, crash)
    ingest(lake, "r2")
    postgres.ensure_up()
    ledger.fault()
    landed_before, ids = len(ids), landed_ids(lake, MAIN)
    ledger.reconcile("PostgreSQL crashed mid-incremental pull", 1000, len(ids) - landed_before)
    assert len(reads) >= 2 and reads[0] == 2, reads
    assert sorted(ids) == list(range(1, ROWS + 1001))
    assert read_checkpoint(lake, MAIN, SOURCE.name) == {"cursor": ROWS + 1000,
                                                         "cursor_type": "int"}


def test_postgres_down_past_the_retries_fails_naming_the_source_and_publishes_nothing(
        postgres: Postgres, orders: sa.Table, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        ledger: Ledger) -> None:
    """PostgreSQL crashes mid-read of an incremental pull and stays down past the connector's
    retries: the pull fails with `SourceUnavailable` naming the source and the database, main
    does not move (no rows, checkpoint where it was), and once the server is back a re-run of
    the same run id lands exactly the new rows."""
    lake = LocalLake(tmp_path / "lake")
    ingest(lake, "r1")
    before = lake.resolve(MAIN)
    checkpoint = lake.get(MAIN, checkpoint_path(SOURCE.name))
    insert(postgres, orders, range(ROWS + 1, ROWS + 1001))
    monkeypatch.setattr(SqlConnector, "attempts", 2)
    monkeypatch.setattr(SqlConnector, "backoff_seconds", 0.2)
    stop_after_chunks(monkeypatch, 2, postgres.stop)
    try:
        with pytest.raises(SourceUnavailable) as caught:
            ingest(lake, "r2")
    finally:
        postgres.start()
    ledger.fault()
    message = str(caught.value)
    assert caught.value.source == SOURCE.name and "shop-orders" in message
    assert f"127.0.0.1:{postgres.port}/postgres" in message and "2 attempt" in message
    assert lake.resolve(MAIN) == before
    assert not lake.uncommitted(run_branch_name("r2")), "nothing landed on the run's branch"
    assert lake.get(MAIN, checkpoint_path(SOURCE.name)) == checkpoint
    assert sorted(landed_ids(lake, MAIN)) == list(range(1, ROWS + 1))

    monkeypatch.undo()
    monkeypatch.setenv("TEST_PG_URL", postgres.url)
    ingest(lake, "r2")
    ids = landed_ids(lake, MAIN)
    ledger.reconcile("PostgreSQL down past the retries, re-run", 1000, len(ids) - ROWS)
    assert sorted(ids) == list(range(1, ROWS + 1001))
    assert json.loads(lake.get(MAIN, checkpoint_path(SOURCE.name))) == {
        "cursor": ROWS + 1000, "cursor_type": "int"}


# -- NATS JetStream --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def private_nats() -> Iterator[Nats]:
    """A nats-server of this module's own, to restart."""
    server = start_or_skip("nats", Nats.create)
    yield server
    server.close()


async def send(url: str, subject: str, payloads: list[bytes], create: bool = False) -> None:
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    if create:
        await js.add_stream(name=subject.upper(), subjects=[subject])
    for payload in payloads:
        await js.publish(subject, payload)
    await nc.close()


async def until(what: str, probe: Callable[[], bool], timeout: float,
                detail: Callable[[], str] = str) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {timeout:.0f} s ({detail()})")
        await asyncio.sleep(0.01)


def test_nats_restarted_mid_stream_the_processor_reconnects_to_the_uninterrupted_values(
        private_nats: Nats, tmp_path: Path, ledger: Ledger) -> None:
    """The NATS server is restarted (SIGTERM, then started again on its store) while the
    processor is mid-stream with messages in flight: the processor reconnects by itself, every
    event is applied exactly once (none lost, none counted twice) and the online values are
    the batch engine's, i.e. those of an uninterrupted run."""
    events = churn_tables(customers=150, seed=11)["events"]
    day = AS_OF - pd.Timedelta(days=20)
    lake_before(tmp_path / "lake", events, day)
    later = as_json(events[(events["ts"] >= day) & (events["ts"] < AS_OF)].sort_values("ts"))
    half = len(later) // 2
    subject = "restart-events"
    settings = load_settings(data_dir=tmp_path, feature_views="tideline.demo.views:DEMO_VIEWS")
    processor = open_processor(settings, StreamConfig(
        name="restart", url=private_nats.url, subject=subject, start="all", batch_size=5,
        max_wait_seconds=0.05, checkpoint_seconds=0.5, connect_timeout_seconds=5))
    processor.load()

    def applied() -> float:
        return processor.metrics.value("tideline_stream_events_total", outcome="applied")

    async def scenario() -> float:
        await send(private_nats.url, subject, later[:half], create=True)
        stop = asyncio.Event()
        running = asyncio.create_task(processor.run(stop))
        try:
            await until("sequence 40", lambda: processor.sequence >= 40 or running.done(), 20)
            at = processor.sequence
            await asyncio.to_thread(private_nats.restart)
            ledger.fault()
            await send(private_nats.url, subject, later[half:])
            await until("every event applied", lambda: processor.sequence >= len(later)
                        or running.done(), 20, lambda: f"sequence {processor.sequence} of "
                        f"{len(later)}, restarted at {at}, applied {applied():.0f}")
        finally:
            stop.set()
            await running
        return at

    restarted_at = asyncio.run(scenario())
    ledger.reconcile("NATS restarted mid-stream (events)", len(later), int(applied()))
    assert 40 <= restarted_at < half, "restarted mid-stream"
    assert processor.sequence == len(later)
    assert applied() == len(later), "each event applied once"
    keys = np.array(sorted(events["customer_id"].unique()), dtype=object)
    expected = batch_values(events, keys, pd.Timestamp(processor.state.clock + 1, tz="UTC"))
    served = online_values(SQLiteOnlineStore(tmp_path / "online.db"), keys)
    for view in VIEWS:
        assert_same(served[view.name], expected[view.feature_names], rtol=1e-9)
