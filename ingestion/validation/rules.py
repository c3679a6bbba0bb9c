"""The per-row rules: type, not_null, range, allowed, regex, not_in_future, unique, reference,
duplicate and duplicate_key, each a `Check` holding the failing rows and their reasons.

Duplicate rows are judged on the coerced values (`12.50` equals `12.5`), keeping the first
occurrence. Loops run per column or rule, never per row, except a regex RE2 cannot compile
(look-arounds), which falls back to Python's `re` value by value.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from tideline.ingestion.contracts import Column, Contract
from tideline.ingestion.privacy import mask_text
from tideline.ingestion.validation.coercion import (
    DAY_NS,
    Typed,
    coerce,
    np_bool,
    to_arrow_text,
)

TEXT = pa.large_string()
_TYPE_WORDS = {"string": "a string", "int": "an int", "float": "a float",
               "timestamp": "a timestamp", "date": "a date", "bool": "a bool"}
_VALUE_WIDTH = 60


@dataclass
class Check:
    rule: str
    column: str
    mask: np.ndarray
    describe: Callable[[np.ndarray], pa.Array | str]
    """Reason text for the given failing positions (one text for all, or one per position)."""

    @property
    def label(self) -> str:
        return f"{self.rule}:{self.column}" if self.column else self.rule


# ---------------------------------------------------------------------------------------------
# reason text, built in Arrow


def lit(text: str) -> pa.Scalar:
    return pa.scalar(text, TEXT)


def _join(*parts: str | pa.Array) -> pa.Array:
    """Concatenate text pieces row by row, in Arrow (no Python string per row)."""
    pieces = [lit(p) if isinstance(p, str) else p for p in parts]
    return pc.binary_join_element_wise(*pieces, lit(""))


def _shown(raw: pd.Series, positions: np.ndarray, pii: str | None = None) -> pa.Array:
    """Offending values as received, quoted and cut short for the reason text; of a column
    tagged `pii` (its kind), their digests instead (`tideline.ingestion.privacy`)."""
    text = to_arrow_text(raw.iloc[positions])
    if pii is not None:
        return pc.fill_null(mask_text(text, pii), lit("null"))
    cut = _join(pc.utf8_slice_codeunits(text, 0, _VALUE_WIDTH - 1), "…")
    text = pc.if_else(pc.greater(pc.utf8_length(text), _VALUE_WIDTH), cut, text)
    return pc.fill_null(_join("'", text, "'"), lit("null"))


def _row_text(positions: np.ndarray, numbers: np.ndarray | None = None) -> pa.Array:
    """Rows named by their input numbers (`numbers` at `positions`, or the positions)."""
    rows = positions if numbers is None else numbers[positions]
    return pa.array(rows, pa.int64()).cast(TEXT)


def _bound_text(column: Column, bound: float | datetime) -> str:
    if isinstance(bound, datetime):
        stamp = pd.Timestamp(bound).tz_convert("UTC")
        return str(stamp.date()) if column.type == "date" else stamp.isoformat()
    return f"{bound:g}"


# ---------------------------------------------------------------------------------------------
# row codes, for unique values and duplicate rows


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


def _among(rows: np.ndarray, codes_of: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """The codes `codes_of` gives the positions of `rows` (a mask), -1 at the other rows:
    still dense in order of first appearance."""
    codes = np.full(len(rows), -1, dtype=np.int64)
    positions = np.flatnonzero(rows)
    if positions.size:
        codes[positions] = codes_of(positions)
    return codes


def _key_codes(key: list[Typed], rows: np.ndarray | None = None) -> np.ndarray:
    """Dense first-appearance codes of the key's values; of `rows` (a mask) alone if given,
    -1 elsewhere. A one-column key of distinct, comparable values (an export's id) has codes
    0..n-1: a sort tells, at a third of the cost of hashing every value."""
    if rows is not None and not rows.all():
        return _among(rows, lambda positions: _key_codes([typed.rows(positions)
                                                          for typed in key]))
    if len(key) == 1 and key[0].cmp is not None and key[0].valid.all():
        ordered = np.sort(key[0].cmp)
        if (ordered[1:] != ordered[:-1]).all():
            return np.arange(len(ordered), dtype=np.int64)
    return _combine([_codes(typed.values) for typed in key])


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


MIX = np.uint64(1_099_511_628_211)
"""Multiplier folding one column's hashes into a row's: `row * MIX ^ column`."""


def typed_hash(typed: Typed) -> np.ndarray:
    """Coerced values hashed (equal values, equal hashes); nulls and unparsed values (null once
    coerced) alike."""
    valid = typed.valid
    if typed.cmp is not None:
        values = pd.util.hash_array(np.where(valid, typed.cmp, 0))
    else:
        text = np.asarray(typed.text.to_numpy(zero_copy_only=False), dtype=object)
        values = pd.util.hash_array(np.where(valid, text, ""))
    return values ^ valid.astype(np.uint64)


def _hash_prefilter(typed: dict[str, Typed]) -> np.ndarray | None:
    """Rows that could be exact duplicates, judged by a cheap hash of the numeric and temporal
    columns: equal rows have equal hashes, so rows with a unique hash need no exact check."""
    columns = [t for t in typed.values() if t.cmp is not None]
    if not columns:
        return None
    combined = np.zeros(len(columns[0].cmp), dtype="uint64")
    for t in columns:
        combined = combined * MIX ^ typed_hash(t)
    return pd.Series(combined).duplicated(keep=False).to_numpy()


# ---------------------------------------------------------------------------------------------
# the checks


def _bound_ns(column: Column, bound: datetime) -> int:
    stamp = pd.Timestamp(bound).tz_convert("UTC")
    if column.type == "date":
        stamp = stamp.tz_localize(None)
    return int(stamp.as_unit("ns").value)


def _allowed_mask(column: Column, typed: Typed) -> np.ndarray:
    allowed = list(column.allowed or ())
    if column.type == "string":
        value_set = pa.array([str(v) for v in allowed], type=pa.large_string())
        return np_bool(pc.is_in(typed.text, value_set=value_set))
    reference = coerce(pd.Series(allowed, dtype=object), column)
    return np.isin(typed.cmp, reference.cmp[reference.valid])


def _regex_mask(pattern: str, typed: Typed) -> np.ndarray:
    try:
        return np_bool(pc.match_substring_regex(typed.text, f"^(?:{pattern})$"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # not RE2 syntax: Python's re
        compiled = re.compile(pattern)
        return typed.values.astype(object).map(
            lambda v: bool(compiled.fullmatch(v)), na_action="ignore"
        ).fillna(False).to_numpy(dtype=bool)


def column_checks(column: Column, raw: pd.Series, typed: Typed, *, key: bool,
                  now_ns: int, numbers: np.ndarray | None = None,
                  repeating: np.ndarray | None = None) -> list[Check]:
    """The checks of one column's own rules, `raw` as received and `typed` coerced from it;
    `numbers` are the rows' input numbers (their positions when not given); `repeating`, the
    only rows that may repeat a value or be repeated (a mask; all when not given)."""
    name, valid, pii = column.name, typed.valid, column.pii_kind
    checks = [Check("type", name, typed.bad, lambda p: _join(
        f"{name}: ", _shown(raw, p, pii), f" is not {_TYPE_WORDS[column.type]}"))]
    if not column.nullable or key:
        why = "a key column" if key else "not nullable"
        checks.append(Check("not_null", name, typed.null,
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
            side = pc.if_else(pa.array(low[p]), lit(low_text), lit(high_text))
            return _join(f"{name}: ", _shown(raw, p, pii), side)

        checks.append(Check("range", name, low | high, describe_range))
    if column.allowed is not None:
        shown = ", ".join(repr(v) for v in column.allowed[:5])
        shown += ", …" if len(column.allowed) > 5 else ""
        mask = valid & ~_allowed_mask(column, typed)
        checks.append(Check("allowed", name, mask, lambda p: _join(
            f"{name}: ", _shown(raw, p, pii), f" is not one of {shown}")))
    if column.regex is not None:
        mask = valid & ~_regex_mask(column.regex, typed)
        checks.append(Check("regex", name, mask, lambda p: _join(
            f"{name}: ", _shown(raw, p, pii), f" does not match /{column.regex}/")))
    if column.not_in_future:
        if column.type == "date":
            limit, when = now_ns - now_ns % DAY_NS, "after today"
        else:
            limit, when = now_ns, "in the future"
        checks.append(Check("not_in_future", name, valid & (typed.cmp > limit), lambda p: _join(
            f"{name}: ", _shown(raw, p, pii), f" is {when}")))
    if column.unique:
        compared = valid if repeating is None else valid & repeating
        repeat, first = _repeats(_among(compared, lambda p: _codes(typed.values.iloc[p])))
        checks.append(Check("unique", name, repeat, lambda p: _join(
            f"{name}: ", _shown(raw, p, pii), " repeats row ", _row_text(first[p], numbers))))
    return checks


def reference_values(column: Column, keys: Iterable[Any]) -> pa.Array | np.ndarray:
    """The keys that exist in referenced data as `reference_check` compares them: text for a
    string column, else the coerced values. Made once, checked against every batch."""
    keys = list(keys)
    if column.type == "string":
        try:
            return pa.array(keys, type=pa.large_string(), from_pandas=True)
        except (pa.ArrowTypeError, pa.ArrowInvalid):  # numeric ids: compare their text
            return to_arrow_text(pd.Series(keys, dtype=object))
    known = coerce(pd.Series(keys, dtype=object), column)
    return known.cmp[known.valid]


def reference_check(ref: Any, raw: pd.Series, typed: Typed, column: Column,
                    known: pa.Array | np.ndarray) -> list[Check]:
    """Values of `ref.column` not among `known`, the `reference_values` of the keys that exist
    in the referenced data."""
    if isinstance(known, pa.Array):
        found = np_bool(pc.is_in(typed.text, value_set=known))
    else:
        found = pd.Series(typed.cmp).isin(known).to_numpy()
    mask = typed.valid & ~found
    return [Check("reference", ref.column, mask, lambda p: _join(
        f"{ref.column}: ", _shown(raw, p, column.pii_kind), f" not found in {ref.label}"))]


def duplicate_checks(frame: pd.DataFrame, contract: Contract, typed: dict[str, Typed],
                     numbers: np.ndarray | None = None,
                     repeating: np.ndarray | None = None) -> list[Check]:
    """Exact duplicate rows, and rows repeating an earlier row's key with other values;
    `numbers` are the rows' input numbers (their positions when not given); `repeating`, the
    only rows that may repeat another or be repeated (a mask; all when not given)."""
    n = len(frame)
    # exact duplicates share their key and their numeric values: narrow the rows to compare
    # exactly by the key groups first, then (if still many) by a hash of the numeric columns
    candidates = np.ones(n, dtype=bool) if repeating is None else repeating.copy()
    key_codes = None
    if contract.key and all(name in typed for name in contract.key):
        # typed values are null wherever a value is null or unparseable: codes -1 there
        key_codes = _key_codes([typed[name] for name in contract.key], repeating)
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

    checks = [Check("duplicate", "", exact, lambda p: _join(
        "exact duplicate of row ", _row_text(exact_first[p], numbers)))]
    if key_codes is not None:
        repeat, first = _repeats(key_codes)
        key_dup = repeat & ~exact
        key_name = "+".join(contract.key)

        def describe_key(p: np.ndarray) -> pa.Array:
            shown = pc.binary_join_element_wise(
                *[_shown(frame[name], p, contract.column(name).pii_kind)
                  for name in contract.key], lit(", "))
            return _join(f"key ({', '.join(contract.key)}) = (", shown, ") repeats row ",
                         _row_text(first[p], numbers))

        checks.append(Check("duplicate_key", key_name, key_dup, describe_key))
    return checks
