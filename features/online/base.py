"""What every online store promises, the value encoding they share, and stored values back
to the pandas columns offline retrieval gives.

Promises (checked by tests/features/test_online.py against every backend):
- A reader sees one version of a view: a new version is written aside and switched to in one
  step; an entity's row is written whole, never field by field.
- The view's state (version, as-of date, columns, TTL) is written after its rows, so a crash
  mid-write leaves the old state, and a re-run repeats the write.
- An unreachable store raises `OnlineStoreUnavailable` naming it.
"""
from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

STREAM_PREFIX = "stream:"


@dataclass(frozen=True)
class OnlineState:
    """What the online store holds for one view."""

    view: str
    version: str
    as_of: date
    key: str
    columns: tuple[str, ...]
    types: tuple[str, ...]
    """Arrow type of each column (`double`, `int64`, `string`, `timestamp[ns, tz=UTC]`...)."""
    ttl_days: int | None
    source_commit: str
    written_at: datetime

    @property
    def from_stream(self) -> bool:
        """Written by a stream processor (`source_commit` is then `stream:<name>@<commit>`),
        not loaded from a feature table of the lake."""
        return self.source_commit.startswith(STREAM_PREFIX)

    def expired(self, now: datetime) -> bool:
        """Past the view's TTL, measured from the as-of date's midnight UTC."""
        if self.ttl_days is None:
            return False
        start = datetime(self.as_of.year, self.as_of.month, self.as_of.day, tzinfo=UTC)
        return now >= start + timedelta(days=self.ttl_days)

    def to_json(self) -> str:
        body = asdict(self)
        body.update(as_of=self.as_of.isoformat(), written_at=self.written_at.isoformat())
        return json.dumps(body, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> OnlineState:
        return _parsed_state(text)


@functools.lru_cache(maxsize=256)
def _parsed_state(text: str | bytes) -> OnlineState:
    """A state from its JSON, parsed once per text: readers meet the same few states on every
    request (states are frozen, so one object serves them all)."""
    body = json.loads(text)
    return OnlineState(**{**body, "as_of": date.fromisoformat(body["as_of"]),
                          "written_at": datetime.fromisoformat(body["written_at"]),
                          "columns": tuple(body["columns"]), "types": tuple(body["types"])})


class OnlineStore(Protocol):
    """One row of feature values per entity and view, with the view's state."""

    name: str

    def state(self, view: str) -> OnlineState | None:
        """What the store holds for `view`, or None when it holds nothing."""
        ...

    def write(self, state: OnlineState, rows: pa.Table, deleted: Sequence[str],
              replace: bool) -> None:
        """Write `rows` (the key column, then `state.columns`) and delete `deleted` keys, then
        record `state`. With `replace`, the rows are the view's complete new contents, written
        aside and switched to at once; without, they update the current contents in place."""
        ...

    def read(self, view: str, keys: Sequence[str]) -> tuple[OnlineState | None,
                                                           list[list[Any] | None]]:
        """The state and, per key in order, its row (values in `state.columns` order) or None,
        read consistently with each other."""
        ...

    def read_views(self, views: Sequence[str], keys: Sequence[str]
                   ) -> list[tuple[OnlineState | None, list[list[Any] | None]]]:
        """`read` for several views at once (one round trip where the store allows), each
        view's state consistent with its rows."""
        ...

    def drop(self, view: str) -> None:
        """Forget a view entirely."""
        ...

    def close(self) -> None: ...


def arrow_types(schema: pa.Schema, columns: Sequence[str]) -> tuple[str, ...]:
    return tuple(str(schema.field(c).type) for c in columns)


def _quoted(values: pa.Array) -> pa.Array:
    """JSON strings of a text column: each distinct value escaped once by the json module."""
    encoded = pc.dictionary_encode(values.cast(pa.string()))
    words = pa.array([json.dumps(w) for w in encoded.dictionary.to_pylist()], pa.string())
    return words.take(encoded.indices)


def _json_column(values: pa.ChunkedArray) -> pa.Array:
    values = values.combine_chunks()
    kind = values.type
    if pa.types.is_dictionary(kind):
        values, kind = values.cast(kind.value_type), kind.value_type
    if pa.types.is_floating(kind):
        text = pc.cast(values, pa.string())
        nan, inf = pc.is_nan(values), pc.is_inf(values)
        if pc.any(nan).as_py():  # (each fix is a pass over every value: only when needed)
            text = pc.if_else(nan, pa.scalar(None, pa.string()), text)
        if pc.any(inf).as_py():  # JSON has no infinity: "inf" as a string, decoded back
            text = pc.if_else(inf, pc.binary_join_element_wise('"', text, '"', ""), text)
    elif pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        text = pc.cast(values, pa.string())
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        text = _quoted(values)
    elif pa.types.is_temporal(kind):
        text = pc.binary_join_element_wise('"', pc.cast(values, pa.string()), '"', "")
    else:
        raise TypeError(f"cannot serve a feature of type {kind} online")
    return pc.fill_null(text, "null")


def encode_rows(table: pa.Table, columns: Sequence[str]) -> pa.Array:
    """Each row's values as a JSON array (text), built column by column in Arrow (no Python
    object per value)."""
    if not len(table):
        return pa.array([], pa.string())
    parts = [_json_column(table.column(c)) for c in columns]
    joined = pc.binary_join_element_wise(*parts, ",") if parts else pa.array(
        [""] * len(table))
    rows = pc.binary_join_element_wise("[", joined, "]", "")
    return rows.combine_chunks() if isinstance(rows, pa.ChunkedArray) else rows


def restore_values(state: OnlineState, rows: list[list[Any] | None]
                   ) -> list[list[Any] | None]:
    """Stored values back to what the offline store holds: booleans from 0/1, times as
    Timestamps (number and text columns need nothing)."""
    flags = [k for k, t in enumerate(state.types) if t == "bool"]
    times = [k for k, t in enumerate(state.types) if t.startswith(("timestamp", "date"))]
    if not flags and not times:
        return rows
    for values in rows:
        if values is None:
            continue
        for k in flags:
            if values[k] is not None:
                values[k] = bool(values[k])
        for k in times:
            if values[k] is not None:
                values[k] = pd.Timestamp(values[k])
    return rows


def decode_rows(state: OnlineState, rows: Sequence[bytes | None]) -> list[list[Any] | None]:
    """JSON arrays (see `encode_rows`) back to values, all rows in one parse; infinities come
    back from their strings (searched for only when a row holds one)."""
    body = b"[" + b",".join(b"null" if row is None else row for row in rows) + b"]"
    decoded = orjson.loads(body)
    if b'inf"' in body:
        floats = [k for k, t in enumerate(state.types) if t in ("double", "float", "halffloat")]
        for values in decoded:
            for k in floats if values is not None else ():
                if isinstance(values[k], str):
                    values[k] = float(values[k])
    return restore_values(state, decoded)


@functools.lru_cache(maxsize=256)
def _arrow_type(text: str) -> pa.DataType:
    """The Arrow type a state names (`arrow_types`' text)."""
    match = re.fullmatch(r"timestamp\[(\w+)(?:, tz=(.+))?\]", text)
    if match:
        return pa.timestamp(match[1], tz=match[2])
    return pa.type_for_alias(text)


@functools.lru_cache(maxsize=256)
def _numpy_dtype(kind: str) -> np.dtype | None:
    """The dtype Arrow gives a column of numbers or text in pandas; None for other types."""
    arrow = _arrow_type(kind)
    if (pa.types.is_floating(arrow) or pa.types.is_integer(arrow) or pa.types.is_string(arrow)
            or pa.types.is_large_string(arrow)):
        return np.dtype(arrow.to_pandas_dtype())
    return None


def _pandas_column(values: np.ndarray, kind: str) -> np.ndarray | pd.Series:
    """One column of stored values (None for null) as Arrow's conversion to pandas gives it,
    so that online frames equal offline ones: numbers and text straight from numpy, other
    types through Arrow."""
    dtype = _numpy_dtype(kind)
    if dtype is None:
        return pa.array(values.tolist(), _arrow_type(kind)).to_pandas()
    try:
        return values.astype(dtype, copy=False)
    except TypeError:  # an integer column with a null: Arrow gives float64 with NaN
        return values.astype(np.float64)


def feature_columns(state: OnlineState, rows: Sequence[list[Any] | None],
                    features: Sequence[str]) -> list[np.ndarray | pd.Series]:
    """The values of `features` (some of `state.columns`) over `rows` as pandas columns, a
    missing row giving nulls; the rows are turned into one array first, not column by
    column."""
    width = len(state.columns)
    empty = [None] * width
    matrix = np.array([empty if row is None else row for row in rows], dtype=object)
    matrix = matrix.reshape(len(rows), width)
    at = [state.columns.index(name) for name in features]
    return [_pandas_column(matrix[:, k], state.types[k]) for k in at]


def forget_entities(store: OnlineStore, views: Sequence[str], key: str, entities: Sequence[str]
                    ) -> dict[str, int]:
    """Delete `entities`' rows from every view of `views` keyed by `key` that the store holds,
    keeping each view's state; view -> rows it held for them."""
    removed = {}
    for view in views:
        state, rows = store.read(view, list(entities))
        if state is None or state.key != key:
            continue
        empty = pa.table({name: pa.array([], _arrow_type(kind)) for name, kind in
                          zip((state.key, *state.columns), ("string", *state.types), strict=True)})
        store.write(state, empty, list(entities), replace=False)
        removed[view] = sum(row is not None for row in rows)
    return removed
