"""SQL sources through SQLAlchemy: a table or a query, read in chunks, incrementally by a cursor
column compared with a bound parameter (values are never formatted into SQL). Values are the
driver's: columns of text or integers are held in Arrow chunk by chunk, any other column as the
driver's objects.

Checkpoint: ``{"cursor": <largest cursor value read>, "cursor_type": "int" | "float" | "str" |
"decimal" | "datetime" | "date"}``; the type tag turns the JSON value back into the value the
driver returned, so ``cursor_column > :checkpoint`` compares like with like.
"""
from __future__ import annotations

import logging
import os
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection
from sqlalchemy.pool import NullPool
from tideline.core.errors import SourceAbsent, SourceError, SourceUnavailable
from tideline.core.retry import with_retries
from tideline.ingestion.connectors.windows import as_utc, filter_window
from tideline.ingestion.sources import Pull, SqlSource, Window

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 10
# A backfill asks the database for the window widened by this much, then keeps exactly the
# window by parsing the timestamps as landing does: text timestamps with offsets, or a session
# time zone, cannot then move a record across a day boundary unseen.
WINDOW_MARGIN = timedelta(days=1)


class SqlConnector:
    """Reads the rows of a `SqlSource` whose cursor is past the checkpoint, chunk by chunk.

    A database that cannot be reached, or drops the connection in the middle of the read (a
    restart, a failover), costs a retry of the whole read from the same checkpoint on a new
    connection, up to `attempts` reads with `backoff_seconds * 2**k` between them: nothing is
    returned until a read has completed, so a retry neither repeats nor skips a row."""

    attempts = 5
    backoff_seconds = 0.5

    def pull(
        self, source: SqlSource, checkpoint: dict[str, Any] | None, window: Window | None
    ) -> Pull:
        url = source_url(source)
        engine = create_engine(source, url)
        failures: list[SourceUnavailable] = []

        def read() -> tuple[pd.DataFrame, Any]:
            try:
                with connect(engine, source, url) as conn:
                    return read_rows(conn, source, checkpoint, window)
            except SourceUnavailable as exc:
                failures.append(exc)
                if len(failures) < self.attempts:
                    log.warning("source %s: %s; retry %d of %d in %.2f s", source.name,
                                exc.detail, len(failures), self.attempts - 1,
                                self.backoff_seconds * 2 ** (len(failures) - 1))
                raise

        try:
            done, tries, _ = with_retries(read, (SourceUnavailable,), self.attempts,
                                          self.backoff_seconds)
        finally:
            engine.dispose()
        if done is None:
            raise SourceUnavailable(source.name, f"{failures[-1].detail} (gave up after "
                                    f"{tries} attempt(s))") from failures[-1]
        frame, last = done
        log.info("source %s: read %d row(s) from %s", source.name, len(frame),
                 url.render_as_string(hide_password=True))
        if window is not None:
            return Pull(frame=filter_window(frame, source.timestamp_column, window, source.name),
                        checkpoint=dict(checkpoint or {}), typed=True)
        after = encode_cursor(last) if last is not None else dict(checkpoint or {})
        return Pull(frame=frame, checkpoint=after, typed=True)

    def acknowledge(self, source: SqlSource, pull: Pull) -> None:
        """Nothing to do: the checkpoint committed with the data is the acknowledgement."""


def source_url(source: SqlSource) -> URL:
    """The SQLAlchemy URL from the source's environment variable (its value is never echoed:
    it may carry a password)."""
    raw = os.environ.get(source.url_env)
    if not raw:
        raise SourceAbsent(source.name, f"environment variable {source.url_env} is not set; it "
                           "must hold the database's SQLAlchemy URL")
    try:
        return sa.make_url(raw)
    except sa.exc.ArgumentError as exc:
        raise SourceError(source.name, f"environment variable {source.url_env} does not hold "
                          "a valid SQLAlchemy URL (dialect+driver://user:password@host/db)"
                          ) from exc


def create_engine(source: SqlSource, url: URL) -> sa.Engine:
    backend = url.get_backend_name()
    if backend == "sqlite" and url.database not in (None, "", ":memory:") and not (
        url.database.startswith("file:") or Path(url.database).exists()
    ):
        # SQLite would create an empty database and then report a missing table
        raise SourceAbsent(source.name, f"SQLite database file not found: {url.database}")
    connect_args = (
        {"connect_timeout": CONNECT_TIMEOUT_SECONDS} if backend in ("postgresql", "mysql") else {}
    )
    try:
        return sa.create_engine(url, poolclass=NullPool, connect_args=connect_args)
    except (ImportError, sa.exc.NoSuchModuleError) as exc:
        raise SourceError(source.name, f"no database driver for {url.drivername!r}: {exc}"
                          ) from exc


