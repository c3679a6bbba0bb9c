"""Durations in settings and project files: a `timedelta` written as text such as `7d` or `36h`,
as seconds, or in ISO 8601 (`P7D`)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, WithJsonSchema

_SHORTHAND = r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$"
_SHORTHAND_RE = re.compile(_SHORTHAND)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(value: Any) -> Any:
    """`30s`, `90m`, `36h`, `7d` or `2w` as a `timedelta`; anything else unchanged, for
    pydantic's own parsing (a number of seconds, ISO 8601 such as `P7D`)."""
    if isinstance(value, str) and (match := _SHORTHAND_RE.match(value)):
        amount, unit = match.groups()
        return timedelta(**{_UNITS[unit]: float(amount)})
    return value


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    WithJsonSchema({"anyOf": [
        {"type": "string", "pattern": _SHORTHAND},
        {"type": "string", "format": "duration"},
        {"type": "number"},
    ]}),
]
"""A `timedelta` field that also takes `7d`-style text (`parse_duration`)."""


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError(f"the duration must be positive, got {value}")
    return value


PositiveDuration = Annotated[Duration, AfterValidator(_positive)]
"""A `Duration` longer than zero."""
