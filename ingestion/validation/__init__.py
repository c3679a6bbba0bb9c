"""The validation engine: interprets a `Contract` on a raw frame, coerces it to declared types
(`coercion`), checks every row (`rules`) and the columns (`schema`), quarantines failing rows
with their rules and reasons (`quarantine`), compares the batch with past runs (`anomalies`),
scores the data and decides the gate (`gate`). `validate` runs them all.

Vectorised pandas/pyarrow rather than pandera: every row needs all its failing rules with the
raw value next to the coerced one (and duplicates the row they repeat), which pandera's per-check
failure cases do not give, and Arrow kernels (cast, RE2 regex, is_in) keep 10M rows inside the
ingestion budget. pandera checks the engine's output in the tests, via `Contract.to_pandera()`.

Rows are numbered by position in the input (`_row`, 0-based).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from tideline.core.errors import IngestionError, QualityGateFailed
from tideline.ingestion.contracts import Column, Contract
from tideline.ingestion.validation.anomalies import (
    Anomaly,
    DatasetStats,
    OutlierFlag,
    days_covered,
    freshness_anomalies,
    outlier_flags,
    volume_anomalies,
)
from tideline.ingestion.validation.coercion import Typed, coerce, empty_column
from tideline.ingestion.validation.gate import gate_reasons, score, unapplied_limits
from tideline.ingestion.validation.quarantine import quarantine_frame
from tideline.ingestion.validation.rules import (
    Check,
    column_checks,
    duplicate_checks,
    reference_check,
)
from tideline.ingestion.validation.schema import SchemaIssue, schema_issues

log = logging.getLogger(__name__)

PARALLEL_ROWS = 200_000
"""Frames at least this long are checked column by column on threads."""
MAX_THREADS = 8


@dataclass
class ValidationResult:
    dataset: str
    contract_version: str
    rows: int
    clean: pd.DataFrame
    """Passing rows in input order (input index kept), declared columns and dtypes only."""
    quarantine: pd.DataFrame
    """Failing rows as received, plus `_row`, `_rules` (`type:amount;range:amount`), `_reason`."""
    rules: pd.DataFrame
    """One row per check: rule, column, failed_rows, failure_rate (0–1)."""
    score: float
    rule_scores: dict[str, float]
    schema_issues: list[SchemaIssue]
    anomalies: list[Anomaly]
    outliers: list[OutlierFlag]
    stats: DatasetStats
    gate_passed: bool
    gate_reasons: list[str]
    warnings: list[str] = field(default_factory=list)

    def raise_for_gate(self) -> None:
        """Raise `QualityGateFailed` naming every reason, if the gate failed."""
        if not self.gate_passed:
            raise QualityGateFailed(
                f"dataset {self.dataset!r} failed its quality gate: "
                + "; ".join(self.gate_reasons)
                + ". Nothing was published; the quarantine and report say which rows and why."
            )


def _map(work: Callable[[Any], Any], items: list[Any], rows: int) -> list[Any]:
    """`work` over `items`, on threads for big frames: Arrow kernels and factorising release
    the GIL, so columns are checked side by side."""
    workers = min(len(items), os.cpu_count() or 1, MAX_THREADS)
    if rows < PARALLEL_ROWS or workers < 2:
        return [work(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="validate") as pool:
        return list(pool.map(work, items))


def _utc(now: datetime) -> datetime:
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def _reference_keys(references: dict[str, Any] | None, ref: Any) -> Any:
    if not references:
        return None
    for name in (ref.label, ref.dataset):
        if name in references:
            return references[name]
    return None


def validate(frame: pd.DataFrame, contract: Contract, *,
             references: dict[str, Any] | None = None,
             history: list[DatasetStats] | None = None,
             time_column: str | None = None,
             now: datetime) -> ValidationResult:
    """Check `frame` against `contract`: typed clean rows, quarantined rows with reasons, scores,
    schema issues, anomalies against `history`, and the gate's verdict. With `time_column`,
    volume is compared per day of events the batch covers.

    `references` maps `dataset` (or `dataset.ref_column`) to the set of keys that exist there;
    a reference whose keys are not given is skipped with a warning. `now` anchors freshness and
    `not_in_future`; naive datetimes are UTC.
    """
    if frame.columns.has_duplicates:
        repeated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
        raise IngestionError(f"dataset {contract.dataset!r}: input has duplicate column names "
                             f"{repeated}; rename them at the source before validating")
    now = _utc(now)
    now_ns = int(pd.Timestamp(now).as_unit("ns").value)
    n = len(frame)
    index = frame.index
    warnings: list[str] = []

    issues = schema_issues(frame, contract, now_ns)
    present = [column for column in contract.columns if column.name in frame.columns]
    raws = {column.name: frame[column.name] for column in present}

    def prepare(column: Column) -> tuple[Typed, list[Check]]:
        typed = coerce(raws[column.name], column)
        return typed, column_checks(column, raws[column.name], typed,
                                    key=column.name in contract.key, now_ns=now_ns)

    typed: dict[str, Typed] = {}
    checks: list[Check] = []
    for column, (t, found) in zip(present, _map(prepare, present, n), strict=True):
        typed[column.name] = t
        checks += found

    tasks: list[Callable[[], list[Check]]] = []
    for ref in contract.references:
        if ref.column not in typed:
            continue
        keys = _reference_keys(references, ref)
        if keys is None:
            warnings.append(f"reference {ref.column} -> {ref.label} not checked: "
                            f"no keys given for {ref.dataset!r}")
            continue
        tasks.append(partial(reference_check, ref, raws[ref.column], typed[ref.column],
                             contract.column(ref.column), keys))
    tasks.append(partial(duplicate_checks, frame, contract, typed))
    for found in _map(lambda task: task(), tasks, n):
        checks += found

    failing = np.zeros(n, dtype=bool)
    for check in checks:
        failing |= check.mask
    keep = ~failing

    clean_columns = {}
    for column in contract.columns:
        t = typed.get(column.name) or empty_column(column, n, index)
        clean_columns[column.name] = t.values
    clean = pd.DataFrame(clean_columns, index=index)
    if failing.any():
        clean = clean.iloc[np.flatnonzero(keep)]
    quarantine = quarantine_frame(frame, checks, failing)

    scores = score(checks, keep)
    past = [h for h in (history or []) if h.dataset == contract.dataset]
    stats = DatasetStats(
        dataset=contract.dataset, rows=n, validated_at=now, contract_version=contract.version,
        # an empty frame has no null rates: it must not look like a column emptied out
        null_rates={name: float(t.null.mean()) for name, t in typed.items()} if n else {},
        days=days_covered(typed.get(time_column or ""), past),
    )
    anomalies = volume_anomalies(stats, past, contract.volume_mad_k)
    anomalies += freshness_anomalies(contract, typed, keep, now)
    outliers = outlier_flags(contract, typed, keep)
    reasons = gate_reasons(contract, scores, issues, anomalies)
    warnings += unapplied_limits(contract, scores)
    for reason in reasons:
        log.warning("%s: gate: %s", contract.dataset, reason)
    return ValidationResult(
        dataset=contract.dataset, contract_version=contract.version, rows=n, clean=clean,
        quarantine=quarantine, rules=scores.rules, score=scores.score,
        rule_scores=scores.rule_scores, schema_issues=issues, anomalies=anomalies,
        outliers=outliers, stats=stats, gate_passed=not reasons, gate_reasons=reasons,
        warnings=warnings,
    )
