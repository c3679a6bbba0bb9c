"""DataFrames and Arrow tables in the lake as Parquet objects, streamed through any backend."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tideline.lake.base import Lake, ObjectInfo


def write_table(lake: Lake, branch: str, path: str, data: pd.DataFrame | pa.Table) -> ObjectInfo:
    """Write `data` as one Parquet object; it becomes visible on `branch` only once complete."""
    table = data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
    with lake.writer(branch, path) as sink:
        pq.write_table(table, sink)
    return lake.stat(branch, path)


def read_table(lake: Lake, ref: str, path: str, columns: list[str] | None = None) -> pa.Table:
    # ParquetFile.read skips the dataset machinery of pq.read_table: ~2x faster on small parts
    with lake.reader(ref, path) as source:
        return pq.ParquetFile(source).read(columns=columns, use_pandas_metadata=True)


def read_frame(lake: Lake, ref: str, path: str, columns: list[str] | None = None) -> pd.DataFrame:
    return read_table(lake, ref, path, columns).to_pandas()
