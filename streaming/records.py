"""Stream messages to typed events, or to a dead-letter reason each.

A message is one JSON object, an event of the source: the entity key, the event time (ISO 8601
text, or as the contract's `format` says: epoch numbers, a strftime pattern), the event id and
the columns the streamable views read. Every way a message can be wrong gives it a reason and
leaves the rest of its batch alone: not JSON, not an object, a missing or non-text key or id, an
event time that is not a timestamp or lies in the future, a value of the wrong type, and what
the dataset's contract forbids (a value not allowed, such as an unknown event type; out of
range; missing where not nullable).

Messages are parsed by orjson one by one (not by Arrow's JSON reader, which is faster on a
batch but crashed the process on a fuzzed payload: one poison message would then stop the
processor on every restart); columns are converted to Arrow whole, and only a column that does
not convert is gone through value by value to find the culprits. The rules run per column in
Arrow.
"""
from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from tideline.ingestion.contracts import Column, Contract
from tideline.ingestion.validation.coercion import coerce


@dataclass(frozen=True)
class EventShape:
    """What a good message holds."""

    schema: pa.Schema
    """The event table's columns and types (the event time as timestamp[ns, UTC])."""
    key: str
    timestamp: str
    id_column: str
    contract: Contract | None = None
    """The source dataset's contract: its allowed values, ranges and non-null columns apply."""
    max_future_ns: int = 5 * 60 * 10**9
    """How far past the wall clock an event time may be (clock skew)."""


@dataclass
class Decoded:
    events: pa.Table
    """The good messages' events, typed as the shape's schema, in message order."""
    positions: np.ndarray
    """Each event's message index in the batch."""
    rejected: list[tuple[int, str]]
    """(message index, reason) of the bad messages."""


def decode(payloads: Sequence[bytes], shape: EventShape, now_ns: int) -> Decoded:
    """The events of a batch of message payloads, and why each bad one is bad."""
    positions, rejected, records = _parse(payloads)
    raw = _columns(records, shape.schema.names)
    problems = np.full(len(positions), None, dtype=object)
    formatted = {c.name: c for c in shape.contract.columns if c.format is not None} if (
        shape.contract) else {}
    arrays = {field.name: _formatted(raw[field.name], formatted[field.name], field, problems)
              if field.name in formatted else _converted(raw[field.name], field)
              for field in shape.schema}
    for field in shape.schema:
        array = arrays[field.name]
        if isinstance(array, tuple):  # the column did not convert as a whole
            arrays[field.name] = array = _value_by_value(raw[field.name], field, problems)
        _check_rules(array, raw[field.name], field, shape, problems, now_ns)
    bad = problems != None  # noqa: E711 - element-wise
    rejected += [(positions[k], problems[k]) for k in np.flatnonzero(bad)]
    rejected.sort()
    good = pa.array(~bad)
    return Decoded(events=pa.table({name: array.filter(good) for name, array in arrays.items()},
                                   schema=shape.schema),
                   positions=np.asarray(positions, dtype=np.int64)[~bad], rejected=rejected)


def _parse(payloads: Sequence[bytes]) -> tuple[list[int], list[tuple[int, str]], list[dict]]:
    """The messages parsed (orjson, each on its own), the unparsable ones rejected: all at
    once, or one by one when any is not a JSON object."""
    try:
        records = list(map(orjson.loads, payloads))
    except orjson.JSONDecodeError:
        return _parse_each(payloads)
    if set(map(type, records)) - {dict}:
        return _parse_each(payloads)
    return list(range(len(records))), [], records


def _columns(records: list[dict], names: list[str]) -> dict[str, list]:
    """The records' values by column (None where a record lacks one): transposed in one go
    when every record has every column."""
    if not records:
        return {name: [] for name in names}
    try:
        rows = list(map(operator.itemgetter(*names), records))
    except KeyError:
        return {name: [r.get(name) for r in records] for name in names}
    columns = zip(*rows, strict=True) if len(names) > 1 else [rows]
    return {name: list(column) for name, column in zip(names, columns, strict=True)}


def _parse_each(payloads: Sequence[bytes]) -> tuple[list[int], list[tuple[int, str]],
                                                     list[dict]]:
    """Each message parsed on its own (orjson), the unparsable ones rejected."""
    positions, rejected, records = [], [], []
    for index, payload in enumerate(payloads):
        try:
            record = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            rejected.append((index, f"malformed JSON: {exc}"))
            continue
        if not isinstance(record, dict):
            rejected.append((index, f"expected a JSON object, got {type(record).__name__}"))
            continue
        records.append(record)
        positions.append(index)
    return positions, rejected, records


def _note(problems: np.ndarray, mask: np.ndarray, reason: Callable[[int], str]) -> None:
    """Record `reason(row)` for the rows in `mask` that have no earlier problem."""
    for row in np.flatnonzero(mask):
        if problems[row] is None:
            problems[row] = reason(row)


