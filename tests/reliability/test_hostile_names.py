"""Hostile names from configuration: path traversal, absolute paths, shell metacharacters and
quotes in source, dataset, view, feature, branch and path names are rejected with an error
naming the field, and SQL identifiers with quotes reach the database quoted, never spliced."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import ValidationError
from tideline.core.errors import (
    ConfigError,
    FeatureDefinitionError,
    InvalidName,
    InvalidPath,
    SourceError,
)
from tideline.core.settings import load_settings
from tideline.demo.views import DEMO_VIEWS
from tideline.features.definitions import Feature
from tideline.ingestion.connectors.sql import SqlConnector
from tideline.ingestion.sources import FileSource, SqlSource
from tideline.lake.base import check_branch, check_path
from tideline.lake.local import LocalLake

from tests.reliability.conftest import Ledger

HOSTILE_NAMES = [
    "../x", "../../etc/passwd", "/etc/passwd", "a/../../b", "C:\\Windows", "x; rm -rf /",
    "$(touch pwned)", "`touch pwned`", "a|b", "a&&b", "a\nb", "a\x00b", "x' OR '1'='1",
    'x"; DROP TABLE t; --', "", " ", "-rf", "..", ".", "~root", "a b", "a*b", "a>b",
]
"""Names nothing in tideline should accept as a source, dataset, view, branch or path."""


@pytest.mark.parametrize("field", ["name", "dataset"])
def test_source_and_dataset_names_are_path_safe(ledger: Ledger, field: str) -> None:
    for hostile in HOSTILE_NAMES:
        spec = {"name": "crm", "dataset": "customers", field: hostile}
        with pytest.raises(ValidationError) as caught:
            FileSource(timestamp_column="ts", url="crm.csv", format="csv", **spec)
        assert caught.value.errors()[0]["loc"] == (field,)
        assert "is not a valid name" in str(caught.value)
        ledger.refused("ValidationError")


def test_view_and_feature_names_are_rejected_naming_the_view(ledger: Ledger) -> None:
    view = DEMO_VIEWS[0]
    for hostile in HOSTILE_NAMES:
        with pytest.raises(FeatureDefinitionError, match="a view name is lower-case"):
            replace(view, name=hostile)
        with pytest.raises(FeatureDefinitionError,
                           match=rf"feature view {view.name!r}: feature name .* identifier"):
            replace(view, features=(Feature(hostile, agg="count"),))
        ledger.refused("FeatureDefinitionError", 2)


@pytest.mark.parametrize("owner", ["a@example.com\r\nBcc: evil@example.com",
                                   "a@example.com, evil@example.com", "Eve <evil@example.com>",
                                   "a@example.com\nX-Injected: 1", "$(mail)@example.com"])
def test_owner_addresses_are_one_bare_address(ledger: Ledger, owner: str) -> None:
    with pytest.raises(FeatureDefinitionError, match="owner must be one bare e-mail address"):
        replace(DEMO_VIEWS[0], owner=owner)
    ledger.refused("FeatureDefinitionError")
    for field in ("mail_from", "pipeline_owner"):
        with pytest.raises(ConfigError, match=rf"{field}\n.*not one bare e-mail address"):
            load_settings(**{field: owner})
        ledger.refused("ConfigError")


def test_branch_names_and_lake_paths_refuse_traversal(ledger: Ledger, tmp_path: Path) -> None:
    lake = LocalLake(tmp_path / "lake")
    for hostile in HOSTILE_NAMES:
        with pytest.raises(InvalidName, match="invalid branch name"):
            check_branch(hostile)
        with pytest.raises(InvalidName, match="invalid branch name"):
            lake.create_branch(hostile, "main")
        ledger.refused("InvalidName", 2)
    for path in ["../x", "/etc/passwd", "a/../../b", "clean/..", "a/./b", "a\\..\\b", "a\nb",
                 "C:/x", ""]:
        with pytest.raises(InvalidPath, match="invalid object path"):
            check_path(path)
        with pytest.raises(InvalidPath, match="invalid object path"):
            lake.put("main", path, b"x")
        ledger.refused("InvalidPath", 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lake"]


WEIRD_TABLE = """shop "tx"; DROP TABLE victims; --'"""
WEIRD_COLUMNS = ("""up"dated';--""", """t's "ts\"""")


@pytest.fixture
def weird_database(postgres_database: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[sa.Engine]:
    """A table and columns whose names carry quotes and `;`, beside a table they name."""
    engine = sa.create_engine(postgres_database)
    metadata = sa.MetaData()
    table = sa.Table(WEIRD_TABLE, metadata, sa.Column("id", sa.Integer),
                     *(sa.Column(name, sa.Integer) for name in WEIRD_COLUMNS))
    sa.Table("victims", metadata, sa.Column("id", sa.Integer))
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), [{"id": i, WEIRD_COLUMNS[0]: i, WEIRD_COLUMNS[1]: i}
                                      for i in range(1, 4)])
    monkeypatch.setenv("TEST_WEIRD_URL", postgres_database)
    yield engine
    metadata.drop_all(engine)
    engine.dispose()


def sql_source(table: str, cursor: str, timestamp: str) -> SqlSource:
    return SqlSource(name="weird", dataset="weird", url_env="TEST_WEIRD_URL", table=table,
                     cursor_column=cursor, timestamp_column=timestamp)


@pytest.mark.service("postgres")
def test_sql_identifiers_with_quotes_are_quoted_not_spliced(
    ledger: Ledger, weird_database: sa.Engine
) -> None:
    pull = SqlConnector().pull(sql_source(WEIRD_TABLE, *WEIRD_COLUMNS), None, None)
    assert pull.frame["id"].tolist() == [1, 2, 3]
    assert pull.checkpoint["cursor"] == 3
    ledger.serve("SQL identifiers with quotes, read quoted")
    # an identifier that is an injection attempt names a table that does not exist
    for hostile in ["victims; DROP TABLE victims", 'victims" ; DROP TABLE victims; --',
                    "victims'; DROP TABLE victims; --"]:
        with pytest.raises(SourceError, match=r"source 'weird': reading table"):
            SqlConnector().pull(sql_source(hostile, "id", "id"), None, None)
        ledger.refused("SourceError")
    with weird_database.connect() as conn:
        assert sa.inspect(conn).has_table("victims")


@pytest.mark.service("postgres")
def test_a_hostile_cursor_column_is_an_error_naming_it(
    ledger: Ledger, weird_database: sa.Engine
) -> None:
    hostile = "id) OR 1=1; DROP TABLE victims; --"
    with pytest.raises(SourceError, match="reading table .* does not exist"):
        SqlConnector().pull(sql_source(WEIRD_TABLE, hostile, WEIRD_COLUMNS[1]), None, None)
    ledger.refused("SourceError")
    with weird_database.connect() as conn:
        assert sa.inspect(conn).has_table("victims")
