"""Raw values as text: the raw layer keeps every value exactly as the source gave it, as Arrow
strings (`RAW_TEXT`), and types are decided later by validation against the contract."""
from __future__ import annotations

from datetime import datetime

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


def as_raw_text(table: pa.Table) -> pd.DataFrame:
    """An Arrow table as a frame whose text columns are `RAW_TEXT` (sharing Arrow's memory)."""
    return table.to_pandas(types_mapper={pa.string(): RAW_TEXT, pa.large_string(): RAW_TEXT}.get)


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
    return str(value)
