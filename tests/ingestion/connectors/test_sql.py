"""SQL connector on SQLite and on the real PostgreSQL: incremental by a bound cursor, chunked,
tables and queries, backfill windows, quoting, and connection faults without secrets."""
from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from tideline.core.errors import SourceError, SourceUnavailable
from tideline.ingestion.connectors import connector_for
from tideline.ingestion.connectors.sql import SqlConnector, held, stacked
from tideline.ingestion.sources import SqlSource, Window


@dataclass
class Database:
    kind: str
    engine: sa.Engine
    table: sa.Table
    url_env: str

    def insert(self, *ids: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(self.table.insert(), [row(i) for i in ids])

    def source(self, **extra: object) -> SqlSource:
        spec = {"table": self.table.name, "cursor_column": "updated_at",
                "url_env": self.url_env, **extra}
        return SqlSource(name="shop-tx", dataset="transactions", timestamp_column="ts", **spec)


def row(i: int) -> dict:
    """Transaction i happens on July (i // 3 + 1), and is updated i minutes after midnight UTC
    on Aug 1: ids 1-2 on Jul 1, 3-5 on Jul 2, 6-8 on Jul 3..."""
    return {"id": i, "customer_id": f"C{i:07d}", "ts": datetime(2026, 7, i // 3 + 1, 12,
                                                                 tzinfo=UTC),
            "amount": None if i == 2 else f"{i}.50", "updated_at": datetime(2026, 8, 1, 0, i,
                                                                           tzinfo=UTC),
            "order": i % 2}


def round_trip(checkpoint: dict) -> dict:
    return json.loads(json.dumps(checkpoint, sort_keys=True, default=str))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.service("postgres"))])
