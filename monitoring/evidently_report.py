"""The report people open: Evidently's data drift preset (every column) and data summary preset
(the columns that drifted most) as one HTML page, run with the tests tideline chose per column
(so its verdicts are the summary's verdicts) on at most `sample_rows` rows a side (PEERS:
Evidently is slow and its HTML unwieldy on millions of rows; the verdicts in the summary always
come from the whole columns)."""
from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tideline.monitoring.drift import METHODS, ColumnDrift, ColumnPolicy

SAMPLE_ROWS = 50_000
SUMMARY_COLUMNS = 15


@dataclass(frozen=True)
class EvidentlyRun:
    path: Path
    scores: dict[str, float]
    """Evidently's own drift score per column (for agreement checks)."""
    sampled: bool


def _inert_in_script(value: object) -> str:
    """A category value as Evidently may write it raw into a `<script>` block of the report
    (its JSON is not escaped for HTML): a zero-width space after each `<` that could end the
    block (`</script>`) or start a comment, shown as the same text and no longer markup."""
    return str(value).replace("</", "<\u200b/").replace("<!", "<\u200b!")


def _sample(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    return frame.sample(n=rows, random_state=seed) if len(frame) > rows else frame


def render_report(reference: pd.DataFrame, current: pd.DataFrame, drifts: list[ColumnDrift],
                  policies: Mapping[str, ColumnPolicy], path: Path,
                  sample_rows: int = SAMPLE_ROWS, seed: int = 0) -> EvidentlyRun:
    """Data drift and data summary for the columns that have values on both sides, with the
    methods and thresholds the views pinned (Evidently picks the rest as tideline did)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset, DataSummaryPreset

    tested = [d for d in drifts if d.method in METHODS]
    columns = [d.column for d in tested]
    # the summary preset costs four times the drift preset per column: profile the columns
    # that drifted most (all of them when none did)
    ranked = sorted(tested, key=lambda d: (not d.drifted, -d.effect))
    summarised = [d.column for d in ranked[:SUMMARY_COLUMNS] if d.drifted] or columns[
        :SUMMARY_COLUMNS]
    definition = DataDefinition(
        numerical_columns=[d.column for d in tested if d.kind == "num"],
        categorical_columns=[d.column for d in tested if d.kind == "cat"])
    sampled = max(len(reference), len(current)) > sample_rows
    frames = [_sample(frame[columns], sample_rows, seed).copy() for frame in (current, reference)]
    for frame in frames:
        for d in tested:
            values = frame[d.column]
            if d.kind == "cat":  # text categories, nulls kept as nulls, inert in a script
                frame[d.column] = values.astype(object).where(values.notna()).map(
                    _inert_in_script, na_action="ignore")
            else:  # Evidently keeps infinities in a column without NaN, and then disagrees
                frame[d.column] = values.astype(float).replace([np.inf, -np.inf], np.nan)
    report = Report([
        DataDriftPreset(columns=columns,
                        per_column_method={c: p.method for c, p in policies.items()
                                           if p.method and c in columns},
                        per_column_threshold={c: p.threshold for c, p in policies.items()
                                              if p.threshold and c in columns}),
        DataSummaryPreset(columns=summarised),
    ])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snapshot = report.run(*(Dataset.from_pandas(f, data_definition=definition)
                                for f in frames))
    path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(path))
    scores = {m["config"]["column"]: float(m["value"]) for m in snapshot.dict()["metrics"]
              if m["config"].get("type") == "evidently:metric_v2:ValueDrift"}
    return EvidentlyRun(path=path, scores=scores, sampled=sampled)
