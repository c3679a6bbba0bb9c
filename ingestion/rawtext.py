"""Raw values as the source gave them: the raw layer keeps the values of typed sources (Parquet,
SQL) in their own types, and everything else as text, as Arrow strings (`RAW_TEXT`). Types are
decided later by validation against the contract."""
from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

RAW_TEXT = pd.StringDtype("pyarrow")
"""The dtype of raw values: text held in Arrow memory, null where missing."""
_STR_KINDS = frozenset({"string", "empty", "integer", "floating", "mixed-integer-float",
                        "decimal", "boolean"})
"""Kinds of column (`pandas.api.types.infer_dtype`) whose `astype(RAW_TEXT)` is `str` of each
value; datetimes (`str` is not ISO 8601) and bytes (`astype` decodes them) are not among them."""


def as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Every column as `RAW_TEXT`: the raw layer keeps values exactly as received."""
    return pd.DataFrame({column: _column_text(frame[column]) for column in frame.columns},
                        index=frame.index)


_KEPT = (pa.types.is_integer, pa.types.is_floating, pa.types.is_boolean, pa.types.is_timestamp,
         pa.types.is_date, pa.types.is_string, pa.types.is_large_string)
"""Arrow types a typed source's values land in as they are; others (decimals, lists, binary)
land as text."""
_PANDAS_TYPES = {pa.string(): RAW_TEXT, pa.large_string(): RAW_TEXT,
                 **{t: pd.Int64Dtype() for t in (pa.int8(), pa.int16(), pa.int32(), pa.int64(),
                                                 pa.uint8(), pa.uint16(), pa.uint32())},
                 pa.bool_(): pd.BooleanDtype()}
"""Landed Arrow types as pandas reads them: integers and booleans nullable, not as floats and
objects, so that a null never turns a big id into an inexact float."""


def as_raw_text(table: pa.Table) -> pd.DataFrame:
    """A landed Arrow table as a frame: text columns `RAW_TEXT` (sharing Arrow's memory), typed
    ones in nullable pandas types."""
    return table.to_pandas(types_mapper=_PANDAS_TYPES.get)


def batches_frame(batches: Iterable[pd.DataFrame | pa.Table]) -> pd.DataFrame:
    """Batches of records as a connector reads them (text frames, or Arrow tables) in one
    frame."""
    frames = [batch if isinstance(batch, pd.DataFrame) else as_raw_text(batch)
              for batch in batches]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def landed(batch: pd.DataFrame | pa.Table, *, typed: bool) -> pa.Table:
    """A batch as the raw layer keeps it: every column as text, or with `typed`, columns of
    numbers, booleans, times and text as they are and the rest as text."""
    if isinstance(batch, pd.DataFrame):
        if not typed:
            return pa.Table.from_pandas(as_text(batch), preserve_index=False
                                        ).replace_schema_metadata(None)
        batch = pa.Table.from_pandas(
            pd.DataFrame({name: batch[name] if _typed_pandas(batch[name].dtype)
                          else _column_text(batch[name]) for name in batch.columns}),
            preserve_index=False).replace_schema_metadata(None)
    return pa.table([_landed_column(column, typed) for column in batch.columns],
                    names=[str(name) for name in batch.column_names])


def _landed_column(column: pa.ChunkedArray, typed: bool) -> pa.ChunkedArray:
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return column.cast(pa.large_string())
    if typed and any(kept(column.type) for kept in _KEPT):
        return column
    return pa.chunked_array([pa.array(_column_text(column.to_pandas()), type=pa.large_string())])


def _typed_pandas(dtype: object) -> bool:
    return (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)
            or pd.api.types.is_datetime64_any_dtype(dtype)) and not isinstance(
                dtype, pd.CategoricalDtype)


def _column_text(values: pd.Series) -> pd.Series:
    """Each value as `str` gives it (datetimes in ISO 8601), nulls kept null. Columns of text,
    numbers, decimals or booleans are converted in one pass; others value by value."""
    if values.dtype == RAW_TEXT:
        return values
    kind = pd.api.types.infer_dtype(values, skipna=True)
    if kind == "integer":
        try:  # Arrow writes integers as `str` does, many times faster
            ints = pa.array(values, type=pa.int64(), from_pandas=True)
        except (OverflowError, pa.ArrowInvalid):  # beyond int64
            pass
        else:
            text = pc.cast(ints, pa.large_string())
            return pd.Series(pd.arrays.ArrowStringArray(text), index=values.index)
    if kind not in _STR_KINDS:
        values = values.map(_text, na_action="ignore")
    return values.astype(RAW_TEXT)


def _text(value: object) -> str:
    if isinstance(value, (datetime, pd.Timestamp)):
        return value.isoformat()
    if isinstance(value, (dict, list)):  # as JSON, not as Python writes it
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


_FLAT = {"string", "empty", "integer", "floating", "mixed-integer-float", "boolean", "decimal"}
"""Kinds of a column (`pandas.api.types.infer_dtype`) that hold no object to flatten."""


def records_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """JSON objects (a JSON Lines file, an API page, stream messages) as a frame: nested
    objects flattened into dotted columns (`{"client": {"id": 7}}` gives `client.id`), as
    `pandas.json_normalize` does; arrays kept whole (they land as JSON text)."""
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    nested = any(pd.api.types.infer_dtype(frame[name], skipna=True) not in _FLAT
                 and frame[name].map(lambda value: isinstance(value, dict)).any()
                 for name in frame.columns if frame[name].dtype == object)
    return pd.json_normalize(records, sep=".") if nested else frame  # 3x slower: when needed
