"""A stream processor's per-entity state, and the feature values it gives.

The state of one source (say `events`) for its streamable views has two parts:

- **the window buffer**: every event of the last `retention` (the longest window plus the
  allowed lateness), kept as Arrow columns. Windowed features are computed from it by the
  batch engine itself (`features.engine`), for the entities an update touched, so stream and
  batch give the same values by construction, out-of-order events included.
- **running aggregates** for features over all history: counts, sums, Welford's mean and
  variance (merged batch by batch with Chan's formula), extremes, and the first and last event
  with their values: what those features need, without holding the events.

`StreamState.apply` adds events; `StreamState.values` gives every view's features for some
entities as of a time t at or after the newest event (events strictly before t, as in batch).
The state is a pair of Arrow tables plus a clock, so a checkpoint is a plain write of them.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.definitions import (
    DAY_NS,
    NUMERIC,
    TEMPORAL,
    VIRTUAL_COLUMNS,
    Feature,
    FeatureView,
)
from features.engine import Events, Spine, ViewComputation, virtual_column
from features.expressions import evaluate, names_in
from features.plan import plan_views
from tideline.errors import FeatureDefinitionError

NS = pa.timestamp("ns", tz="UTC")


@dataclass(frozen=True)
class Running:
    """The running aggregates of the events matching `filter` (with a value in `valued`, for
    numeric statistics), and the values of `carried` columns at the first and last of them."""

    filter: str | None
    valued: str | None
    carried: tuple[str, ...] = ()

    @property
    def prefix(self) -> str:
        return f"{self.filter or '*'}|{self.valued or '*'}|"

    def columns(self) -> list[str]:
        names = ["n", "first_t", "last_t"]
        if self.valued:
            names += ["sum", "mean", "m2", "min", "max"]
        names += [f"{end}:{c}" for c in self.carried for end in ("first", "last")]
        return [self.prefix + name for name in names]


def running_groups(views: Sequence[FeatureView]) -> dict[tuple[str | None, str | None],
                                                          Running]:
    """The running aggregates the views' all-history features need."""
    carried: dict[tuple[str | None, str | None], set[str]] = {}
    for view in views:
        for f in view.features:
            if f.window is not None:
                continue
            valued = f.column if f.agg in NUMERIC else None
            carried.setdefault((f.filter, valued), set())
            if f.agg == "share":
                carried.setdefault((None, None), set())
            if f.agg in ("first", "last"):
                carried[f.filter, valued].add(f.column)  # type: ignore[arg-type]
    return {key: Running(key[0], key[1], tuple(sorted(columns)))
            for key, columns in carried.items()}


