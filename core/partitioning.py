"""Entity partitioning: a stable hash bucket of each entity key, the same in every process, by
which the engine fans out, clean tables are bucketed and online state is split."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_PRIME = np.uint64(0x100000001B3)


def hash_bucket(keys: pa.Array | np.ndarray, buckets: int) -> np.ndarray:
    """A stable hash bucket (0..buckets-1) of each entity key, the same in every process: a
    polynomial hash of the key's UTF-8 bytes, computed over Arrow's buffers (no Python object
    per key), then mixed (splitmix64) so that similar keys spread evenly. Null counts as ''."""
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
    return (hashed % np.uint64(buckets)).astype(np.int64)
