"""The offline store's layout in the lake: reading the clean source tables the engine needs
(one entity partition at a time) and writing feature tables per view and as-of date.

    clean/<dataset>/dt=<day>/*.parquet               sources (`tideline.lake.buckets`)
    features/<view>/v=<version>/as_of=<YYYY-MM-DD>/part-<k>-of-<n>.parquet   feature tables
    features/_runs/<run_id>.json                                       what a build wrote
"""
from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tideline.core.errors import FeatureDefinitionError
from tideline.features.definitions import FeatureView, Source
from tideline.lake.base import Lake
from tideline.lake.buckets import bucket_layout, read_partition
from tideline.lake.tables import read_table, write_table

READ_THREADS = 4
"""Objects read at once (Arrow decodes without the GIL; a source is hundreds of day objects)."""


def source_parts(lake: Lake, ref: str, source: Source) -> list[str]:
    return [info.path for info in lake.list(ref, f"clean/{source.dataset}/")
            if info.path.endswith(".parquet")]


def source_schema(lake: Lake, ref: str, source: Source, view: str) -> pa.Schema:
    """The schema of a source table; a clear error when the lake has no such table."""
    parts = source_parts(lake, ref, source)
    if not parts:
        raise FeatureDefinitionError(
            f"feature view {view!r}: source {source.name!r} reads dataset "
            f"{source.dataset!r}, but the lake has no clean/{source.dataset}/ table at {ref}; "
            "ingest it first (`tideline ingest`)")
    with lake.reader(ref, parts[0]) as handle:
        return pq.read_schema(handle)


def source_layout(lake: Lake, ref: str, source: Source, key: str) -> dict[int, int]:
    """A source table's rows by the bucket count of the objects holding them (0: not bucketed
    by `key`), from the objects' Parquet footers (no data read)."""
    def layout(path: str) -> tuple[int, int]:
        with lake.reader(ref, path) as handle:
            return bucket_layout(pq.ParquetFile(handle), key)

    rows: dict[int, int] = {}
    with ThreadPoolExecutor(READ_THREADS) as pool:
        for buckets, count in pool.map(layout, source_parts(lake, ref, source)):
            rows[buckets] = rows.get(buckets, 0) + count
    return rows


def default_as_of(lake: Lake, ref: str, sources: Iterable[Source]) -> date:
    """The day after the newest `dt=` partition of any source: features as of the end of the
    data the lake holds."""
    days = {info.path.split("/dt=", 1)[1][:10] for source in sources
            for info in lake.list(ref, f"clean/{source.dataset}/dt=")}
    if not days:
        raise FeatureDefinitionError(f"no dated partitions under clean/ at {ref}")
    return date.fromisoformat(max(days)) + timedelta(days=1)


def read_source(lake: Lake, ref: str, source: Source, key: str, columns: list[str],
                partition: int = 0, partitions: int = 1) -> pa.Table:
    """The columns of a source for the entities of one hash partition, object by object: only
    the partition's row groups of objects bucketed by `key` (`tideline.lake.buckets`), others
    filtered, so a worker never holds more than its share plus `READ_THREADS` objects."""
    def part(path: str) -> pa.Table:
        return read_partition(lake, ref, path, columns, key, partition, partitions)

    with ThreadPoolExecutor(READ_THREADS) as pool:
        tables = list(pool.map(part, source_parts(lake, ref, source)))
    return pa.concat_tables(tables, promote_options="default")


def feature_path(view: FeatureView, as_of: date, partition: int, partitions: int) -> str:
    return (f"features/{view.name}/v={view.version}/as_of={as_of:%Y-%m-%d}/"
            f"part-{partition:04d}-of-{partitions:04d}.parquet")


def write_features(lake: Lake, branch: str, view: FeatureView, as_of: date, partition: int,
                   partitions: int, frame: pd.DataFrame) -> str:
    """One partition's feature table."""
    path = feature_path(view, as_of, partition, partitions)
    write_table(lake, branch, path, frame)
    return path


def read_features(lake: Lake, ref: str, view: FeatureView, as_of: date) -> pd.DataFrame:
    """A view's feature table as of a date, all partitions, ordered by entity key."""
    prefix = f"features/{view.name}/v={view.version}/as_of={as_of:%Y-%m-%d}/"
    parts = [info.path for info in lake.list(ref, prefix)]
    if not parts:
        raise FeatureDefinitionError(
            f"no feature table for view {view.name!r} version {view.version} as of {as_of} at "
            f"{ref}; build it with `tideline features build --as-of {as_of}`")
    frame = pd.concat([read_table(lake, ref, path).to_pandas() for path in parts],
                      ignore_index=True)
    return frame.sort_values(view.entity.key, kind="stable").reset_index(drop=True)
