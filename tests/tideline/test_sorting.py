"""The packed stable argsort gives exactly numpy's stable order, for narrow and wide keys."""
from __future__ import annotations

import numpy as np
import pytest
from tideline.core.sorting import index_type, ordered_bits, stable_argsort


@pytest.mark.parametrize("bits", [1, 8, 20, 40, 44, 62, 63])
def test_the_order_is_numpys_stable_one(bits: int) -> None:
    rng = np.random.default_rng(bits)
    for n in (0, 1, 2, 3, 50, 5_000):
        key = rng.integers(0, 2**bits, n)
        if n > 2:
            key[rng.integers(0, n, n // 3)] = key[0]  # ties keep their order
        order = stable_argsort(key)
        np.testing.assert_array_equal(order, np.argsort(key, kind="stable"))
        assert order.dtype == index_type(n)


def test_keys_that_tie_on_their_top_bits_are_ordered_below() -> None:
    """63-bit keys with a 20-bit index leave 44 bits to sort on: keys equal there but not
    below (an entity's events in the same microsecond bucket, say) are reordered after."""
    rng = np.random.default_rng(3)
    base = rng.integers(0, 2**40, 600_000) << 23
    key = base + rng.integers(0, 2**23, len(base))  # differ only in the dropped bits
    key[::5] = key[0]
    np.testing.assert_array_equal(stable_argsort(key, 63), np.argsort(key, kind="stable"))


def test_sparse_wide_keys_fall_back_to_argsort() -> None:
    rng = np.random.default_rng(4)
    key = (rng.integers(0, 3, 200_000) << 60) + rng.integers(0, 2**40, 200_000)
    np.testing.assert_array_equal(stable_argsort(key, 62), np.argsort(key, kind="stable"))


def test_numbers_as_ordered_keys() -> None:
    floats = np.array([3.5, -0.0, np.nan, -np.inf, 0.0, 1e-300, -2.25, np.inf, -1e300, 2.0])
    order = stable_argsort(ordered_bits(floats), 64)
    np.testing.assert_array_equal(floats[order], np.sort(floats))  # NaN last, -0.0 == 0.0
    ints = np.array([5, -3, 0, np.iinfo(np.int64).min, np.iinfo(np.int64).max, -3])
    np.testing.assert_array_equal(stable_argsort(ordered_bits(ints), 64),
                                  np.argsort(ints, kind="stable"))
