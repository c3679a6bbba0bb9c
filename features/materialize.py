"""Materialising feature views: one entity partition's features for a set of as-of dates,
computed from the lake at one commit and written to a build branch. A partition is the unit of
work a Ray task runs; running one twice writes the same objects again (idempotent)."""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
from tideline.core.faults import failpoint
from tideline.features.engine import Events, Spine, as_frame, compute_views, encode_entities
from tideline.features.offline import feature_path, read_source, write_features
from tideline.features.plan import FeaturePlan
from tideline.features.stats import StatsPart, summarise
from tideline.features.tiles import MIN_DENSITY, days_before, load_tiled
from tideline.lake.base import Lake

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PartitionResult:
    """What one partition wrote: small, for the flow to collect (never the frames)."""

    partition: int
    entities: int
    rows: int
    paths: tuple[str, ...]
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    """Where the seconds went: "read", "sort", "windows", "reductions", "write"."""
    node: str = ""
    """The Ray node that computed it (empty outside Ray)."""
    days_from_tiles: int = 0
    """Source days merged from daily tiles (`tideline.features.tiles`)."""
    days_from_events: int = 0
    """Source days read as raw events."""
    untiled: tuple[str, ...] = ()
    """`view.feature: reason` for each feature that kept its source on raw events."""
    stats: dict[str, list[StatsPart]] = field(default_factory=dict, compare=False)
    """`view@as-of day` -> each feature's statistics in this partition, for the registry
    (not kept in the build's manifest)."""


PARTITION_COUNTS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 48, 96)
"""The divisors of the largest bucket count (`tideline.lake.buckets.BUCKET_COUNTS`). A
partition reads only its own row groups of an object whose bucket count its partition count
divides, and every row of any other object."""
ALIGNED_SHARE = 0.95
"""The share of the source rows whose objects' bucket counts a chosen partition count must
divide: the rest is read whole by every partition (16 partitions over 24-bucket objects read
them 16 times: 117 s instead of 53 s on the event-log benchmark)."""
BASE_BYTES = 4 * 2**30
"""What a build's process tree holds besides its partitions' data: the driver with Prefect's
client, Prefect's server, Ray's GCS and raylet, and workers with their libraries and the
memory Arrow's pool keeps (fitted on `benchmarks/feature_bench.py --data event-log`: 4-12
partitions of 294M source values on 2 workers)."""
BYTES_PER_VALUE = 36
"""A partition task's peak memory per source value it reads (an event times a column the plan
reads): its table, the event order, the windows' gathered columns and the outputs (fitted on
the same runs)."""
PARTITION_VALUES = 25_000_000
"""Source values a partition holds at most, for speed: past this the working set outgrows the
caches and one large partition is slower than several small ones (the same runs: 12 partitions
of 24.5M values beat 4, 6 and 8)."""