@dataclass
class StreamState:
    """Buffer and running aggregates of one source's events for its streamable views."""

    views: tuple[FeatureView, ...]
    key: str
    timestamp: str
    id_column: str
    schema: pa.Schema
    """Of the buffer: key, event time (ns UTC), event id and the columns the views read."""
    lateness_ns: int
    buffer: pa.Table = field(init=False)
    running: pd.DataFrame = field(init=False)
    """One row per entity ever seen, indexed by key."""
    clock: int = 0
    """Event time (ns) of the newest event applied; 0 before any."""
    seen: set[str] = field(init=False, repr=False)
    """Ids of the buffered events: a repeat of one of them is a duplicate."""

    def __post_init__(self) -> None:
        self.groups = running_groups(self.views)
        self.buffer = self.schema.empty_table()
        self.running = pd.DataFrame(
            {c: pd.Series(dtype=float) for g in self.groups.values() for c in g.columns()},
            index=pd.Index([], dtype=object, name=self.key))
        self.seen = set()

    @property
    def retention_ns(self) -> int:
        return max(v.longest_window_ns for v in self.views) + self.lateness_ns

    @property
    def watermark(self) -> int:
        """Events before this time are too late to apply (0 before any event)."""
        return self.clock - self.lateness_ns if self.clock else 0

    # -- updates ------------------------------------------------------------------------------

    def admit(self, events: pa.Table) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]:
        """Sort a batch's events (typed as `schema`) into the ones to apply, the duplicates
        (an id already applied, or repeated in the batch) and the late ones with their
        reason: row indices of each."""
        ids = events.column(self.id_column).to_pylist()
        ns = _ns(events.column(self.timestamp))
        watermark = self.watermark
        fresh, duplicate, late = [], [], []
        seen: set[str] = set()
        for row, (event, t) in enumerate(zip(ids, ns, strict=True)):
            if event in self.seen or event in seen:
                duplicate.append(row)
            elif t < watermark:
                late.append((row, f"late: event time {pd.Timestamp(int(t), tz='UTC')} is "
                                  f"before the watermark {pd.Timestamp(watermark, tz='UTC')} "
                                  f"(newest event time minus the allowed lateness)"))
            else:
                fresh.append(row)
                seen.add(event)
        return np.asarray(fresh, dtype=np.int64), np.asarray(duplicate, dtype=np.int64), late

    def apply(self, events: pa.Table) -> np.ndarray:
        """Add events (typed as `schema`, none late, no id seen before); returns the keys of
        the entities they touch."""
        if not len(events):
            return np.zeros(0, dtype=object)
        self.buffer = pa.concat_tables([self.buffer, events.select(self.schema.names)])
        self.seen.update(events.column(self.id_column).to_pylist())
        frame = events.to_pandas(timestamp_as_object=False)
        frame["_t"] = _ns(events.column(self.timestamp))
        for group in self.groups.values():
            self._merge(group, frame)
        self.clock = max(self.clock, int(frame["_t"].max()))
        return pd.unique(frame[self.key].to_numpy(dtype=object))

    def _merge(self, group: Running, frame: pd.DataFrame) -> None:
        """Chan's parallel update of the running aggregates with one batch's."""
        if group.filter is not None:
            columns = {name: _column(frame, name) for name in names_in(group.filter, "filter")}
            frame = frame[np.asarray(evaluate(group.filter, columns), dtype=bool)]
        if group.valued is not None:
            frame = frame[frame[group.valued].notna()]
        if not len(frame):
            return
        p = group.prefix
        ordered = frame.sort_values([self.key, "_t"], kind="stable")
        by = ordered.groupby(self.key, sort=False)
        new = pd.DataFrame({p + "n": by.size().astype(float)})
        firsts = ordered.drop_duplicates(self.key, keep="first").set_index(self.key)
        lasts = ordered.drop_duplicates(self.key, keep="last").set_index(self.key)
        new[p + "first_t"], new[p + "last_t"] = firsts["_t"], lasts["_t"]
        for column in group.carried:
            new[f"{p}first:{column}"] = firsts[column]
            new[f"{p}last:{column}"] = lasts[column]
        if group.valued is not None:
            values = by[group.valued]
            new[p + "sum"], new[p + "mean"] = values.sum(), values.mean()
            new[p + "m2"] = values.var(ddof=0) * new[p + "n"]
            new[p + "min"], new[p + "max"] = values.min(), values.max()
        self.running = self.running.reindex(self.running.index.union(new.index, sort=False))
        old = self.running.loc[new.index]
        n_a, n_b = old[p + "n"].fillna(0.0), new[p + "n"]
        merged = {p + "n": n_a + n_b}
        earlier = ~(old[p + "first_t"] <= new[p + "first_t"])  # NaN (none yet) takes the new
        later = ~(old[p + "last_t"] > new[p + "last_t"])  # ties: the later arrival is last
        for end, take in (("first", earlier), ("last", later)):
            for column in (f"{end}_t", *(f"{end}:{c}" for c in group.carried)):
                merged[p + column] = pd.Series(np.where(take, new[p + column].to_numpy(),
                                                        old[p + column].to_numpy()),
                                               index=new.index)
        if group.valued is not None:
            n = merged[p + "n"]
            mean_a = old[p + "mean"].fillna(0.0)
            delta = new[p + "mean"] - mean_a
            merged[p + "sum"] = old[p + "sum"].fillna(0.0) + new[p + "sum"]
            merged[p + "mean"] = mean_a + delta * n_b / n
            merged[p + "m2"] = old[p + "m2"].fillna(0.0) + new[p + "m2"] + delta**2 * n_a * n_b / n
            merged[p + "min"] = np.fmin(old[p + "min"], new[p + "min"])
            merged[p + "max"] = np.fmax(old[p + "max"], new[p + "max"])
        for column, values in merged.items():
            if values.dtype == object or self.running[column].dtype == object:
                self.running[column] = self.running[column].astype(object)
            self.running.loc[new.index, column] = values

    def evict(self) -> int:
        """Drop buffered events older than the retention; returns how many."""
        if not len(self.buffer):
            return 0
        keep = pc.greater_equal(self.buffer.column(self.timestamp),
                                pa.scalar(self.clock - self.retention_ns, NS))
        gone = self.buffer.filter(pc.invert(keep))
        if len(gone):
            self.seen.difference_update(gone.column(self.id_column).to_pylist())
            self.buffer = self.buffer.filter(keep).combine_chunks()
        return len(gone)

    # -- values -------------------------------------------------------------------------------

    def values(self, keys: np.ndarray, t: int) -> dict[str, pd.DataFrame]:
        """Each view's features (derived ones included) for `keys`, as of t (ns; at or after
        the newest event), in key order as given."""
        if self.clock and t <= self.clock:
            raise ValueError(f"values as of {pd.Timestamp(t, tz='UTC')} would miss events at "
                             f"or after it (the newest is at {pd.Timestamp(self.clock, tz='UTC')})")
        spine = Spine(keys=np.asarray(keys, dtype=object), t=np.full(len(keys), t, np.int64))
        wanted = pc.is_in(self.buffer.column(self.key), value_set=pa.array(spine.keys,
                                                                           pa.string()))
        events = Events.from_table(self.buffer.filter(wanted), self.key, self.timestamp)
        running = self.running.reindex(spine.keys)
        out = {}
        for view in self.views:
            given = {f.name: self._unbounded(f, running, t) for f in view.features
                     if f.window is None}
            out[view.name] = ViewComputation(view, events, spine).frame(given)
        return out

    def _unbounded(self, f: Feature, running: pd.DataFrame, t: int) -> np.ndarray:
        """An all-history feature from the running aggregates, as the engine defines it."""
        group = self.groups[f.filter, f.column if f.agg in NUMERIC else None]
        p = group.prefix
        n = running[p + "n"].fillna(0.0).to_numpy()
        if f.agg == "count":
            return n.astype(np.int64)
        if f.agg == "share":
            total = running[self.groups[None, None].prefix + "n"].fillna(0.0).to_numpy()
            out = np.full(len(n), np.nan)
            np.divide(n, total, out=out, where=total != 0)
            return out
        if f.agg in TEMPORAL:
            end = "last_t" if f.agg == "days_since_last" else "first_t"
            return (t - running[p + end].to_numpy(dtype=float)) / DAY_NS
        if f.agg in ("first", "last"):
            return running[f"{p}{f.agg}:{f.column}"].to_numpy()
        if f.agg in ("sum", "mean", "min", "max"):
            values = running[p + f.agg].to_numpy(dtype=float)
            return np.where(n > 0, values, 0.0) if f.agg == "sum" else values
        with np.errstate(invalid="ignore", divide="ignore"):
            var = np.where(n >= 2, running[p + "m2"].to_numpy(dtype=float) / (n - 1), np.nan)
        return var if f.agg == "var" else np.sqrt(var)

    # -- snapshots ----------------------------------------------------------------------------

    def snapshot(self) -> tuple[pa.Table, pa.Table]:
        """The buffer and the running aggregates, as tables (a checkpoint)."""
        running = pa.Table.from_pandas(self.running.reset_index(), preserve_index=False)
        return self.buffer.combine_chunks(), running

    def restore(self, buffer: pa.Table, running: pa.Table, clock: int) -> None:
        self.buffer = buffer.cast(self.schema)
        self.running = running.to_pandas().set_index(self.key)
        self.clock = clock
        self.seen = set(buffer.column(self.id_column).to_pylist())


def _ns(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return pc.cast(column, NS).cast(pa.int64()).to_numpy(zero_copy_only=False)


def _column(frame: pd.DataFrame, name: str) -> np.ndarray | pd.Series:
    """A column for a filter, with the engine's virtual `weekday` and `hour`."""
    if name in VIRTUAL_COLUMNS:
        return virtual_column(name, frame["_t"].to_numpy())
    return frame[name]


def event_schema(views: Sequence[FeatureView], source: pa.Schema, id_column: str) -> pa.Schema:
    """The buffer's schema: the key, event time (as ns UTC), event id and the columns the views
    read, typed as the source table has them."""
    first = views[0]
    plan = plan_views(views, {first.source.name: source})
    names = sorted({id_column, *plan.columns[first.source.name]})
    if id_column not in source.names:
        raise FeatureDefinitionError(f"source {first.source.name!r} has no event id column "
                                     f"{id_column!r}; it has {', '.join(source.names)}")
    return pa.schema([pa.field(name, NS) if name == first.source.timestamp
                      else source.field(name) for name in names])


def streamable_views(views: Sequence[FeatureView], source: str) -> tuple[FeatureView, ...]:
    return tuple(v for v in views if v.streamable and v.source.name == source)
