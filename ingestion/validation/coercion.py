"""Raw values to the contract's declared types, telling nulls from values that do not parse.

A value is null when it is missing, blank, or (for non-string types) a null token such as
`null`, `NaN`, `N/A`; any other value that does not parse is a `type` failure, never a silent
NaN. Naive timestamps are UTC. `07/01/2026` is read month first. A column's declared `format`
(a strftime pattern, or `unix_s`/`unix_ms`/`unix_us`/`unix_ns`) replaces the formats tried.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from tideline.ingestion.contracts import EPOCH_UNITS, Column

NULL_TOKENS = ("", "null", "none", "nan", "na", "n/a", "nat", "<na>")
TRUE_TOKENS = ("true", "t", "yes", "y", "1")
FALSE_TOKENS = ("false", "f", "no", "n", "0")
DATE_FORMATS = (
    "%m/%d/%Y", "%m/%d/%Y %H:%M", "%m/%d/%Y %H:%M:%S", "%Y/%m/%d", "%Y/%m/%d %H:%M:%S",
    "%d.%m.%Y", "%d.%m.%Y %H:%M:%S", "%Y%m%d", "%d %b %Y", "%b %d %Y", "%b %d, %Y",
)
"""Formats tried, in order, for values that are not ISO 8601."""
DAY_NS = 86_400 * 10**9

_NUMBER_RE = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_ISO_ZONED_RE = (r"^\d{4}-\d{2}-\d{2}[T ]\d{2}(:\d{2}(:\d{2}(\.\d{1,9})?)?)?"
                 r"(Z|[+-]\d{2}(:?\d{2})?)$")
_ISO_NAIVE_RE = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?$"
_NAT = np.iinfo(np.int64).min
_EXACT_FLOAT = 2.0**53


@dataclass
class Typed:
    values: pd.Series
    """Declared dtype; null where the value is null or failed to parse."""
    null: np.ndarray
    bad: np.ndarray
    """Present but unparseable: a `type` failure."""
    cmp: np.ndarray | None = None
    """Comparable numpy values (float64/int64, ns since epoch for temporal) for rule checks."""
    text: pa.Array | None = None
    """The values as an Arrow string array, for string columns."""

    @property
    def valid(self) -> np.ndarray:
        return ~(self.null | self.bad)

    def rows(self, positions: slice | np.ndarray) -> Typed:
        """These rows alone (a slice, or ascending positions), numbered from 0."""
        text = self.text
        if text is not None:
            text = text[positions] if isinstance(positions, slice) else text.take(positions)
        return Typed(self.values.iloc[positions].reset_index(drop=True), self.null[positions],
                     self.bad[positions], None if self.cmp is None else self.cmp[positions],
                     text)


def np_bool(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)


def to_arrow_text(raw: pd.Series) -> pa.Array:
    """Raw values as an Arrow string array; non-strings (numbers in an object column, datetimes)
    become their `str`, so a type check still sees them."""
    try:
        arr = pa.array(raw, type=pa.large_string(), from_pandas=True)
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        values = raw.to_numpy(dtype=object, na_value=None)
        present = pd.notna(values)
        values[present] = pd.Series(values[present], dtype=object).astype(str).to_numpy()
        arr = pa.array(values, type=pa.large_string(), from_pandas=True)
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def _split_unparsed(text: pa.Array, parsed: np.ndarray, tokens: Iterable[str]) -> tuple[
        np.ndarray, np.ndarray]:
    """Among values that did not parse, tell nulls (missing, blank, null tokens) from failures.
    Only the unparsed subset is inspected, so clean columns pay nothing here."""
    null = np.zeros(len(text), dtype=bool)
    bad = np.zeros(len(text), dtype=bool)
    rest = np.flatnonzero(~parsed)
    if rest.size:
        sub = text.take(pa.array(rest))
        token_set = pa.array(list(tokens), type=pa.large_string())
        is_null = pc.or_kleene(
            pc.is_null(sub),
            pc.is_in(pc.utf8_lower(pc.utf8_trim_whitespace(sub)), value_set=token_set),
        )
        sub_null = np_bool(is_null)
        null[rest] = sub_null
        bad[rest] = ~sub_null
    return null, bad


def _numbers_from_text(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """float64 values and a parsed mask; `inf`/`nan` text does not count as parsed."""
    try:
        floats = pc.cast(text, pa.float64())
    except pa.ArrowInvalid:
        trimmed = pc.utf8_trim_whitespace(text)
        ok = pc.match_substring_regex(trimmed, _NUMBER_RE)
        floats = pc.cast(pc.if_else(ok, trimmed, pa.scalar(None, pa.large_string())),
                         pa.float64())
    values = np.asarray(floats.to_numpy(zero_copy_only=False), dtype="float64")
    parsed = np.isfinite(values)
    return values, parsed


def _decimal_point(text: pa.Array, decimal: str) -> pa.Array:
    """Numbers written with `decimal` as written with a point; with a comma, text with a point
    as none (it would read as another number)."""
    if decimal == ".":
        return text
    pointed = pc.match_substring(text, ".")
    return pc.if_else(pointed, pa.scalar(None, text.type), pc.replace_substring(text, ",", "."))


def _exact_big_ints(text: pa.Array, values: np.ndarray, ints: np.ndarray) -> tuple[
        np.ndarray, np.ndarray]:
    """Integers beyond 2**53 lose digits as floats: re-read those few exactly from the text."""
    exact = np.where(ints, values, 0.0).astype("int64")
    big = np.flatnonzero(ints & (np.abs(values) >= _EXACT_FLOAT))
    if big.size:
        sub = pc.utf8_trim_whitespace(text.take(pa.array(big)))
        try:
            exact[big] = np.asarray(pc.cast(sub, pa.int64()).to_numpy(zero_copy_only=False))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            ints = ints.copy()
            ints[big] = False  # e.g. "1e19": no exact int64 for it
    return exact, ints


def _int_series(values: np.ndarray, valid: np.ndarray, index: pd.Index) -> pd.Series:
    data = np.where(valid, values, 0).astype("int64")
    return pd.Series(pd.arrays.IntegerArray(data, ~valid), index=index)


def _ns_series(ns: np.ndarray, index: pd.Index, *, utc: bool) -> pd.Series:
    series = pd.Series(ns.view("M8[ns]"), index=index)
    return series.dt.tz_localize("UTC") if utc else series


def _ns_from_arrow(stamps: pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(stamps.cast(pa.int64()), _NAT).to_numpy(), dtype="int64")


def _ns_from_pandas(text: pd.Series, formats: Iterable[str] = ("ISO8601", *DATE_FORMATS)
                    ) -> np.ndarray:
    """The slow path, only for values that are not ISO 8601 (or in a declared format): pandas,
    with each format in turn."""
    ns = np.full(len(text), _NAT, dtype="int64")
    todo = np.arange(len(text))
    for fmt in formats:
        if not todo.size:
            break
        parsed = pd.to_datetime(text.iloc[todo], format=fmt, utc=True, errors="coerce")
        values = parsed.dt.as_unit("ns").to_numpy(dtype="datetime64[ns]").view("int64")
        ns[todo] = values
        todo = todo[values == _NAT]
    return ns


def _epoch_ns(raw: pd.Series, numeric: bool, scale: int) -> tuple[np.ndarray, np.ndarray,
                                                                   np.ndarray]:
    """Times since the Unix epoch, as numbers or their text, in `scale` nanoseconds each: UTC
    nanoseconds (whole numbers exactly, fractions as far as a float64 holds them: within a
    microsecond), and the null and bad masks."""
    text = None
    if numeric:
        values = raw.to_numpy(dtype="float64", na_value=np.nan)
        null, parsed = np.isnan(values), np.isfinite(values)
    else:
        text = to_arrow_text(raw)
        values, parsed = _numbers_from_text(text)
        null, _ = _split_unparsed(text, parsed, NULL_TOKENS)
    safe = np.where(parsed, values, 0.0)
    fits = parsed & (np.abs(safe) * scale < 2.0**63)
    safe = np.where(fits, safe, 0.0)
    whole = fits & (safe == np.floor(safe))
    if pd.api.types.is_integer_dtype(raw.dtype):
        exact = raw.to_numpy(dtype="int64", na_value=0)
    elif text is not None:
        exact, whole = _exact_big_ints(text, safe, whole)  # nanoseconds beyond 2**53
    else:
        exact = np.where(whole, safe, 0.0).astype("int64")
    floor = np.floor(safe)  # a fraction apart: the whole units stay exact
    ns = np.where(whole, np.where(whole, exact, 0) * scale,
                  floor.astype("int64") * scale + np.round((safe - floor) * scale).astype("int64"))
    return np.where(fits, ns, _NAT), null, ~null & ~fits


def _timestamps_from_text(text: pa.Array) -> np.ndarray:
    try:  # the common case: every value ISO 8601 with a zone
        return _ns_from_arrow(pc.cast(text, pa.timestamp("ns", tz="UTC")))
    except pa.ArrowInvalid:
        pass
    trimmed = pc.utf8_trim_whitespace(text)
    ns = np.full(len(text), _NAT, dtype="int64")
    todo = np_bool(pc.is_valid(trimmed))
    for pattern, arrow_type in ((_ISO_ZONED_RE, pa.timestamp("ns", tz="UTC")),
                                (_ISO_NAIVE_RE, pa.timestamp("ns"))):
        idx = np.flatnonzero(todo & np_bool(pc.match_substring_regex(trimmed, pattern)))
        if not idx.size:
            continue
        sub = trimmed.take(pa.array(idx))
        try:
            ns[idx] = _ns_from_arrow(pc.cast(sub, arrow_type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # e.g. 2026-02-30
            ns[idx] = _ns_from_pandas(sub.to_pandas())
        todo[idx] = False
    # a value without a digit is no date in any format: spare it the slow path
    todo &= np_bool(pc.match_substring_regex(trimmed, r"\d"))
    rest = np.flatnonzero(todo)
    if rest.size:
        ns[rest] = _ns_from_pandas(trimmed.take(pa.array(rest)).to_pandas())
    return ns


def coerce(raw: pd.Series, column: Column) -> Typed:
    """Raw values to the declared type, telling nulls from values that do not parse."""
    kind, dtype, index = column.type, raw.dtype, raw.index
    numeric = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
    boolean = pd.api.types.is_bool_dtype(dtype)
    temporal = pd.api.types.is_datetime64_any_dtype(dtype)

    if kind == "string":
        if numeric and pd.api.types.is_float_dtype(dtype):
            floats = raw.to_numpy(dtype="float64", na_value=np.nan)
            present = ~np.isnan(floats)
            whole = floats[present]
            if np.array_equal(whole, np.round(whole)) and (np.abs(whole) < 2.0**63).all():
                raw = raw.astype("Int64")  # ids read as floats because of a NaN: 12.0 -> "12"
        text = to_arrow_text(raw)
        blank = pc.or_(pc.utf8_is_space(text), pc.equal(pc.binary_length(text), 0))
        if pc.any(blank).as_py():
            text = pc.if_else(blank, pa.scalar(None, pa.large_string()), text)
        null = ~np_bool(pc.is_valid(text))
        return Typed(pd.Series(pd.arrays.ArrowStringArray(text), index=index),
                     null, np.zeros(len(raw), dtype=bool), text=text)

    if kind in ("float", "int"):
        if temporal:
            return _failed(raw, column, raw.isna().to_numpy())
        text = None
        if numeric or boolean:
            values = raw.to_numpy(dtype="float64", na_value=np.nan)
            null = np.isnan(values)
            parsed = np.isfinite(values)
            bad = ~parsed & ~null
        else:
            text = to_arrow_text(raw)
            values, parsed = _numbers_from_text(_decimal_point(text, column.decimal))
            null, bad = _split_unparsed(text, parsed, NULL_TOKENS)
        if kind == "float":
            values = np.where(parsed, values, np.nan) + 0.0  # -0.0 -> 0.0
            return Typed(pd.Series(values, index=index), null, bad, cmp=values)
        safe = np.where(parsed, values, 0.0)
        ints = parsed & (safe == np.floor(safe)) & (np.abs(safe) < 2.0**63)
        if pd.api.types.is_integer_dtype(dtype):
            exact = raw.to_numpy(dtype="int64", na_value=0)  # no round trip through float
        elif text is not None:
            exact, ints = _exact_big_ints(text, safe, ints)
        else:
            exact = np.where(ints, safe, 0.0).astype("int64")
        bad = bad | (parsed & ~ints)
        exact = np.where(ints, exact, 0)
        return Typed(_int_series(exact, ints, index), null, bad, cmp=exact)

    if kind == "bool":
        if boolean or numeric:
            values = raw.to_numpy(dtype="float64", na_value=np.nan)
            null = np.isnan(values)
            truth = values == 1
            parsed = truth | (values == 0)
            bad = ~parsed & ~null
        elif temporal:
            return _failed(raw, column, raw.isna().to_numpy())
        else:
            text = to_arrow_text(raw)
            lowered = pc.utf8_lower(pc.utf8_trim_whitespace(text))
            truth = np_bool(pc.is_in(lowered, value_set=pa.array(TRUE_TOKENS, pa.large_string())))
            falsy = np_bool(pc.is_in(lowered, value_set=pa.array(FALSE_TOKENS,
                                                                 pa.large_string())))
            parsed = truth | falsy
            null, bad = _split_unparsed(text, parsed, NULL_TOKENS)
        data = pd.arrays.BooleanArray(truth & parsed, ~parsed)
        return Typed(pd.Series(data, index=index), null, bad, cmp=truth.astype("int64"))

    # timestamp / date
    if temporal:
        # UTC nanoseconds, zoned or naive (naive is UTC), NaT as int64's minimum
        ns = raw.to_numpy(dtype="datetime64[ns]").view("int64").copy()
        null = ns == _NAT
        bad = np.zeros(len(raw), dtype=bool)
    elif column.format in EPOCH_UNITS:
        ns, null, bad = _epoch_ns(raw, numeric, EPOCH_UNITS[column.format])
    elif numeric or boolean:
        return _failed(raw, column, raw.isna().to_numpy())
    else:
        text = to_arrow_text(raw)
        ns = _timestamps_from_text(text) if column.format is None else _ns_from_pandas(
            pc.utf8_trim_whitespace(text).to_pandas(), (column.format,))
        null, bad = _split_unparsed(text, ns != _NAT, NULL_TOKENS)
    if kind == "date":
        bad |= (ns != _NAT) & (ns % DAY_NS != 0)  # a time of day is not a date
    ns = np.where(null | bad, _NAT, ns)
    return Typed(_ns_series(ns, index, utc=kind == "timestamp"), null, bad, cmp=ns)


def _failed(raw: pd.Series, column: Column, null: np.ndarray) -> Typed:
    """A whole column of the wrong kind (e.g. datetimes for a float column): all present values
    fail `type`."""
    empty = empty_column(column, len(raw), raw.index)
    return Typed(empty.values, null, ~null, cmp=empty.cmp, text=empty.text)


def empty_column(column: Column, length: int, index: pd.Index) -> Typed:
    """An all-null column of the declared type, for declared columns absent from the input."""
    typed = coerce(pd.Series([None] * length, index=index, dtype=object), column)
    return typed
