"""Feature statistics merged from partitions: what the registry records for a build without
reading its tables again."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from tideline.features.stats import merge_stats, profile_features, summarise

NAMES = ["spend", "plan", "empty", "ratio"]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 40_000
    spend = np.where(rng.random(n) < 0.3, 0.0, rng.lognormal(2, 1, n))
    spend[::50] = np.nan
    ratio = rng.normal(size=n)
    ratio[::997] = np.inf
    return pd.DataFrame({"spend": spend, "plan": rng.choice(["basic", "plus", "pro"], n,
                                                            p=[0.5, 0.3, 0.2]),
                         "empty": np.nan, "ratio": ratio})


def merged(frame: pd.DataFrame, partitions: int) -> dict:
    parts = [summarise(frame.iloc[k::partitions], NAMES) for k in range(partitions)]
    return {s.feature: s for s in (merge_stats(list(c)) for c in zip(*parts, strict=True))}


def test_one_partition_is_exact(frame: pd.DataFrame) -> None:
    assert list(merged(frame, 1).values()) == profile_features(frame, NAMES)


@pytest.mark.parametrize("partitions", [2, 8])
def test_partitions_merge_exactly_or_within_a_percent(frame: pd.DataFrame, partitions: int
                                                      ) -> None:
    exact = {s.feature: s for s in profile_features(frame, NAMES)}
    got = merged(frame, partitions)
    for name in NAMES:
        a, b = got[name], exact[name]
        assert (a.row_count, a.null_rate, a.min_value, a.max_value) == pytest.approx(
            (b.row_count, b.null_rate, b.min_value, b.max_value))
        assert (a.distinct_count, a.top_value) == (b.distinct_count, b.top_value)
        if b.mean_value is not None:
            assert a.mean_value == pytest.approx(b.mean_value, rel=1e-12)
            for q in ("p05", "p25", "p50", "p75", "p95"):
                assert getattr(a, q) == pytest.approx(getattr(b, q), rel=0.01, abs=0.02), q
    assert got["ratio"].max_value is None  # an infinity is the maximum, and it has no number
    assert got["plan"].top_value == "basic" and got["empty"].null_rate == 1.0
