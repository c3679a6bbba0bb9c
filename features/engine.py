"""The feature engine: every feature of a view, for every (entity, as-of time) row of a spine,
from the events strictly before that time.

How it works, vectorised end to end (no Python loop per entity or per row):

1. Entity keys become integer codes once, in key order (`encode_entities`; sources loaded
   together share one dictionary), and a source's events are sorted once by (entity code,
   event time), kept as one int64 key per event (`Events.position`).
2. For each spine row and window, a binary search of that key gives the half-open range of
   events ``[lo, hi)`` with time in ``[t - w, t)`` (`Segments`). An event exactly at t is
   outside by construction; the same search serves a batch as-of date and a training set with
   a different time on every row.
3. Aggregations reduce those ranges with `numpy.ufunc.reduceat` over the gathered values:
   sums and extremes directly, moments on centred values, trends and EMAs on daily totals
   binned back from t. Quantiles read each entity's events pre-sorted by value, distinct
   counts each event's previous occurrence of its value (or, for columns of few values, a
   bit set per window); both orders are computed once, with `stable_argsort`.
   The sketch estimates do the same: `approx_p*` maps the two closest ranks' values to their
   DDSketch buckets, and `approx_nunique` reads each entity's events pre-sorted by value hash
   into a HyperLogLog++ sketch per window (see `hyperloglog`).

Filters are evaluated once per source (on the unsorted frame), segments are shared by every
feature with the same filter and window, gathered values and sums by every feature of a window,
and the sorted events by every window and as-of date, so adding dates or features costs only
the searches and reductions.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from time import perf_counter
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from tideline.core.errors import FeatureDefinitionError
from tideline.core.sorting import distinct_ranks, index_type, ordered_bits, stable_argsort
from tideline.features.custom import AS_OF, ROW, apply_function
from tideline.features.definitions import (
    APPROXIMATE,
    DAILY,
    DAY_NS,
    DDSKETCH_ALPHA,
    HLL_PRECISION,
    HLL_SPARSE_PRECISION,
    NUMERIC,
    QUANTILES,
    VIRTUAL_COLUMNS,
    CustomView,
    Derived,
    Feature,
    FeatureView,
    Input,
    View,
    duration_ns,
    whole_days,
    with_reads,
)
from tideline.features.expressions import evaluate, names_in, value_hashes

EMA_HALF_LIFE_DAYS = 7.0
FEW_DISTINCT = 256
"""Columns with at most this many distinct values (categories, days) count them per window
with bit sets, one pass per 64 values, instead of a sort."""


@dataclass(frozen=True)
class Clock:
    """Event times as small integer ticks, so that (entity, time) orders as one int64 key:
    whole steps of the coarsest unit that keeps every time exact, or the rank among the
    distinct times when too many entities times steps would overflow (microsecond times over
    months for hundreds of thousands of entities)."""

    low: int
    unit: int
    span: int
    """Ticks run 0..span-1."""
    distinct: np.ndarray | None = None
    """The sorted distinct times, when ticks are their ranks."""

    @classmethod
    def order(cls, codes: np.ndarray, time: np.ndarray, entities: int
              ) -> tuple[Clock, np.ndarray, np.ndarray]:
        """The clock of `time`, each event's `code * span + tick`, and the events' (entity,
        time) order (ties in their order). Ranked ticks come from one sort by time, with no
        search per event; both sorts are `stable_argsort`s, so neither the number of
        entities nor the resolution of time has a slower path."""
        if len(time) == 0:
            clock = cls(low=0, unit=1, span=1)
            return clock, codes * 1, np.arange(0)
        low = int(time.min())
        for unit in (10**9, 10**6, 10**3, 1):
            if not np.any((time - low) % unit):
                break
        span = int((time.max() - low) // unit) + 1
        entities = max(entities, 1)
        if entities * span < 2**63:
            clock = cls(low=low, unit=unit, span=span)
            position = codes * span + (time - low) // unit
        else:
            ticks, firsts = distinct_ranks(time - low, int(time.max() - low).bit_length())
            clock = cls(low=low, unit=1, span=len(firsts), distinct=time[firsts])
            position = codes * clock.span + ticks
        return clock, position, stable_argsort(position, (entities * clock.span - 1).bit_length())

    def first_at_or_after(self, t: np.ndarray) -> np.ndarray:
        """For each time, the first tick at or after it (`span` when none)."""
        if self.distinct is not None:
            return np.searchsorted(self.distinct, t)
        return np.clip(-((self.low - t) // self.unit), 0, self.span)


@dataclass
class Events:
    """One source's events in (entity code, time) order; `offsets[c]:offsets[c+1]` is entity
    c's slice. Entity codes index `keys` (sorted, so code order is key order). Other columns
    stay in the source frame, unsorted: a filter is evaluated there, and a column is gathered
    in event order only when a feature asks for it."""

    keys: pa.Array
    entity: np.ndarray
    time: np.ndarray
    """Event time as int64 nanoseconds since the epoch (UTC)."""
    position: np.ndarray
    """`entity * clock.span + tick`: ascending, one binary search finds a time in a slice."""
    clock: Clock
    frame: pd.DataFrame
    """The source's other columns as read (unsorted)."""
    timestamp: str
    rows: np.ndarray
    """Positions in `frame` of the events, in event order."""
    stamps: np.ndarray
    """Event time as int64 ns in `frame` order (the timestamp column, which the frame does not
    hold)."""
    converted: dict[tuple[str, str], np.ndarray | pd.Series] = field(default_factory=dict,
                                                                      repr=False)
    """Whole-frame columns converted for computing (and their codes), shared with subsets."""
    offsets: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.offsets = np.searchsorted(self.entity, np.arange(len(self.keys) + 1))
        self._columns: dict[tuple[str, str], np.ndarray] = {}
        self._subsets: dict[tuple, Events] = {}
        self._calls: dict[str, Any] = {}
        """Function calls' values over the whole frame, shared by the filters."""

    @classmethod
    def from_table(cls, table: pa.Table, key: str, timestamp: str,
                   entities: tuple[pa.Array, np.ndarray] | None = None) -> Events:
        """Order a source table's events; text columns stay Arrow-backed. `entities` are the
        sorted keys and each row's code into them (`encode_entities`), when several sources
        share one key dictionary; by default the table's own keys. (Keys in another order serve
        a spine that brings its own codes, as a stream processor's does; with `entities`,
        the table may leave the key column out.)"""
        keys, codes = entities or _single(encode_entities([table.column(key)]))
        known = codes >= 0
        if not known.all():
            table, codes = table.filter(pa.array(known)), codes[known]
        time = arrow_nanoseconds(table.column(timestamp))
        frame = table.drop_columns([c for c in (key, timestamp) if c in table.column_names]
                                   ).to_pandas(types_mapper=arrow_text, date_as_object=False)
        clock, position, order = Clock.order(codes, time, len(keys))
        return cls(keys=keys, entity=codes[order], time=time[order], position=position[order],
                   clock=clock, frame=frame, timestamp=timestamp, rows=order, stamps=time)

    def subset(self, mask: np.ndarray) -> Events:
        """The events where `mask` holds, same keys and order (positions taken once: boolean
        indexing counts the mask again for every array)."""
        kept = np.flatnonzero(mask)
        return Events(keys=self.keys, entity=self.entity.take(kept), time=self.time.take(kept),
                      position=self.position.take(kept), clock=self.clock, frame=self.frame,
                      timestamp=self.timestamp, rows=self.rows.take(kept), stamps=self.stamps,
                      converted=self.converted)

    def matching(self, filter_: str | None, valued: str | None = None) -> Events:
        """The events matching `filter_`, and with a value in column `valued` if given (numeric
        statistics skip missing values, as pandas does); kept for every later spine."""
        def mask() -> np.ndarray:
            kept = np.ones(len(self.time), dtype=bool)
            if filter_ is not None:  # element-wise: evaluated on the unsorted frame
                columns = {name: self.whole(name)
                           for name in names_in(filter_, f"filter {filter_!r}")}
                kept &= np.asarray(evaluate(filter_, columns, self._calls),
                                   dtype=bool)[self.rows]
            if valued is not None:
                kept &= ~np.isnan(self.values(valued))
            return kept

        return self.where((filter_, valued), mask)

    def where(self, key: tuple, mask: Callable[[], np.ndarray]) -> Events:
        """The events where `mask()` holds, kept under `key` for every later spine."""
        if key not in self._subsets:
            kept = mask()
            self._subsets[key] = self if kept.all() else self.subset(kept)
        return self._subsets[key]

    def whole(self, name: str) -> np.ndarray | pd.Series:
        """A column of the whole frame, in its order: numeric and time columns as float numpy
        values (time in ns), text as an Arrow-backed Series; virtual `weekday`, `hour` and
        `day` as int64 from the event time."""
        if ("value", name) not in self.converted:
            if name in VIRTUAL_COLUMNS:
                values = virtual_column(name, self.stamps)
            elif name == self.timestamp:
                values = self.stamps.astype(float)
            else:
                values = self.frame[name]
                if _is_time(values.dtype):
                    values = _nanoseconds(values).astype(float)
                elif pd.api.types.is_numeric_dtype(values.dtype) and not (
                        pd.api.types.is_bool_dtype(values.dtype)):
                    values = values.to_numpy(dtype=float, na_value=np.nan)
            self.converted["value", name] = values
        return self.converted["value", name]

    def values(self, name: str) -> np.ndarray:
        """A numeric (or time) column in event order, as floats."""
        if ("value", name) not in self._columns:
            self._columns["value", name] = np.asarray(self.whole(name)[self.rows], dtype=float)
        return self._columns["value", name]

    def codes(self, name: str) -> np.ndarray:
        """A column's values as integer codes (equal values, equal codes) in event order; -1
        where missing. Whole numbers in a range of `FEW_DISTINCT` are their offset from the
        smallest (no hashing); anything else is factorized."""
        if ("codes", name) not in self.converted:
            whole = self.whole(name)
            low = _few_whole(whole) if isinstance(whole, np.ndarray) else None
            if low is not None:  # small codes: int16
                codes = np.where(np.isnan(whole), -1, whole - low).astype(np.int16)
            else:
                codes = pd.factorize(whole, use_na_sentinel=True)[0]
            self.converted["codes", name] = codes
        if ("codes", name) not in self._columns:
            self._columns["codes", name] = self.converted["codes", name][self.rows]
        return self._columns["codes", name]

    def by_entity_then_value(self, name: str) -> np.ndarray:
        """The events sorted by entity, then by a column's value; computed once, for every
        window and spine."""
        if ("by value", name) not in self._columns:  # in entity order: sort (entity, rank)
            values = self.values(name)
            rank = np.empty(len(values), dtype=np.int64)
            rank[stable_argsort(ordered_bits(values), 64)] = np.arange(len(values))
            self._columns["by value", name] = stable_argsort(self.entity * len(values) + rank)
        return self._columns["by value", name]

    def hashes(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A column's stable value hashes (`value_hashes`) and presence, in event order, and
        the events sorted by entity, then by the hash's top `HLL_SPARSE_PRECISION` bits;
        computed once, for every window and spine."""
        if ("hash", name) not in self.converted:
            self.converted["hash", name], self.converted["known", name] = value_hashes(
                self.whole(name))
        if ("by hash", name) not in self._columns:
            hashes = np.asarray(self.converted["hash", name])[self.rows]
            known = np.asarray(self.converted["known", name])[self.rows]
            prefix = (hashes >> np.uint64(64 - HLL_SPARSE_PRECISION)).astype(np.int64)
            order = stable_argsort((self.entity << HLL_SPARSE_PRECISION) | prefix)
            self._columns["hash", name], self._columns["known", name] = hashes, known
            self._columns["by hash", name] = order
        return (self._columns["hash", name], self._columns["known", name],
                self._columns["by hash", name])

    def previous_same(self, name: str) -> np.ndarray:
        """For each event, the entity's latest earlier event with the same value of a column
        (-1 if none); computed once, for every window and spine."""
        if ("previous", name) not in self._columns:
            codes = self.codes(name)
            # (entity, value) groups, each in time order
            order = stable_argsort(self.entity * (int(codes.max(initial=0)) + 2) + codes + 1)
            same = (self.entity[order[1:]] == self.entity[order[:-1]]) & (
                codes[order[1:]] == codes[order[:-1]])
            previous = np.full(len(codes), -1, dtype=np.int64)
            previous[order[1:][same]] = order[:-1][same]
            self._columns["previous", name] = previous
        return self._columns["previous", name]

    def at(self, name: str, events: np.ndarray) -> np.ndarray:
        """A column's values at some events: float for numbers, objects (None if missing) for
        text."""
        whole = self.whole(name)
        if isinstance(whole, pd.Series):
            return whole.take(self.rows[events]).to_numpy(dtype=object, na_value=None)
        return np.asarray(whole[self.rows[events]], dtype=float)

    def slices(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each entity code's slice `[start, end)`; empty for -1 (not in this source)."""
        known = codes >= 0
        start = np.where(known, np.take(self.offsets, codes, mode="clip"), 0)
        end = np.where(known, np.take(self.offsets, codes + 1, mode="clip"), 0)
        return start, end

    def first_at_or_after(self, codes: np.ndarray, t: np.ndarray,
                          order: np.ndarray | None = None) -> np.ndarray:
        """Per query (entity code, time): index of the entity's first event at or after t (its
        slice's end if none). Codes of -1 (entity not in this source) give empty slices.
        `order`, queries sorted by (code, time) (`query_order`), makes the search walk the
        events once instead of jumping about them."""
        known = codes >= 0
        queries = np.where(known, codes, 0) * self.clock.span + self.clock.first_at_or_after(t)
        if order is None:
            found = np.searchsorted(self.position, queries)
        else:
            found = np.empty(len(queries), dtype=np.intp)
            found[order] = np.searchsorted(self.position, queries[order])
        return np.where(known, found, 0)

    def query_order(self, codes: np.ndarray, t: np.ndarray) -> np.ndarray:
        """The order of queries (code, t) by position: the same for t shifted by any window,
        and for every subset of these events (they share the clock)."""
        known = codes >= 0
        return np.argsort(np.where(known, codes, 0) * self.clock.span
                          + self.clock.first_at_or_after(t), kind="stable")

    def code_of(self, keys: np.ndarray | pa.Array) -> np.ndarray:
        """Each key's entity code; -1 for a key without events."""
        if len(self.keys) == 0:
            return np.full(len(keys), -1, dtype=np.int64)
        found = pc.index_in(pa.array(keys, type=self.keys.type), value_set=self.keys)
        return found.fill_null(-1).to_numpy().astype(np.int64)


def _few_whole(values: np.ndarray) -> float | None:
    """The smallest of numbers (floats with NaN for missing, or integers) when they are whole
    numbers spanning fewer than `FEW_DISTINCT` values, else None."""
    if values.dtype.kind in "iu":
        low = int(values.min(initial=np.iinfo(np.int64).max))
        return float(low) if len(values) and int(values.max()) - low < FEW_DISTINCT else None
    known = ~np.isnan(values)
    if not known.any():
        return None
    low = values.min(where=known, initial=np.inf)
    if values.max(where=known, initial=-np.inf) - low >= FEW_DISTINCT or not np.all(
            ~known | (values == np.floor(values))):
        return None
    return float(low)


def virtual_column(name: str, ns: np.ndarray) -> np.ndarray:
    """`weekday` (Monday = 0), `hour` or `day` (days since 1970-01-01) of event times given as
    ns since the epoch, UTC."""
    if name == "weekday":
        return ((ns // DAY_NS) + 3) % 7  # 1970-01-01 was a Thursday
    if name == "day":
        return ns // DAY_NS
    return (ns % DAY_NS) // (3600 * 10**9)


def encode_entities(columns: Sequence[pa.ChunkedArray | pa.Array]
                    ) -> tuple[pa.Array, list[np.ndarray]]:
    """One dictionary of the entity keys of several columns, sorted so that code order is key
    order, and each column's codes into it (-1 where null)."""
    kind = columns[0].type
    values = pa.chunked_array([chunk.cast(kind) for column in columns
                               for chunk in _chunks(column)], type=kind).combine_chunks()
    numbers = _ordered_integers(values)
    if numbers is not None:  # sorting integers is many times faster than hashing text
        keys_in_order = ordered_bits(numbers)
        keys_in_order -= keys_in_order.min()
        codes, firsts = distinct_ranks(keys_in_order)
        keys = values.take(pa.array(firsts))
    else:
        encoded = pc.dictionary_encode(values)
        order = pc.sort_indices(encoded.dictionary).to_numpy()
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        codes = rank[encoded.indices.fill_null(0).to_numpy()] if len(order) else np.full(
            len(values), -1, dtype=np.int64)
        if encoded.indices.null_count:
            codes[~encoded.indices.is_valid().to_numpy(zero_copy_only=False)] = -1
        keys = encoded.dictionary.take(order)
    ends = np.cumsum([len(column) for column in columns])
    return keys, np.split(codes.astype(np.int64, copy=False), ends[:-1])


def _ordered_integers(values: pa.Array) -> np.ndarray | None:
    """Keys as integers that order as the keys do, when that is exact and cheap: integer keys
    themselves, or text keys of one width up to 8 bytes read as big-endian numbers. None
    otherwise (nulls, mixed widths, other types)."""
    if values.null_count or len(values) == 0:
        return None
    if pa.types.is_integer(values.type):
        return values.to_numpy()
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        return None
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int64 if pa.types.is_large_string(
        values.type) else np.int32)[values.offset:values.offset + len(values) + 1]
    width = int(offsets[1] - offsets[0])
    if not 0 < width <= 8 or np.any(np.diff(offsets) != width):
        return None
    data = np.frombuffer(values.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]]
    padded = np.zeros((len(values), 8), dtype=np.uint8)
    padded[:, 8 - width:] = data.reshape(len(values), width)
    return padded.view(">u8").ravel().astype(np.uint64)


def _chunks(column: pa.ChunkedArray | pa.Array) -> list[pa.Array]:
    return column.chunks if isinstance(column, pa.ChunkedArray) else [column]


def _single(encoded: tuple[pa.Array, list[np.ndarray]]) -> tuple[pa.Array, np.ndarray]:
    keys, (codes,) = encoded
    return keys, codes


@dataclass
class Segments:
    """For each query row, the events `[lo, hi)` of its window, and their gathered positions."""

    lo: np.ndarray
    hi: np.ndarray
    t: np.ndarray

    @property
    def n(self) -> np.ndarray:
        return self.hi - self.lo

    @cached_property
    def nonempty(self) -> np.ndarray:
        return self.hi > self.lo

    @cached_property
    def index(self) -> np.ndarray:
        """Positions of every window's events, window after window (int32 when they fit:
        the largest array a view keeps per window)."""
        n = self.n
        total = int(n.sum())
        kind = index_type(int(self.hi.max(initial=0)) + total)
        starts = np.repeat((self.lo - np.concatenate(([0], np.cumsum(n)[:-1]))).astype(kind), n)
        starts += np.arange(total, dtype=kind)
        return starts

    @cached_property
    def starts(self) -> np.ndarray:
        """Where each non-empty window begins in `index` (for `reduceat`)."""
        return np.concatenate(([0], np.cumsum(self.n)[:-1]))[self.nonempty]

    @cached_property
    def owner(self) -> np.ndarray:
        """For each gathered event, the query row it belongs to."""
        return np.repeat(np.arange(len(self.lo)), self.n)

    def reduce(self, ufunc: np.ufunc, values: np.ndarray, empty: float = np.nan) -> np.ndarray:
        """`ufunc` over each window's values (gathered); `empty` where a window has none."""
        out = np.full(len(self.lo), empty, dtype=float)
        if len(self.starts):
            out[self.nonempty] = ufunc.reduceat(values, self.starts)
        return out


@dataclass
class Spine:
    """The rows to compute features for: entity keys and as-of times (int64 ns, UTC), and the
    keys' entity codes when the caller has them (codes into the `keys` of every source's
    `Events`, as `encode_entities` gives), sparing a lookup per view."""

    keys: np.ndarray
    t: np.ndarray
    codes: np.ndarray | None = None

    @classmethod
    def of(cls, keys: Iterable, as_of: pd.Series | pd.DatetimeIndex | Iterable) -> Spine:
        return cls(keys=np.asarray(list(keys), dtype=object),
                   t=_nanoseconds(pd.Series(pd.to_datetime(as_of, utc=True))))


class ViewComputation:
    """One view's features over one source's events for one spine, sharing work between
    features with the same filter and window."""

    def __init__(self, view: FeatureView, events: Events, spine: Spine) -> None:
        self.view, self.events, self.spine = view, events, spine
        self.codes = spine.codes if spine.codes is not None else events.code_of(spine.keys)
        self._segments: dict[tuple[str | None, int | None, str | None], Segments] = {}
        self._memo: dict[tuple, Any] = {}
        self.window_seconds = 0.0
        """Time spent finding the windows' events (filters and binary searches); the rest of
        the computation reduces them."""

    def subset(self, filter_: str | None, valued: str | None = None) -> Events:
        return self.events.matching(filter_, valued)

    def segments(self, filter_: str | None, window: int | str | None,
                 valued: str | None = None) -> Segments:
        key = (filter_, window, valued)
        if key not in self._segments:
            started = perf_counter()
            events, t = self.subset(filter_, valued), self.spine.t
            order = self._once(("order",), lambda: self.events.query_order(self.codes, t))
            hi = self._once(("ends", filter_, valued),  # every window of the subset ends at t
                            lambda: events.first_at_or_after(self.codes, t, order))
            if window is None:
                lo, _ = events.slices(self.codes)
            else:
                lo = events.first_at_or_after(self.codes, t - duration_ns(window), order)
            self._segments[key] = Segments(lo=lo, hi=hi, t=t)
            self.window_seconds += perf_counter() - started
        return self._segments[key]

    def columns(self, given: dict[str, np.ndarray] | None = None,
                borrowed: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Every feature of the view, derived ones last; features in `given` are taken from
        it instead of being computed (a stream processor's running aggregates), `borrowed`
        holds the features of the views it reads."""
        given = given or {}
        values: dict[str, np.ndarray] = {}
        for feature in self.view.features:
            values[feature.name] = (given[feature.name] if feature.name in given
                                    else self.compute(feature))
        return derive_all(self.view, values, borrowed)

    def frame(self, given: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
        return as_frame(self.columns(given))

    def compute(self, f: Feature) -> np.ndarray:
        exact = APPROXIMATE.get(f.agg, f.agg)  # a sketch shares its exact aggregation's events
        valued = f.column if exact in NUMERIC else None
        seg = self.segments(f.filter, f.window, valued)
        events = self.subset(f.filter, valued)
        n = seg.n
        if f.agg == "count":
            return n.astype(np.int64)
        if f.agg == "share":
            total = self.segments(None, f.window).n
            return divide(n, total)
        if f.agg in ("first", "last"):
            return edge_values(events, seg, f.column, f.agg)
        if f.agg in ("days_since_last", "days_since_first"):
            if f.column is not None:
                ufunc = np.fmax if f.agg == "days_since_last" else np.fmin
                return (seg.t - seg.reduce(ufunc, events.values(f.column)[seg.index])) / DAY_NS
            at = (seg.hi - 1 if f.agg == "days_since_last" else seg.lo)[seg.nonempty]
            days = np.full(len(n), np.nan)
            days[seg.nonempty] = (seg.t[seg.nonempty] - events.time[at]) / DAY_NS  # exact ns
            return days
        if f.agg == "nunique":
            return self._nunique(f, seg, events)
        if f.agg == "sessions":
            return self._sessions(f, seg, events)
        if exact in QUANTILES:
            return self._quantile(f, seg, events, QUANTILES[exact], sketch=f.agg != exact)
        if f.agg == "approx_nunique":
            hashes, known, order = events.hashes(f.column)
            found, owner = self._in_order(seg, events, order)
            found, owner = found[known[found]], owner[known[found]]
            return hyperloglog(hashes[found], owner, len(seg.lo))
        key = (f.column, f.filter, f.window, valued)  # what features of one window share
        values = self._once(("values", *key), lambda: np.ones(len(seg.index)) if f.column is None
                            else events.values(f.column)[seg.index])
        if f.agg in DAILY:  # without a column, statistics of daily event counts
            return self.daily(f, seg, events.time[seg.index], values, key)
        total = self._once(("sum", *key), lambda: seg.reduce(np.add, values, empty=0.0))
        if f.agg == "sum":
            return total
        mean = divide(total, n)
        if f.agg == "mean":
            return mean
        if f.agg in ("min", "max", "range"):
            low = self._once(("min", *key), lambda: seg.reduce(np.minimum, values))
            high = self._once(("max", *key), lambda: seg.reduce(np.maximum, values))
            return {"min": low, "max": high, "range": high - low}[f.agg]
        centred = self._once(("centred", *key), lambda: values - np.repeat(mean, seg.n))
        m2 = self._once(("m2", *key), lambda: seg.reduce(np.add, centred**2))
        return moment(f.agg, n, m2, mean, lambda power: seg.reduce(np.add, centred**power))

    def daily(self, f: Feature, seg: Segments, times: np.ndarray, values: np.ndarray,
              key: tuple) -> np.ndarray:
        """A `DAILY` feature from its window's gathered event times and values (or daily
        totals at their days' start: the same days, the same totals)."""
        days = whole_days(f.window)
        if f.agg in ("daily_mean", "ema_7d"):
            return _smoothed(f.agg, seg, times, values, days)
        return _trend(f.agg, days, *self._once(
            ("daily", *key), lambda: _daily_sums(seg, times, values, days)))

    def _once(self, key: tuple, make: Callable[[], Any]) -> Any:
        """`make()`, computed once per key for this spine: features of one window share their
        gathered values, sums and daily totals."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def _quantile(self, f: Feature, seg: Segments, events: Events, q: float,
                  sketch: bool = False) -> np.ndarray:
        """Linear interpolation between the closest ranks, as numpy and pandas do; with
        `sketch`, between the DDSketch representatives of those ranks' values."""
        ordered = self._once(("ordered", f.column, f.filter, f.window),  # for every quantile
                             lambda: events.values(f.column)[self._in_order(
                                 seg, events, events.by_entity_then_value(f.column))[0]])
        n = seg.n[seg.nonempty]
        position = q * (n - 1)
        below = np.floor(position).astype(np.int64)
        above = np.minimum(below + 1, n - 1)
        low, high = ordered[seg.starts + below], ordered[seg.starts + above]
        if sketch:
            low, high = ddsketch_value(low), ddsketch_value(high)
        out = np.full(len(seg.lo), np.nan)
        out[seg.nonempty] = low + (high - low) * (position - below)
        return out

    def _in_order(self, seg: Segments, events: Events,
                  order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each window's events (indices into `events`), window after window, in the order of
        `order` inside a window (the events sorted by entity, then by a value), and the query
        row each belongs to: the entity's slice of `order`, keeping those inside the window.
        That one sort serves every window and as-of date."""
        start, end = events.slices(self.codes)
        slices = Segments(lo=start, hi=end, t=seg.t)
        found, owner = order[slices.index], slices.owner
        inside = (found >= seg.lo[owner]) & (found < seg.hi[owner])
        return found[inside], owner[inside]

    @staticmethod
    def _sessions(f: Feature, seg: Segments, events: Events) -> np.ndarray:
        """Session starts in each window: its first event, and every event at least `gap`
        after the entity's previous one."""
        follows = np.zeros(len(events.time), dtype=bool)
        follows[1:] = (events.entity[1:] == events.entity[:-1]) & (
            np.diff(events.time) < duration_ns(f.gap))
        starts = ~follows[seg.index]
        starts[seg.starts] = True
        return seg.reduce(np.add, starts.astype(np.int64), empty=0).astype(np.int64)

    @staticmethod
    def _nunique(f: Feature, seg: Segments, events: Events) -> np.ndarray:
        """Distinct values in each window. Up to `FEW_DISTINCT` values (categories, days): the
        bitwise OR of each window's one-hot value bits, counted. Otherwise the events whose
        value has not occurred earlier in the window: their last earlier occurrence for the
        entity is before the window (or there is none)."""
        codes = events.codes(f.column)
        if codes.max(initial=-1) < FEW_DISTINCT:
            gathered = codes[seg.index]
            count = np.zeros(len(seg.lo), dtype=np.int64)
            if not len(seg.starts):
                return count
            bit = np.left_shift(np.uint64(1), (gathered & 63).astype(np.uint64))
            for word in range(int(codes.max(initial=-1)) // 64 + 1):
                bits = np.where((gathered >> 6) == word, bit, np.uint64(0))  # -1: no word
                count[seg.nonempty] += np.bitwise_count(np.bitwise_or.reduceat(bits,
                                                                               seg.starts))
            return count
        previous = events.previous_same(f.column)
        first = (codes[seg.index] >= 0) & (previous[seg.index] < np.repeat(seg.lo, seg.n))
        return seg.reduce(np.add, first.astype(np.int64), empty=0).astype(np.int64)


_GAMMA = (1 + DDSKETCH_ALPHA) / (1 - DDSKETCH_ALPHA)
_LOG_GAMMA = float(np.log1p(2 * DDSKETCH_ALPHA / (1 - DDSKETCH_ALPHA)))


def ddsketch_value(x: np.ndarray) -> np.ndarray:
    """The value DDSketch (relative accuracy `DDSKETCH_ALPHA`) gives for x: the representative
    2 γ^i / (γ + 1) of its log bucket i = ceil(log_γ |x|), γ = (1 + α) / (1 - α), with x's sign;
    within α of x, relatively. Zero (and anything below the smallest normal float) is 0."""
    size = np.abs(x)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        index = np.ceil(np.log(size) / _LOG_GAMMA)
        index -= np.exp((index - 1) * _LOG_GAMMA) >= size  # rounding at a bucket's edge
        index += np.exp(index * _LOG_GAMMA) < size
        value = np.copysign(np.exp(index * _LOG_GAMMA) * (2 / (_GAMMA + 1)), x)
    return np.where(np.isnan(x) | (size >= np.finfo(float).tiny), value, 0.0)


def hyperloglog(hashes: np.ndarray, owner: np.ndarray, rows: int) -> np.ndarray:
    """The distinct count a HyperLogLog++ sketch (`HLL_PRECISION`, sparse precision
    `HLL_SPARSE_PRECISION`) of each row's value hashes gives, rounded; 0 for none. `hashes`
    come row after row (`owner`, ascending), each row's sorted by their top sparse bits.

    A sketch holding at most m = 2^p distinct sparse positions (the top p' bits) is sparse:
    linear counting over 2^p' cells (exact in practice). Past that it is dense: m registers (the
    top p bits) each keep the highest rank (leading zeros + 1 of the other 64 - p bits) seen,
    and the estimate is Ertl's improved one (`_dense_estimate`)."""
    m, cells = 1 << HLL_PRECISION, 1 << HLL_SPARSE_PRECISION
    prefix = hashes >> np.uint64(64 - HLL_SPARSE_PRECISION)
    register = prefix >> np.uint64(HLL_SPARSE_PRECISION - HLL_PRECISION)
    first = np.ones(len(owner), dtype=bool)
    first[1:] = owner[1:] != owner[:-1]
    positions = first.copy()
    positions[1:] |= prefix[1:] != prefix[:-1]
    distinct = np.bincount(owner[positions], minlength=rows)
    with np.errstate(divide="ignore"):
        out = cells * np.log(cells / (cells - distinct))
    dense = np.flatnonzero(distinct > m)
    if len(dense):
        keep = np.isin(owner, dense)  # registers only where the sketch is dense
        owner, register, hashes, first = owner[keep], register[keep], hashes[keep], first[keep]
        rest = (hashes & np.uint64((1 << (64 - HLL_PRECISION)) - 1)).astype(float)  # < 2^53
        rank = (64 - HLL_PRECISION + 1) - np.frexp(rest)[1]  # frexp's exponent: bit length
        groups = first.copy()
        groups[1:] |= register[1:] != register[:-1]
        starts = np.flatnonzero(groups)
        top = np.maximum.reduceat(rank, starts)
        row = np.searchsorted(dense, owner[starts])
        histogram = np.bincount(row * (66 - HLL_PRECISION) + top,
                                minlength=len(dense) * (66 - HLL_PRECISION)).reshape(
                                    len(dense), 66 - HLL_PRECISION)
        histogram[:, 0] = m - histogram.sum(axis=1)  # empty registers
        out[dense] = _dense_estimate(histogram.astype(float), m)
    return np.rint(out).astype(np.int64)


def _dense_estimate(counts: np.ndarray, m: int) -> np.ndarray:
    """Ertl's improved HyperLogLog estimator ("New cardinality estimation algorithms for
    HyperLogLog sketches", 2017, algorithm 6) from each row's register histogram (`counts[:, k]`
    registers of value k, 0 = empty, up to q + 1 = 65 - p): unbiased from small to large
    counts without HyperLogLog++'s empirical bias tables. The classic estimator with linear
    counting below 2.5 m is biased by up to +2% near 2.5 m-3 m (10-12 thousand at p = 12)."""
    q = counts.shape[1] - 2
    z = m * _tau(1 - counts[:, q + 1] / m)
    for k in range(q, 0, -1):
        z = 0.5 * (z + counts[:, k])
    z = z + m * _sigma(counts[:, 0] / m)
    return m * m / (2 * np.log(2)) / z


def _sigma(x: np.ndarray) -> np.ndarray:
    """σ(x) = x + Σ_k x^(2^k) 2^(k-1), to convergence (∞ at x = 1)."""
    with np.errstate(over="ignore", invalid="ignore"):
        z, y, power = x.copy(), 1.0, x.copy()
        for _ in range(64):  # x^(2^k) vanishes well before: x <= 1 - 1/m
            power = power * power
            z = z + power * y
            y += y
    return np.where(x >= 1, np.inf, z)


def _tau(x: np.ndarray) -> np.ndarray:
    """τ(x) = (1 - x - Σ_k (1 - x^(2^-k))² 2^-k) / 3, to convergence (0 at x = 0 and 1)."""
    z, y, root = 1 - x, 1.0, x.copy()
    for _ in range(64):
        root = np.sqrt(root)
        y *= 0.5
        z = z - (1 - root) ** 2 * y
    return np.where((x <= 0) | (x >= 1), 0.0, z / 3)


def arrow_text(dtype: pa.DataType) -> pd.ArrowDtype | None:
    """Text columns as Arrow-backed pandas strings (`to_pandas`'s `types_mapper`)."""
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return pd.ArrowDtype(dtype)
    return None


def _is_time(dtype: object) -> bool:
    if isinstance(dtype, pd.ArrowDtype):
        return pa.types.is_timestamp(dtype.pyarrow_dtype) or pa.types.is_date(dtype.pyarrow_dtype)
    return isinstance(dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(dtype)


def _nanoseconds(values: pd.Series) -> np.ndarray:
    """int64 ns since the epoch, UTC (naive timestamps are taken as UTC)."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):  # skips to_datetime's scan for a cache
        stamps = values.dt.tz_convert("UTC").dt.tz_localize(None)
    elif pd.api.types.is_datetime64_dtype(values.dtype):
        stamps = values
    else:
        stamps = pd.to_datetime(values, utc=True).dt.tz_localize(None)
    return stamps.astype("datetime64[ns]").to_numpy().view(np.int64)


def arrow_nanoseconds(column: pa.ChunkedArray) -> np.ndarray:
    """int64 ns since the epoch, UTC, straight from Arrow for timestamps (no pandas copy; a
    missing time is NaT's value, as pandas gives it)."""
    if not pa.types.is_timestamp(column.type):
        return _nanoseconds(column.to_pandas())
    nanos = column.cast(pa.timestamp("ns", tz=column.type.tz)).cast(pa.int64())
    return np.asarray(nanos.fill_null(np.iinfo(np.int64).min).to_numpy(), dtype=np.int64)


def divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.full(len(a), np.nan)
    np.divide(a, b, out=out, where=b != 0)
    return out


def edge_values(events: Events, seg: Segments, column: str, agg: str) -> np.ndarray:
    """`first` or `last`: a column's value at each window's first or last event (missing for
    an empty window)."""
    at = seg.lo if agg == "first" else seg.hi - 1
    found = events.at(column, at[seg.nonempty])
    out = np.full(len(seg.lo), None if found.dtype == object else np.nan, dtype=found.dtype)
    out[seg.nonempty] = found
    return out


def moment(agg: str, n: np.ndarray, m2: np.ndarray, mean: np.ndarray,
           central: Callable[[int], np.ndarray]) -> np.ndarray:
    """Variance-based statistics from each window's count, mean and summed squared deviations
    from its mean (`m2`; `central(k)` gives the k-th powers' sums, asked only for skew and
    kurtosis), with pandas' definitions (sample variance; bias-corrected skewness and excess
    kurtosis)."""
    n = n.astype(float)
    if agg in ("std", "var", "cv"):
        with np.errstate(invalid="ignore", divide="ignore"):
            var = np.where(n >= 2, m2 / (n - 1), np.nan)
        if agg == "var":
            return var
        return np.sqrt(var) if agg == "std" else divide(np.sqrt(var), mean)
    m2 = np.where(np.abs(m2) < 1e-14, 0.0, m2)
    with np.errstate(invalid="ignore", divide="ignore"):
        if agg == "skew":
            m3 = central(3)
            m3 = np.where(np.abs(m3) < 1e-14, 0.0, m3)
            out = (n * (n - 1) ** 0.5 / (n - 2)) * (m3 / m2**1.5)
            out = np.where(m2 == 0, 0.0, out)
            return np.where(n < 3, np.nan, out)
        m4 = central(4)
        numerator = n * (n + 1) * (n - 1) * m4
        denominator = (n - 2) * (n - 3) * m2**2
        adjust = 3 * (n - 1) ** 2 / ((n - 2) * (n - 3))
        out = np.where(denominator == 0, 0.0, numerator / denominator - adjust)
        return np.where(n < 4, np.nan, out)


def _age(seg: Segments, times: np.ndarray) -> np.ndarray:
    """Whole days before t of each gathered event: day k (0 = the 24 h just before t) covers
    [t - (k+1) d, t - k d)."""
    return (np.repeat(seg.t, seg.n) - times - 1) // DAY_NS  # exactly k days before t: k-1


def _smoothed(agg: str, seg: Segments, times: np.ndarray, values: np.ndarray,
              window: int) -> np.ndarray:
    """The moving average (`daily_mean`) or EMA of a window's daily totals."""
    values = np.nan_to_num(values)
    if agg == "daily_mean":
        return seg.reduce(np.add, values, empty=0.0) / window
    weights = 0.5 ** (np.arange(window) / EMA_HALF_LIFE_DAYS)
    return seg.reduce(np.add, values * weights[_age(seg, times)], empty=0.0) / weights.sum()


def _daily_sums(seg: Segments, times: np.ndarray, values: np.ndarray,
                window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Σy, Σxy and Σy² of each window's daily totals y at x = window - 1 - k (oldest day 0);
    empty days add nothing."""
    age = _age(seg, times)
    # daily totals: runs of equal (row, day) are contiguous since times ascend in a window
    owner = seg.owner
    boundary = np.ones(len(age), dtype=bool)
    boundary[1:] = (age[1:] != age[:-1]) | (owner[1:] != owner[:-1])
    starts = np.flatnonzero(boundary)
    y = np.add.reduceat(np.nan_to_num(values), starts) if len(starts) else np.zeros(0)
    x = (window - 1 - age[starts]).astype(float)
    rows, size = owner[starts], len(seg.lo)
    return (np.bincount(rows, y, minlength=size), np.bincount(rows, x * y, minlength=size),
            np.bincount(rows, y * y, minlength=size))


def _trend(agg: str, window: int, sy: np.ndarray, sxy: np.ndarray,
           syy: np.ndarray) -> np.ndarray:
    """Slope or r² of the least-squares line through a window's daily totals."""
    w = float(window)
    sx, sxx = w * (w - 1) / 2, (w - 1) * w * (2 * w - 1) / 6
    cov = w * sxy - sx * sy
    var_x = w * sxx - sx**2
    if agg == "trend_slope":
        return cov / var_x if var_x else np.zeros(len(sy))
    var_y = w * syy - sy**2
    flat = var_y <= 1e-12 * w * syy  # no variation in the daily totals: r² is undefined
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(flat, np.nan, cov**2 / (var_x * var_y))


def derive(derived: Derived, values: dict[str, np.ndarray]) -> np.ndarray:
    """A derived feature over the features computed before it."""
    if derived.expression is not None:
        return np.asarray(evaluate(derived.expression, values), dtype=float)
    conditions = [np.asarray(evaluate(condition, values), dtype=bool)
                  for condition, _ in derived.cases]
    labels = [label for _, label in derived.cases]
    return np.select(conditions, labels, default=derived.default).astype(object)


def derive_all(view: View, values: dict[str, np.ndarray],
               borrowed: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """`values` (the view's computed features) and its derived features, which may also use
    `borrowed`, the features of the views it reads."""
    known = {**(borrowed or {}), **values}
    for derived in view.derived:
        values[derived.name] = known[derived.name] = derive(derived, known)
    return values


def window_events(item: Input, view: CustomView, events: Events, spine: Spine
                  ) -> tuple[pd.DataFrame, np.ndarray]:
    """One input's events of every spine row's window `[t - lookback, t)`, window after
    window, indexed by spine row (`row`), with the entity key, the event time (UTC) and the
    input's columns; and where each row's events start (`bounds[i]:bounds[i + 1]`)."""
    codes = spine.codes if spine.codes is not None else events.code_of(spine.keys)
    hi = events.first_at_or_after(codes, spine.t)
    lo = (events.slices(codes)[0] if view.lookback_ns is None
          else events.first_at_or_after(codes, spine.t - view.lookback_ns))
    seg = Segments(lo=lo, hi=hi, t=spine.t)
    frame = events.frame[list(item.columns)].take(events.rows[seg.index])
    frame.index = pd.Index(seg.owner, name=ROW)
    frame.insert(0, view.entity.key, np.asarray(spine.keys)[seg.owner])
    frame.insert(1, item.source.timestamp, pd.to_datetime(events.time[seg.index], utc=True))
    return frame, np.concatenate(([0], np.cumsum(seg.n)))


def custom_columns(view: CustomView, events: dict[str, Events], spine: Spine,
                   borrowed: dict[str, np.ndarray] | None = None,
                   timings: dict[str, float] | None = None) -> dict[str, np.ndarray]:
    """A custom view's features: its function over every spine row's windows (and nothing
    else of the sources), then its derived features."""
    started = perf_counter()
    gathered = [window_events(item, view, events[item.source.name], spine)
                for item in view.inputs]
    frame = pd.DataFrame({view.entity.key: spine.keys,
                          AS_OF: pd.to_datetime(spine.t, utc=True)},
                         index=pd.RangeIndex(len(spine.t), name=ROW))
    windows = perf_counter()
    values = apply_function(view, [f for f, _ in gathered], [b for _, b in gathered], frame)
    if timings is not None:
        timings["windows"] = timings.get("windows", 0.0) + windows - started
        timings["reductions"] = timings.get("reductions", 0.0) + perf_counter() - windows
    return derive_all(view, values, borrowed)


def as_frame(columns: dict[str, np.ndarray]) -> pd.DataFrame:
    """The columns as a frame without copying them: pandas would otherwise consolidate the
    numbers into one 2-D block, copying every column (most of the time of a wide discovery
    frame), and the frame is only written or converted to Arrow column by column."""
    return pd.DataFrame(columns, copy=False)


def compute_views(views: Iterable[View], events: dict[str, Events], spine: Spine,
                  leading: dict[str, np.ndarray] | None = None,
                  threads: int = 1, timings: dict[str, float] | None = None,
                  computations: dict[str, Callable[[Spine], ViewComputation]] | None = None
                  ) -> pd.DataFrame:
    """Every view's features for every spine row, in spine order, one column per feature,
    after the `leading` columns (such as the entity keys). The views they read are computed
    too (not returned). With `threads` > 1, views that read no other view are computed that
    many at once (numpy releases the GIL for the sorts, searches and reductions): for a
    process that owns several cores, not a Ray task that owns one. Views of one source share
    its `Events`, whose caches at worst fill twice with the same values. `timings` gains the
    seconds spent on "windows" and "reductions" (summed over threads). `computations` gives,
    by view name, how to compute a view other than from its source's `events` (from daily
    tiles, `tideline.features.tiles`)."""
    wanted = list(views)
    every = with_reads(wanted)
    done: dict[str, dict[str, np.ndarray]] = {}

    def one(view: View) -> dict[str, np.ndarray]:
        borrowed = {name: column for other in view.reads for name, column in
                    done[other.name].items()}
        if isinstance(view, CustomView):
            return custom_columns(view, events, spine, borrowed, timings)
        started = perf_counter()
        computation = (computations[view.name](spine) if view.name in (computations or {})
                       else ViewComputation(view, events[view.source.name], spine))
        columns = computation.columns(borrowed=borrowed)
        if timings is not None:
            total = perf_counter() - started
            timings["windows"] = timings.get("windows", 0.0) + computation.window_seconds
            timings["reductions"] = (timings.get("reductions", 0.0) + total
                                     - computation.window_seconds)
        return columns

    independent = [view for view in every if not view.reads]
    if threads > 1 and len(independent) > 1:
        with ThreadPoolExecutor(threads) as pool:
            done.update(zip([v.name for v in independent], pool.map(one, independent),
                            strict=True))
    for view in every:
        if view.name not in done:
            done[view.name] = one(view)
    columns = dict(leading or {})
    for view in wanted:
        computed = done[view.name]
        if clash := columns.keys() & computed.keys():
            raise FeatureDefinitionError(f"feature view {view.name!r}: {sorted(clash)} already "
                                         "computed by another view in the same build")
        columns.update(computed)
    return as_frame(columns)
