"""Point-in-time retrieval from the offline store: each row of an entity table (entity key and
timestamp) gets, for every requested view, the values of that view's newest materialisation as
of a date at or before the row's timestamp (a table as of day d holds values computed from
events strictly before d's midnight UTC, so it is known from that moment on). Past the view's
TTL the row gets nulls. Rows come back in input order.

The join is columnar and bounded: per view, rows are grouped by the materialisation they fall
in, and each materialisation's table is read once (only the requested columns) and matched by
key with Arrow's hash lookup.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from tideline.core.errors import RetrievalError, UnknownFeature
from tideline.features.definitions import FeatureView
from tideline.features.materialize import as_of_time
from tideline.lake.base import Lake
from tideline.lake.tables import read_table

DAY_NS = 86_400 * 10**9


@dataclass(frozen=True)
class FeatureRef:
    """One requested feature: the view (at a version) it comes from and its output column."""

    view: FeatureView
    feature: str
    column: str


def resolve_features(views: Sequence[FeatureView], requested: Sequence[str]) -> list[FeatureRef]:
    """Turn `feature`, `view:feature` or `view:*` into references. A bare name that two views
    define is ambiguous (name the view); two requested features with one name come back as
    `view__feature` columns."""
    by_name = {view.name: view for view in views}
    refs: list[tuple[FeatureView, str]] = []
    for item in requested:
        view_name, _, feature = item.rpartition(":")
        if view_name:
            if view_name not in by_name:
                raise UnknownFeature(f"unknown feature view {view_name!r} in {item!r}; views: "
                                     f"{', '.join(sorted(by_name))}")
            view = by_name[view_name]
            names = view.feature_names if feature == "*" else [feature]
            for name in names:
                if name not in view.feature_names:
                    raise UnknownFeature(f"view {view_name!r} has no feature {name!r}")
                refs.append((view, name))
            continue
        owners = [view for view in views if feature in view.feature_names]
        if not owners:
            raise UnknownFeature(f"unknown feature {feature!r}; name it as `view:feature` "
                                 f"with a view of {', '.join(sorted(by_name))}")
        if len(owners) > 1:
            raise RetrievalError(f"feature {feature!r} is ambiguous: it is defined by "
                                 f"{', '.join(f'{v.name}:{feature}' for v in owners)}; name one")
        refs.append((owners[0], feature))
    seen = set()
    unique = [(v, f) for v, f in refs if (v.name, f) not in seen and not seen.add((v.name, f))]
    counts = Counter(f for _, f in unique)
    clashes = {f for f, n in counts.items() if n > 1}
    return [FeatureRef(view, feature, f"{view.name}__{feature}" if feature in clashes else
                       feature) for view, feature in unique]


def event_times(entity_df: pd.DataFrame, column: str) -> np.ndarray:
    """The entity table's timestamps as UTC nanoseconds. Time-zone-aware values in any zones are
    converted; naive values are taken as UTC; a mix of naive and aware values is refused (which
    instant a naive one means is a guess)."""
    if column not in entity_df.columns:
        raise RetrievalError(f"the entity table has no timestamp column {column!r} (it has "
                             f"{', '.join(map(str, entity_df.columns))}); pass "
                             "timestamp_column=... or add one")
    values = entity_df[column]
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        stamps = values.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(values):
        stamps = values.dt.tz_localize("UTC")
    else:
        aware = values.map(lambda v: getattr(v, "tzinfo", None) is not None
                           or (isinstance(v, str) and pd.Timestamp(v).tzinfo is not None))
        if aware.any() and not aware.all():
            raise RetrievalError(
                f"timestamp column {column!r} mixes values with and without a time zone (row "
                f"{int(np.flatnonzero(~aware.to_numpy())[0])} has none); give every value a "
                "zone, or none (then UTC is assumed)")
        try:
            stamps = pd.to_datetime(values, utc=True, format="mixed")
        except (ValueError, TypeError) as exc:
            raise RetrievalError(f"timestamp column {column!r}: {exc}") from exc
    if stamps.isna().any():
        raise RetrievalError(f"timestamp column {column!r} has {int(stamps.isna().sum())} "
                             "missing value(s); every row needs a time")
    return pd.DatetimeIndex(stamps).as_unit("ns").asi8


def view_prefix(view: FeatureView) -> str:
    return f"features/{view.name}/v={view.version}/"


def materialized_dates(lake: Lake, ref: str, view: FeatureView) -> list[date]:
    """The as-of dates a view (at its version) was materialised for at `ref`, oldest first."""
    prefix = view_prefix(view)
    days = {info.path[len(prefix) + len("as_of="):].split("/", 1)[0]
            for info in lake.list(ref, prefix + "as_of=")}
    return sorted(date.fromisoformat(day) for day in days)


def dates_with_tables(lake: Lake, ref: str, views: Sequence[FeatureView]) -> set[date]:
    """The as-of dates every one of `views` has a feature table for at `ref`."""
    return set.intersection(*(set(materialized_dates(lake, ref, view)) for view in views))


def read_snapshot(lake: Lake, ref: str, view: FeatureView, day: date,
                  columns: Sequence[str]) -> pa.Table:
    """One materialisation of a view: the entity key (as text, whatever the table stores) and
    the given feature columns."""
    parts = [info.path for info in lake.list(ref, f"{view_prefix(view)}as_of={day:%Y-%m-%d}/")]
    if not parts:
        raise RetrievalError(f"view {view.name!r} version {view.version} has no feature table "
                             f"as of {day} at {ref}")
    table = pa.concat_tables([read_table(lake, ref, path, [view.entity.key, *columns])
                              for path in parts], promote_options="permissive")
    return table.set_column(0, view.entity.key, table.column(0).cast(pa.string()))


def _keys(entity_df: pd.DataFrame, view: FeatureView) -> pa.Array:
    key = view.entity.key
    if key not in entity_df.columns:
        raise RetrievalError(f"the entity table has no column {key!r}, the key of entity "
                             f"{view.entity.name!r} that view {view.name!r} describes")
    return pa.array(entity_df[key].to_numpy(dtype=object), from_pandas=True).cast(pa.string())


def snapshot_of(view: FeatureView, dates: Sequence[date], times: np.ndarray) -> np.ndarray:
    """For each time, the index into `dates` (ascending) of the materialisation a row at that
    time reads: the newest as of or before it, -1 when there is none or it outlived the view's
    TTL."""
    starts = np.array([as_of_time(day).value for day in dates], dtype=np.int64)
    which = np.searchsorted(starts, times, side="right") - 1
    if view.ttl_days is not None:
        expired = (which >= 0) & (times >= starts[which.clip(0)] + view.ttl_days * DAY_NS)
        which[expired] = -1
    return which


def join_view(lake: Lake, ref: str, view: FeatureView, features: Sequence[str],
              keys: pa.Array, times: np.ndarray) -> tuple[pa.Table, list[date]]:
    """The values of one view's features for each (key, time) row, in row order, and the
    materialisations used."""
    dates = materialized_dates(lake, ref, view)
    if not dates:
        raise RetrievalError(
            f"view {view.name!r} version {view.version} has no materialised feature table at "
            f"{ref}; build it first (`tideline features build --as-of DAY`)")
    which = snapshot_of(view, dates, times)
    order = np.argsort(which, kind="stable")
    bounds = np.searchsorted(which[order], np.arange(-1, len(dates) + 1))
    pieces: list[pa.Table] = []
    used = []
    schema = None
    for j in range(len(dates)):
        rows = order[bounds[j + 1]:bounds[j + 2]]
        if not len(rows):
            continue
        snapshot = read_snapshot(lake, ref, view, dates[j], features)
        found = pc.index_in(keys.take(pa.array(rows)), value_set=snapshot.column(0))
        pieces.append(snapshot.select(list(features)).take(found))
        schema = pieces[-1].schema
        used.append(dates[j])
    if schema is None:  # no row falls in any materialisation: every value is null
        schema = read_snapshot(lake, ref, view, dates[-1], features).select(
            list(features)).schema
    unmatched = bounds[1] - bounds[0]
    pieces.insert(0, pa.table({f.name: pa.nulls(unmatched, f.type) for f in schema}))
    joined = pa.concat_tables(pieces, promote_options="permissive")
    inverse = np.empty(len(order), dtype=np.int64)
    inverse[order] = np.arange(len(order))
    return joined.take(pa.array(inverse)), used


def point_in_time(lake: Lake, ref: str, entity_df: pd.DataFrame, refs: Sequence[FeatureRef],
                  timestamp_column: str) -> tuple[pd.DataFrame, dict[str, list[date]]]:
    """The entity table with the requested features joined on, point-in-time correct, in
    input order; and, per view, the as-of dates whose tables were used."""
    times = event_times(entity_df, timestamp_column)
    clash = [r.column for r in refs if r.column in entity_df.columns]
    if clash:
        raise RetrievalError(f"the entity table already has column(s) {', '.join(clash)}; "
                             "rename them or request the features as `view:feature`")
    views: dict[str, FeatureView] = {}
    for r in refs:
        views.setdefault(r.view.name, r.view)
    columns: dict[str, pa.ChunkedArray] = {}
    used: dict[str, list[date]] = {}
    keys: dict[str, pa.Array] = {}  # one Arrow key column per entity key, shared by its views
    for name, view in views.items():
        mine = [r for r in refs if r.view.name == name]
        if view.entity.key not in keys:
            keys[view.entity.key] = _keys(entity_df, view)
        table, used[name] = join_view(lake, ref, view, [r.feature for r in mine],
                                      keys[view.entity.key], times)
        for r in mine:
            columns[r.column] = table.column(r.feature)
    values = pa.table({r.column: columns[r.column] for r in refs}).to_pandas()
    values.index = entity_df.index
    return pd.concat([entity_df, values], axis=1), used
