"""The quarantine: failing rows as received, each with the rules it failed and why."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from tideline.ingestion.validation.rules import TEXT, Check, lit


def _beside_bookkeeping(frame: pd.DataFrame) -> pd.DataFrame:
    """The input's own `_row`, `_rules` or `_reason` columns renamed `<name>.input`, so that
    the quarantine's bookkeeping does not overwrite values as received."""
    taken = set(map(str, frame.columns))
    renamed = {}
    for name in ("_row", "_rules", "_reason"):
        if name in taken:
            moved = f"{name}.input"
            while moved in taken:
                moved += ".input"
            renamed[name] = moved
            taken.add(moved)
    return frame.rename(columns=renamed)


def quarantine_frame(frame: pd.DataFrame, checks: list[Check], failing: np.ndarray,
                     numbers: np.ndarray | None = None) -> pd.DataFrame:
    """Failing rows as received, with `_row` (their input numbers `numbers`, or positions),
    `_rules` and `_reason`. Reasons are built in Arrow: each check's texts for its rows, then
    joined per row in check order."""
    rows = np.flatnonzero(failing)
    quarantine = _beside_bookkeeping(frame.iloc[rows].copy())
    where, which, texts = [], [], []
    for i, check in enumerate(checks):
        selected = np.flatnonzero(check.mask[rows])
        if not selected.size:
            continue
        reason = check.describe(rows[selected])
        if isinstance(reason, str):
            reason = pa.array(np.full(selected.size, reason, dtype=object), TEXT)
        where.append(selected)
        which.append(np.full(selected.size, i))
        texts.append(reason)
    quarantine["_row"] = (rows if numbers is None else numbers[rows]).astype("int64")
    if not texts:
        quarantine["_rules"] = quarantine["_reason"] = pd.Series(dtype="string[pyarrow]")
        return quarantine
    position = np.concatenate(where)
    order = np.argsort(position, kind="stable")  # per row, checks stay in declaration order
    offsets = pa.array(np.concatenate([[0], np.cumsum(np.bincount(position,
                                                                  minlength=rows.size))]))
    labels = pa.array([check.label for check in checks], TEXT).take(
        pa.array(np.concatenate(which)[order]))
    reasons = pa.concat_arrays(texts).take(pa.array(order))
    for name, values, separator in (("_rules", labels, ";"), ("_reason", reasons, "; ")):
        joined = pc.binary_join(pa.LargeListArray.from_arrays(offsets, values), lit(separator))
        quarantine[name] = pd.arrays.ArrowStringArray(joined)
    return quarantine
