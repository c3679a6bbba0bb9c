"""Calling a custom view's function on the events of its windows, and checking what it
returns: one value per spine row and feature, numeric or categorical (text), for the spine's
rows only. The engine gathers the windows (`engine.custom_columns`); the function sees no
event outside them."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from tideline.core.errors import CustomFeatureError
from tideline.features.definitions import CustomView

AS_OF = "as_of"
"""The spine's as-of time column, as custom functions get it."""
ROW = "row"
"""The name of the spine's index, and of the events' index (each event's spine row)."""


def apply_function(view: CustomView, frames: Sequence[pd.DataFrame], bounds: Sequence[np.ndarray],
                   spine: pd.DataFrame) -> dict[str, np.ndarray]:
    """The view's function features for every spine row, from one events frame per input
    (window after window, row `i`'s events at `bounds[k][i]:bounds[k][i + 1]`)."""
    if not len(spine):
        return {name: np.zeros(0) for name in view.features}
    if view.per == "entity":
        return _per_row(view, frames, bounds, spine)
    args: list[Any] = list(frames)
    given: Any = spine
    if view.per == "table":
        import modin.pandas as mpd  # only for the views that ask for it: a second to import

        args, given = [mpd.DataFrame(frame) for frame in frames], mpd.DataFrame(spine)
    try:
        result = view.callable(*args, given)
    except Exception as exc:
        raise CustomFeatureError(
            f"{_where(view)} raised {type(exc).__name__}: {exc} (on {len(spine)} rows, the "
            f"first {_row(view, spine, 0)})") from exc
    return _checked_frame(view, _pandas(result), spine)


def _per_row(view: CustomView, frames: Sequence[pd.DataFrame], bounds: Sequence[np.ndarray],
             spine: pd.DataFrame) -> dict[str, np.ndarray]:
    values: dict[str, list[Any]] = {name: [] for name in view.features}
    as_of = spine[AS_OF]
    for i in range(len(spine)):
        try:
            value = view.callable(*[frame.iloc[b[i]:b[i + 1]] for frame, b in zip(
                frames, bounds, strict=True)], as_of.iat[i])
        except Exception as exc:
            raise CustomFeatureError(f"{_where(view)} raised {type(exc).__name__}: {exc} "
                                     f"for {_row(view, spine, i)}") from exc
        if not isinstance(value, Mapping):
            if len(view.features) > 1:
                raise CustomFeatureError(
                    f"{_where(view)} returned {type(value).__name__} for {_row(view, spine, i)};"
                    f" with several features it returns a mapping of "
                    f"{', '.join(view.features)} to their values")
            value = {view.features[0]: value}
        if set(value) != set(view.features):
            raise CustomFeatureError(
                f"{_where(view)} returned {sorted(value)} for {_row(view, spine, i)}; the view "
                f"declares {', '.join(view.features)}")
        for name in view.features:
            values[name].append(value[name])
    return {name: _column(view, name, pd.Series(column, index=spine.index), spine)
            for name, column in values.items()}


def _pandas(result: Any) -> Any:
    """A Modin result as pandas (Modin objects convert with `_to_pandas`)."""
    return result._to_pandas() if hasattr(result, "_to_pandas") else result


def _checked_frame(view: CustomView, result: Any, spine: pd.DataFrame) -> dict[str, np.ndarray]:
    where = _where(view)
    if isinstance(result, pd.Series) and len(view.features) == 1:
        result = result.to_frame(view.features[0])
    if not isinstance(result, pd.DataFrame):
        raise CustomFeatureError(f"{where} returned a {type(result).__name__}; it returns a "
                                 f"DataFrame with columns {', '.join(view.features)}, indexed "
                                 f"by the spine's `{ROW}`")
    unknown = result.index.difference(spine.index)
    if len(unknown):
        raise CustomFeatureError(
            f"{where} returned a row for {unknown[0]!r}, which is no spine row (an unknown "
            f"entity); index the result by the spine's `{ROW}` (0..{len(spine) - 1})")
    if result.index.has_duplicates:
        label = result.index[result.index.duplicated()][0]
        raise CustomFeatureError(f"{where} returned two rows for {_row(view, spine, label)}")
    if len(result) != len(spine):
        missing = spine.index.difference(result.index)[0]
        raise CustomFeatureError(
            f"{where} returned {len(result)} rows for {len(spine)} spine rows: none for "
            f"{_row(view, spine, missing)} (reindex by the spine, filling a value for rows "
            "without events)")
    absent = [name for name in view.features if name not in result.columns]
    extra = [str(name) for name in result.columns if name not in view.features]
    if absent or extra:
        raise CustomFeatureError(
            f"{where} returned columns {', '.join(map(str, result.columns))}; the view "
            f"declares {', '.join(view.features)}"
            + (f" (missing {', '.join(absent)})" if absent else f" (extra {', '.join(extra)})"))
    result = result.reindex(spine.index)
    return {name: _column(view, name, result[name], spine) for name in view.features}


def _column(view: CustomView, name: str, values: pd.Series, spine: pd.DataFrame) -> np.ndarray:
    """A returned feature as a float or int64 array (numbers) or an object array of text
    (categories); anything else raises, naming a row that holds it."""
    dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return values.to_numpy(dtype=float, na_value=np.nan)
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype):
        if pd.api.types.is_integer_dtype(dtype) and not values.hasnans:
            return values.to_numpy(dtype=np.int64)
        return values.to_numpy(dtype=float, na_value=np.nan)
    if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(dtype):
        text = values.astype(object)
        wrong = ~(text.isna() | text.map(lambda v: isinstance(v, str)))
        if not wrong.any():
            return text.where(text.notna(), None).to_numpy(dtype=object)
        numbers = pd.to_numeric(text, errors="coerce")
        if not (numbers.isna() & text.notna()).any():  # numbers in an object column
            return numbers.to_numpy(dtype=float)
        row = values.index[np.flatnonzero(wrong.to_numpy())[0]]
        raise CustomFeatureError(
            f"{_where(view)} returned {values[row]!r} ({type(values[row]).__name__}) for "
            f"feature {name!r} at {_row(view, spine, row)}; a feature is a number or text")
    row = values.index[0]
    raise CustomFeatureError(
        f"{_where(view)} returned {dtype} for feature {name!r} (e.g. {values[row]!r} at "
        f"{_row(view, spine, row)}); a feature is a number or text (a category)")


def _where(view: CustomView) -> str:
    return f"custom view {view.name!r}: function {view.function}"


def _row(view: CustomView, spine: pd.DataFrame, row: Any) -> str:
    key = view.entity.key
    return f"{key} {spine.at[row, key]!r} as of {spine.at[row, AS_OF]:%Y-%m-%d %H:%M:%S}"
