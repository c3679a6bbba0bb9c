"""How clean tables are laid out for readers that split entities by hash: each day's object
holds its rows grouped by a stable hash bucket of the entity key, one Parquet row group per
bucket, so a reader of one hash partition reads only its row groups.

    clean/<dataset>/dt=<day>/part-<run_id>.parquet

A bucketed object names its key and bucket count in the Parquet metadata (`tideline.buckets`)
and lists the bucket of each row group. Bucket b holds the keys with `hash % count == b`; when
a reader's partition count divides `count`, partition k is exactly the buckets b with
`b % partitions == k`, since `hash % partitions == (hash % count) % partitions`.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tideline.core.partitioning import hash_bucket
from tideline.lake.base import Lake, ObjectInfo
from tideline.lake.tables import encoding

BUCKET_COUNTS = (1, 2, 4, 8, 24, 48, 96)
"""Bucket counts an object may have, each dividing the next, so that a partition count that
divides a small object's count divides every larger one's (1, 2, 4, 8, then also 3, 6, 12 and
16 from 24 or 48 on): the largest that leaves `MIN_BUCKET_ROWS` rows per bucket on average."""
MIN_BUCKET_ROWS = 4_096
"""Fewer rows per row group than this cost more in Parquet overhead than bucketing saves."""
METADATA_KEY = b"tideline.buckets"

def clean_path(dataset: str, day: str, run_id: str) -> str:
    return f"clean/{dataset}/dt={day}/part-{run_id}.parquet"


def bucket_count(rows: int) -> int:
    return max(count for count in BUCKET_COUNTS if count == 1 or rows >= count * MIN_BUCKET_ROWS)


def write_bucketed(lake: Lake, branch: str, path: str, data: pd.DataFrame | pa.Table,
                   key: str | None, buckets: int | None = None) -> ObjectInfo:
    """Write `data` as one Parquet object with a row group per hash bucket of column `key`
    (rows in their order inside a bucket); one plain row group when `key` is None. `buckets`
    defaults to `bucket_count(rows)`."""
    table = data if isinstance(data, pa.Table) else pa.Table.from_pandas(data,
                                                                       preserve_index=False)
    count = 1 if key is None else buckets or bucket_count(len(table))
    if count == 1:
        bucket = np.zeros(len(table), dtype=np.int64)
    else:
        bucket = hash_bucket(table.column(key).combine_chunks(), count)
    # a stable sort of small integers is a radix sort: many times faster than of int64s
    order = np.argsort(bucket.astype(np.min_scalar_type(count)), kind="stable")
    sizes = np.bincount(bucket, minlength=count)
    present = np.flatnonzero(sizes)
    stops = np.cumsum(sizes)[present]
    layout = {"key": key, "count": count, "row_groups": present.tolist()}
    table = table.take(order).replace_schema_metadata(
        {**(table.schema.metadata or {}), METADATA_KEY: json.dumps(layout).encode()})
    with lake.writer(branch, path) as sink, pq.ParquetWriter(
            sink, table.schema, **encoding(table.schema)) as writer:
        for start, stop in zip(stops - sizes[present], stops, strict=True):
            writer.write_table(table.slice(start, stop - start), row_group_size=stop - start)
    return lake.stat(branch, path)


def _layout(parquet: pq.ParquetFile, key: str) -> dict:
    """The object's bucket layout by `key` (empty when it is not bucketed by that column)."""
    layout = json.loads((parquet.schema_arrow.metadata or {}).get(METADATA_KEY, b"{}"))
    return layout if layout.get("key") == key else {}


def bucket_layout(parquet: pq.ParquetFile, key: str) -> tuple[int, int]:
    """An object's bucket count by `key` (0 when it is not bucketed by that column) and its
    rows."""
    return _layout(parquet, key).get("count", 0), parquet.metadata.num_rows


def read_partition(lake: Lake, ref: str, path: str, columns: list[str], key: str,
                   partition: int, partitions: int) -> pa.Table:
    """The rows of one object whose `key` falls in hash partition `partition` of `partitions`
    (null keys in none when `partitions` > 1): only the partition's row groups when the object
    is bucketed by `key` into a multiple of `partitions` buckets, else every row, filtered."""
    with lake.reader(ref, path) as source:
        parquet = pq.ParquetFile(source)
        if partitions == 1:
            return parquet.read(columns=columns, use_pandas_metadata=True)
        layout = _layout(parquet, key)
        if layout and layout["count"] % partitions == 0:
            groups = [i for i, bucket in enumerate(layout["row_groups"])
                      if bucket % partitions == partition]
            table = parquet.read_row_groups(groups, columns=columns, use_pandas_metadata=True)
            nulls = table.column(key).null_count
            return table.filter(pc.is_valid(table.column(key))) if nulls else table
        table = parquet.read(columns=columns, use_pandas_metadata=True)
    encoded = pc.dictionary_encode(table.column(key).combine_chunks())
    mine = hash_bucket(encoded.dictionary, partitions) == partition
    keep = mine[encoded.indices.fill_null(0).to_numpy()] & encoded.indices.is_valid(
        ).to_numpy(zero_copy_only=False)
    return table.filter(pa.array(keep))
