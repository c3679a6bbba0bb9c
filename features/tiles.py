"""Daily tiles: each feature view's mergeable partial aggregates per entity and day of event
time, kept in the lake beside the feature tables, so that a build reads raw events only for
the days without a valid tile and merges the rest (Chronon's tiling).

    features/tiles/<view>/v=<version>/f=<format>/day=<YYYY-MM-DD>/src=<identity>/part-<k>-of-<n>.parquet

`identity` hashes the day's source objects (the path and checksum of every
`clean/<dataset>/dt=<day>/` object): an ingest that adds to or rewrites a day (late events, a
backfill, an erasure) changes it, so a build recomputes exactly the tiles of the days it
touched. Tiles are written on the build's branch and published with its feature tables.

A tile holds, per filter and column a view's features use: event counts, sums, extremes,
summed powers of deviations from the tile's mean (merged exactly with Chan's formulas), the
first and last value and time, and daily totals for trends and EMAs. Exact quantiles and
distinct counts, their sketches, sessions, windows that are not whole days and custom views
need the events themselves: a source any of them reads is read raw, and the build says so.
"""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from time import perf_counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tideline.features.definitions import (
    COUNTING,
    DAILY,
    DAY_NS,
    NUMERIC,
    TEMPORAL,
    CustomView,
    Feature,
    FeatureView,
    Source,
    View,
    whole_days,
)
from tideline.features.engine import (
    Events,
    Segments,
    Spine,
    ViewComputation,
    arrow_nanoseconds,
    divide,
    edge_values,
    encode_entities,
    moment,
)
from tideline.features.offline import READ_THREADS, read_source, source_schema
from tideline.lake.base import Lake
from tideline.lake.buckets import read_partition
from tideline.lake.tables import encoding, read_table

log = logging.getLogger(__name__)

MOMENTS = {"std", "var", "skew", "kurtosis", "cv"}
TILED = COUNTING | TEMPORAL | DAILY | MOMENTS | {"sum", "mean", "min", "max", "range", "first",
                                                 "last"}
"""The aggregations a build merges from daily tiles."""
MIN_DENSITY = 2.0
"""Events per entity and active day from which a source gets tiles (`tile_bench.py`)."""
TILE_FORMAT = 1
"""The partials a tile holds for a view; a change to them is a new format, beside the old."""
DAY = "_day"
"""A tile's day (its midnight, UTC), as the time of the tile's row."""
Group = tuple[str | None, str | None]
"""The events a partial reduces: a filter, and the column whose missing values it skips."""
Stat = tuple[str, str | None]
"""A partial: a statistic and its column."""


