"""The validation engine: interprets a `Contract` on a raw frame, coerces it to declared types,
quarantines failing rows with their rules and reasons, scores the data and decides the gate.

Vectorised pandas/pyarrow rather than pandera: every row needs all its failing rules with the
raw value next to the coerced one (and duplicates the row they repeat), which pandera's per-check
failure cases do not give, and Arrow kernels (cast, RE2 regex, is_in) keep 10M rows inside the
ingestion budget. pandera checks the engine's output in the tests, via `Contract.to_pandera()`.

Conventions: rows are numbered by position in the input (`_row`, 0-based). A value is null when
it is missing, blank, or (for non-string types) a null token such as `null`, `NaN`, `N/A`; any
other value that does not parse is a `type` failure, never a silent NaN. Naive timestamps are
UTC. `07/01/2026` is read month first. Duplicate rows are judged on the coerced values (`12.50`
equals `12.5`), keeping the first occurrence. Loops run per column or rule, never per row, except
a regex RE2 cannot compile (look-arounds), which falls back to Python's `re` value by value.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
import re
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict
from tideline.core.errors import IngestionError, QualityGateFailed
from tideline.ingestion.contracts import Column, Contract

log = logging.getLogger(__name__)

NULL_TOKENS = ("", "null", "none", "nan", "na", "n/a", "nat", "<na>")
TRUE_TOKENS = ("true", "t", "yes", "y", "1")
FALSE_TOKENS = ("false", "f", "no", "n", "0")
DATE_FORMATS = (
    "%m/%d/%Y", "%m/%d/%Y %H:%M", "%m/%d/%Y %H:%M:%S", "%Y/%m/%d", "%Y/%m/%d %H:%M:%S",
    "%d.%m.%Y", "%d.%m.%Y %H:%M:%S", "%Y%m%d", "%d %b %Y", "%b %d %Y", "%b %d, %Y",
)
"""Formats tried, in order, for values that are not ISO 8601."""
MIN_HISTORY = 3
PARALLEL_ROWS = 200_000
"""Frames at least this long are checked column by column on threads."""
MAX_THREADS = 8

_NUMBER_RE = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_ISO_ZONED_RE = (r"^\d{4}-\d{2}-\d{2}[T ]\d{2}(:\d{2}(:\d{2}(\.\d{1,9})?)?)?"
                 r"(Z|[+-]\d{2}(:?\d{2})?)$")
_ISO_NAIVE_RE = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?$"
_NAT = np.iinfo(np.int64).min
_DAY_NS = 86_400 * 10**9
_EXACT_FLOAT = 2.0**53
_TYPE_WORDS = {"string": "a string", "int": "an int", "float": "a float",
               "timestamp": "a timestamp", "date": "a date", "bool": "a bool"}
_VALUE_WIDTH = 60
_TEXT = pa.large_string()


# ---------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class SchemaIssue:
    kind: Literal["missing", "unexpected", "renamed"]
    column: str
    """The declared column (missing, renamed) or the unexpected one."""
    breaking: bool
    detail: str
    renamed_to: str | None = None


@dataclass(frozen=True)
class Anomaly:
    kind: Literal["volume", "null_rate", "freshness"]
    column: str | None
    observed: float
    low: float | None
    high: float | None
    detail: str


@dataclass(frozen=True)
class OutlierFlag:
    """Values flagged (not quarantined) in one column of the clean rows."""

    column: str
    method: Literal["iqr", "zscore"]
    count: int
    low: float
    high: float
    rows: np.ndarray = field(repr=False)
    """Input positions (`_row`) of the flagged values."""


class DatasetStats(BaseModel):
    """What a run saw, kept for the next runs' volume checks (serialise with `model_dump_json`)."""

    model_config = ConfigDict(frozen=True)

    dataset: str
    rows: int
    null_rates: dict[str, float]
    validated_at: datetime
    contract_version: str = ""
    days: int = 1
    """Days of events the batch covered (see `_days_covered`); volume is compared per day."""


@dataclass
class ValidationResult:
    dataset: str
    contract_version: str
    rows: int
    clean: pd.DataFrame
    """Passing rows in input order (input index kept), declared columns and dtypes only."""
    quarantine: pd.DataFrame
    """Failing rows as received, plus `_row`, `_rules` (`type:amount;range:amount`), `_reason`."""
    rules: pd.DataFrame
    """One row per check: rule, column, failed_rows, failure_rate (0–1)."""
    score: float
    rule_scores: dict[str, float]
    schema_issues: list[SchemaIssue]
    anomalies: list[Anomaly]
    outliers: list[OutlierFlag]
    stats: DatasetStats
    gate_passed: bool
    gate_reasons: list[str]
    warnings: list[str] = field(default_factory=list)

    def raise_for_gate(self) -> None:
        """Raise `QualityGateFailed` naming every reason, if the gate failed."""
        if not self.gate_passed:
            raise QualityGateFailed(
                f"dataset {self.dataset!r} failed its quality gate: "
                + "; ".join(self.gate_reasons)
                + ". Nothing was published; the quarantine and report say which rows and why."
            )


