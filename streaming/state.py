"""A stream processor's per-entity state, and the feature values it gives.

The state of one source (say `events`) for its streamable views has two parts:

- **the window buffer**: every event of the last `retention` (the longest window plus the
  allowed lateness), kept as Arrow columns. Windowed features are computed from it by the
  batch engine itself (`tideline.features.engine`), for the entities an update touched, so
  stream and batch give the same values by construction, out-of-order events included.
- **running aggregates** for features over all history: counts, sums, Welford's mean and
  variance (merged batch by batch with Chan's formula), extremes, and the first and last event
  with their values: what those features need, without holding the events.

`StreamState.apply` adds events; `StreamState.values` gives every view's features for some
entities as of a time t at or after the newest event (events strictly before t, as in batch).
Entities get integer codes in order of first sight, so the aggregates are numpy arrays and a
batch updates them with a sort and `reduceat`, never a loop per event. The state is a pair of
Arrow tables plus a clock, so a checkpoint is a plain write of them.
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from tideline.core.errors import FeatureDefinitionError
from tideline.features.definitions import (
    DAY_NS,
    NUMERIC,
    TEMPORAL,
    VIRTUAL_COLUMNS,
    CustomView,
    Feature,
    View,
)
from tideline.features.engine import (
    Events,
    Spine,
    ViewComputation,
    as_frame,
    custom_columns,
    virtual_column,
)
from tideline.features.expressions import evaluate, names_in
from tideline.features.plan import plan_views
from tideline.lake.erasure import drop_erased

NS = pa.timestamp("ns", tz="UTC")
TAIL_CHUNKS = 16
"""The tail's batches are combined into one chunk when there are more than this: a batch's
values filter every chunk of the tail."""
COMPACT_ROWS = 50_000
"""The tail of newly applied events is merged into the entity-ordered buffer once it has more
rows than this (or than a quarter of the buffer)."""


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


def running_groups(views: Sequence[View]) -> dict[tuple[str | None, str | None], Running]:
    """The running aggregates the declared views' all-history features need (a custom view's
    function reads its lookback from the buffer)."""
    carried: dict[tuple[str | None, str | None], set[str]] = {}
    for view in views:
        if isinstance(view, CustomView):
            continue
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

    views: tuple[View, ...]
    key: str
    timestamp: str
    id_column: str
    schema: pa.Schema
    """Of the buffer: key, event time (ns UTC), event id and the columns the views read."""
    lateness_ns: int
    clock: int = 0
    """Event time (ns) of the newest event applied; 0 before any."""
    seen: set[str] = field(init=False, repr=False)
    """Ids of the buffered events: a repeat of one of them is a duplicate."""

    def __post_init__(self) -> None:
        self.groups = running_groups(self.views)
        source = self.views[0].sources[0].name
        read = plan_views(self.views, {source: self.schema}).columns
        self._computed = [name for name in self.schema.names
                          if name in read[source] and name != self.key]
        """The columns the engine computes from (the key is given by the entity codes)."""
        self.seen = set()
        self._sorted = self.schema.empty_table()
        """The buffer as of the last compaction, ordered by entity code (stable: each entity's
        events in arrival order)."""
        self._sorted_codes = np.zeros(0, dtype=np.int64)
        self._tail: list[pa.Table] = []
        """Events applied since, in arrival order."""
        self._tail_codes: list[np.ndarray] = []
        self._codes: dict[str, int] = {}
        """Entity key -> its row in the running aggregates (in order of first sight)."""
        self._keys: list[str] = []
        self._running: dict[str, np.ndarray] = {
            column: _blank(column, 0) for g in self.groups.values() for column in g.columns()}

    @property
    def retention_ns(self) -> int:
        return max(v.longest_window_ns for v in self.views) + self.lateness_ns

    @property
    def watermark(self) -> int:
        """Events before this time are too late to apply (0 before any event)."""
        return self.clock - self.lateness_ns if self.clock else 0

    @property
    def size(self) -> int:
        """How many entities the state knows."""
        return len(self._keys)

    def entities(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """The entities seen (in order of first sight), or a slice of them."""
        return np.asarray(self._keys[start:stop], dtype=object)

    def keys_of(self, codes: np.ndarray) -> np.ndarray:
        """The entities with these codes (codes number the entities in order of first sight,
        from 0)."""
        keys = self._keys
        return np.array([keys[c] for c in codes], dtype=object)

    # -- updates ------------------------------------------------------------------------------

    def admit(self, events: pa.Table) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]:
        """Sort a batch's events (typed as `schema`) into the ones to apply, the duplicates
        (an id already applied, or repeated in the batch) and the late ones with their
        reason: row indices of each."""
        ids = events.column(self.id_column).to_pylist()
        ns = _ns(events.column(self.timestamp))
        watermark = self.watermark
        distinct = set(ids)
        if len(distinct) == len(ids) and self.seen.isdisjoint(distinct) and (
                not len(ns) or ns.min() >= watermark):  # the usual batch, in set operations
            return np.arange(len(ids)), np.zeros(0, dtype=np.int64), []
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
        """Add events (typed as `schema`, none late, no id seen before); returns the codes of
        the entities they touch, ascending."""
        if not len(events):
            return np.zeros(0, dtype=np.int64)
        events = events.select(self.schema.names)
        codes = self._encode(events.column(self.key).to_pylist())
        self._tail.append(events)
        self._tail_codes.append(codes)
        if len(self._tail) > TAIL_CHUNKS:
            self._tail = [pa.concat_tables(self._tail).combine_chunks()]
            self._tail_codes = [np.concatenate(self._tail_codes)]
        self.seen.update(events.column(self.id_column).to_pylist())
        ns = _ns(events.column(self.timestamp))
        for group in self.groups.values():
            self._merge(group, events, codes, ns)
        self.clock = max(self.clock, int(ns.max()))
        return np.unique(codes)

    def _encode(self, keys: list[str]) -> np.ndarray:
        """Codes of keys, new keys getting the next ones (and room in the aggregates)."""
        codes = self._codes
        out = np.fromiter(map(codes.get, keys, itertools.repeat(-1)), np.int64, len(keys))
        for row in np.flatnonzero(out < 0):  # keys never seen (some maybe twice in the batch)
            code = codes.get(keys[row])
            if code is None:
                code = codes[keys[row]] = len(self._keys)
                self._keys.append(keys[row])
            out[row] = code
        size = len(next(iter(self._running.values()), ()))
        if len(self._keys) > size:
            grown = max(len(self._keys), 2 * size, 1024)
            for column, values in self._running.items():
                self._running[column] = np.concatenate([values, _blank(column,
                                                                       grown - size)])
        return out

    def _merge(self, group: Running, events: pa.Table, codes: np.ndarray,
               ns: np.ndarray) -> None:
        """Chan's parallel update of the running aggregates with one batch's, per entity."""
        keep = np.ones(len(codes), dtype=bool)
        if group.filter is not None:
            columns = {name: _column(events, name, ns)
                       for name in names_in(group.filter, "filter")}
            keep &= np.asarray(evaluate(group.filter, columns), dtype=bool)
        if group.valued is not None:
            values = events.column(group.valued).to_numpy(zero_copy_only=False).astype(float)
            keep &= ~np.isnan(values)
        rows = np.flatnonzero(keep)
        if not len(rows):
            return
        order = rows[np.lexsort((ns[rows], codes[rows]))]  # by entity, then time; stable
        c = codes[order]
        starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
        n_b = np.diff(np.r_[starts, len(c)]).astype(float)
        at, first, last = c[starts], order[starts], order[np.r_[starts[1:], len(c)] - 1]
        r, p = self._running, group.prefix
        n_a = r[p + "n"][at]
        earlier = ~(r[p + "first_t"][at] <= ns[first])  # NaN (none yet) takes the new one
        later = ~(r[p + "last_t"][at] > ns[last])  # a tie: the later arrival is the last
        for end, take, rows_ in (("first", earlier, first), ("last", later, last)):
            r[f"{p}{end}_t"][at[take]] = ns[rows_[take]]
            for column in group.carried:
                carried = events.column(column).take(pa.array(rows_[take]))
                r[f"{p}{end}:{column}"][at[take]] = carried.to_numpy(zero_copy_only=False)
        if group.valued is not None:
            v = values[order]
            sum_b = np.add.reduceat(v, starts)
            mean_b = sum_b / n_b
            m2_b = np.add.reduceat((v - np.repeat(mean_b, n_b.astype(np.int64))) ** 2, starts)
            n = n_a + n_b
            delta = mean_b - r[p + "mean"][at]
            r[p + "m2"][at] += m2_b + delta**2 * n_a * n_b / n
            r[p + "mean"][at] += delta * n_b / n
            r[p + "sum"][at] += sum_b
            r[p + "min"][at] = np.fmin(r[p + "min"][at], np.minimum.reduceat(v, starts))
            r[p + "max"][at] = np.fmax(r[p + "max"][at], np.maximum.reduceat(v, starts))
        r[p + "n"][at] = n_a + n_b

    @property
    def needs_compaction(self) -> bool:
        """Whether the tail has grown enough to be merged into the ordered buffer."""
        rows = sum(len(c) for c in self._tail_codes)
        return rows > max(COMPACT_ROWS, len(self._sorted_codes) // 4)

    def compaction(self) -> Compaction:
        """The merge of the ordered buffer with the tail as it is now, evicting events older
        than the retention: `run` it anywhere (it reads only immutable inputs), `install` it
        here; events applied meanwhile stay in the tail."""
        return Compaction(self._sorted, self._sorted_codes, tuple(self._tail),
                          tuple(self._tail_codes), self.clock - self.retention_ns,
                          self.timestamp, self.id_column)

    def install(self, compaction: Compaction, merged: tuple[pa.Table, np.ndarray, list[str]]
                ) -> int:
        """Take a run compaction's result; returns how many events it evicted."""
        self._sorted, self._sorted_codes, evicted = merged
        done = sum(len(codes) for codes in compaction.tail_codes)
        if done:  # by rows: the tail's chunks may have been combined since
            codes = np.concatenate(self._tail_codes)[done:]
            self._tail, self._tail_codes = ([pa.concat_tables(self._tail).slice(done)],
                                            [codes]) if len(codes) else ([], [])
        self.seen.difference_update(evicted)
        return len(evicted)

    def evict(self) -> int:
        """Compact now, dropping events older than the retention; returns how many."""
        compaction = self.compaction()
        return self.install(compaction, compaction.run())

    def buffered(self) -> pa.Table:
        """Every buffered event, by entity in arrival order."""
        self.evict()
        return self._sorted

    def _events_of(self, codes: np.ndarray) -> tuple[pa.Table, np.ndarray]:
        """The buffered events of some entities (codes ascending, each once), in the columns
        the engine computes from, and each event's entity code: their slices of the ordered
        buffer, then their events in the tail (so each entity's stay in arrival order)."""
        lo = np.searchsorted(self._sorted_codes, codes, side="left")
        n = np.searchsorted(self._sorted_codes, codes, side="right") - lo
        rows = np.repeat(lo - np.concatenate(([0], np.cumsum(n)[:-1])), n) + np.arange(n.sum())
        parts = [self._sorted.select(self._computed).take(pa.array(rows))]
        owners = [self._sorted_codes[rows]]
        wanted = np.zeros(len(self._keys), dtype=bool)
        wanted[codes] = True
        for table, tail_codes in zip(self._tail, self._tail_codes, strict=True):
            mine = wanted[tail_codes]
            parts.append(table.select(self._computed).filter(pa.array(mine)))
            owners.append(tail_codes[mine])
        return pa.concat_tables(parts), np.concatenate(owners)

    # -- values -------------------------------------------------------------------------------

    def values(self, keys: np.ndarray, t: int) -> dict[str, pd.DataFrame]:
        """Each view's features (derived ones included) for `keys`, as of t (ns; at or after
        the newest event), in key order as given."""
        keys = np.asarray(keys, dtype=object)
        codes = np.fromiter((self._codes.get(k, -1) for k in keys), np.int64, len(keys))
        return {view: as_frame(columns)
                for view, columns in self.features(keys, codes, t).items()}

    def features(self, keys: np.ndarray, codes: np.ndarray, t: int
                 ) -> dict[str, dict[str, np.ndarray]]:
        """`values` as columns, for entities with their codes (-1: an entity never seen): what
        a stream processor writes, without a key lookup or a pandas frame."""
        if self.clock and t <= self.clock:
            raise ValueError(f"values as of {pd.Timestamp(t, tz='UTC')} would miss events at "
                             f"or after it (the newest is at {pd.Timestamp(self.clock, tz='UTC')})")
        known, first = np.unique(codes, return_index=True)
        known, first = known[known >= 0], first[known >= 0]
        table, owners = self._events_of(known)
        events = Events.from_table(table, self.key, self.timestamp, entities=(  # local codes
            pa.array(keys[first], pa.string()), np.searchsorted(known, owners)))
        spine = Spine(keys=keys, t=np.full(len(codes), t, np.int64),
                      codes=np.where(codes >= 0, np.searchsorted(known, codes), -1))
        out = {}
        for view in self.views:
            if isinstance(view, CustomView):  # the batch build's function, on the buffer
                out[view.name] = custom_columns(view, {view.sources[0].name: events}, spine)
                continue
            given = {f.name: self._unbounded(f, codes, t) for f in view.features
                     if f.window is None}
            out[view.name] = ViewComputation(view, events, spine).columns(given)
        return out

    def _unbounded(self, f: Feature, codes: np.ndarray, t: int) -> np.ndarray:
        """An all-history feature from the running aggregates, as the engine defines it."""
        known = codes >= 0

        def read(column: str) -> np.ndarray:
            values = self._running[column][np.where(known, codes, 0)]
            blank = _blank(column, 1)[0]
            return np.where(known, values, blank) if values.dtype != object else np.array(
                [v if k else blank for v, k in zip(values, known, strict=True)], dtype=object)

        p = self.groups[f.filter, f.column if f.agg in NUMERIC else None].prefix
        n = read(p + "n")
        if f.agg == "count":
            return n.astype(np.int64)
        if f.agg == "share":
            total = read(self.groups[None, None].prefix + "n")
            out = np.full(len(n), np.nan)
            np.divide(n, total, out=out, where=total != 0)
            return out
        if f.agg in TEMPORAL:
            return (t - read(p + ("last_t" if f.agg == "days_since_last" else "first_t"))
                    ) / DAY_NS
        if f.agg in ("first", "last"):
            return read(f"{p}{f.agg}:{f.column}")
        if f.agg == "sum":
            return read(p + "sum")
        if f.agg in ("mean", "min", "max"):
            return np.where(n > 0, read(p + f.agg), np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            var = np.where(n >= 2, read(p + "m2") / (n - 1), np.nan)
        return var if f.agg == "var" else np.sqrt(var)

    # -- snapshots ----------------------------------------------------------------------------

    def snapshot(self) -> tuple[pa.Table, pa.Table]:
        """The buffer and the running aggregates (one row per entity), as tables that later
        updates do not change (a checkpoint can be written from them on another thread)."""
        size = len(self._keys)
        running = pa.table({self.key: pa.array(self._keys, pa.string()),
                            **{column: pa.array(values[:size].copy(), from_pandas=True)
                               for column, values in self._running.items()}})  # copies: the
        # arrays are updated in place, and Arrow would share their memory
        return pa.concat_tables([self._sorted, *self._tail]), running

    def forget(self, erased: dict[str, frozenset[str]]) -> int:
        """Drop the entities whose key is on the erasure list (`lake.erasure`), their buffered
        events and running aggregates alike; returns how many entities went. Not while a
        compaction runs: entity codes change."""
        if not erased or self.key not in erased:
            return 0
        buffer, running = self.snapshot()
        kept, gone = drop_erased(running, {self.key: erased[self.key]})
        if gone:
            self.restore(drop_erased(buffer, {self.key: erased[self.key]})[0], kept, self.clock)
        return gone

    def restore(self, buffer: pa.Table, running: pa.Table, clock: int) -> None:
        self.__post_init__()
        self._encode(running.column(self.key).to_pylist())
        for column in self._running:
            values = running.column(column).to_numpy(zero_copy_only=False)
            self._running[column][:len(values)] = values
        self._tail, self._tail_codes = [buffer.cast(self.schema)], [
            self._encode(buffer.column(self.key).to_pylist())]
        self.seen = set(buffer.column(self.id_column).to_pylist())
        self.clock = clock
        self.evict()


@dataclass(frozen=True)
class Compaction:
    """The ordered buffer and some tail chunks, to be merged into one ordered buffer without
    the events before `cutoff`."""

    sorted: pa.Table
    codes: np.ndarray
    tail: tuple[pa.Table, ...]
    tail_codes: tuple[np.ndarray, ...]
    cutoff: int
    timestamp: str
    id_column: str

    def run(self) -> tuple[pa.Table, np.ndarray, list[str]]:
        """The merged buffer, its entity codes, and the ids of the events evicted."""
        table = pa.concat_tables([self.sorted, *self.tail])
        codes = np.concatenate([self.codes, *self.tail_codes])
        keep = _ns(table.column(self.timestamp)) >= self.cutoff
        evicted = table.filter(pa.array(~keep)).column(self.id_column).to_pylist()
        order = np.flatnonzero(keep)
        order = order[np.argsort(codes[order], kind="stable")]  # by entity, arrival order kept
        return table.take(pa.array(order)).combine_chunks(), codes[order], evicted


def _blank(column: str, size: int) -> np.ndarray:
    """Empty running aggregates: zero counts and sums, no extremes or first/last yet."""
    name = column.rsplit("|", 1)[1]
    if ":" in name:
        return np.full(size, None, dtype=object)
    return np.full(size, 0.0 if name in ("n", "sum", "mean", "m2") else np.nan)


def _ns(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return pc.cast(column, NS).cast(pa.int64()).to_numpy(zero_copy_only=False)


def _column(events: pa.Table, name: str, ns: np.ndarray) -> np.ndarray | pd.Series:
    """A column for a filter, with the engine's virtual `weekday` and `hour`."""
    if name in VIRTUAL_COLUMNS:
        return virtual_column(name, ns)
    column = events.column(name)
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return pd.Series(column.to_numpy(zero_copy_only=False))
    return column.to_numpy(zero_copy_only=False)


def event_schema(views: Sequence[View], source: pa.Schema, id_column: str) -> pa.Schema:
    """The buffer's schema: the key, event time (as ns UTC), event id and the columns the views
    read, typed as the source table has them."""
    first = views[0].sources[0]
    plan = plan_views(views, {first.name: source})
    names = sorted({id_column, *plan.columns[first.name]})
    if id_column not in source.names:
        raise FeatureDefinitionError(f"source {first.name!r} has no event id column "
                                     f"{id_column!r}; it has {', '.join(source.names)}")
    return pa.schema([pa.field(name, NS) if name == first.timestamp
                      else source.field(name) for name in names])


def streamable_views(views: Sequence[View], source: str) -> tuple[View, ...]:
    """The views a stream of `source` keeps fresh: declared ones marked streamable, and
    streamable custom views reading only that source."""
    return tuple(v for v in views if v.streamable and v.sources[0].name == source)
