"""The offline store's layout in the lake: reading the clean source tables the engine needs
(one entity partition at a time) and writing feature tables per view and as-of date.

    clean/<dataset>/dt=<day>/*.parquet                                 sources (from ingestion)
    features/<view>/v=<version>/as_of=<YYYY-MM-DD>/part-<k>-of-<n>.parquet   feature tables
    features/_runs/<run_id>.json                                       what a build wrote
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.definitions import FeatureView, Source
from lake.base import Lake
from lake.tables import read_table, write_table
from tideline.errors import FeatureDefinitionError


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


def default_as_of(lake: Lake, ref: str, sources: Iterable[Source]) -> date:
    """The day after the newest `dt=` partition of any source: features as of the end of the
    data the lake holds."""
    days = {info.path.split("/dt=", 1)[1][:10] for source in sources
            for info in lake.list(ref, f"clean/{source.dataset}/dt=")}
    if not days:
        raise FeatureDefinitionError(f"no dated partitions under clean/ at {ref}")
    return date.fromisoformat(max(days)) + timedelta(days=1)


def partition_of(keys: pa.Array | np.ndarray, partitions: int) -> np.ndarray:
    """A stable hash partition (0..partitions-1) of each entity key, the same in every process:
    a polynomial hash of the key's UTF-8 bytes, computed over Arrow's buffers (no Python object
    per key), then mixed (splitmix64) so that similar keys spread evenly."""
    array = keys if isinstance(keys, pa.Array) else pa.array(np.asarray(keys, dtype=object))
    array = pc.cast(array, pa.large_string())
    if array.null_count or len(array) == 0:
        array = array.fill_null("")
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)[
        array.offset:array.offset + len(array) + 1]
    data = np.frombuffer(array.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]]
    starts, lengths = offsets[:-1] - offsets[0], np.diff(offsets)
    powers = np.cumprod(np.full(max(int(lengths.max(initial=0)), 1), _PRIME, dtype=np.uint64),
                        dtype=np.uint64)
    if len(array) and (lengths == lengths[0]).all():  # fixed-width ids: one matrix product
        width = int(lengths[0])
        hashed = (data.reshape(len(array), width).astype(np.uint64) * powers[:width]).sum(
            axis=1, dtype=np.uint64)
    else:
        position = np.arange(len(data)) - np.repeat(starts, lengths)
        terms = data.astype(np.uint64) * powers[position]
        hashed = np.zeros(len(array), dtype=np.uint64)
        filled = lengths > 0
        if filled.any():
            hashed[filled] = np.add.reduceat(terms, starts[filled], dtype=np.uint64)
    hashed += lengths.astype(np.uint64)
    hashed ^= hashed >> np.uint64(30)
    hashed *= np.uint64(0xBF58476D1CE4E5B9)
    hashed ^= hashed >> np.uint64(27)
    hashed *= np.uint64(0x94D049BB133111EB)
    hashed ^= hashed >> np.uint64(31)
    return (hashed % np.uint64(partitions)).astype(np.int64)


_PRIME = np.uint64(0x100000001B3)


def read_source(lake: Lake, ref: str, source: Source, key: str, columns: list[str],
                partition: int = 0, partitions: int = 1) -> pa.Table:
    """The columns of a source for the entities of one hash partition (filtered file by file,
    so a worker never holds more than its share plus one file)."""
    tables = []
    for path in source_parts(lake, ref, source):
        table = read_table(lake, ref, path, columns=columns)
        if partitions > 1:
            encoded = pc.dictionary_encode(table.column(key).combine_chunks())
            mine = partition_of(encoded.dictionary, partitions) == partition
            keep = mine[encoded.indices.fill_null(0).to_numpy()] & encoded.indices.is_valid(
                ).to_numpy(zero_copy_only=False)
            table = table.filter(pa.array(keep))
        tables.append(table)
    return pa.concat_tables(tables, promote_options="default")


def feature_path(view: FeatureView, as_of: date, partition: int, partitions: int) -> str:
    return (f"features/{view.name}/v={view.version}/as_of={as_of:%Y-%m-%d}/"
            f"part-{partition:04d}-of-{partitions:04d}.parquet")


def write_features(lake: Lake, branch: str, view: FeatureView, as_of: date, partition: int,
                   partitions: int, frame: pd.DataFrame) -> str:
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
            f"{ref}; build it with `tideline features --as-of {as_of}`")
    frame = pd.concat([read_table(lake, ref, path).to_pandas() for path in parts],
                      ignore_index=True)
    return frame.sort_values(view.entity.key, kind="stable").reset_index(drop=True)
