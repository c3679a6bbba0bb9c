"""The embedded online store: one SQLite file, one typed table per view version
(`"<view>@<version>"`), and a SQL view named after each feature view that points at its current
table, so analysts can query the latest values directly (`SELECT value_segment, count(*) FROM
customer_spending GROUP BY 1`). Every write is one transaction: a reader sees the old contents
or the new, never a mix. WAL mode lets readers run while a write is under way."""
from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from tideline.core.errors import OnlineStoreUnavailable
from tideline.core.faults import failpoint
from tideline.features.online.base import OnlineState, restore_values

_STATE = "online_views"
_BATCH = 900  # SQLite's default limit on bound parameters is 999 (32766 since 3.32)
_MMAP_BYTES = 1 << 30
"""Reads map the file rather than make a system call per page: a lookup of random entities
touches a few pages for each."""


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_type(arrow_type: str) -> str:
    if arrow_type.startswith(("int", "uint", "bool")):
        return "INTEGER"
    if arrow_type in ("double", "float", "halffloat"):
        return "REAL"
    return "TEXT"


def _python_columns(rows: pa.Table, columns: Sequence[str]) -> list[list[Any]]:
    out = []
    for name in columns:
        values = rows.column(name)
        if pa.types.is_temporal(values.type):
            values = pc.cast(values, pa.string())
        out.append(values.to_pylist())
    return out


class SQLiteOnlineStore:
    name = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        with self._connect() as connection:
            connection.execute(f"CREATE TABLE IF NOT EXISTS {_STATE} "
                               "(view TEXT PRIMARY KEY, state TEXT NOT NULL)")

    def __repr__(self) -> str:
        return f"SQLiteOnlineStore({str(self.path)!r})"

    def _connect(self) -> sqlite3.Connection:
        """One connection per thread (the HTTP server reads from several)."""
        connection = getattr(self._local, "connection", None)
        if connection is None:
            try:
                connection = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                             check_same_thread=True)
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute(f"PRAGMA mmap_size={_MMAP_BYTES}")
            except sqlite3.Error as exc:
                raise OnlineStoreUnavailable(f"online store {self.path}: {exc}") from exc
            self._local.connection = connection
        return connection

    def state(self, view: str) -> OnlineState | None:
        row = self._connect().execute(f"SELECT state FROM {_STATE} WHERE view = ?",
                                      (view,)).fetchone()
        return None if row is None else OnlineState.from_json(row[0])

    def write(self, state: OnlineState, rows: pa.Table, deleted: Sequence[str],
              replace: bool) -> None:
        connection = self._connect()
        table = _quote(f"{state.view}@{state.version}")
        key = _quote(state.key)
        names = [state.key, *state.columns]
        values = list(zip(*_python_columns(rows, names), strict=True))
        connection.execute("BEGIN IMMEDIATE")
        try:
            old = self.state(state.view)
            if replace:
                connection.execute(f"DROP TABLE IF EXISTS {table}")
                columns = ", ".join(f"{_quote(c)} {_sql_type(t)}"
                                    for c, t in zip(state.columns, state.types, strict=True))
                connection.execute(f"CREATE TABLE {table} ({key} TEXT PRIMARY KEY, {columns})")
            marks = ", ".join("?" * len(names))
            connection.executemany(f"INSERT OR REPLACE INTO {table} VALUES ({marks})", values)
            failpoint("online-write")
            for start in range(0, len(deleted), _BATCH):
                chunk = list(deleted[start:start + _BATCH])
                connection.execute(f"DELETE FROM {table} WHERE {key} IN "
                                   f"({', '.join('?' * len(chunk))})", chunk)
            connection.execute(f"INSERT OR REPLACE INTO {_STATE} VALUES (?, ?)",
                               (state.view, state.to_json()))
            if replace:
                if old is not None and old.version != state.version:
                    connection.execute(f"DROP TABLE IF EXISTS "
                                       f"{_quote(f'{old.view}@{old.version}')}")
                connection.execute(f"DROP VIEW IF EXISTS {_quote(state.view)}")
                connection.execute(f"CREATE VIEW {_quote(state.view)} AS SELECT * FROM {table}")
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise

    def read(self, view: str, keys: Sequence[str]) -> tuple[OnlineState | None,
                                                           list[list[Any] | None]]:
        return self.read_views([view], keys)[0]

    def read_views(self, views: Sequence[str], keys: Sequence[str]
                   ) -> list[tuple[OnlineState | None, list[list[Any] | None]]]:
        connection = self._connect()
        connection.execute("BEGIN")  # states and rows from one snapshot of the file
        try:
            return [self._read_one(connection, view, keys) for view in views]
        finally:
            connection.execute("COMMIT")

    def _read_one(self, connection: sqlite3.Connection, view: str, keys: Sequence[str]
                  ) -> tuple[OnlineState | None, list[list[Any] | None]]:
        state = self.state(view)
        if state is None:
            return None, [None] * len(keys)
        found: dict[str, list[Any]] = {}
        wanted = list(dict.fromkeys(keys))
        table = _quote(f"{view}@{state.version}")
        for start in range(0, len(wanted), _BATCH):
            chunk = wanted[start:start + _BATCH]
            for row in connection.execute(
                    f"SELECT * FROM {table} WHERE {_quote(state.key)} IN "
                    f"({', '.join('?' * len(chunk))})", chunk):
                found[row[0]] = list(row[1:])
        return state, restore_values(state, [found.get(k) for k in keys])

    def drop(self, view: str) -> None:
        state = self.state(view)
        connection = self._connect()
        connection.execute("BEGIN IMMEDIATE")
        if state is not None:
            connection.execute(f"DROP TABLE IF EXISTS {_quote(f'{view}@{state.version}')}")
        connection.execute(f"DROP VIEW IF EXISTS {_quote(view)}")
        connection.execute(f"DELETE FROM {_STATE} WHERE view = ?", (view,))
        connection.execute("COMMIT")

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None
