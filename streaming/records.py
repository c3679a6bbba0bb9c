"""Stream messages to typed events, or to a dead-letter reason each.

A message is one JSON object, an event of the source: the entity key, the event time (ISO 8601
text), the event id and the columns the streamable views read. Every way a message can be
wrong gives it a reason and leaves the rest of its batch alone: not JSON, not an object, a
missing or non-text key or id, an event time that is not a timestamp or lies in the future, a
value of the wrong type, and what the dataset's contract forbids (a value not allowed, such as
an unknown event type; out of range; missing where not nullable). Work is per column, not per
message, except parsing the JSON.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa

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
    names = shape.schema.names
    frame = pd.DataFrame.from_records(records, columns=names) if records else pd.DataFrame(
        columns=names)
    problems = pd.Series(None, index=frame.index, dtype=object)
    columns = {}
    for field in shape.schema:
        columns[field.name] = _checked(frame[field.name], field, shape, problems, now_ns)
    bad = problems.notna().to_numpy()
    rejected += [(positions[k], problems.iloc[k]) for k in np.flatnonzero(bad)]
    rejected.sort()
    good = ~bad
    table = pa.table({name: pa.array(values[good], type=shape.schema.field(name).type,
                                     from_pandas=True) for name, values in columns.items()},
                     schema=shape.schema)
    return Decoded(events=table, positions=np.asarray(positions, dtype=np.int64)[good],
                   rejected=rejected)


def _note(problems: pd.Series, mask: np.ndarray, reason: pd.Series | str) -> None:
    """Record `reason` for the rows in `mask` that have no earlier problem."""
    fresh = mask & problems.isna().to_numpy()
    if fresh.any():
        problems[fresh] = reason[fresh] if isinstance(reason, pd.Series) else reason


def _shown(values: pd.Series) -> pd.Series:
    return values.map(lambda v: repr(v)[:80])


def _checked(raw: pd.Series, field: pa.Field, shape: EventShape, problems: pd.Series,
             now_ns: int) -> np.ndarray:
    """One column's values as numpy (for Arrow), noting each row's first problem."""
    name, kind = field.name, field.type
    rule = next((c for c in shape.contract.columns if c.name == name), None) if (
        shape.contract) else None
    missing = raw.isna().to_numpy()
    required = name in (shape.key, shape.timestamp, shape.id_column) or (
        rule is not None and not rule.nullable)
    if required:
        _note(problems, missing, f"missing {name}")
    if pa.types.is_timestamp(kind):
        text = raw.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
        _note(problems, ~missing & ~text, f"{name} is not a timestamp (ISO 8601 text): "
              + _shown(raw))
        stamps = pd.to_datetime(raw.where(text), utc=True, errors="coerce", format="ISO8601")
        ns = stamps.to_numpy(dtype="datetime64[ns]").view(np.int64)
        unparsed = text & stamps.isna().to_numpy()
        _note(problems, unparsed, f"{name} is not a timestamp: " + _shown(raw))
        future = ~stamps.isna().to_numpy() & (ns > now_ns + shape.max_future_ns)
        _note(problems, future, f"{name} is in the future: " + _shown(raw))
        return stamps.to_numpy(dtype="datetime64[ns]")
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        text = raw.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
        _note(problems, ~missing & ~text, f"{name} is not text: " + _shown(raw))
        if name in (shape.key, shape.id_column):
            _note(problems, text & (raw.where(text).str.len() == 0).to_numpy(dtype=bool),
                  f"missing {name} (empty)")
        if rule is not None and rule.allowed is not None:
            unknown = text & ~raw.isin(rule.allowed).to_numpy()
            _note(problems, unknown, f"unknown {name} " + _shown(raw) + f", not one of "
                  f"{', '.join(map(str, rule.allowed))}")
        return raw.where(text).to_numpy(dtype=object)
    if pa.types.is_boolean(kind):
        flags = raw.map(lambda v: isinstance(v, bool)).to_numpy(dtype=bool)
        _note(problems, ~missing & ~flags, f"{name} is not true/false: " + _shown(raw))
        return raw.where(flags).to_numpy(dtype=object)
    numbers = raw.map(lambda v: isinstance(v, int | float) and not isinstance(v, bool)
                      ).to_numpy(dtype=bool)
    _note(problems, ~missing & ~numbers, f"{name} is not a number: " + _shown(raw))
    values = pd.to_numeric(raw.where(numbers), errors="coerce").to_numpy(dtype=float)
    if pa.types.is_integer(kind):
        fractional = numbers & (values != np.round(values))
        _note(problems, fractional, f"{name} is not a whole number: " + _shown(raw))
    if rule is not None:
        low = -np.inf if rule.min is None else float(rule.min)  # type: ignore[arg-type]
        high = np.inf if rule.max is None else float(rule.max)  # type: ignore[arg-type]
        outside = numbers & ((values < low) | (values > high))
        _note(problems, outside, f"{name} out of range [{rule.min}, {rule.max}]: "
              + _shown(raw))
    return values  # whole numbers for integer columns once the bad rows are gone