def partition_count(plan: FeaturePlan, budget: int, workers: int,
                    tiled: int | None = None) -> int:
    """How many entity partitions a build of `plan` needs: at least one per worker, at most
    `PARTITION_VALUES` source values each, and few enough that `workers` partition tasks at
    once, with the rest of the process tree, fit in `budget` bytes. `tiled`, the count the
    daily tiles were written for, when it is that many or more: tiles are per partition, and
    another count reads every day raw. Else rounded up to a count that divides the bucket
    counts of nearly all the rows' objects (`ALIGNED_SHARE`: a partition then reads only its
    own row groups) and, where one does, to a multiple of the workers (no worker idles in the
    last round)."""
    values = sum(plan.rows[name] * len(columns) for name, columns in plan.columns.items()
                 if name in plan.rows)
    per_task = max(budget - BASE_BYTES, budget // 4) / workers
    need = max(workers, -(-values * BYTES_PER_VALUE // int(per_task)),
               -(-values // PARTITION_VALUES))
    if tiled is not None and tiled >= need:
        return tiled
    total = sum(plan.bucket_rows.values())
    fitting = [count for count in PARTITION_COUNTS if count >= need and sum(
        rows for buckets, rows in plan.bucket_rows.items()
        if buckets and buckets % count == 0) >= ALIGNED_SHARE * total] or [
        count for count in PARTITION_COUNTS if count >= need]
    balanced = [count for count in fitting if count % workers == 0]
    return (balanced or fitting or [need])[0]


def as_of_time(day: date) -> pd.Timestamp:
    """An as-of date means its midnight UTC: features see events of the days before it."""
    return pd.Timestamp(datetime(day.year, day.month, day.day, tzinfo=UTC))


def load_events(lake: Lake, ref: str, plan: FeaturePlan, partition: int = 0,
                partitions: int = 1, timings: dict[str, float] | None = None
                ) -> dict[str, Events]:
    """Every source the plan needs, for one entity partition, sorted for the engine, with one
    entity dictionary for all of them (keys are encoded once, and codes agree across
    sources). `timings` gains the seconds spent to "read" and to "sort"."""
    started = time.perf_counter()
    tables, specs = {}, {}
    for view in plan.views:
        for source in view.sources:
            if source.name not in tables:
                tables[source.name] = read_source(lake, ref, source, view.entity.key,
                                                  list(plan.columns[source.name]), partition,
                                                  partitions)
                specs[source.name] = (view.entity.key, source.timestamp)
    read = time.perf_counter()
    events = {}
    if tables:
        keys, codes = encode_entities([tables[name].column(key)
                                       for name, (key, _) in specs.items()])
        events = {name: Events.from_table(tables.pop(name), key, timestamp, (keys, code))
                  for (name, (key, timestamp)), code in zip(specs.items(), codes, strict=True)}
    if timings is not None:
        timings["read"] = read - started
        timings["sort"] = time.perf_counter() - read
    return events


def known_codes(events: dict[str, Events], t: pd.Timestamp) -> np.ndarray:
    """The entity codes (into the key dictionary `load_events` gives every source) of the
    entities with an event strictly before t in any source, ascending: in key order."""
    known = np.zeros(max((len(source.keys) for source in events.values()), default=0),
                     dtype=bool)
    for source in events.values():
        starts = source.offsets[:-1]
        present = source.offsets[1:] > starts  # an entity's first event opens its slice
        known[np.flatnonzero(present)[source.time[starts[present]] < t.value]] = True
    return np.flatnonzero(known)


def population(events: dict[str, Events], t: pd.Timestamp) -> np.ndarray:
    """The entities known at t: those with an event strictly before t in any source, sorted."""
    return _keys(events, known_codes(events, t))


def _keys(events: dict[str, Events], codes: np.ndarray) -> np.ndarray:
    if not events:
        return np.zeros(0, dtype=object)
    return next(iter(events.values())).keys.take(codes).to_numpy(zero_copy_only=False)


def materialize_partition(lake: Lake, ref: str, branch: str, plan: FeaturePlan,
                          as_of: Sequence[date], partition: int = 0,
                          partitions: int = 1, full: bool = False,
                          min_density: float = MIN_DENSITY) -> PartitionResult:
    """Compute every view for one partition's entities at each as-of date and write them:
    merged from the daily tiles of the days that have valid ones, and from raw events (whose
    tiles it writes, for sources of at least `min_density` events per entity and day) for the
    rest; from raw events only with `full`."""
    started = time.perf_counter()
    timings: dict[str, float] = {}
    if full:
        events = present = load_events(lake, ref, plan, partition, partitions, timings)
        computations, tiled = {}, None
    else:
        tiled = load_tiled(lake, ref, branch, plan.views, plan.columns, as_of, partition,
                           partitions, timings, min_density)
        events, present = tiled.events, tiled.present
        computations = tiled.computations(plan.views)
    paths, rows, entities, stats = [], 0, 0, {}
    timings["write"] = 0.0
    for day in as_of:
        t = as_of_time(day)
        codes = known_codes(present, t)
        keys = _keys(present, codes)
        entities = max(entities, len(keys))
        spine = Spine(keys=keys, t=np.full(len(keys), t.value, dtype=np.int64), codes=codes)
        computed = compute_views(plan.views, events, spine, timings=timings,
                                 computations=computations)
        for view in plan.views:  # a view reading another's features shares its columns
            frame = as_frame({view.entity.key: keys, **{
                name: computed[name].to_numpy() for name in view.feature_names}})
            written = time.perf_counter()
            paths.append(write_features(lake, branch, view, day, partition, partitions, frame))
            failpoint("feature-write")
            stats[f"{view.name}@{day}"] = summarise(frame, view.feature_names)
            timings["write"] += time.perf_counter() - written
            rows += len(frame)
    seconds = round(time.perf_counter() - started, 3)
    timings = {name: round(value, 3) for name, value in timings.items()}
    log.info("partition %d/%d: %d entities, %d feature rows in %.1f s (%s)", partition,
             partitions, entities, rows, seconds,
             ", ".join(f"{name} {value:.1f} s" for name, value in timings.items()))
    counts = {"days_from_events": days_before(lake, ref, plan.views, as_of)} if tiled is None \
        else {"days_from_tiles": tiled.days_from_tiles,
              "days_from_events": tiled.days_from_events, "untiled": tiled.untiled}
    return PartitionResult(partition=partition, entities=entities, rows=rows,
                           paths=tuple(paths), seconds=seconds, timings=timings, stats=stats,
                           **counts)


@dataclass(frozen=True)
class FeatureBuild:
    """What a feature build published: the offline tables, and where they came from."""

    run_id: str
    source_commit: str
    as_of: tuple[str, ...]
    versions: dict[str, str]
    """View name -> version."""
    view_features: dict[str, int]
    """View name -> how many features it has."""
    partitions: tuple[PartitionResult, ...]
    manifest: str

    @property
    def features(self) -> int:
        return sum(self.view_features.values())

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.partitions)

    @property
    def entities(self) -> int:
        return sum(p.entities for p in self.partitions)

    @property
    def days_from_tiles(self) -> int:
        """Source days merged from tiles (by the partition that merged the most)."""
        return max((p.days_from_tiles for p in self.partitions), default=0)

    @property
    def days_from_events(self) -> int:
        """Source days read as raw events (by the partition that read the most)."""
        return max((p.days_from_events for p in self.partitions), default=0)

    @property
    def untiled(self) -> tuple[str, ...]:
        """The features that kept their sources on raw events."""
        return tuple(dict.fromkeys(r for p in self.partitions for r in p.untiled))


def record_build(lake: Lake, branch: str, run_id: str, source_commit: str, plan: FeaturePlan,
                 as_of: Sequence[date], results: Sequence[PartitionResult]) -> FeatureBuild:
    """Write the build's manifest next to its tables (it is committed with them), after
    deleting any table a build of the same views and dates left with another partition count
    (its partitions overlap these)."""
    written = {path for result in results for path in result.paths}
    for view in plan.views:
        for day in as_of:
            for info in lake.list(branch, feature_path(view, day, 0, 1).rsplit("/", 1)[0] + "/"):
                if info.path not in written:
                    lake.delete(branch, info.path)
    build = FeatureBuild(
        run_id=run_id, source_commit=source_commit,
        as_of=tuple(f"{day:%Y-%m-%d}" for day in as_of), versions=plan.versions,
        view_features={view.name: len(view.feature_names) for view in plan.views},
        partitions=tuple(sorted(results, key=lambda r: r.partition)),
        manifest=f"features/_runs/{run_id}.json")
    body = asdict(build)
    for part in body["partitions"]:
        part.pop("stats")
    lake.put(branch, build.manifest, json.dumps(body, indent=1, sort_keys=True).encode())
    return build


def load_build(lake: Lake, ref: str, run_id: str) -> FeatureBuild:
    """The record of a build that was published before (a re-run returns it unchanged)."""
    body = json.loads(lake.get(ref, f"features/_runs/{run_id}.json"))
    body["as_of"] = tuple(body["as_of"])
    body["partitions"] = tuple(PartitionResult(**{**p, "paths": tuple(p["paths"]),
                                                  "untiled": tuple(p.get("untiled", ()))})
                               for p in body["partitions"])
    return FeatureBuild(**body)