def connect(engine: sa.Engine, source: SqlSource, url: URL) -> Connection:
    try:
        return engine.connect()
    except sa.exc.DBAPIError as exc:
        raise SourceUnavailable(
            source.name,
            f"cannot connect to the database at {describe(url)}: {driver_message(exc, url)}",
        ) from exc


def describe(url: URL) -> str:
    """Where a database is, for messages: host, port and database, never the password."""
    if url.get_backend_name() == "sqlite":
        return f"sqlite:{url.database or ':memory:'}"
    where = f"{url.host or 'localhost'}" + (f":{url.port}" if url.port else "")
    return f"{where}/{url.database or ''} ({url.drivername}, user {url.username or '-'})"


def driver_message(exc: sa.exc.DBAPIError, url: URL) -> str:
    """The driver's own first line of complaint, without SQLAlchemy's SQL dump or a password."""
    text = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
    return text.replace(url.password, "***") if url.password else text


def selectable(source: SqlSource) -> sa.FromClause:
    """The table (quoted by SQLAlchemy where needed; `schema.table` names a schema) or the
    query as a subquery named `tideline_source`."""
    if source.table is not None:
        schema, _, name = source.table.rpartition(".")
        return sa.table(name, schema=schema or None)
    query = source.query.strip().rstrip(";")
    columns = dict.fromkeys([source.cursor_column, source.timestamp_column])
    return sa.text(query).columns(*map(sa.column, columns)).subquery("tideline_source")


def column_of(table: sa.FromClause, name: str) -> sa.ColumnElement:
    """A column of the query's subquery, or a column of the table (quoted where needed)."""
    return table.c[name] if isinstance(table, sa.Subquery) else sa.column(name)


def read_rows(
    conn: Connection, source: SqlSource, checkpoint: dict[str, Any] | None,
    window: Window | None,
) -> tuple[pd.DataFrame, Any]:
    """The rows past the checkpoint (or near the window) in cursor order, and the last cursor
    value read (None if no row had one)."""
    table = selectable(source)
    cursor = column_of(table, source.cursor_column)
    stamp = column_of(table, source.timestamp_column)
    statement = sa.select(sa.text("*")).select_from(table)
    if window is not None:
        # ISO text binds compare correctly with timestamp columns and with ISO text columns
        if window.since is not None:
            since = (as_utc(window.since) - WINDOW_MARGIN).isoformat()
            statement = statement.where(stamp >= sa.bindparam("since", since, sa.types.NullType()))
        if window.until is not None:
            until = (as_utc(window.until) + WINDOW_MARGIN).isoformat()
            statement = statement.where(stamp < sa.bindparam("until", until, sa.types.NullType()))
    elif checkpoint and checkpoint.get("cursor") is not None:
        value = decode_cursor(checkpoint, source)
        statement = statement.where(cursor > sa.bindparam("checkpoint", value,
                                                          sa.types.NullType()))
    statement = statement.order_by(cursor)
    chunks: list[list[pa.Array | np.ndarray]] = []
    last = None
    try:
        result = conn.execution_options(stream_results=True).execute(statement)
        columns = list(result.keys())
        duplicated = sorted({c for c in columns if columns.count(c) > 1})
        if duplicated:
            raise SourceError(source.name, f"the query returns duplicate column names "
                              f"{duplicated}; alias them apart")
        if source.cursor_column not in columns:
            raise SourceError(source.name, f"cursor column {source.cursor_column!r} is not in "
                              f"the result ({', '.join(columns)})")
        position = columns.index(source.cursor_column)
        for chunk in result.partitions(source.chunk_rows):
            rows = pd.DataFrame(list(chunk), dtype=object)
            chunks.append([held(rows[column].to_numpy()) for column in rows.columns])
            # rows arrive in cursor order, so the last non-null cursor is the largest one in
            # the database's own ordering (NULLs sort first or last depending on the database)
            last = next((row[position] for row in reversed(chunk)
                         if row[position] is not None), last)
    except sa.exc.DBAPIError as exc:
        raise read_failed(source, conn.engine.url, exc) from exc
    if not chunks:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns}), last
    return pd.DataFrame({name: stacked([chunk[i] for chunk in chunks])
                         for i, name in enumerate(columns)}), last


