"""The point-in-time audit of a training set: recompute a sample of its rows from the source
events with every event at or after the row's time removed, and name the features whose stored
values differ. Such a feature used data the model could not have had at that time (a feature
table built wrongly or from a later copy of a source, a snapshot joined to an earlier row)."""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from tideline.core.partitioning import hash_bucket
from tideline.features.definitions import FeatureView
from tideline.features.engine import Spine, compute_views
from tideline.features.materialize import as_of_time, known_codes, load_events
from tideline.features.plan import plan_from_lake
from tideline.features.retrieval import (
    FeatureRef,
    event_times,
    materialized_dates,
    resolve_features,
    snapshot_of,
)
from tideline.lake.base import Lake

log = logging.getLogger(__name__)

AUDIT_ENTITIES = 2000
"""Entities whose events the audit reads at most (one hash partition of the population)."""
AUDIT_ROWS = 2000
"""Training rows recomputed at most."""
AUDIT_TIMES = 12
"""Distinct row times recomputed at most (each is one pass of the engine over the sample)."""


def future_leaks(lake: Lake, ref: str, views: Sequence[FeatureView], frame: pd.DataFrame,
                 features: Sequence[str], timestamp_column: str, seed: int = 0
                 ) -> dict[str, str]:
    """Features of `frame` (a training set read at `ref`) whose values differ from the engine's
    on the sources without any event at or after the row's time: column -> why."""
    refs = resolve_features(views, features)
    times = event_times(frame, timestamp_column)
    leaks: dict[str, str] = {}
    for key in dict.fromkeys(r.view.entity.key for r in refs):
        mine = [r for r in refs if r.view.entity.key == key]
        leaks.update(_audit_entity(lake, ref, mine, frame, times, seed))
    return leaks


def _audit_entity(lake: Lake, ref: str, refs: list[FeatureRef], frame: pd.DataFrame,
                  times: np.ndarray, seed: int) -> dict[str, str]:
    """The audit of the features of one entity key, on one hash partition of its entities."""
    views = list({r.view.name: r.view for r in refs}.values())
    key = views[0].entity.key
    keys = frame[key].astype(str).to_numpy(dtype=object)
    partitions = max(1, math.ceil(len(pd.unique(keys)) / AUDIT_ENTITIES))
    rows = np.flatnonzero(hash_bucket(keys, partitions) == 0)
    rng = np.random.default_rng(seed)
    chosen = np.unique(times[rows])
    if len(chosen) > AUDIT_TIMES:
        chosen = rng.choice(chosen, AUDIT_TIMES, replace=False)
    rows = rows[np.isin(times[rows], chosen)]
    if len(rows) > AUDIT_ROWS:
        rows = np.sort(rng.choice(rows, AUDIT_ROWS, replace=False))
    events = load_events(lake, ref, plan_from_lake(views, lake, ref), 0, partitions)
    differences: dict[str, list[str]] = {}
    checked: set[int] = set()
    for view in views:
        dates = materialized_dates(lake, ref, view)
        snapshot = snapshot_of(view, dates, times[rows])
        for t in np.unique(times[rows]):
            before = {name: source.subset(source.time < t) for name, source in events.items()}
            for j in np.unique(snapshot[times[rows] == t]):
                if j < 0:
                    continue
                at = as_of_time(dates[j])
                known = set(before[view.sources[0].name].keys.take(
                    known_codes(before, at)).to_pylist())
                picked = [r for r in rows[(times[rows] == t) & (snapshot == j)]
                          if keys[r] in known]
                if not picked:
                    continue
                spine = Spine.of(keys[picked], [at] * len(picked))
                recomputed = compute_views([view], before, spine)
                checked.update(picked)
                for r in (r for r in refs if r.view.name == view.name):
                    stored = frame[r.column].to_numpy()[picked]
                    wrong = ~_same(stored, recomputed[r.feature].to_numpy())
                    if wrong.any():
                        k = int(np.flatnonzero(wrong)[0])
                        differences.setdefault(r.column, []).append(
                            f"{int(wrong.sum())} of {len(picked)} rows at "
                            f"{pd.Timestamp(t, tz='UTC'):%Y-%m-%d %H:%M}, e.g. {key} "
                            f"{keys[picked[k]]}: {stored[k]!r} in the training set, "
                            f"{recomputed[r.feature].to_numpy()[k]!r} without later events")
    log.info("point-in-time audit of %d feature(s) on %d row(s): %d differ", len(refs),
             len(checked), len(differences))
    return {column: "uses data at or after the as-of time: " + "; ".join(found[:3])
            for column, found in differences.items()}


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Equal values (to 1e-9, relative) or both missing, element by element."""
    missing_a, missing_b = pd.isna(a), pd.isna(b)
    try:
        x, y = a.astype(float), b.astype(float)
    except (TypeError, ValueError):
        return (missing_a & missing_b) | (~missing_a & ~missing_b & (a == b))
    close = np.abs(x - y) <= 1e-9 * np.maximum(1.0, np.maximum(np.abs(x), np.abs(y)))
    return (missing_a & missing_b) | (~missing_a & ~missing_b & close)
