"""An independent, obviously-correct reference for the engine: plain pandas, one spine row at a
time, straight from the definitions' wording. Slow; for small data in tests only."""
from __future__ import annotations

import numpy as np
import pandas as pd
from tideline.features.definitions import QUANTILES, Feature, FeatureView
from tideline.features.expressions import evaluate

DAY = pd.Timedelta(days=1)


def window_events(events: pd.DataFrame, view: FeatureView, key: object, t: pd.Timestamp,
                  feature: Feature, apply_filter: bool = True) -> pd.DataFrame:
    ts = events[view.source.timestamp]
    rows = events[(events[view.entity.key] == key) & (ts < t)]
    if feature.window is not None:
        rows = rows[rows[view.source.timestamp] >= t - pd.Timedelta(feature.window_ns, "ns")]
    if apply_filter and feature.filter is not None:
        stamps = rows[view.source.timestamp]
        env = {c: rows[c] for c in rows.columns}
        env.update(weekday=stamps.dt.weekday.to_numpy(), hour=stamps.dt.hour.to_numpy())
        rows = rows[np.asarray(evaluate(feature.filter, env), dtype=bool)]
    return rows.sort_values(view.source.timestamp, kind="stable")


def reference_value(events: pd.DataFrame, view: FeatureView, key: object, t: pd.Timestamp,
                    f: Feature) -> object:
    rows = window_events(events, view, key, t, f)
    ts = rows[view.source.timestamp]
    values = rows[f.column] if f.column else None
    match f.agg:
        case "count":
            return len(rows)
        case "share":
            total = len(window_events(events, view, key, t, f, apply_filter=False))
            return len(rows) / total if total else np.nan
        case "sum":
            return float(values.sum())
        case "mean" | "min" | "max" | "std" | "var" | "skew" | "nunique":
            return getattr(values, f.agg)()
        case "kurtosis":
            return values.kurt()
        case "cv":
            return values.std() / values.mean() if len(values) and values.mean() else np.nan
        case "range":
            return values.max() - values.min()
        case "sessions":  # a new session after each pause of at least the gap
            return int(len(ts) > 0) + int((ts.diff() >= pd.Timedelta(f.gap)).sum())
        case "first" | "last":
            return (values.iloc[0] if f.agg == "first" else values.iloc[-1]) if len(rows) else None
        case "days_since_last" | "days_since_first":
            stamps = ts if f.column is None else pd.to_datetime(values, utc=True)
            if not len(stamps):
                return np.nan
            edge = stamps.max() if f.agg == "days_since_last" else stamps.min()
            return (t - edge) / DAY
        case agg if agg in QUANTILES:
            return values.quantile(QUANTILES[agg]) if len(values) else np.nan
    if values is None:  # daily statistics of event counts
        values = pd.Series(1.0, index=rows.index)
    daily = np.array([values[(ts >= t - (k + 1) * DAY) & (ts < t - k * DAY)].sum()
                      for k in range(f.window)])[::-1]  # oldest day first
    x = np.arange(f.window, dtype=float)
    match f.agg:
        case "daily_mean":
            return daily.mean()
        case "trend_slope":
            return np.polyfit(x, daily, 1)[0]
        case "trend_r2":
            return np.corrcoef(x, daily)[0, 1] ** 2 if daily.std() > 0 else np.nan
        case "ema_7d":
            weights = 0.5 ** (np.arange(f.window)[::-1] / 7)
            return float((daily * weights).sum() / weights.sum())
    raise AssertionError(f"no reference for {f.agg}")


def reference_frame(events: pd.DataFrame, view: FeatureView, spine: pd.DataFrame
                    ) -> pd.DataFrame:
    """The view's windowed features for each (key, as_of) row of `spine`."""
    rows = []
    for key, t in zip(spine["key"], pd.to_datetime(spine["as_of"], utc=True), strict=True):
        rows.append({f.name: reference_value(events, view, key, t, f) for f in view.features})
    return pd.DataFrame(rows)