# ---------------------------------------------------------------------------------------------
# coercion


@dataclass
class _Typed:
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


def _np_bool(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)


def _to_arrow_text(raw: pd.Series) -> pa.Array:
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
        sub_null = _np_bool(is_null)
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


def _ns_from_pandas(text: pd.Series) -> np.ndarray:
    """The slow path, only for values that are not ISO 8601: pandas, then each known format."""
    ns = np.full(len(text), _NAT, dtype="int64")
    todo = np.arange(len(text))
    for fmt in ("ISO8601", *DATE_FORMATS):
        if not todo.size:
            break
        parsed = pd.to_datetime(text.iloc[todo], format=fmt, utc=True, errors="coerce")
        values = parsed.dt.as_unit("ns").to_numpy(dtype="datetime64[ns]").view("int64")
        ns[todo] = values
        todo = todo[values == _NAT]
    return ns


def _timestamps_from_text(text: pa.Array) -> np.ndarray:
    try:  # the common case: every value ISO 8601 with a zone
        return _ns_from_arrow(pc.cast(text, pa.timestamp("ns", tz="UTC")))
    except pa.ArrowInvalid:
        pass
    trimmed = pc.utf8_trim_whitespace(text)
    ns = np.full(len(text), _NAT, dtype="int64")
    todo = _np_bool(pc.is_valid(trimmed))
    for pattern, arrow_type in ((_ISO_ZONED_RE, pa.timestamp("ns", tz="UTC")),
                                (_ISO_NAIVE_RE, pa.timestamp("ns"))):
        idx = np.flatnonzero(todo & _np_bool(pc.match_substring_regex(trimmed, pattern)))
        if not idx.size:
            continue
        sub = trimmed.take(pa.array(idx))
        try:
            ns[idx] = _ns_from_arrow(pc.cast(sub, arrow_type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # e.g. 2026-02-30
            ns[idx] = _ns_from_pandas(sub.to_pandas())
        todo[idx] = False
    # a value without a digit is no date in any format: spare it the slow path
    todo &= _np_bool(pc.match_substring_regex(trimmed, r"\d"))
    rest = np.flatnonzero(todo)
    if rest.size:
        ns[rest] = _ns_from_pandas(trimmed.take(pa.array(rest)).to_pandas())
    return ns


def _coerce(raw: pd.Series, column: Column) -> _Typed:
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
        text = _to_arrow_text(raw)
        blank = pc.or_(pc.utf8_is_space(text), pc.equal(pc.binary_length(text), 0))
        if pc.any(blank).as_py():
            text = pc.if_else(blank, pa.scalar(None, pa.large_string()), text)
        null = ~_np_bool(pc.is_valid(text))
        return _Typed(pd.Series(pd.arrays.ArrowStringArray(text), index=index),
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
            text = _to_arrow_text(raw)
            values, parsed = _numbers_from_text(text)
            null, bad = _split_unparsed(text, parsed, NULL_TOKENS)
        if kind == "float":
            values = np.where(parsed, values, np.nan) + 0.0  # -0.0 -> 0.0
            return _Typed(pd.Series(values, index=index), null, bad, cmp=values)
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
        return _Typed(_int_series(exact, ints, index), null, bad, cmp=exact)

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
            text = _to_arrow_text(raw)
            lowered = pc.utf8_lower(pc.utf8_trim_whitespace(text))
            truth = _np_bool(pc.is_in(lowered, value_set=pa.array(TRUE_TOKENS, pa.large_string())))
            falsy = _np_bool(pc.is_in(lowered, value_set=pa.array(FALSE_TOKENS,
                                                                  pa.large_string())))
            parsed = truth | falsy
            null, bad = _split_unparsed(text, parsed, NULL_TOKENS)
        data = pd.arrays.BooleanArray(truth & parsed, ~parsed)
        return _Typed(pd.Series(data, index=index), null, bad, cmp=truth.astype("int64"))

    # timestamp / date
    if temporal:
        series = raw.dt.tz_convert("UTC") if raw.dt.tz is not None else raw.dt.tz_localize("UTC")
        ns = series.dt.as_unit("ns").to_numpy(dtype="datetime64[ns]").view("int64").copy()
        null = ns == _NAT
        bad = np.zeros(len(raw), dtype=bool)
    elif numeric or boolean:
        return _failed(raw, column, raw.isna().to_numpy())
    else:
        text = _to_arrow_text(raw)
        ns = _timestamps_from_text(text)
        null, bad = _split_unparsed(text, ns != _NAT, NULL_TOKENS)
    if kind == "date":
        bad |= (ns != _NAT) & (ns % _DAY_NS != 0)  # a time of day is not a date
    ns = np.where(null | bad, _NAT, ns)
    return _Typed(_ns_series(ns, index, utc=kind == "timestamp"), null, bad, cmp=ns)


def _failed(raw: pd.Series, column: Column, null: np.ndarray) -> _Typed:
    """A whole column of the wrong kind (e.g. datetimes for a float column): all present values
    fail `type`."""
    empty = _empty(column, len(raw), raw.index)
    return _Typed(empty.values, null, ~null, cmp=empty.cmp, text=empty.text)


def _empty(column: Column, length: int, index: pd.Index) -> _Typed:
    """An all-null column of the declared type, for declared columns absent from the input."""
    typed = _coerce(pd.Series([None] * length, index=index, dtype=object), column)
    return typed


# ---------------------------------------------------------------------------------------------
# duplicates


def _codes(values: pd.Series | np.ndarray) -> np.ndarray:
    """Dense codes in order of first appearance; nulls share code -1."""
    try:
        codes, _ = pd.factorize(values, use_na_sentinel=True)
    except TypeError:  # unhashable raw values (lists from JSON): compare their text
        codes, _ = pd.factorize(pd.Series(values, dtype=object).astype(str))
    return np.asarray(codes, dtype="int64")


def _dense(codes: np.ndarray) -> np.ndarray:
    """Renumber non-negative codes 0.. in order of first appearance; -1 stays -1."""
    out = np.full(codes.shape, -1, dtype="int64")
    present = codes >= 0
    out[present] = pd.factorize(codes[present])[0]
    return out


def _combine(codes: list[np.ndarray]) -> np.ndarray:
    """One code per distinct tuple of per-column codes; -1 if any part is -1 (null). Each part
    must be dense in order of first appearance, as `_codes` makes them."""
    combined = codes[0]
    for more in codes[1:]:
        null = (combined < 0) | (more < 0)
        product = combined * (int(more.max(initial=-1)) + 1) + more
        combined = _dense(np.where(null, -1, product))  # re-densify: the product never overflows
    return combined


def _repeats(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For dense first-appearance codes: which rows repeat an earlier one (code -1 never does),
    and the position of the first row with each row's code."""
    seen_max = np.maximum.accumulate(np.concatenate([[-1], codes[:-1]])) if codes.size else codes
    repeat = (codes >= 0) & (codes <= seen_max)
    firsts = np.flatnonzero((codes >= 0) & ~repeat)
    first_pos = np.where(codes >= 0, firsts[np.clip(codes, 0, None)] if firsts.size else 0, -1)
    return repeat, first_pos


def _in_groups(codes: np.ndarray) -> np.ndarray:
    """Rows whose code (nulls included, as one value) occurs more than once."""
    shifted = codes + 1
    return np.bincount(shifted)[shifted] > 1 if codes.size else np.zeros(0, dtype=bool)


def _hash_prefilter(typed: dict[str, _Typed]) -> np.ndarray | None:
    """Rows that could be exact duplicates, judged by a cheap hash of the numeric and temporal
    columns: equal rows have equal hashes, so rows with a unique hash need no exact check."""
    arrays = [(t.cmp, t.valid) for t in typed.values() if t.cmp is not None]
    if not arrays:
        return None
    combined = np.zeros(len(arrays[0][0]), dtype="uint64")
    for values, valid in arrays:
        hashed = pd.util.hash_array(np.where(valid, values, 0)) ^ valid.astype("uint64")
        combined = combined * np.uint64(1_099_511_628_211) ^ hashed
    return pd.Series(combined).duplicated(keep=False).to_numpy()


# ---------------------------------------------------------------------------------------------
# checks


@dataclass
class _Check:
    rule: str
    column: str
    mask: np.ndarray
    describe: Callable[[np.ndarray], pa.Array | str]
    """Reason text for the given failing positions (one text for all, or one per position)."""

    @property
    def label(self) -> str:
        return f"{self.rule}:{self.column}" if self.column else self.rule


def _lit(text: str) -> pa.Scalar:
    return pa.scalar(text, _TEXT)


def _join(*parts: str | pa.Array) -> pa.Array:
    """Concatenate text pieces row by row, in Arrow (no Python string per row)."""
    pieces = [_lit(p) if isinstance(p, str) else p for p in parts]
    return pc.binary_join_element_wise(*pieces, _lit(""))


def _shown(raw: pd.Series, positions: np.ndarray) -> pa.Array:
    """Offending values as received, quoted and cut short for the reason text."""
    text = _to_arrow_text(raw.iloc[positions])
    cut = _join(pc.utf8_slice_codeunits(text, 0, _VALUE_WIDTH - 1), "…")
    text = pc.if_else(pc.greater(pc.utf8_length(text), _VALUE_WIDTH), cut, text)
    return pc.fill_null(_join("'", text, "'"), _lit("null"))


def _row_text(positions: np.ndarray) -> pa.Array:
    return pa.array(positions, pa.int64()).cast(_TEXT)


def _bound_text(column: Column, bound: float | datetime) -> str:
    if isinstance(bound, datetime):
        stamp = pd.Timestamp(bound).tz_convert("UTC")
        return str(stamp.date()) if column.type == "date" else stamp.isoformat()
    return f"{bound:g}"


def _bound_ns(column: Column, bound: datetime) -> int:
    stamp = pd.Timestamp(bound).tz_convert("UTC")
    if column.type == "date":
        stamp = stamp.tz_localize(None)
    return int(stamp.as_unit("ns").value)


def _allowed_mask(column: Column, typed: _Typed) -> np.ndarray:
    allowed = list(column.allowed or ())
    if column.type == "string":
        value_set = pa.array([str(v) for v in allowed], type=pa.large_string())
        return _np_bool(pc.is_in(typed.text, value_set=value_set))
    reference = _coerce(pd.Series(allowed, dtype=object), column)
    return np.isin(typed.cmp, reference.cmp[reference.valid])


def _regex_mask(pattern: str, typed: _Typed) -> np.ndarray:
    try:
        return _np_bool(pc.match_substring_regex(typed.text, f"^(?:{pattern})$"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # not RE2 syntax: Python's re
        compiled = re.compile(pattern)
        return typed.values.astype(object).map(
            lambda v: bool(compiled.fullmatch(v)), na_action="ignore"
        ).fillna(False).to_numpy(dtype=bool)


def _column_checks(column: Column, raw: pd.Series, typed: _Typed, *, key: bool,
                   now_ns: int) -> list[_Check]:
    name, valid = column.name, typed.valid
    checks = [_Check("type", name, typed.bad, lambda p: _join(
        f"{name}: ", _shown(raw, p), f" is not {_TYPE_WORDS[column.type]}"))]
    if not column.nullable or key:
        why = "a key column" if key else "not nullable"
        checks.append(_Check("not_null", name, typed.null,
                             lambda p: f"{name}: null, but the column is {why}"))
    if column.min is not None or column.max is not None:
        low = high = np.zeros(len(valid), dtype=bool)
        values = typed.cmp
        for bound, side in ((column.min, "low"), (column.max, "high")):
            if bound is None:
                continue
            limit = _bound_ns(column, bound) if isinstance(bound, datetime) else bound
            if side == "low":
                low = valid & (values < limit)
            else:
                high = valid & (values > limit)
        low_text = "" if column.min is None else f" below min {_bound_text(column, column.min)}"
        high_text = "" if column.max is None else f" above max {_bound_text(column, column.max)}"

        def describe_range(p: np.ndarray, low: np.ndarray = low) -> pa.Array:
            side = pc.if_else(pa.array(low[p]), _lit(low_text), _lit(high_text))
            return _join(f"{name}: ", _shown(raw, p), side)

        checks.append(_Check("range", name, low | high, describe_range))
    if column.allowed is not None:
        shown = ", ".join(repr(v) for v in column.allowed[:5])
        shown += ", …" if len(column.allowed) > 5 else ""
        mask = valid & ~_allowed_mask(column, typed)
        checks.append(_Check("allowed", name, mask, lambda p: _join(
            f"{name}: ", _shown(raw, p), f" is not one of {shown}")))
    if column.regex is not None:
        mask = valid & ~_regex_mask(column.regex, typed)
        checks.append(_Check("regex", name, mask, lambda p: _join(
            f"{name}: ", _shown(raw, p), f" does not match /{column.regex}/")))
    if column.not_in_future:
        if column.type == "date":
            limit, when = now_ns - now_ns % _DAY_NS, "after today"
        else:
            limit, when = now_ns, "in the future"
        checks.append(_Check("not_in_future", name, valid & (typed.cmp > limit), lambda p: _join(
            f"{name}: ", _shown(raw, p), f" is {when}")))
    if column.unique:
        repeat, first = _repeats(np.where(valid, _codes(typed.values), -1))
        checks.append(_Check("unique", name, repeat, lambda p: _join(
            f"{name}: ", _shown(raw, p), " repeats row ", _row_text(first[p]))))
    return checks


def _reference_check(ref: Any, raw: pd.Series, typed: _Typed, column: Column,
                     keys: Iterable[Any]) -> list[_Check]:
    keys = list(keys)
    if column.type == "string":
        try:
            value_set = pa.array(keys, type=pa.large_string(), from_pandas=True)
        except (pa.ArrowTypeError, pa.ArrowInvalid):  # numeric ids: compare their text
            value_set = _to_arrow_text(pd.Series(keys, dtype=object))
        found = _np_bool(pc.is_in(typed.text, value_set=value_set))
    else:
        known = _coerce(pd.Series(keys, dtype=object), column)
        found = pd.Series(typed.cmp).isin(known.cmp[known.valid]).to_numpy()
    mask = typed.valid & ~found
    return [_Check("reference", ref.column, mask, lambda p: _join(
        f"{ref.column}: ", _shown(raw, p), f" not found in {ref.label}"))]


def _duplicate_checks(frame: pd.DataFrame, contract: Contract, typed: dict[str, _Typed]
                      ) -> list[_Check]:
    n = len(frame)
    # exact duplicates share their key and their numeric values: narrow the rows to compare
    # exactly by the key groups first, then (if still many) by a hash of the numeric columns
    candidates = np.ones(n, dtype=bool)
    key_codes = None
    if contract.key and all(name in typed for name in contract.key):
        # typed values are null wherever a value is null or unparseable: codes -1 there
        key_codes = _combine([_codes(typed[name].values) for name in contract.key])
        candidates &= _in_groups(key_codes)
    if candidates.sum() > 0.05 * n:
        prefilter = _hash_prefilter(typed)
        if prefilter is not None:
            candidates &= prefilter

    exact = np.zeros(n, dtype=bool)
    exact_first = np.full(n, -1, dtype="int64")
    subset = np.flatnonzero(candidates)
    if subset.size:
        parts = []
        for name in frame.columns:
            if name in typed:
                t = typed[name]
                parts.append(_codes(t.values.iloc[subset]))
                if t.bad[subset].any():  # unparseable values compare as received
                    parts.append(_codes(frame[name].iloc[subset].to_numpy(dtype=object)))
            else:
                parts.append(_codes(frame[name].iloc[subset].to_numpy(dtype=object)))
        if parts:
            # nulls compare equal here: give them a code of their own
            codes = _combine([_dense(np.where(c < 0, c.max(initial=-1) + 1, c)) for c in parts])
            repeat, first = _repeats(codes)
            exact[subset] = repeat
            exact_first[subset[repeat]] = subset[first[repeat]]

    checks = [_Check("duplicate", "", exact, lambda p: _join(
        "exact duplicate of row ", _row_text(exact_first[p])))]
    if key_codes is not None:
        repeat, first = _repeats(key_codes)
        key_dup = repeat & ~exact
        key_name = "+".join(contract.key)

        def describe_key(p: np.ndarray) -> pa.Array:
            shown = pc.binary_join_element_wise(
                *[_shown(frame[name], p) for name in contract.key], _lit(", "))
            return _join(f"key ({', '.join(contract.key)}) = (", shown, ") repeats row ",
                         _row_text(first[p]))

        checks.append(_Check("duplicate_key", key_name, key_dup, describe_key))
    return checks


# ---------------------------------------------------------------------------------------------
# schema


def _normalised(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _fit(raw: pd.Series, column: Column, now_ns: int) -> float:
    """Share of a sample of present values that would pass `column`'s value rules."""
    sample = raw.iloc[:2000]
    typed = _coerce(sample, column)
    present = ~typed.null
    if not present.any():
        return 0.0
    failing = np.zeros(len(sample), dtype=bool)
    for check in _column_checks(column, sample, typed, key=False, now_ns=now_ns):
        if check.rule not in ("not_null", "unique"):
            failing |= check.mask
    return float((present & ~failing).sum() / present.sum())


def _schema(frame: pd.DataFrame, contract: Contract, now_ns: int) -> list[SchemaIssue]:
    declared = {column.name: column for column in contract.columns}
    absent = [name for name in declared if name not in frame.columns]
    originals = {str(name): name for name in frame.columns if name not in declared}
    unexpected = list(originals)
    alone = len(absent) == 1 and len(unexpected) == 1
    pairs = []
    for missing in absent:
        for extra in unexpected:
            similarity = difflib.SequenceMatcher(
                None, _normalised(missing), _normalised(extra)).ratio()
            if similarity < 0.5 and not alone:
                continue
            fit = _fit(frame[originals[extra]], declared[missing], now_ns)
            if fit >= 0.9:
                pairs.append((similarity + fit, missing, extra, fit))
    renamed: dict[str, str] = {}
    fits: dict[str, float] = {}
    for _, missing, extra, fit in sorted(pairs, reverse=True):
        if missing not in renamed and extra not in renamed.values():
            renamed[missing], fits[missing] = extra, fit

    issues = []
    for missing in absent:
        if missing in renamed:
            extra = renamed[missing]
            issues.append(SchemaIssue(
                "renamed", missing, True,
                f"schema break: column {missing!r} looks renamed upstream to {extra!r} "
                f"({missing!r} is missing, {extra!r} is new and {fits[missing]:.0%} of its "
                f"values fit {missing!r}); map it back at the source or update the contract",
                renamed_to=extra))
        elif declared[missing].required:
            issues.append(SchemaIssue(
                "missing", missing, True,
                f"schema break: required column {missing!r} is missing from the input"))
    for extra in unexpected:
        if extra not in renamed.values():
            issues.append(SchemaIssue(
                "unexpected", extra, not contract.allow_extra_columns,
                f"column {extra!r} is not in the contract"
                + ("" if contract.allow_extra_columns else " (schema break: extra columns are "
                   "not allowed)")))
    return issues


# ---------------------------------------------------------------------------------------------
# dataset-level checks


def _band(values: list[float], k: float, floor: float) -> tuple[float, float]:
    median = float(np.median(values))
    mad = float(np.median(np.abs(np.asarray(values) - median)))
    width = k * max(mad, floor)
    return median - width, median + width


def _day_counts(typed: _Typed | None) -> np.ndarray:
    """Rows per event day of a temporal column (unparsed and null times left out)."""
    if typed is None or typed.cmp is None:
        return np.zeros(0, dtype=np.int64)
    known = typed.cmp[~(typed.null | typed.bad)]
    return np.unique(known // _DAY_NS, return_counts=True)[1]


def _days_covered(day_counts: np.ndarray, history: list[DatasetStats]) -> int:
    """Event days in a batch that hold at least a quarter of a typical day's rows (of history,
    or of the batch's busiest day): a day blocked by the gate arrives again with the next one,
    and two days' rows must not look like a volume spike, while a few late events from an
    earlier day do not halve the rate."""
    if not len(day_counts):
        return 1
    typical = (float(np.median([h.rows / h.days for h in history])) if history
               else float(day_counts.max()))
    return max(1, int((day_counts >= 0.25 * typical).sum()))


def _volume(stats: DatasetStats, history: list[DatasetStats], k: float) -> list[Anomaly]:
    if len(history) < MIN_HISTORY:
        return []
    anomalies = []
    counts = [h.rows / h.days for h in history]
    # a floor on MAD: a count's own (Poisson) noise, so a perfectly steady history does not
    # flag a few rows' difference, nor a day of 30 rows one of 36
    typical = float(np.median(counts))
    low, high = _band(counts, k, max(1.0, 0.01 * typical, math.sqrt(typical)))
    per_day = stats.rows / stats.days
    if not low <= per_day <= high:
        seen = (f"{stats.rows} rows" if stats.days == 1
                else f"{stats.rows} rows over {stats.days} days ({per_day:.0f} a day)")
        anomalies.append(Anomaly(
            "volume", None, per_day, max(low, 0.0), high,
            f"{seen}, expected {max(low, 0):.0f}–{high:.0f}{'' if stats.days == 1 else ' a day'}"
            f" (median ± {k:g}·MAD of the last {len(history)} runs)"))
    for name, rate in stats.null_rates.items():
        past = [h.null_rates[name] for h in history if name in h.null_rates]
        if len(past) < MIN_HISTORY:
            continue
        # a floor on MAD: the rate's own sampling noise on this many rows, so a batch of a
        # hundred rows is not flagged for two nulls where a steady history had one, nor a
        # batch of thirty for its one null where history had none
        rows = max(stats.rows, 1)
        typical = min(max(float(np.median(past)), 1 / rows), 0.5)
        noise = math.sqrt(typical * (1 - typical) / rows)
        low, high = _band(past, k, max(0.002, noise))
        if not low <= rate <= high:
            anomalies.append(Anomaly(
                "null_rate", name, rate, max(low, 0.0), min(high, 1.0),
                f"{name}: null rate {rate:.1%}, expected {max(low, 0):.1%}–{min(high, 1):.1%} "
                f"(median ± {k:g}·MAD of the last {len(past)} runs)"))
    return anomalies


def _freshness(contract: Contract, typed: dict[str, _Typed], keep: np.ndarray,
               now: datetime) -> list[Anomaly]:
    rule = contract.freshness
    if rule is None:
        return []
    column = contract.column(rule.column)
    t = typed.get(rule.column)
    usable = keep & t.valid if t is not None else np.zeros(0, dtype=bool)
    max_age = rule.max_age.total_seconds()
    if not usable.any():
        return [Anomaly("freshness", rule.column, float("inf"), None, max_age,
                        f"{rule.column}: no valid values, so the data's freshness is unknown "
                        f"(max age {rule.max_age})")]
    newest_ns = int(t.cmp[usable].max())
    if column.type == "date":  # a date counts as fresh until the end of that day
        newest_ns += _DAY_NS
    newest = pd.Timestamp(newest_ns, unit="ns", tz="UTC")
    age = pd.Timestamp(now) - newest
    if age.total_seconds() <= max_age:
        return []
    return [Anomaly("freshness", rule.column, age.total_seconds(), None, max_age,
                    f"{rule.column}: newest value {newest.isoformat()} is {age} old, "
                    f"more than the allowed {rule.max_age}")]


def _outliers(contract: Contract, typed: dict[str, _Typed], keep: np.ndarray) -> list[
        OutlierFlag]:
    flags = []
    for column in contract.columns:
        t = typed.get(column.name)
        if column.outliers is None or t is None:
            continue
        usable = keep & t.valid
        if usable.sum() < 4:
            continue
        values = t.cmp[usable].astype("float64")
        if column.outliers == "iqr":
            q1, q3 = np.percentile(values, [25, 75])
            low, high = q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1)
        else:
            mean, std = float(values.mean()), float(values.std())
            low, high = mean - 3 * std, mean + 3 * std
        flagged = (values < low) | (values > high)
        rows = np.flatnonzero(usable)[flagged]
        flags.append(OutlierFlag(column.name, column.outliers, int(rows.size), float(low),
                                 float(high), rows))
    return flags


# ---------------------------------------------------------------------------------------------
# the gate


def _gate(contract: Contract, score: float, rules: pd.DataFrame, rule_rates: dict[str, float],
          issues: list[SchemaIssue], anomalies: list[Anomaly]) -> list[str]:
    gate, reasons = contract.gate, []
    if not gate.allow_schema_break:
        reasons += [issue.detail for issue in issues if issue.breaking]
    if score < gate.min_score:
        worst = rules[rules.failed_rows > 0].sort_values("failed_rows", ascending=False).head(3)
        named = ", ".join(
            f"{r.rule}:{r.column}" if r.column else r.rule for r in worst.itertuples()
        )
        reasons.append(f"score {score:.2f} below minimum {gate.min_score:g}"
                       + (f" (most failures: {named})" if named else ""))
    for rule, limit in (gate.max_rule_failure_rate or {}).items():
        rate = rule_rates.get(rule, 0.0)
        if rate > limit:
            reasons.append(f"rule {rule} failed on {rate:.2%} of rows, above the limit "
                           f"{limit:.2%}")
    if not gate.allow_anomalies:
        reasons += [f"{a.kind} anomaly: {a.detail}" for a in anomalies]
    return reasons


# ---------------------------------------------------------------------------------------------
# the engine


def _map(work: Callable[[Any], Any], items: list[Any], rows: int) -> list[Any]:
    """`work` over `items`, on threads for big frames: Arrow kernels and factorising release
    the GIL, so columns are checked side by side."""
    workers = min(len(items), os.cpu_count() or 1, MAX_THREADS)
    if rows < PARALLEL_ROWS or workers < 2:
        return [work(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="validate") as pool:
        return list(pool.map(work, items))


def _utc(now: datetime) -> datetime:
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def _reference_keys(references: dict[str, Any] | None, ref: Any) -> Any:
    if not references:
        return None
    for name in (ref.label, ref.dataset):
        if name in references:
            return references[name]
    return None


def validate(frame: pd.DataFrame, contract: Contract, *,
             references: dict[str, Any] | None = None,
             history: list[DatasetStats] | None = None,
             time_column: str | None = None,
             now: datetime) -> ValidationResult:
    """Check `frame` against `contract`: typed clean rows, quarantined rows with reasons, scores,
    schema issues, anomalies against `history`, and the gate's verdict. With `time_column`,
    volume is compared per day of events the batch covers.

    `references` maps `dataset` (or `dataset.ref_column`) to the set of keys that exist there;
    a reference whose keys are not given is skipped with a warning. `now` anchors freshness and
    `not_in_future`; naive datetimes are UTC.
    """
    if frame.columns.has_duplicates:
        repeated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
        raise IngestionError(f"dataset {contract.dataset!r}: input has duplicate column names "
                             f"{repeated}; rename them at the source before validating")
    now = _utc(now)
    now_ns = int(pd.Timestamp(now).as_unit("ns").value)
    n = len(frame)
    index = frame.index
    warnings: list[str] = []

    issues = _schema(frame, contract, now_ns)
    present = [column for column in contract.columns if column.name in frame.columns]
    raws = {column.name: frame[column.name] for column in present}

    def prepare(column: Column) -> tuple[_Typed, list[_Check]]:
        typed = _coerce(raws[column.name], column)
        return typed, _column_checks(column, raws[column.name], typed,
                                     key=column.name in contract.key, now_ns=now_ns)

    typed: dict[str, _Typed] = {}
    checks: list[_Check] = []
    for column, (t, column_checks) in zip(present, _map(prepare, present, n), strict=True):
        typed[column.name] = t
        checks += column_checks

    tasks: list[Callable[[], list[_Check]]] = []
    for ref in contract.references:
        if ref.column not in typed:
            continue
        keys = _reference_keys(references, ref)
        if keys is None:
            warnings.append(f"reference {ref.column} -> {ref.label} not checked: "
                            f"no keys given for {ref.dataset!r}")
            continue
        tasks.append(partial(_reference_check, ref, raws[ref.column], typed[ref.column],
                             contract.column(ref.column), keys))
    tasks.append(partial(_duplicate_checks, frame, contract, typed))
    for found in _map(lambda task: task(), tasks, n):
        checks += found

    failing = np.zeros(n, dtype=bool)
    for check in checks:
        failing |= check.mask
    keep = ~failing

    clean_columns = {}
    for column in contract.columns:
        t = typed.get(column.name) or _empty(column, n, index)
        clean_columns[column.name] = t.values
    clean = pd.DataFrame(clean_columns, index=index)
    if failing.any():
        clean = clean.iloc[np.flatnonzero(keep)]
    quarantine = _quarantine(frame, checks, failing)

    counts = [(c.rule, c.column, int(c.mask.sum())) for c in checks]
    rules = pd.DataFrame(counts, columns=["rule", "column", "failed_rows"])
    rules["failure_rate"] = rules["failed_rows"] / n if n else 0.0
    rule_rates: dict[str, float] = {}
    for check in checks:
        rule_rates[check.label] = float(check.mask.mean()) if n else 0.0
    by_rule: dict[str, np.ndarray] = {}
    for check in checks:
        by_rule[check.rule] = by_rule.get(check.rule, np.zeros(n, dtype=bool)) | check.mask
    for rule, mask in by_rule.items():
        rule_rates[rule] = float(mask.mean()) if n else 0.0
    rule_scores = {rule: 100.0 * (1 - rule_rates[rule]) for rule in by_rule}
    score = 100.0 * keep.sum() / n if n else 100.0

    past = [h for h in (history or []) if h.dataset == contract.dataset]
    stats = DatasetStats(
        dataset=contract.dataset, rows=n, validated_at=now, contract_version=contract.version,
        # an empty frame has no null rates: it must not look like a column emptied out
        null_rates={name: float(t.null.mean()) for name, t in typed.items()} if n else {},
        days=_days_covered(_day_counts(typed.get(time_column or "")), past),
    )
    anomalies = _volume(stats, past, contract.volume_mad_k)
    anomalies += _freshness(contract, typed, keep, now)
    outliers = _outliers(contract, typed, keep)
    gate_reasons = _gate(contract, score, rules, rule_rates, issues, anomalies)
    for rule in contract.gate.max_rule_failure_rate or {}:
        if rule not in rule_rates:
            warnings.append(f"gate limit on {rule!r} not applied: that check did not run "
                            "(column absent, or no reference keys given)")
    for reason in gate_reasons:
        log.warning("%s: gate: %s", contract.dataset, reason)
    return ValidationResult(
        dataset=contract.dataset, contract_version=contract.version, rows=n, clean=clean,
        quarantine=quarantine, rules=rules, score=float(score), rule_scores=rule_scores,
        schema_issues=issues, anomalies=anomalies, outliers=outliers, stats=stats,
        gate_passed=not gate_reasons, gate_reasons=gate_reasons, warnings=warnings,
    )


def _beside_bookkeeping(frame: pd.DataFrame) -> pd.DataFrame:
    """The input's own `_row`, `_rules` or `_reason` columns renamed `<name>.input`, so that
    the quarantine's bookkeeping does not overwrite values as received."""
    taken = set(map(str, frame.columns))
    renamed = {}
    for name in ("_row", "_rules", "_reason"):
        if name in taken:
            moved = f"{name}.input"
            while moved in taken:
                moved += ".input"
            renamed[name] = moved
            taken.add(moved)
    return frame.rename(columns=renamed)


def _quarantine(frame: pd.DataFrame, checks: list[_Check], failing: np.ndarray) -> pd.DataFrame:
    """Failing rows as received, with `_row`, `_rules` and `_reason`. Reasons are built in
    Arrow: each check's texts for its rows, then joined per row in check order."""
    rows = np.flatnonzero(failing)
    quarantine = _beside_bookkeeping(frame.iloc[rows].copy())
    where, which, texts = [], [], []
    for i, check in enumerate(checks):
        selected = np.flatnonzero(check.mask[rows])
        if not selected.size:
            continue
        reason = check.describe(rows[selected])
        if isinstance(reason, str):
            reason = pa.array(np.full(selected.size, reason, dtype=object), _TEXT)
        where.append(selected)
        which.append(np.full(selected.size, i))
        texts.append(reason)
    quarantine["_row"] = rows.astype("int64")
    if not texts:
        quarantine["_rules"] = quarantine["_reason"] = pd.Series(dtype="string[pyarrow]")
        return quarantine
    position = np.concatenate(where)
    order = np.argsort(position, kind="stable")  # per row, checks stay in declaration order
    offsets = pa.array(np.concatenate([[0], np.cumsum(np.bincount(position,
                                                                  minlength=rows.size))]))
    labels = pa.array([check.label for check in checks], _TEXT).take(
        pa.array(np.concatenate(which)[order]))
    reasons = pa.concat_arrays(texts).take(pa.array(order))
    for name, values, separator in (("_rules", labels, ";"), ("_reason", reasons, "; ")):
        joined = pc.binary_join(pa.LargeListArray.from_arrays(offsets, values), _lit(separator))
        quarantine[name] = pd.arrays.ArrowStringArray(joined)
    return quarantine
