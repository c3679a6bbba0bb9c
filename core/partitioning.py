"""Entity partitioning: a stable hash bucket of each entity key, the same in every process, by
which the engine fans out, clean tables are bucketed and online state is split."""
from __future__ import annotations

import threading

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_PRIME = np.uint64(0x100000001B3)


def hash_bucket(keys: pa.Array | np.ndarray, buckets: int) -> np.ndarray:
    """A stable hash bucket (0..buckets-1) of each entity key, the same in every process: a
    polynomial hash of the key's UTF-8 bytes, computed over Arrow's buffers (no Python object
    per key), then mixed (splitmix64) so that similar keys spread evenly. Null counts as ''."""
    array = keys if isinstance(keys, pa.Array) else pa.array(np.asarray(keys, dtype=object))
    if (pa.types.is_integer(array.type) and array.type != pa.uint64() and not array.null_count
            and len(array)):
        values = array.to_numpy().astype(np.int64)
        if buckets <= 256 and values.min() >= 0 and values.max() < _DENSE_IDS:
            return _dense_buckets(int(values.max()), buckets)[values].astype(np.int64)
        return _mix(_integer_hash(values), buckets)
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
    return _mix(hashed + lengths.astype(np.uint64), buckets)


_DENSE_IDS = 2**24
"""Integer ids below this have their buckets looked up in a table per bucket count (a byte an
id): an export's ids are mostly small and dense, and each is hashed once per process."""
_dense: dict[int, np.ndarray] = {}
_dense_lock = threading.Lock()


def _dense_buckets(largest: int, buckets: int) -> np.ndarray:
    """The bucket of every id 0..`largest` at least (the table grows by doubling)."""
    table = _dense.get(buckets)
    if table is not None and largest < len(table):
        return table
    with _dense_lock:
        table = _dense.get(buckets, np.zeros(0, dtype=np.uint8))
        if largest >= len(table):
            size = min(max(2 * len(table), 1 << (largest.bit_length())), _DENSE_IDS)
            more = np.arange(len(table), size, dtype=np.int64)
            table = np.concatenate([table, _mix(_integer_hash(more), buckets).astype(np.uint8)])
            _dense[buckets] = table
        return table


_BLOCK = 10_000
_POWERS = np.cumprod(np.full(24, _PRIME, dtype=np.uint64), dtype=np.uint64)
"""_POWERS[k] is the factor of the byte at position k of a key's text: _PRIME ** (k + 1)."""


def _block_hashes() -> np.ndarray:
    """[t, b]: the hash of block b written as t digits (zero-padded), at positions 0..t-1."""
    blocks = np.arange(_BLOCK, dtype=np.uint64)
    hashes = np.zeros((5, _BLOCK), dtype=np.uint64)
    for width in range(1, 5):
        rest = blocks.copy()
        for place in range(width):  # the last digit first
            hashes[width] += (rest % np.uint64(10) + np.uint64(ord("0"))) * _POWERS[
                width - 1 - place]
            rest //= np.uint64(10)
    return hashes


_BLOCK_HASHES = _block_hashes()


def _integer_hash(values: np.ndarray) -> np.ndarray:
    """The polynomial hash of each integer's decimal text (as `str` writes it), four digits at a
    time from a table: the cast to text costs several times the hash. A block at position s
    contributes _PRIME ** s times its hash at position 0 (arithmetic modulo 2 ** 64)."""
    negative = values < 0
    rest = np.abs(values).astype(np.uint64)  # int64's minimum keeps its bits: still right
    digits = np.ones(len(values), dtype=np.int64)
    for power in 10 ** np.arange(1, 19, dtype=np.uint64):
        if not (more := rest >= power).any():
            break
        digits += more
    hashed = np.where(negative, np.uint64(ord("-")) * _PRIME, np.uint64(0))
    left = digits.copy()  # leading digits not hashed yet
    while True:
        width = np.minimum(left, 4)
        start = negative + left - width  # the block's first position in the text
        shift = np.where(start > 0, _POWERS[np.maximum(start - 1, 0)], np.uint64(1))
        hashed += _BLOCK_HASHES[width, rest % np.uint64(_BLOCK)] * shift
        left -= width
        if not left.any():
            return hashed + (digits + negative).astype(np.uint64)
        rest //= np.uint64(_BLOCK)


def _mix(hashed: np.ndarray, buckets: int) -> np.ndarray:
    """splitmix64's finaliser, then the bucket."""
    hashed ^= hashed >> np.uint64(30)
    hashed *= np.uint64(0xBF58476D1CE4E5B9)
    hashed ^= hashed >> np.uint64(27)
    hashed *= np.uint64(0x94D049BB133111EB)
    hashed ^= hashed >> np.uint64(31)
    return (hashed % np.uint64(buckets)).astype(np.int64)
