"""tideline's drift tests against Evidently's own: the same method for each type and size, the
same score, the same verdict; a pinned method and threshold are honoured; bad input is named."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tideline.core.errors import MonitoringError
from tideline.monitoring.drift import ColumnPolicy, column_drift, detect_drift, drifted_share
from tideline.monitoring.evidently_report import render_report


def frames(n: int, seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference and a current where `shifted`, `counts` and `mix` drift and the rest do not;
    nulls, infinities, few-valued numbers, booleans and text included."""
    rng = np.random.default_rng(seed)

    def frame(shift: float) -> pd.DataFrame:
        ratio = rng.lognormal(0, 1, n)
        ratio[rng.random(n) < 0.02] = np.inf
        return pd.DataFrame({
            "shifted": rng.normal(shift, 1, n), "steady": rng.normal(0, 1, n),
            "counts": rng.poisson(2 + shift, n).astype(float),
            "few": rng.integers(0, 4, n).astype(float),
            "flag": np.where(rng.random(n) < 0.2, np.nan, rng.integers(0, 2, n)),
            "ratio": ratio, "yes": rng.random(n) < 0.3,
            "mix": rng.choice(list("xyz"), n, p=[.5, .3, .2] if not shift else [.3, .3, .4]),
            "segment": pd.Series(rng.choice(["a", "b", None], n), dtype=object)})

    return frame(0.0), frame(0.5)


@pytest.mark.parametrize("rows", [600, 4000])
def test_scores_and_verdicts_are_evidentlys(rows: int, tmp_path: Path) -> None:
    reference, current = frames(rows)
    policies = {c: ColumnPolicy() for c in reference.columns}
    drifts = detect_drift(reference, current, policies)
    evidently = render_report(reference, current, drifts, policies, tmp_path / "r.html")
    assert {d.column: d.score for d in drifts} == pytest.approx(evidently.scores, rel=1e-9)
    methods = {d.column: d.method for d in drifts}
    if rows <= 1000:
        assert methods == {"shifted": "ks", "steady": "ks", "counts": "ks", "few": "chisquare",
                           "flag": "z", "ratio": "ks", "yes": "z", "mix": "chisquare",
                           "segment": "z"}
    else:
        assert methods == {"shifted": "wasserstein", "steady": "wasserstein",
                           "counts": "wasserstein", "few": "jensenshannon",
                           "flag": "jensenshannon", "ratio": "wasserstein",
                           "yes": "jensenshannon", "mix": "jensenshannon",
                           "segment": "jensenshannon"}
    drifted = {d.column for d in drifts if d.drifted}
    assert drifted == {"shifted", "counts", "mix"}
    assert drifted_share(drifts) == pytest.approx(3 / 9)
    assert (tmp_path / "r.html").stat().st_size > 100_000 and not evidently.sampled


def test_a_view_can_pin_the_method_and_threshold(tmp_path: Path) -> None:
    reference, current = frames(3000)
    policies = {"shifted": ColumnPolicy("psi", 0.5), "mix": ColumnPolicy("chisquare"),
                "steady": ColumnPolicy(threshold=0.001)}
    drifts = {d.column: d for d in detect_drift(reference, current, policies)}
    evidently = render_report(reference, current, list(drifts.values()), policies,
                              tmp_path / "r.html")
    assert {c: d.score for c, d in drifts.items()} == pytest.approx(evidently.scores, rel=1e-9)
    assert (drifts["shifted"].method, drifts["shifted"].threshold) == ("psi", 0.5)
    assert drifts["mix"].method == "chisquare" and drifts["mix"].score < 1e-10
    # a threshold this low flags even sampling noise
    assert drifts["steady"].drifted and drifts["steady"].score < 0.1


def test_every_result_carries_an_effect_size_beside_its_p_value() -> None:
    reference, current = frames(500)
    shifted = column_drift("shifted", reference["shifted"], current["shifted"], "num")
    assert shifted.p_value and shifted.score < 1e-6
    assert shifted.effect == pytest.approx(0.5, abs=0.15)  # half a standard deviation


def test_the_ray_path_gives_the_same_results(ray_cluster: str) -> None:
    reference, current = frames(3000)
    policies = {c: ColumnPolicy() for c in reference.columns}
    assert detect_drift(reference, current, policies, parallel=True) == detect_drift(
        reference, current, policies, parallel=False)


def test_an_empty_side_is_reported_not_raised() -> None:
    empty = column_drift("gone", pd.Series([1.0, 2.0, 3.0]), pd.Series([np.nan, np.nan]), "num")
    assert not empty.drifted and np.isnan(empty.score)
    assert empty.note == "no values in the current data" and empty.current_rows == 0


def test_bad_input_is_named() -> None:
    reference, current = frames(100)
    with pytest.raises(MonitoringError, match="reference lacks column.*tenure_days"):
        detect_drift(reference, current, {"tenure_days": ColumnPolicy()})
    with pytest.raises(MonitoringError, match="no rows"):
        detect_drift(reference, current.iloc[:0], {"steady": ColumnPolicy()})
    with pytest.raises(MonitoringError, match="unknown drift method 'magic'"):
        detect_drift(reference, current, {"steady": ColumnPolicy("magic")})
    with pytest.raises(MonitoringError, match="'mix'.*needs numbers"):
        detect_drift(reference, current, {"mix": ColumnPolicy("wasserstein")})
