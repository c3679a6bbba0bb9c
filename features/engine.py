"""The feature engine: every feature of a view, for every (entity, as-of time) row of a spine,
from the events strictly before that time.

How it works, vectorised end to end (no Python loop per entity or per row):

1. A source's events are sorted once by (entity, event time) (`Events`).
2. For each spine row and window, two vectorised binary searches inside the entity's slice give
   the half-open range of events ``[lo, hi)`` with time in ``[t - w, t)`` (`Segments`). An event
   exactly at t is outside by construction; the same search serves a batch as-of date and a
   training set with a different time on every row.
3. Aggregations reduce those ranges with `numpy.ufunc.reduceat` over the gathered values:
   sums and extremes directly, moments on centred values, quantiles and distinct counts after a
   sort inside each range, trends and EMAs on daily totals binned back from t.

Segments are shared by every feature with the same filter and window, and the sorted events by
every window and as-of date, so adding dates or features costs only the reductions.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.definitions import DAILY, NUMERIC, QUANTILES, Derived, Feature, FeatureView
from features.expressions import evaluate, names_in

DAY_NS = 86_400 * 10**9
EMA_HALF_LIFE_DAYS = 7.0


@dataclass
class Events:
    """One source's events in (entity code, time) order; `offsets[c]:offsets[c+1]` is entity
    c's slice. Entity codes index `keys`. Other columns stay in the source frame, unsorted, and
    are gathered in event order only when a feature asks for them."""

    keys: pd.Index
    entity: np.ndarray
    time: np.ndarray
    """Event time as int64 nanoseconds since the epoch (UTC)."""
    frame: pd.DataFrame
    """The source's columns as read (unsorted)."""
    rows: np.ndarray
    """Positions in `frame` of the events, in event order."""
    converted: dict[str, np.ndarray | pd.Series] = field(default_factory=dict, repr=False)
    """Whole-frame columns converted for computing, shared with subsets."""
    offsets: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.offsets = np.searchsorted(self.entity, np.arange(len(self.keys) + 1))
        self._columns: dict[str, np.ndarray | pd.Series] = {}

    @classmethod
    def from_table(cls, table: pa.Table, key: str, timestamp: str) -> Events:
        """Order a source table's events; text columns stay Arrow-backed (cheap to filter)."""
        table = table.filter(pc.is_valid(table.column(key)))
        encoded = pc.dictionary_encode(table.column(key).combine_chunks())
        codes = encoded.indices.to_numpy().astype(np.int64)
        frame = table.drop_columns([key]).to_pandas(types_mapper=_arrow_text,
                                                   date_as_object=False)
        time = _nanoseconds(frame[timestamp])
        order = _event_order(codes, time, len(encoded.dictionary))
        return cls(keys=pd.Index(encoded.dictionary.to_pandas(), dtype=object),
                   entity=codes[order], time=time[order], frame=frame, rows=order)

    def subset(self, mask: np.ndarray) -> Events:
        """The events where `mask` holds, same keys and order."""
        return Events(keys=self.keys, entity=self.entity[mask], time=self.time[mask],
                      frame=self.frame, rows=self.rows[mask], converted=self.converted)

    def column(self, name: str) -> np.ndarray | pd.Series:
        """A column in event order: numeric and time columns as float numpy values (time in
        ns), text as an Arrow-backed Series; virtual `weekday`/`hour` from the event time."""
        if name == "weekday":
            return ((self.time // DAY_NS) + 3) % 7  # 1970-01-01 was a Thursday
        if name == "hour":
            return (self.time % DAY_NS) // (3600 * 10**9)
        if name not in self._columns:
            whole = self._converted(name)
            self._columns[name] = (whole.take(self.rows).reset_index(drop=True)
                                   if isinstance(whole, pd.Series) else whole[self.rows])
        return self._columns[name]

    def _converted(self, name: str) -> np.ndarray | pd.Series:
        if name not in self.converted:
            values = self.frame[name]
            if _is_time(values.dtype):
                values = _nanoseconds(values).astype(float)
            elif pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(
                    values.dtype):
                values = values.to_numpy(dtype=float, na_value=np.nan)
            self.converted[name] = values
        return self.converted[name]

    def slices(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each entity code's slice `[start, end)`; empty for -1 (not in this source)."""
        known = codes >= 0
        start = np.where(known, np.take(self.offsets, codes, mode="clip"), 0)
        end = np.where(known, np.take(self.offsets, codes + 1, mode="clip"), 0)
        return start, end

    def first_at_or_after(self, codes: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Per query (entity code, time): index of the entity's first event at or after t (its
        slice's end if none). Codes of -1 (entity not in this source) give empty slices."""
        lo, hi = self.slices(codes)
        while True:  # a binary search per query, all queries at once
            active = lo < hi
            if not active.any():
                return lo
            mid = (lo + hi) // 2
            before = np.zeros(len(lo), dtype=bool)
            before[active] = self.time[mid[active]] < t[active]
            lo = np.where(active & before, mid + 1, lo)
            hi = np.where(active & ~before, mid, hi)


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
        """Positions of every window's events, window after window."""
        n = self.n
        starts = np.repeat(self.lo - np.concatenate(([0], np.cumsum(n)[:-1])), n)
        return starts + np.arange(int(n.sum()))

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
    """The rows to compute features for: entity keys and as-of times (int64 ns, UTC)."""

    keys: np.ndarray
    t: np.ndarray

    @classmethod
    def of(cls, keys: Iterable, as_of: pd.Series | pd.DatetimeIndex | Iterable) -> Spine:
        return cls(keys=np.asarray(list(keys), dtype=object),
                   t=_nanoseconds(pd.Series(pd.to_datetime(as_of, utc=True))))


class ViewComputation:
    """One view's features over one source's events for one spine, sharing work between
    features with the same filter and window."""

    def __init__(self, view: FeatureView, events: Events, spine: Spine) -> None:
        self.view, self.events, self.spine = view, events, spine
        self.codes = events.keys.get_indexer(spine.keys)
        self._subsets: dict[tuple[str | None, str | None], Events] = {}
        self._segments: dict[tuple[str | None, int | None, str | None], Segments] = {}
        self._sorted: dict[tuple, np.ndarray] = {}

    def subset(self, filter_: str | None, valued: str | None = None) -> Events:
        """The events matching `filter_`, and with a value in column `valued` if given (numeric
        statistics skip missing values, as pandas does)."""
        key = (filter_, valued)
        if key not in self._subsets:
            mask = np.ones(len(self.events.time), dtype=bool)
            if filter_ is not None:
                columns = {name: self.events.column(name)
                           for name in names_in(filter_, f"filter {filter_!r}")}
                mask &= np.asarray(evaluate(filter_, columns), dtype=bool)
            if valued is not None:
                mask &= ~np.isnan(self.events.column(valued))
            self._subsets[key] = self.events if mask.all() else self.events.subset(mask)
        return self._subsets[key]

    def segments(self, filter_: str | None, window: int | None,
                 valued: str | None = None) -> Segments:
        key = (filter_, window, valued)
        if key not in self._segments:
            events, t = self.subset(filter_, valued), self.spine.t
            hi = events.first_at_or_after(self.codes, t)
            if window is None:
                lo, _ = events.slices(self.codes)
            else:
                lo = events.first_at_or_after(self.codes, t - window * DAY_NS)
            self._segments[key] = Segments(lo=lo, hi=hi, t=t)
        return self._segments[key]

    def frame(self) -> pd.DataFrame:
        values: dict[str, np.ndarray] = {}
        for feature in self.view.features:
            values[feature.name] = self.compute(feature)
        for derived in self.view.derived:
            values[derived.name] = derive(derived, values)
        return pd.DataFrame(values)

    def compute(self, f: Feature) -> np.ndarray:
        valued = f.column if f.agg in NUMERIC else None
        seg = self.segments(f.filter, f.window, valued)
        events = self.subset(f.filter, valued)
        n = seg.n
        if f.agg == "count":
            return n.astype(np.int64)
        if f.agg == "share":
            total = self.segments(None, f.window).n
            return _divide(n, total)
        if f.agg in ("first", "last"):
            at = seg.lo if f.agg == "first" else seg.hi - 1
            column = events.column(f.column)
            if isinstance(column, pd.Series):
                column = column.to_numpy(dtype=object, na_value=None)
            out = np.full(len(n), None if column.dtype == object else np.nan, dtype=column.dtype)
            out[seg.nonempty] = column[at[seg.nonempty]]
            return out
        if f.agg in ("days_since_last", "days_since_first"):
            if f.column is not None:
                ufunc = np.fmax if f.agg == "days_since_last" else np.fmin
                return (seg.t - seg.reduce(ufunc, events.column(f.column)[seg.index])) / DAY_NS
            at = (seg.hi - 1 if f.agg == "days_since_last" else seg.lo)[seg.nonempty]
            days = np.full(len(n), np.nan)
            days[seg.nonempty] = (seg.t[seg.nonempty] - events.time[at]) / DAY_NS  # exact ns
            return days
        if f.agg == "nunique":
            return self._nunique(f, seg, events)
        if f.agg in DAILY:  # without a column, statistics of daily event counts
            values = (np.ones(len(seg.index)) if f.column is None
                      else events.column(f.column)[seg.index])
            return _daily(f.agg, seg, events.time[seg.index], values, f.window)
        values = events.column(f.column)[seg.index]
        if f.agg in QUANTILES:
            return self._quantile(f, seg, values, QUANTILES[f.agg])
        total = seg.reduce(np.add, values, empty=0.0)
        if f.agg == "sum":
            return total
        mean = _divide(total, n)
        if f.agg == "mean":
            return mean
        if f.agg in ("min", "max", "range"):
            low, high = seg.reduce(np.minimum, values), seg.reduce(np.maximum, values)
            return {"min": low, "max": high, "range": high - low}[f.agg]
        return _moment(f.agg, seg, values, mean)

    def _sorted_values(self, f: Feature, seg: Segments, values: np.ndarray) -> np.ndarray:
        """The window's values sorted inside each window (shared by a column's quantiles)."""
        key = (f.column, f.filter, f.window)
        if key not in self._sorted:  # one sort serves every quantile of the column
            self._sorted[key] = np.lexsort((values, seg.owner))
        return values[self._sorted[key]]

    def _quantile(self, f: Feature, seg: Segments, values: np.ndarray, q: float) -> np.ndarray:
        """Linear interpolation between the closest ranks, as numpy and pandas do."""
        ordered = self._sorted_values(f, seg, values)
        n = seg.n[seg.nonempty]
        position = q * (n - 1)
        below = np.floor(position).astype(np.int64)
        above = np.minimum(below + 1, n - 1)
        low, high = ordered[seg.starts + below], ordered[seg.starts + above]
        out = np.full(len(seg.lo), np.nan)
        out[seg.nonempty] = low + (high - low) * (position - below)
        return out

    def _nunique(self, f: Feature, seg: Segments, events: Events) -> np.ndarray:
        codes, _ = pd.factorize(events.column(f.column), use_na_sentinel=True)
        gathered = codes[seg.index]
        owner = seg.owner
        keep = gathered >= 0
        gathered, owner = gathered[keep], owner[keep]
        order = np.lexsort((gathered, owner))
        gathered, owner = gathered[order], owner[order]
        new = np.ones(len(gathered), dtype=bool)
        new[1:] = (gathered[1:] != gathered[:-1]) | (owner[1:] != owner[:-1])
        return np.bincount(owner[new], minlength=len(seg.lo)).astype(np.int64)


def _arrow_text(dtype: pa.DataType) -> pd.ArrowDtype | None:
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return pd.ArrowDtype(dtype)
    return None


def _is_time(dtype: object) -> bool:
    if isinstance(dtype, pd.ArrowDtype):
        return pa.types.is_timestamp(dtype.pyarrow_dtype) or pa.types.is_date(dtype.pyarrow_dtype)
    return isinstance(dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(dtype)


def _event_order(codes: np.ndarray, time: np.ndarray, entities: int) -> np.ndarray:
    """Positions sorted by (entity, time), ties in source order. One stable sort of a combined
    int64 key when the times' resolution allows (3x faster than a two-key lexsort)."""
    if len(time) == 0:
        return np.zeros(0, dtype=np.int64)
    low = time.min()
    for unit in (10**9, 10**6, 10**3, 1):  # the coarsest unit that keeps every time exact
        if not np.any((time - low) % unit):
            break
    span = int((time.max() - low) // unit) + 1
    if entities * span < 2**62:
        return np.argsort(codes * span + (time - low) // unit, kind="stable")
    return np.lexsort((time, codes))


def _nanoseconds(values: pd.Series) -> np.ndarray:
    """int64 ns since the epoch, UTC (naive timestamps are taken as UTC)."""
    stamps = pd.to_datetime(values, utc=True).dt.tz_localize(None)
    return stamps.astype("datetime64[ns]").to_numpy().view(np.int64)


def _divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.full(len(a), np.nan)
    np.divide(a, b, out=out, where=b != 0)
    return out


def _moment(agg: str, seg: Segments, values: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Variance-based statistics on values centred per window, with pandas' definitions
    (sample variance; bias-corrected skewness and excess kurtosis)."""
    n = seg.n.astype(float)
    centred = values - np.repeat(mean, seg.n)
    m2 = seg.reduce(np.add, centred**2)
    if agg in ("std", "var", "cv"):
        with np.errstate(invalid="ignore", divide="ignore"):
            var = np.where(n >= 2, m2 / (n - 1), np.nan)
        if agg == "var":
            return var
        return np.sqrt(var) if agg == "std" else _divide(np.sqrt(var), mean)
    m2 = np.where(np.abs(m2) < 1e-14, 0.0, m2)
    with np.errstate(invalid="ignore", divide="ignore"):
        if agg == "skew":
            m3 = seg.reduce(np.add, centred**3)
            m3 = np.where(np.abs(m3) < 1e-14, 0.0, m3)
            out = (n * (n - 1) ** 0.5 / (n - 2)) * (m3 / m2**1.5)
            out = np.where(m2 == 0, 0.0, out)
            return np.where(n < 3, np.nan, out)
        m4 = seg.reduce(np.add, centred**4)
        numerator = n * (n + 1) * (n - 1) * m4
        denominator = (n - 2) * (n - 3) * m2**2
        adjust = 3 * (n - 1) ** 2 / ((n - 2) * (n - 3))
        out = np.where(denominator == 0, 0.0, numerator / denominator - adjust)
        return np.where(n < 4, np.nan, out)


def _daily(agg: str, seg: Segments, times: np.ndarray, values: np.ndarray,
           window: int) -> np.ndarray:
    """Statistics of a window's daily totals: day k (0 = the 24 h just before t) covers
    [t - (k+1) d, t - k d); x = window - 1 - k runs oldest (0) to newest."""
    age = (np.repeat(seg.t, seg.n) - times - 1) // DAY_NS  # event exactly k days before t: k-1
    values = np.nan_to_num(values)
    if agg == "daily_mean":
        return seg.reduce(np.add, values, empty=0.0) / window
    if agg == "ema_7d":
        weights = 0.5 ** (np.arange(window) / EMA_HALF_LIFE_DAYS)
        return seg.reduce(np.add, values * weights[age], empty=0.0) / weights.sum()
    # daily totals: runs of equal (row, day) are contiguous since times ascend in a window
    owner = seg.owner
    boundary = np.ones(len(age), dtype=bool)
    boundary[1:] = (age[1:] != age[:-1]) | (owner[1:] != owner[:-1])
    starts = np.flatnonzero(boundary)
    y = np.add.reduceat(values, starts) if len(starts) else np.zeros(0)
    x = (window - 1 - age[starts]).astype(float)
    rows = owner[starts]
    size = len(seg.lo)
    sy = np.bincount(rows, y, minlength=size)
    sxy = np.bincount(rows, x * y, minlength=size)
    syy = np.bincount(rows, y * y, minlength=size)
    w = float(window)
    sx, sxx = w * (w - 1) / 2, (w - 1) * w * (2 * w - 1) / 6
    cov = w * sxy - sx * sy
    var_x = w * sxx - sx**2
    if agg == "trend_slope":
        return cov / var_x if var_x else np.zeros(size)
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


def compute_views(views: Iterable[FeatureView], events: dict[str, Events],
                  spine: Spine) -> pd.DataFrame:
    """Every view's features for every spine row, in spine order, one column per feature."""
    frames = [ViewComputation(view, events[view.source.name], spine).frame() for view in views]
    return pd.concat(frames, axis=1)