def database(request: pytest.FixtureRequest, tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    """A fresh `Shop Transactions` table (mixed case and a space: it must be quoted, as must
    its column `order`) on each backend."""
    url = (f"sqlite:///{tmp_path / 'shop.db'}" if request.param == "sqlite"
           else request.getfixturevalue("postgres_database"))
    engine = sa.create_engine(url)
    name = f"Shop Transactions {uuid.uuid4().hex[:8]}"
    table = sa.Table(
        name, sa.MetaData(),
        sa.Column("id", sa.Integer), sa.Column("customer_id", sa.Text),
        sa.Column("ts", sa.DateTime(timezone=True)), sa.Column("amount", sa.Numeric(10, 2)),
        sa.Column("updated_at", sa.DateTime(timezone=True)), sa.Column("order", sa.Integer),
    )
    table.create(engine)
    monkeypatch.setenv("TEST_SHOP_URL", url)
    db = Database(request.param, engine, table, "TEST_SHOP_URL")
    db.insert(1, 2, 3, 4, 5)
    yield db
    table.drop(engine)
    engine.dispose()


def test_connector_for_picks_the_sql_connector(database: Database) -> None:
    assert isinstance(connector_for(database.source()), SqlConnector)


def test_full_then_incremental_pulls_read_each_row_once(database: Database) -> None:
    connector, source = SqlConnector(), database.source(chunk_rows=2)
    first = connector.pull(source, None, None)
    assert first.frame["id"].tolist() == [1, 2, 3, 4, 5]
    assert list(first.frame.columns) == ["id", "customer_id", "ts", "amount", "updated_at",
                                         "order"]
    assert first.frame["amount"].isna().tolist() == [False, True, False, False, False]
    assert first.checkpoint["cursor_type"] in {"datetime", "str"}
    assert "2026-08-01" in first.checkpoint["cursor"]

    nothing = connector.pull(source, round_trip(first.checkpoint), None)
    assert nothing.frame.empty and nothing.checkpoint == round_trip(first.checkpoint)

    database.insert(6, 7)
    second = connector.pull(source, round_trip(nothing.checkpoint), None)
    assert second.frame["id"].tolist() == [6, 7]
    third = connector.pull(source, round_trip(second.checkpoint), None)
    assert third.frame.empty


def test_chunk_size_does_not_change_the_result(database: Database) -> None:
    whole = SqlConnector().pull(database.source(chunk_rows=100), None, None)
    chunked = SqlConnector().pull(database.source(chunk_rows=1), None, None)
    assert chunked.frame.equals(whole.frame) and chunked.checkpoint == whole.checkpoint


def test_a_query_source_is_incremental_too(database: Database) -> None:
    quoted = database.engine.dialect.identifier_preparer.quote(database.table.name)
    source = database.source(table=None, query=f"SELECT id, ts, updated_at FROM {quoted} "
                             "WHERE amount IS NOT NULL;")
    first = SqlConnector().pull(source, None, None)
    assert first.frame["id"].tolist() == [1, 3, 4, 5]
    database.insert(6)
    assert SqlConnector().pull(source, round_trip(first.checkpoint),
                               None).frame["id"].tolist() == [6]


def test_backfill_reads_exactly_the_window_regardless_of_checkpoint(database: Database) -> None:
    database.insert(6, 7, 8, 9)
    done = SqlConnector().pull(database.source(), None, None).checkpoint
    window = Window(since=datetime(2026, 7, 2), until=datetime(2026, 7, 3))
    pull = SqlConnector().pull(database.source(), round_trip(done), window)
    assert pull.frame["id"].tolist() == [3, 4, 5]
    assert pull.checkpoint == round_trip(done)
    assert SqlConnector().pull(database.source(), None, Window(since=datetime(2026, 7, 4))
                               ).frame["id"].tolist() == [9]


def test_checkpoint_values_are_bound_never_spliced(database: Database) -> None:
    source = database.source(cursor_column="customer_id")
    hostile = {"cursor": "C0000003' OR '1'='1", "cursor_type": "str"}
    assert SqlConnector().pull(source, hostile, None).frame["id"].tolist() == [4, 5]


def test_unreachable_database_names_the_host_but_not_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_DOWN_URL", "postgresql+psycopg://shop:s3cr3t-pw@127.0.0.1:1/shop")
    monkeypatch.setattr(SqlConnector, "backoff_seconds", 0.01)  # retried, without the waits
    source = SqlSource(name="shop-tx", dataset="transactions", timestamp_column="ts",
                       url_env="TEST_DOWN_URL", table="transactions", cursor_column="updated_at")
    with pytest.raises(SourceUnavailable) as caught:
        SqlConnector().pull(source, None, None)
    message = str(caught.value)
    assert "shop-tx" in message and "127.0.0.1:1/shop" in message
    assert f"gave up after {SqlConnector.attempts} attempt(s)" in message
    assert "s3cr3t" not in message and "s3cr3t" not in repr(caught.value.__cause__)


def test_configuration_faults_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        database: Database) -> None:
    with pytest.raises(SourceError, match="TEST_UNSET_URL is not set"):
        SqlConnector().pull(database.source(url_env="TEST_UNSET_URL"), None, None)
    with pytest.raises(SourceError, match="table 'no_such_table'"):
        SqlConnector().pull(database.source(table="no_such_table"), None, None)
    monkeypatch.setenv("TEST_MISSING_DB", f"sqlite:///{tmp_path / 'absent.db'}")
    with pytest.raises(SourceError, match="SQLite database file not found"):
        SqlConnector().pull(database.source(url_env="TEST_MISSING_DB"), None, None)
    monkeypatch.setenv("TEST_BAD_URL", "not a url")
    with pytest.raises(SourceError, match="TEST_BAD_URL does not hold a valid"):
        SqlConnector().pull(database.source(url_env="TEST_BAD_URL"), None, None)


@pytest.mark.parametrize(("chunks", "arrow"), [
    ([[1, None], [None, None], [2**40]], True),  # an all-NULL chunk goes along with the rest
    ([["a", None], [None]], True),
    ([[None], [None]], True),
    ([[1, None], [True]], False),  # a bool is not an int; the ints stay ints
    ([[1], ["1"]], False),  # text in one chunk, ints in another: the driver's values
    ([[1], [2**63]], False),  # beyond int64
    ([[Decimal("1.50")], [None]], False),
])
def test_a_column_is_held_in_arrow_only_when_every_value_fits(chunks: list[list], arrow: bool
                                                              ) -> None:
    column = stacked([held(np.array(chunk, dtype=object)) for chunk in chunks])
    values = [value for chunk in chunks for value in chunk]
    assert (column.dtype != object) is arrow
    assert [None if pd.isna(v) else v for v in column] == values
    assert [type(v) for v in column if not pd.isna(v)] == [type(v) for v in values
                                                          if v is not None]
