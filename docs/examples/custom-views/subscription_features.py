"""Custom features of a subscription's billing events, for `tideline.yaml` next to this file
(`subscription_features:paid_streak` and `subscription_features:payment_gaps`). The engine
passes each function only the events before the row's as-of time, within the view's lookback.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def paid_streak(events: pd.DataFrame, as_of: pd.Timestamp) -> float:
    """Months in a row, back from the month before `as_of`, with a payment: a rule on the
    order of the events that no windowed aggregation states. One account's events."""
    paid = events.loc[events["event"] == "payment", "ts"]
    months = set(paid.dt.tz_convert(None).dt.to_period("M"))
    month, streak = (as_of.tz_convert(None) - pd.Timedelta(days=1)).to_period("M"), 0
    while month in months:
        streak, month = streak + 1, month - 1
    return float(streak)


def payment_gaps(events: pd.DataFrame, spine: pd.DataFrame) -> pd.DataFrame:
    """The longest wait between two payments, and the latest plan, for a whole partition at
    once: every row's events come in time order, indexed by the spine's `row`."""
    paid = events[events["event"] == "payment"]
    row = paid.index.to_numpy()
    days = paid["ts"].to_numpy("datetime64[ns]").astype(np.int64) / 86_400e9
    gap = np.full(len(days), np.nan)
    same = row[1:] == row[:-1]
    gap[1:][same] = np.diff(days)[same]
    longest = pd.Series(gap, index=paid.index).groupby(level="row").max()
    latest = events["plan"].astype(object).groupby(level="row").last()
    return pd.DataFrame({"longest_payment_gap_days": longest.reindex(spine.index),
                         "latest_plan": latest.reindex(spine.index)})
