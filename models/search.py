"""A small hyper-parameter search within a time budget: the spec's own parameters first, then
seeded random draws from a grid around them, each fitted on the training fold and stopped
early on the validation fold (the test fold is never seen). Trials run as Ray tasks when Ray is
up or the data is large, one per CPU at a time; trials still running at the deadline are
cancelled, and the best finished one wins (the spec's own parameters on ties)."""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from tideline.core.ray_runtime import ensure_ray
from tideline.models.boosting import rounds_on_validation
from tideline.models.spec import ModelSpec

SPACE: dict[str, tuple[Any, ...]] = {
    "num_leaves": (7, 15, 31, 63),
    "min_data_in_leaf": (20, 50, 100, 200),
    "learning_rate": (0.03, 0.05, 0.1),
    "feature_fraction": (0.5, 0.7, 0.9),
    "lambda_l2": (0.0, 1.0, 5.0, 10.0),
}
RAY_ROWS = 200_000
"""Training rows from which the trials go to Ray even when it is not running yet."""


@dataclass(frozen=True)
class Trial:
    params: dict[str, Any]
    valid_auc: float
    rounds: int
    seconds: float


def candidates(spec: ModelSpec, count: int, seed: int = 0) -> list[dict[str, Any]]:
    """`count` distinct parameter sets: the spec's, then random draws over `SPACE`."""
    rng = np.random.default_rng(seed)
    found = [dict(spec.params)]
    for _ in range(count * 50):
        if len(found) == count:
            break
        draw = {**spec.params, **{k: v[rng.integers(len(v))] for k, v in SPACE.items()}}
        if draw not in found:
            found.append(draw)
    return found


def run_trial(params: dict[str, Any], x: pd.DataFrame, y: np.ndarray, x_valid: pd.DataFrame,
              y_valid: np.ndarray, spec: ModelSpec) -> Trial:
    started = time.perf_counter()
    booster = rounds_on_validation(x, y, x_valid, y_valid, replace(spec, params=params))
    return Trial(params=params, valid_auc=float(booster.best_score["valid_0"]["auc"]),
                 rounds=int(booster.best_iteration), seconds=time.perf_counter() - started)


def search(x: pd.DataFrame, y: np.ndarray, x_valid: pd.DataFrame, y_valid: np.ndarray,
           spec: ModelSpec) -> tuple[dict[str, Any], list[Trial]]:
    """The best parameters found and every finished trial (none when the spec asks for no
    search)."""
    if spec.search_trials <= 1:
        return dict(spec.params), []
    sets = candidates(spec, spec.search_trials)
    deadline = time.monotonic() + spec.search_seconds
    import ray

    if ray.is_initialized() or len(x) >= RAY_ROWS:
        trials = _on_ray(sets, x, y, x_valid, y_valid, spec, deadline)
    else:
        trials = []
        for params in sets:
            if time.monotonic() >= deadline and trials:
                break
            trials.append(run_trial(params, x, y, x_valid, y_valid, spec))
    best = max(trials, key=lambda t: t.valid_auc)  # max keeps the first of equals
    return best.params, trials


def _on_ray(sets: list[dict[str, Any]], x: pd.DataFrame, y: np.ndarray,
            x_valid: pd.DataFrame, y_valid: np.ndarray, spec: ModelSpec,
            deadline: float) -> list[Trial]:
    import ray

    ensure_ray()
    data = [ray.put(v) for v in (x, y, x_valid, y_valid)]
    remote = ray.remote(num_cpus=1)(run_trial)
    pending = {remote.remote(params, *data, spec): k for k, params in enumerate(sets)}
    done: dict[int, Trial] = {}
    while pending:
        left = deadline - time.monotonic()
        ready, _ = ray.wait(list(pending), num_returns=1,
                            timeout=max(left, 0) if done else None)
        if not ready:  # out of time: keep what finished
            for future in pending:
                ray.cancel(future, force=True)
            break
        for future in ready:
            done[pending.pop(future)] = ray.get(future)
    return [done[k] for k in sorted(done)]
