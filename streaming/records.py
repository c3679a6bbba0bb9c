"""Stream messages to typed events, or to a dead-letter reason each.

A message is one JSON object, an event of the source: the entity key, the event time (ISO 8601
text), the event id and the columns the streamable views read. Every way a message can be
wrong gives it a reason and leaves the rest of its batch alone: not JSON, not an object, a
missing or non-text key or id, an event time that is not a timestamp or lies in the future, a
value of the wrong type, and what the dataset's contract forbids (a value not allowed, such as
an unknown event type; out of range; missing where not nullable). Work is per column in Arrow,
not per message, except parsing the JSON and finding the culprits in a column that does not
convert.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ingestion.contracts import Contract


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
    rejected: list[tuple[int, str]] = []
    records, positions = [], []
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
    problems = np.full(len(records), None, dtype=object)
    arrays = {field.name: _checked([r.get(field.name) for r in records], field, shape,
                                   problems, now_ns) for field in shape.schema}
    bad = problems != None  # noqa: E711 - element-wise
    rejected += [(positions[k], problems[k]) for k in np.flatnonzero(bad)]
    rejected.sort()
    good = pa.array(~bad)
    return Decoded(events=pa.table({name: array.filter(good) for name, array in arrays.items()},
                                   schema=shape.schema),
                   positions=np.asarray(positions, dtype=np.int64)[~bad], rejected=rejected)


def _note(problems: np.ndarray, mask: np.ndarray, reason: Callable[[int], str]) -> None:
    """Record `reason(row)` for the rows in `mask` that have no earlier problem."""
    for row in np.flatnonzero(mask):
        if problems[row] is None:
            problems[row] = reason(row)


def _shown(value: object) -> str:
    return repr(value)[:80]


def _checked(values: list, field: pa.Field, shape: EventShape, problems: np.ndarray,
             now_ns: int) -> pa.Array:
    """One column's values as an Arrow array of the field's type (null where unusable),
    noting each row's first problem. Converting the whole column in Arrow is the fast path;
    a column that does not convert is gone through value by value to find the culprits."""
    name, kind = field.name, field.type
    try:
        array = _converted(values, kind)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        array = _value_by_value(values, kind, name, problems)
    rule = next((c for c in shape.contract.columns if c.name == name), None) if (
        shape.contract) else None
    missing = array.is_null().to_numpy(zero_copy_only=False)
    if name in (shape.key, shape.timestamp, shape.id_column) or (
            rule is not None and not rule.nullable):
        raw = np.array([v is None for v in values], dtype=bool)  # not a value that failed
        _note(problems, missing & raw, lambda _: f"missing {name}")
    present = ~missing
    if pa.types.is_timestamp(kind):
        future = pc.greater(array, pa.scalar(now_ns + shape.max_future_ns, kind))
        _note(problems, present & _flags(future),
              lambda row: f"{name} is in the future: {_shown(values[row])}")
    elif pa.types.is_string(kind):
        if name in (shape.key, shape.id_column):
            _note(problems, present & _flags(pc.equal(array, "")),
                  lambda _: f"missing {name} (empty)")
        if rule is not None and rule.allowed is not None:
            known = pc.is_in(array, value_set=pa.array([str(a) for a in rule.allowed]))
            _note(problems, present & ~_flags(known), lambda row: (
                f"unknown {name} {_shown(values[row])}, not one of "
                f"{', '.join(map(str, rule.allowed))}"))  # type: ignore[union-attr]
    elif rule is not None and (rule.min is not None or rule.max is not None):
        numbers = array.to_numpy(zero_copy_only=False).astype(float)
        low = -np.inf if rule.min is None else float(rule.min)  # type: ignore[arg-type]
        high = np.inf if rule.max is None else float(rule.max)  # type: ignore[arg-type]
        _note(problems, present & ((numbers < low) | (numbers > high)), lambda row: (
            f"{name} out of range [{rule.min}, {rule.max}]: {_shown(values[row])}"))
    return array


def _flags(result: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return result.fill_null(False).to_numpy(zero_copy_only=False).astype(bool)


def _converted(values: list, kind: pa.DataType) -> pa.Array:
    """The whole column in Arrow; raises when any value does not convert."""
    if pa.types.is_timestamp(kind):
        return pc.cast(pa.array(values, pa.string()), kind)  # zoned ISO 8601 only
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        if any(isinstance(v, bool) for v in values):
            raise TypeError("a boolean is not a number")
        return pc.cast(pa.array(values, pa.float64()), kind)  # safe: 1.5 is no integer
    return pa.array(values, kind)


def _value_by_value(values: list, kind: pa.DataType, name: str, problems: np.ndarray
                    ) -> pa.Array:
    """The slow path: each value converted on its own, a failure noted with the value."""
    out: list = []
    for row, value in enumerate(values):
        converted, why = _one(value, kind)
        if why is not None and problems[row] is None:
            problems[row] = f"{name} {why}: {_shown(value)}"
        out.append(converted)
    return pa.array(out, kind)


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
    if pa.types.is_string(kind):
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
