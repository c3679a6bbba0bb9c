"""Churn labels as data, computed from the lake's clean activity tables (never from feature
columns): an entity active in the `active_days` before an as-of date t is an example at t, and
it churned when it has no activity at all in `[t, t + horizon_days)`."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
from tideline.core.errors import FeatureDefinitionError, ModelError
from tideline.features.definitions import Source
from tideline.features.engine import arrow_text
from tideline.features.expressions import evaluate, names_in
from tideline.features.materialize import as_of_time
from tideline.features.offline import read_source
from tideline.lake.base import Lake

DAY_NS = 86_400 * 10**9


@dataclass(frozen=True)
class ChurnLabel:
    """What churn means: no activity (an event in any `activity` source) for `horizon_days`."""

    activity: tuple[Source, ...]
    entity_key: str = "customer_id"
    horizon_days: int = 30
    active_days: int = 30
    """Who counts as a customer at t: activity in the days before t."""
    name: str = "churned"
    filter: str | None = None
    """Only the activity events matching this expression count (`event == 'payment'`: churn
    is no payment for `horizon_days`), in the activity sources' own columns."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "activity", tuple(self.activity))
        if self.filter is not None:
            try:
                names_in(self.filter, f"label {self.name!r} filter")
            except FeatureDefinitionError as exc:
                raise ModelError(str(exc)) from None
        for field, value in (("horizon_days", self.horizon_days),
                             ("active_days", self.active_days)):
            if not isinstance(value, int) or value <= 0:
                raise ModelError(f"label {self.name!r}: {field} must be a positive number of "
                                 f"days, got {value!r}")
        if not self.activity:
            raise ModelError(f"label {self.name!r} names no activity source")


@dataclass(frozen=True)
class Activity:
    """Every activity event's entity (as codes into `keys`) and time (UTC ns)."""

    keys: np.ndarray
    codes: np.ndarray
    times: np.ndarray

    @property
    def last_day(self) -> date:
        """The last day the data covers (the day of the newest event)."""
        return pd.Timestamp(int(self.times.max()), tz="UTC").date()


def load_activity(lake: Lake, ref: str, label: ChurnLabel) -> Activity:
    tables = []
    used = sorted(names_in(label.filter, "label filter")) if label.filter else []
    for source in label.activity:
        table = read_source(lake, ref, source, label.entity_key,
                            list(dict.fromkeys([label.entity_key, source.timestamp, *used])))
        if label.filter:
            frame = table.select(used).to_pandas(types_mapper=arrow_text)
            table = table.filter(pa.array(np.asarray(
                evaluate(label.filter, {c: frame[c] for c in used}), dtype=bool)))
        tables.append(pa.table({
            "key": table.column(label.entity_key),
            "t": table.column(source.timestamp).cast(pa.timestamp("ns", tz="UTC"))}))
    if len({t.schema.field("key").type for t in tables}) > 1:  # keys of one type, as the
        tables = [t.set_column(0, "key", t.column("key").cast(pa.string()))  # views join them
                  for t in tables]
    table = pa.concat_tables(tables).drop_null()
    if not len(table):
        raise ModelError(f"label {label.name!r}: the activity sources "
                         f"{', '.join(s.dataset for s in label.activity)} hold no events"
                         + (f" matching {label.filter!r}" if label.filter else ""))
    keys, codes = np.unique(table.column("key").to_numpy(zero_copy_only=False),
                            return_inverse=True)
    return Activity(keys=keys, codes=codes,
                    times=table.column("t").cast(pa.int64()).to_numpy())


def labelable_dates(activity: Activity, label: ChurnLabel, count: int, every_days: int = 7
                    ) -> list[date]:
    """The `count` latest as-of dates, `every_days` apart, whose whole horizon the data covers."""
    last = activity.last_day + timedelta(days=1) - timedelta(days=label.horizon_days)
    return [last - timedelta(days=every_days * k) for k in reversed(range(count))]


def active_at(activity: Activity, label: ChurnLabel, day: date) -> pd.DataFrame:
    """The entities active in the `active_days` before `day` (the customers to score then):
    `entity_key` and `as_of`."""
    t = as_of_time(day).value
    before = (activity.times >= t - label.active_days * DAY_NS) & (activity.times < t)
    return pd.DataFrame({label.entity_key: activity.keys[np.unique(activity.codes[before])],
                         "as_of": as_of_time(day)})


def label_examples(activity: Activity, label: ChurnLabel, as_of: Sequence[date]) -> pd.DataFrame:
    """One row per (entity active before t, t): `entity_key`, `as_of` (t's midnight UTC) and the
    label, 1 for churned. Refuses an as-of date whose horizon runs past the data."""
    end = as_of_time(activity.last_day + timedelta(days=1)).value
    frames = []
    for day in sorted(set(as_of)):
        t = as_of_time(day).value
        if t + label.horizon_days * DAY_NS > end:
            raise ModelError(
                f"label {label.name!r} as of {day} needs activity through "
                f"{day + timedelta(days=label.horizon_days - 1)}, but the data ends on "
                f"{activity.last_day}; pick an earlier date")
        before = (activity.times >= t - label.active_days * DAY_NS) & (activity.times < t)
        after = (activity.times >= t) & (activity.times < t + label.horizon_days * DAY_NS)
        active = np.unique(activity.codes[before])
        stayed = np.isin(active, activity.codes[after])
        frames.append(pd.DataFrame({label.entity_key: activity.keys[active],
                                    "as_of": as_of_time(day),
                                    label.name: (~stayed).astype(np.int8)}))
    return pd.concat(frames, ignore_index=True)