def _events_per_tile(events: Events) -> float:
    """Events per (entity, day) with an event: what a tile row stands for."""
    cells = len(_runs(events.entity * (int(events.time.max(initial=0) // DAY_NS) + 1)
                      + events.time // DAY_NS)[0])
    return len(events.time) / cells if cells else 0.0


def tiling_gap(feature: Feature) -> str | None:
    """Why a feature cannot be merged from daily tiles (None when it can)."""
    if feature.agg not in TILED:
        return f"{feature.agg} needs the events"
    if feature.window is not None and whole_days(feature.window) is None:
        return f"window {feature.window} is not whole days"
    return None


def _group(feature: Feature) -> Group:
    """The events a feature reduces: its filter, and the column whose missing values numeric
    statistics skip (as the engine's `Events.matching`)."""
    return feature.filter, feature.column if feature.agg in NUMERIC else None


def partial(stat: str, column: str | None, filter_: str | None, valued: str | None) -> str:
    """A tile column: `stat` of `column` over the events matching `filter_` (and with a value
    in `valued`)."""
    return f"{stat}|{column or ''}|{filter_ or ''}|{valued or ''}"


def _stats(feature: Feature) -> list[Stat]:
    """The (statistic, column) partials a feature merges, besides its events' count."""
    agg, column = feature.agg, feature.column
    if agg in ("sum", "mean"):
        return [("sum", column)]
    if agg in ("min", "max", "range"):
        return [("min", column), ("max", column)]
    if agg in MOMENTS:  # third and fourth powers only for skew and kurtosis
        return [("sum", column), ("m2", column), *(
            [("m3", column)] if agg in ("skew", "kurtosis") else []), *(
            [("m4", column)] if agg == "kurtosis" else [])]
    if agg in ("first", "last"):
        return [(agg, column)]
    if agg in TEMPORAL:
        last = agg == "days_since_last"
        return [("t_last" if last else "t_first", None) if column is None
                else ("fmax" if last else "fmin", column)]
    if agg in DAILY:
        return [("total", column)]
    return []


def partials(view: FeatureView) -> dict[Group, list[Stat]]:
    """(filter, valued) -> the (statistic, column) partials a view's tiles hold for those
    events, each once, the count first."""
    groups: dict[Group, list[Stat]] = {}
    for feature in view.features:
        wanted = [(_group(feature), [("n", None), *_stats(feature)])]
        if feature.agg == "share":
            wanted.append(((None, None), [("n", None)]))
        for group, stats in wanted:
            kept = groups.setdefault(group, [])
            kept.extend(stat for stat in stats if stat not in kept)
    return groups


def compute_tiles(view: FeatureView, events: Events) -> tuple[pa.Table, np.ndarray]:
    """A view's tiles from a source's events: a row per entity and day with an event, and the
    rows' entity codes."""
    day = events.time // DAY_NS
    low = int(day.min(initial=0))
    span = int(day.max(initial=0)) - low + 1
    cell = events.entity * span + (day - low)
    base, _ = _runs(cell)
    codes = events.entity[base]
    columns: dict[str, pa.Array] = {
        view.entity.key: events.keys.take(pa.array(codes)),
        DAY: pa.array(day[base] * DAY_NS, pa.timestamp("ns", tz="UTC"))}
    for (filter_, valued), stats in partials(view).items():
        sub = events.matching(filter_, valued)
        sub_cell = sub.entity * span + (sub.time // DAY_NS - low)
        starts, ends = _runs(sub_cell)
        rows = np.searchsorted(cell[base], sub_cell[starts])
        for stat, column in stats:
            values = _tile_stat(stat, column, sub, starts, ends)
            columns[partial(stat, column, filter_, valued)] = _placed(values, rows, len(base))
    return pa.table(columns), codes


def _runs(cell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each run of equal values starts, and where it ends."""
    first = np.ones(len(cell), dtype=bool)
    first[1:] = cell[1:] != cell[:-1]
    starts = np.flatnonzero(first)
    return starts, np.append(starts[1:], len(cell)).astype(np.int64)[:len(starts)]


def _tile_stat(stat: str, column: str | None, sub: Events, starts: np.ndarray,
               ends: np.ndarray) -> np.ndarray:
    """One partial over each (entity, day) run `[starts, ends)` of `sub`'s events."""
    if stat == "n":
        return ends - starts
    if stat in ("t_first", "t_last"):
        return sub.time[starts if stat == "t_first" else ends - 1]
    if stat in ("first", "last"):
        return sub.at(column, starts if stat == "first" else ends - 1)
    if not len(starts):
        return np.zeros(0)
    if stat == "total":
        values = np.ones(len(sub.time)) if column is None else np.nan_to_num(sub.values(column))
        return np.add.reduceat(values, starts)
    values = sub.values(column)
    ufunc = {"sum": np.add, "min": np.minimum, "max": np.maximum, "fmin": np.fmin,
             "fmax": np.fmax}.get(stat)
    if ufunc is not None:
        return ufunc.reduceat(values, starts)
    mean = np.add.reduceat(values, starts) / (ends - starts)
    return np.add.reduceat((values - np.repeat(mean, ends - starts)) ** int(stat[1]), starts)


def _placed(values: np.ndarray, rows: np.ndarray, size: int) -> pa.Array:
    """`values` at `rows` of a tile column of `size` rows; zero counts, sums and times, missing
    extremes and values elsewhere."""
    if values.dtype == object:
        out = np.full(size, None, dtype=object)
        out[rows] = values
        array = pa.array(out, from_pandas=True)
        return array.cast(pa.string()) if pa.types.is_null(array.type) else array
    out = np.zeros(size, dtype=values.dtype) if values.dtype.kind in "iu" else np.full(
        size, np.nan)
    out[rows] = values
    return pa.array(out)


class TileComputation(ViewComputation):
    """A view's features merged from its tiles, which stand as events (one per entity and day,
    at the day's midnight): a window `[t - w, t)` from a midnight t holds exactly the tiles of
    its days."""

    def subset(self, filter_: str | None, valued: str | None = None) -> Events:
        """The tiles with an event matching `filter_` (and a value in `valued`)."""
        name = partial("n", None, filter_, valued)

        def present() -> Events:  # per as-of date: kept for the build, they cost memory
            mask = self.events.frame[name].to_numpy()[self.events.rows] > 0
            return self.events if mask.all() else self.events.subset(mask)

        return self._once(("tiles", name), present)

    def _counts(self, filter_: str | None, valued: str | None,
                window: int | str | None) -> tuple[Segments, np.ndarray]:
        seg = self.segments(filter_, window, valued)
        return seg, self._once(("count", filter_, valued, window), lambda: seg.reduce(
            np.add, self._gathered(seg, "n", None, filter_, valued),
            empty=0).astype(np.int64))

    def _gathered(self, seg: Segments, stat: str, column: str | None, filter_: str | None,
                  valued: str | None) -> np.ndarray:
        """A partial's values in each window's tiles, window after window (gathered for each
        use: kept, a window's gathered partials outweigh the tiles)."""
        return self.subset(filter_, valued).values(partial(stat, column, filter_, valued))[
            seg.index]

    def compute(self, f: Feature) -> np.ndarray:
        filter_, valued = _group(f)
        seg, n = self._counts(filter_, valued, f.window)
        tiles = self.subset(filter_, valued)

        def gathered(stat: str, column: str | None = f.column) -> np.ndarray:
            return self._gathered(seg, stat, column, filter_, valued)

        def reduced(ufunc: np.ufunc, stat: str, empty: float = np.nan) -> np.ndarray:
            return self._once(("reduced", stat, f.column, filter_, valued, f.window),
                              lambda: seg.reduce(ufunc, gathered(stat), empty=empty))

        if f.agg == "count":
            return n
        if f.agg == "share":
            return divide(n, self._counts(None, None, f.window)[1])
        if f.agg in ("first", "last"):
            return edge_values(tiles, seg, partial(f.agg, f.column, filter_, None), f.agg)
        if f.agg in TEMPORAL:
            last = f.agg == "days_since_last"
            if f.column is not None:
                ufunc = np.fmax if last else np.fmin
                return (seg.t - seg.reduce(ufunc, gathered("fmax" if last else "fmin"))) / DAY_NS
            at = (seg.hi - 1 if last else seg.lo)[seg.nonempty]
            times = tiles.frame[partial("t_last" if last else "t_first", None, filter_, None)]
            days = np.full(len(n), np.nan)
            days[seg.nonempty] = (seg.t[seg.nonempty] - times.to_numpy()[tiles.rows[at]]) / DAY_NS
            return days
        if f.agg in DAILY:
            return self.daily(f, seg, tiles.time[seg.index], gathered("total"),
                              ("tiles", f.column, f.filter, f.window))
        if f.agg in ("min", "max", "range"):
            low, high = reduced(np.minimum, "min"), reduced(np.maximum, "max")
            return {"min": low, "max": high, "range": high - low}[f.agg]
        total = reduced(np.add, "sum", 0.0)
        if f.agg == "sum":
            return total
        mean = divide(total, n)
        if f.agg == "mean":
            return mean
        # Chan et al.: a window's sums of deviations from its mean, from each tile's about its
        # own mean (delta: the tile's mean less the window's)
        counts = gathered("n", None)
        delta = gathered("sum") / counts - np.repeat(mean, seg.n)
        m2 = gathered("m2")
        merged = {2: lambda: m2 + counts * delta**2,
                  3: lambda: gathered("m3") + 3 * delta * m2 + counts * delta**3,
                  4: lambda: (gathered("m4") + 4 * delta * gathered("m3") + 6 * delta**2 * m2
                              + counts * delta**4)}
        return moment(f.agg, n, self._once(("m2", f.column, filter_, f.window),
                                           lambda: seg.reduce(np.add, merged[2]())), mean,
                      lambda power: seg.reduce(np.add, merged[power]()))


# -- the lake --------------------------------------------------------------------------------

def tile_path(view: View, day: str, identity: str, partition: int, partitions: int) -> str:
    return (f"{tile_prefix(view)}day={day}/src={identity}/"
            f"part-{partition:04d}-of-{partitions:04d}.parquet")


def tile_prefix(view: View) -> str:
    return f"features/tiles/{view.name}/v={view.version}/f={TILE_FORMAT}/"


def tile_object(path: str) -> tuple[str, str, int] | None:
    """A tile's `<view>/v=<version>/f=<format>`, day and partition count from its path (None
    for any other object)."""
    parts = path.split("/")
    if len(parts) != 8 or parts[:2] != ["features", "tiles"] or not parts[5].startswith("day="):
        return None
    return "/".join(parts[2:5]), parts[5][4:], int(parts[7].rsplit("-of-", 1)[1].split(".")[0])


def newest_count(tiles: Sequence[tuple[str, int]]) -> int | None:
    """Of tiles' (day, partition count): the count of the newest day's (the larger where two
    builds of other counts tiled it), None without tiles."""
    return max(tiles)[1] if tiles else None


def tile_partitions(lake: Lake, ref: str, views: Sequence[View]) -> int | None:
    """How many entity partitions the newest daily tiles of `views` at `ref` were written for
    (None without tiles): a build of another count cannot merge them."""
    return newest_count([found[1:] for view in views for info in lake.list(ref, tile_prefix(view))
                         if (found := tile_object(info.path)) is not None])


def source_days(lake: Lake, ref: str, source: Source) -> dict[str, tuple[str, list[str]]]:
    """A source's days (`dt=` partitions): day -> the identity of its objects (a hash of
    their paths and checksums) and their paths."""
    objects: dict[str, list[tuple[str, str]]] = {}
    for info in lake.list(ref, f"clean/{source.dataset}/dt="):
        if info.path.endswith(".parquet"):
            day = info.path.split("/dt=", 1)[1][:10]
            objects.setdefault(day, []).append((info.path, info.checksum))
    return {day: (hashlib.sha256("\n".join(f"{path}:{checksum}" for path, checksum in
                                          sorted(found)).encode()).hexdigest()[:16],
                  sorted(path for path, _ in found))
            for day, found in objects.items()}


def untiled_features(views: Sequence[View]) -> dict[str, list[str]]:
    """Source name -> why its events must be read raw (`view.feature: reason`): empty for a
    source every view reading it merges from tiles."""
    reasons: dict[str, list[str]] = {}
    for view in views:
        for source in view.sources:
            found = reasons.setdefault(source.name, [])
            if isinstance(view, CustomView):
                found.append(f"{view.name}: a custom view")
                continue
            found.extend(f"{view.name}.{feature.name}: {gap}" for feature in view.features
                         if (gap := tiling_gap(feature)) is not None)
    return reasons


@dataclass
class TiledEvents:
    """What a partition computes from: the raw events of the sources read raw, each tiled
    view's tiles as events (old and new, one key dictionary for all), and how many source days
    came from tiles and from raw events."""

    events: dict[str, Events]
    tiles: dict[str, Events]
    days_from_tiles: int
    days_from_events: int
    untiled: tuple[str, ...]
    """`view.feature: reason` for every feature that kept its source on raw events."""

    def computations(self, views: Sequence[View]) -> dict[str, Callable[[Spine],
                                                                        ViewComputation]]:
        return {view.name: (lambda spine, view=view: TileComputation(
            view, self.tiles[view.name], spine)) for view in views if view.name in self.tiles}

    @property
    def present(self) -> dict[str, Events]:
        """Every table of events, for the population (an entity with a tile before t had an
        event before t)."""
        return {**self.events, **{f"tiles:{name}": tiles for name, tiles in self.tiles.items()}}


def load_tiled(lake: Lake, ref: str, branch: str, views: Sequence[View],
               columns: dict[str, tuple[str, ...]], as_of: Sequence[date], partition: int = 0,
               partitions: int = 1, timings: dict[str, float] | None = None,
               min_density: float = MIN_DENSITY) -> TiledEvents:
    """One entity partition's events for `views` at `as_of`: for every source whose views all
    merge from tiles, the valid tiles of the days the windows cover and raw events only for
    the other days, from which the missing tiles are computed and written to `branch`; every
    other source's raw events whole. A source without tiles whose events are fewer than
    `min_density` per entity and day gets none (a merge of as many rows as events, wider,
    costs more than the events' windows) and is read raw. `timings` gains the seconds spent
    to "read", to "sort" and on "tiles" (computing and writing the new ones)."""
    started = perf_counter()
    reasons = untiled_features(views)
    by_source: dict[str, list[FeatureView]] = {}
    sources: dict[str, tuple[Source, str]] = {}
    for view in views:
        for source in view.sources:
            sources[source.name] = (source, view.entity.key)
            if not reasons[source.name]:
                by_source.setdefault(source.name, []).append(view)  # type: ignore[arg-type]
    end = f"{max(as_of):%Y-%m-%d}"
    raw_tables: dict[str, pa.Table] = {}
    old: dict[str, list[pa.Table]] = {}
    identities: dict[str, dict[str, str]] = {}
    from_tiles = from_events = 0
    for name, (source, key) in sources.items():
        days = source_days(lake, ref, source)
        tiled = by_source.get(name)
        # every day before the last date, not only those the windows reach: an entity with
        # an event before t is in the table at t, however old the event
        needed = sorted(day for day in days if day < end)
        if tiled:
            identities[name] = {day: days[day][0] for day in needed}
            have = _valid_tiles(lake, ref, tiled, identities[name], partition, partitions)
            cached = set.intersection(*have.values())
            raw = sorted(set(needed) - cached)
            table = _read_days(lake, ref, source, key, list(columns[name]),
                               {day: days[day][1] for day in raw}, partition, partitions)
            if table is not None:
                raw_tables[name] = table
                for view in tiled:
                    old[view.name] = _read_tiles(lake, ref, [
                        tile_path(view, day, identities[name][day], partition, partitions)
                        for day in sorted(cached)])
                from_tiles, from_events = from_tiles + len(cached), from_events + len(raw)
                continue
            log.warning("source %s: its dt= partitions hold events of other days; reading it "
                        "raw", name)
            reasons[name] = [f"{name}: dt= partitions are not days of {source.timestamp}"]
            by_source.pop(name)
        raw_tables[name] = read_source(lake, ref, source, key, list(columns[name]), partition,
                                       partitions)
        from_events += sum(day < end for day in days)
    read = perf_counter()
    names = list(raw_tables)
    previous = [(view.entity.key, view.name, table) for view in views
                for table in old.get(view.name, [])]
    keys, codes = encode_entities([raw_tables[name].column(sources[name][1]) for name in names]
                                  + [table.column(key) for key, _, table in previous])
    events = {name: Events.from_table(raw_tables.pop(name), sources[name][1],
                                      sources[name][0].timestamp, (keys, code))
              for name, code in zip(names, codes, strict=False)}
    old_codes: dict[str, list[np.ndarray]] = {}
    for (_, view_name, _), code in zip(previous, codes[len(names):], strict=True):
        old_codes.setdefault(view_name, []).append(code)
    tiles, tiling = {}, 0.0
    for name, tiled in list(by_source.items()):
        density = _events_per_tile(events[name])
        if not any(old[view.name] for view in tiled) and density < min_density:
            reasons[name] = [f"{name}: {density:.1f} events per entity and day (tiles pay from "
                             f"{min_density:g})"]
            continue  # no tile yet, and a tile would stand for too few events: raw
        for view in tiled:
            begun = perf_counter()
            table, new_codes = compute_tiles(view, events[name])
            _write_tiles(lake, branch, view, table, identities[name], partition, partitions)
            tiling += perf_counter() - begun
            every = pa.concat_tables([*old[view.name], table], promote_options="default")
            tiles[view.name] = Events.from_table(every, view.entity.key, DAY, (keys, np.concatenate(
                [*old_codes.get(view.name, []), new_codes])))
        del events[name]
    if timings is not None:
        timings.update(read=read - started, sort=perf_counter() - read - tiling, tiles=tiling)
    return TiledEvents(events=events, tiles=tiles, days_from_tiles=from_tiles,
                       days_from_events=from_events,
                       untiled=tuple(reason for found in reasons.values() for reason in found))


def days_before(lake: Lake, ref: str, views: Sequence[View], as_of: Sequence[date]) -> int:
    """The source days before the last as-of date: what a full build reads."""
    end = f"{max(as_of):%Y-%m-%d}"
    sources = {source.name: source for view in views for source in view.sources}
    return sum(day < end for source in sources.values() for day in source_days(lake, ref, source))


def _valid_tiles(lake: Lake, ref: str, views: Sequence[FeatureView],
                 identities: dict[str, str], partition: int, partitions: int
                 ) -> dict[str, set[str]]:
    """View name -> the days whose tile at `ref` was computed from the day's current objects."""
    have = {}
    for view in views:
        present = {info.path for info in lake.list(ref, tile_prefix(view))}
        have[view.name] = {day for day, identity in identities.items()
                           if tile_path(view, day, identity, partition, partitions) in present}
    return have


def _read_days(lake: Lake, ref: str, source: Source, key: str, columns: list[str],
               paths: dict[str, list[str]], partition: int, partitions: int
               ) -> pa.Table | None:
    """The partition's events of some days of a source; None when a day's objects hold events
    of another day (its `dt=` is not the day of the event time, and tiles cannot stand for
    it)."""
    def part(item: tuple[str, str]) -> pa.Table | None:
        day, path = item
        table = read_partition(lake, ref, path, columns, key, partition, partitions)
        first = date.fromisoformat(day)
        midnight = (first - date(1970, 1, 1)).days * DAY_NS
        times = arrow_nanoseconds(table.column(source.timestamp))
        inside = bool(np.all((times >= midnight) & (times < midnight + DAY_NS)))
        return table if inside else None

    with ThreadPoolExecutor(READ_THREADS) as pool:
        tables = list(pool.map(part, [(day, path) for day, found in paths.items()
                                      for path in found]))
    if any(table is None for table in tables):
        return None
    if not tables:  # every day from tiles: no events, the source's columns
        return source_schema(lake, ref, source, "").empty_table().select(columns)
    return pa.concat_tables(tables, promote_options="default")


def _read_tiles(lake: Lake, ref: str, paths: list[str]) -> list[pa.Table]:
    with ThreadPoolExecutor(READ_THREADS) as pool:
        return list(pool.map(lambda path: read_table(lake, ref, path), paths))


def _write_tiles(lake: Lake, branch: str, view: FeatureView, table: pa.Table,
                 identities: dict[str, str], partition: int, partitions: int) -> None:
    """One object per day of `table` on `branch`, and none of the day's tiles of this
    partition computed from other contents of the day."""
    day = arrow_nanoseconds(table.column(DAY)) // DAY_NS
    order = np.argsort(day, kind="stable")
    table, day = table.take(pa.array(order)), day[order]
    for start, stop in zip(*_runs(day), strict=True):
        name = f"{date(1970, 1, 1) + timedelta(days=int(day[start])):%Y-%m-%d}"
        path = tile_path(view, name, identities[name], partition, partitions)
        part = path.rsplit("/", 1)[1]
        for info in lake.list(branch, f"{tile_prefix(view)}day={name}/"):
            if info.path.endswith(part) and info.path != path:
                lake.delete(branch, info.path)
        with lake.writer(branch, path) as sink:
            pq.write_table(table.slice(start, stop - start), sink, **encoding(table.schema))