def read_failed(source: SqlSource, url: URL, exc: sa.exc.DBAPIError) -> SourceError:
    """A failed read of the table or query, naming it and the database: a dropped connection
    (the server restarted) may be back for a retry, a bad query not."""
    what = f"table {source.table!r}" if source.table else "the query"
    failure = SourceUnavailable if exc.connection_invalidated else SourceError
    return failure(source.name, f"reading {what} from {describe(url)} failed: "
                   f"{driver_message(exc, url)}")


def sample_rows(source: SqlSource, rows: int = 2_000) -> tuple[str, pd.DataFrame]:
    """Where the source's database is, and the first `rows` rows its table or query gives (in
    the database's order, not the cursor's: no sort of a whole table), typed as a pull types
    them: what `tideline plan` checks the contract's columns against."""
    url = source_url(source)
    engine = create_engine(source, url)
    try:
        with connect(engine, source, url) as conn:
            result = conn.execute(sa.select(sa.text("*")).select_from(selectable(source))
                                  .limit(rows))
            columns = list(result.keys())
            frame = pd.DataFrame(list(result), columns=columns, dtype=object)
    except sa.exc.DBAPIError as exc:
        raise read_failed(source, url, exc) from exc
    finally:
        engine.dispose()
    return describe(url), pd.DataFrame({name: stacked([held(frame[name].to_numpy())])
                                        for name in columns})


def held(values: np.ndarray) -> pa.Array | np.ndarray:
    """One chunk of a column as the driver returned it: in Arrow when Arrow holds every value
    exactly (all text, or all integers within int64; nulls allowed), else the objects. Done
    chunk by chunk, while the objects are fresh, and then they are freed: a 10M-row table is
    never held as Python objects, nor converted from them cold."""
    kind = pd.api.types.infer_dtype(values, skipna=True)
    try:
        if kind in ("string", "empty"):
            return pa.array(values, type=pa.large_string())
        if kind == "integer":
            return pa.array(values, type=pa.int64())
    except (OverflowError, pa.ArrowInvalid):  # an integer beyond int64
        pass
    return values


def stacked(chunks: list[pa.Array | np.ndarray]) -> pd.Series:
    """A column from its chunks: Arrow text or integers when every chunk with a value agrees
    (all-null chunks go along), otherwise the driver's objects, as they came (an int column
    with a NULL stays ints, not floats), whatever the chunk size."""
    kinds = {chunk.type if isinstance(chunk, pa.Array) else None for chunk in chunks
             if not isinstance(chunk, pa.Array) or chunk.null_count < len(chunk)}
    kind = next(iter(kinds), pa.large_string())
    if len(kinds) <= 1 and kind is not None:
        arrow = pa.chunked_array([chunk.cast(kind) for chunk in chunks], kind)
        return pd.Series(pd.arrays.ArrowStringArray(arrow) if kind == pa.large_string()
                         else pd.arrays.ArrowExtensionArray(arrow))
    return pd.Series(np.concatenate([
        pd.Series(chunk.to_pylist(), dtype=object).to_numpy() if isinstance(chunk, pa.Array)
        else chunk for chunk in chunks]), dtype=object)


_CURSOR_TYPES: dict[str, type] = {
    "int": int, "float": float, "str": str, "decimal": Decimal, "datetime": datetime,
    "date": date,
}


def encode_cursor(value: Any) -> dict[str, Any]:
    """A cursor value as JSON-safe data plus its type, for the checkpoint."""
    if isinstance(value, datetime):
        return {"cursor": value.isoformat(), "cursor_type": "datetime"}
    if isinstance(value, date):
        return {"cursor": value.isoformat(), "cursor_type": "date"}
    if isinstance(value, Decimal):
        return {"cursor": str(value), "cursor_type": "decimal"}
    if isinstance(value, bool | int):
        return {"cursor": int(value), "cursor_type": "int"}
    if isinstance(value, float):
        return {"cursor": value, "cursor_type": "float"}
    return {"cursor": str(value), "cursor_type": "str"}


def decode_cursor(checkpoint: dict[str, Any], source: SqlSource) -> Any:
    """The checkpoint's cursor as the value the driver gave, ready to bind."""
    value, kind = checkpoint["cursor"], checkpoint.get("cursor_type", "str")
    if kind not in _CURSOR_TYPES:
        raise SourceError(source.name, f"checkpoint has an unknown cursor type {kind!r}")
    if kind == "datetime":
        return datetime.fromisoformat(value)
    if kind == "date":
        return date.fromisoformat(value)
    return _CURSOR_TYPES[kind](value)