def _check_rules(array: pa.Array, raw: list, field: pa.Field, shape: EventShape,
                 problems: np.ndarray, now_ns: int) -> None:
    """Note each row's first broken rule: missing, in the future, empty key, not allowed,
    out of range. `raw` holds the values as sent."""
    name, kind = field.name, field.type

    def shown(row: int) -> str:
        return repr(raw[row])[:80]

    rule = next((c for c in shape.contract.columns if c.name == name), None) if (
        shape.contract) else None
    missing = array.is_null().to_numpy(zero_copy_only=False)
    if name in (shape.key, shape.timestamp, shape.id_column) or (
            rule is not None and not rule.nullable):
        sent = np.array([v is None for v in raw], dtype=bool)  # not a value that failed
        _note(problems, missing & sent, lambda _: f"missing {name}")
    present = ~missing
    if pa.types.is_timestamp(kind):
        future = pc.greater(array, pa.scalar(now_ns + shape.max_future_ns, kind))
        _note(problems, present & _flags(future),
              lambda row: f"{name} is in the future: {shown(row)}")
    elif _is_text(kind):
        if name in (shape.key, shape.id_column):
            _note(problems, present & _flags(pc.equal(array, "")),
                  lambda _: f"missing {name} (empty)")
        if rule is not None and rule.allowed is not None:
            known = pc.is_in(array, value_set=pa.array([str(a) for a in rule.allowed]))
            _note(problems, present & ~_flags(known), lambda row: (
                f"unknown {name} {shown(row)}, not one of "
                f"{', '.join(map(str, rule.allowed))}"))  # type: ignore[union-attr]
    elif rule is not None and (rule.min is not None or rule.max is not None):
        numbers = array.to_numpy(zero_copy_only=False).astype(float)
        low = -np.inf if rule.min is None else float(rule.min)  # type: ignore[arg-type]
        high = np.inf if rule.max is None else float(rule.max)  # type: ignore[arg-type]
        _note(problems, present & ((numbers < low) | (numbers > high)), lambda row: (
            f"{name} out of range [{rule.min}, {rule.max}]: {shown(row)}"))


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _flags(result: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return result.fill_null(False).to_numpy(zero_copy_only=False).astype(bool)


def _converted(values: list, field: pa.Field) -> pa.Array | tuple[()]:
    """The whole column in Arrow, or `()` when any value does not convert."""
    kind = field.type
    try:
        if pa.types.is_timestamp(kind):
            return pc.cast(pa.array(values, pa.string()), kind)  # zoned ISO 8601 only
        if pa.types.is_integer(kind) or pa.types.is_floating(kind):
            if bool in set(map(type, values)):
                return ()  # JSON true is no number
            return pc.cast(pa.array(values, pa.float64()), kind)  # safe: 1.5 is no integer
        return pa.array(values, kind)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        return ()


def _formatted(values: list, column: Column, field: pa.Field, problems: np.ndarray
               ) -> pa.Array:
    """A time column the contract gives a `format` (epoch numbers, a strftime pattern), read
    as batch ingestion reads it; a value not in it noted with the value."""
    typed = coerce(pd.Series(values, dtype=object), column)
    for row in np.flatnonzero(typed.bad):
        if problems[row] is None:
            problems[row] = (f"{field.name} is not a timestamp in format {column.format!r}: "
                             f"{repr(values[row])[:80]}")
    return pa.array(typed.values, field.type)


def _value_by_value(values: list, field: pa.Field, problems: np.ndarray) -> pa.Array:
    """Each value converted on its own, a failure noted with the value."""
    out: list = []
    for row, value in enumerate(values):
        converted, why = _one(value, field.type)
        if why is not None and problems[row] is None:
            problems[row] = f"{field.name} {why}: {repr(value)[:80]}"
        out.append(converted)
    return pa.array(out, field.type)


def _one(value: object, kind: pa.DataType) -> tuple[object, str | None]:
    """One value converted for an Arrow column of `kind`, or None and what is wrong."""
    if value is None:
        return None, None
    if pa.types.is_timestamp(kind):
        if not isinstance(value, str):
            return None, "is not a timestamp (ISO 8601 text)"
        try:
            stamp = pd.Timestamp(value)
        except (ValueError, OverflowError):
            return None, "is not a timestamp"
        if stamp is pd.NaT:
            return None, "is not a timestamp"
        return (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
                ), None  # naive times are UTC, as everywhere in tideline
    if _is_text(kind):
        return (value, None) if isinstance(value, str) else (None, "is not text")
    if pa.types.is_boolean(kind):
        return (value, None) if isinstance(value, bool) else (None, "is not true/false")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None, "is not a number"
    if pa.types.is_integer(kind):
        if value != int(value) or not -(2**63) <= value < 2**63:
            return None, "is not a whole number in range"
        return int(value), None
    return float(value), None
