"""Churn labels from activity, on hand-built events at the edges of the windows, and the
entity keys of activity read from the lake."""
from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tideline.core.errors import ModelError
from tideline.demo.views import EVENTS, TRANSACTIONS
from tideline.lake.buckets import clean_path, write_bucketed
from tideline.lake.local import LocalLake
from tideline.models.labels import (
    Activity,
    ChurnLabel,
    label_examples,
    labelable_dates,
    load_activity,
)

LABEL = ChurnLabel(activity=(TRANSACTIONS, EVENTS), horizon_days=10, active_days=5)
T = pd.Timestamp("2026-08-01", tz="UTC")


def activity(events: list[tuple[str, pd.Timestamp]]) -> Activity:
    keys, codes = np.unique([k for k, _ in events], return_inverse=True)
    return Activity(keys=keys, codes=codes,
                    times=pd.DatetimeIndex([t for _, t in events]).as_unit("ns").asi8)


def test_labels_at_the_window_edges() -> None:
    day = pd.Timedelta(days=1)
    data = activity([
        ("stays", T - day), ("stays", T),                       # active at t itself: stays
        ("leaves", T - day), ("leaves", T + 10 * day),          # back only after the horizon
        ("late", T - 5 * day - pd.Timedelta("1ns")),            # not active in the 5 days
        ("edge", T - 5 * day), ("edge", T + 10 * day - pd.Timedelta("1ns")),
        ("end", T + 30 * day),                                  # the data runs to here
    ])
    examples = label_examples(data, LABEL, [date(2026, 8, 1)]).set_index("customer_id")
    assert examples["churned"].to_dict() == {"stays": 0, "leaves": 1, "edge": 0}
    assert (examples["as_of"] == T).all()


def test_a_horizon_past_the_data_is_refused_and_dates_stop_before_it() -> None:
    data = activity([("a", T), ("a", T + pd.Timedelta(days=20))])
    assert data.last_day == date(2026, 8, 21)
    assert labelable_dates(data, LABEL, 3, every_days=7) == [
        date(2026, 7, 29), date(2026, 8, 5), date(2026, 8, 12)]
    with pytest.raises(ModelError, match="needs activity through 2026-08-22, but the data "
                                         "ends on 2026-08-21"):
        label_examples(data, LABEL, [date(2026, 8, 13)])


def test_a_label_needs_positive_windows() -> None:
    with pytest.raises(ModelError, match="horizon_days must be a positive"):
        ChurnLabel(activity=(EVENTS,), horizon_days=0)


def _activity_of(lake: LocalLake, events: list) -> Activity:
    """The activity of transactions [7, 104, 7] and of `events` (ids), an hour apart."""
    day = pd.Timestamp("2026-08-01", tz="UTC")
    for dataset, ids in (("transactions", [7, 104, 7]), ("events", events)):
        frame = pd.DataFrame({"customer_id": ids, "ts": day + pd.to_timedelta([1, 2, 3], "h")})
        write_bucketed(lake, "main", clean_path(dataset, "2026-08-01", "t"), frame,
                       "customer_id", 2)
    lake.commit("main", "ids")
    return load_activity(lake, "main", ChurnLabel(activity=(TRANSACTIONS, EVENTS)))


def test_activity_keeps_the_sources_key_type_and_unifies_differing_ones(tmp_path: Path
                                                                        ) -> None:
    """Integer ids stay integers (the views join examples on them); sources whose keys differ
    in type meet as text."""
    both = _activity_of(LocalLake(tmp_path / "ints"), [104, 12, 12])
    assert both.keys.dtype == np.int64 and both.keys.tolist() == [7, 12, 104]
    assert sorted(both.keys[both.codes].tolist()) == [7, 7, 12, 12, 104, 104]
    mixed = _activity_of(LocalLake(tmp_path / "mixed"), ["104", "C9", "C9"])
    assert mixed.keys.tolist() == ["104", "7", "C9"]
    assert sorted(mixed.keys[mixed.codes].tolist()) == ["104", "104", "7", "7", "C9", "C9"]
