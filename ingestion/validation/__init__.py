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
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from tideline.core.errors import IngestionError, QualityGateFailed
from tideline.ingestion.contracts import Column, Contract
from tideline.ingestion.validation.anomalies import (
    Anomaly,
    DatasetStats,
    OutlierFlag,
    day_counts,
    days_covered,
    freshness_anomalies,
    outlier_flag,
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
    reference_values,
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
    """Passing rows in input order (input index kept), declared columns and dtypes only; of a
    dataset validated in batches (`tideline.ingestion.audit`), a sample of them."""
    quarantine: pd.DataFrame
    """Failing rows as received, plus `_row`, `_rules` (`type:amount;range:amount`), `_reason`;
    of a dataset validated in batches, the first of them."""
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
    clean_rows: int
    quarantined_rows: int
    warnings: list[str] = field(default_factory=list)
    pii: dict[str, str] = field(default_factory=dict)
    """Columns of `quarantine` holding personal data -> its kind: the contract's PII-tagged
    columns, and the input columns they look renamed to. Masked wherever rows are shown."""

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


def utc(now: datetime) -> datetime:
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def now_nanoseconds(now: datetime) -> int:
    return int(pd.Timestamp(utc(now)).as_unit("ns").value)


def check_columns(frame: pd.DataFrame, contract: Contract) -> None:
    if frame.columns.has_duplicates:
        repeated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
        raise IngestionError(f"dataset {contract.dataset!r}: input has duplicate column names "
                             f"{repeated}; rename them at the source before validating")


def known_values(contract: Contract, references: dict[str, Any] | None, columns: Iterable[Any]
                 ) -> tuple[dict[str, pa.Array | np.ndarray], list[str]]:
    """For each reference of the contract (by `label`) from a declared column among `columns`,
    the keys that exist in the referenced data as the check compares them; warnings for
    references whose keys are not given.

    `references` maps `dataset` (or `dataset.ref_column`) to the set of keys that exist."""
    known, warnings = {}, []
    declared = {column.name for column in contract.columns}
    present = {name for name in columns if name in declared}
    for ref in contract.references:
        if ref.column not in present:
            continue
        keys = None
        for name in (ref.label, ref.dataset):
            if references and name in references:
                keys = references[name]
                break
        if keys is None:
            warnings.append(f"reference {ref.column} -> {ref.label} not checked: "
                            f"no keys given for {ref.dataset!r}")
            continue
        known[ref.label] = reference_values(contract.column(ref.column), keys)
    return known, warnings


def row_checks(frame: pd.DataFrame, contract: Contract, known: dict[str, Any], now_ns: int,
               numbers: np.ndarray | None = None, repeating: np.ndarray | None = None
               ) -> tuple[dict[str, Typed], list[Check]]:
    """Every row's values coerced, and every per-row check (column rules, references,
    duplicates) on them; `numbers` are the rows' input numbers (positions when not given);
    `repeating`, the only rows the repeat rules (unique, duplicate, duplicate_key) need to
    compare (a mask, all when not given): a first pass over hashes says which."""
    present = [column for column in contract.columns if column.name in frame.columns]
    raws = {column.name: frame[column.name] for column in present}

    def prepare(column: Column) -> tuple[Typed, list[Check]]:
        typed = coerce(raws[column.name], column)
        return typed, column_checks(column, raws[column.name], typed, now_ns=now_ns,
                                    key=column.name in contract.key, numbers=numbers,
                                    repeating=repeating)

    typed: dict[str, Typed] = {}
    checks: list[Check] = []
    for column, (t, found) in zip(present, _map(prepare, present, len(frame)), strict=True):
        typed[column.name] = t
        checks += found
    tasks: list[Callable[[], list[Check]]] = [
        partial(reference_check, ref, raws[ref.column], typed[ref.column],
                contract.column(ref.column), known[ref.label])
        for ref in contract.references if ref.column in typed and ref.label in known]
    tasks.append(partial(duplicate_checks, frame, contract, typed, numbers, repeating))
    for found in _map(lambda task: task(), tasks, len(frame)):
        checks += found
    return typed, checks


def clean_rows(contract: Contract, typed: dict[str, Typed], keep: np.ndarray,
               index: pd.Index) -> pd.DataFrame:
    """The kept rows' coerced values, every declared column (null where absent)."""
    columns = {column.name: (typed.get(column.name)
                             or empty_column(column, len(keep), index)).values
               for column in contract.columns}
    clean = pd.DataFrame(columns, index=index)
    return clean if keep.all() else clean.iloc[np.flatnonzero(keep)]


class Tally:
    """What a dataset's checks found, batch by batch: counts and extremes that add up, so a
    dataset checked in batches gets the scores, anomalies and outliers it gets whole."""

    def __init__(self, contract: Contract, time_column: str | None) -> None:
        self.contract, self.time_column = contract, time_column
        self.rows = self.kept = 0
        self.labels: list[tuple[str, str]] = []
        self.failed: list[int] = []
        self.by_rule: dict[str, int] = {}
        self.nulls: dict[str, int] = {}
        self.days = pd.Series(dtype="int64")
        self.newest: int | None = None
        self.outliers: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {
            column.name: ([], []) for column in contract.columns if column.outliers}

    def add(self, typed: dict[str, Typed], checks: list[Check], keep: np.ndarray,
            numbers: np.ndarray) -> None:
        """One batch: its coerced columns, checks, kept rows and the rows' input numbers."""
        if not self.labels:
            self.labels = [(check.rule, check.column) for check in checks]
            self.failed = [0] * len(checks)
        self.rows += len(keep)
        self.kept += int(keep.sum())
        masks: dict[str, np.ndarray] = {}
        for i, check in enumerate(checks):
            self.failed[i] += int(check.mask.sum())
            masks[check.rule] = masks.get(check.rule, np.zeros(len(keep), dtype=bool)) | \
                check.mask
        for rule, mask in masks.items():
            self.by_rule[rule] = self.by_rule.get(rule, 0) + int(mask.sum())
        for name, t in typed.items():
            self.nulls[name] = self.nulls.get(name, 0) + int(t.null.sum())
        self.days = self.days.add(day_counts(typed.get(self.time_column or "")),
                                  fill_value=0).astype("int64")
        rule = self.contract.freshness
        if rule is not None and rule.column in typed:
            usable = keep & typed[rule.column].valid
            if usable.any():
                newest = int(typed[rule.column].cmp[usable].max())
                self.newest = newest if self.newest is None else max(self.newest, newest)
        for name, (values, rows) in self.outliers.items():
            if name in typed:
                usable = keep & typed[name].valid
                values.append(typed[name].cmp[usable].astype("float64"))
                rows.append(numbers[usable])

    def result(self, *, clean: pd.DataFrame, quarantine: pd.DataFrame, quarantined: int,
               issues: list[SchemaIssue], history: list[DatasetStats] | None, now: datetime,
               warnings: list[str]) -> ValidationResult:
        """The verdict on every batch added: scores, stats, anomalies, outliers, the gate."""
        contract, n = self.contract, self.rows
        scores = score(self.labels, self.failed, self.by_rule, self.kept, n)
        past = [h for h in (history or []) if h.dataset == contract.dataset]
        stats = DatasetStats(
            dataset=contract.dataset, rows=n, validated_at=now,
            contract_version=contract.version,
            # an empty frame has no null rates: it must not look like a column emptied out
            null_rates={name: nulls / n for name, nulls in self.nulls.items()} if n else {},
            days=days_covered(self.days, past),
        )
        anomalies = volume_anomalies(stats, past, contract.volume_mad_k)
        anomalies += freshness_anomalies(contract, self.newest, now)
        outliers = [flag for name, (values, rows) in self.outliers.items()
                    if (flag := outlier_flag(contract.column(name), _joined(values, "float64"),
                                             _joined(rows, "int64"))) is not None]
        reasons = gate_reasons(contract, scores, issues, anomalies)
        warnings = warnings + unapplied_limits(contract, scores)
        for reason in reasons:
            log.warning("%s: gate: %s", contract.dataset, reason)
        return ValidationResult(
            dataset=contract.dataset, contract_version=contract.version, rows=n, clean=clean,
            quarantine=quarantine, rules=scores.rules, score=scores.score,
            rule_scores=scores.rule_scores, schema_issues=issues, anomalies=anomalies,
            outliers=outliers, stats=stats, gate_passed=not reasons, gate_reasons=reasons,
            clean_rows=self.kept, quarantined_rows=quarantined, warnings=warnings,
            pii=shown_pii(contract, issues),
        )


def shown_pii(contract: Contract, issues: list[SchemaIssue]) -> dict[str, str]:
    """The contract's PII-tagged columns, and the input columns they look renamed to (whose
    values are theirs), with their kinds."""
    private = contract.pii
    renamed = {issue.renamed_to: private[issue.column] for issue in issues
               if issue.kind == "renamed" and issue.column in private and issue.renamed_to}
    return {**private, **renamed}


def _joined(arrays: list[np.ndarray], dtype: str) -> np.ndarray:
    return np.concatenate(arrays) if arrays else np.zeros(0, dtype=dtype)


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
    check_columns(frame, contract)
    now, now_ns = utc(now), now_nanoseconds(now)
    issues = schema_issues(frame, contract, now_ns)
    known, warnings = known_values(contract, references, frame.columns)
    typed, checks = row_checks(frame, contract, known, now_ns)
    failing = np.zeros(len(frame), dtype=bool)
    for check in checks:
        failing |= check.mask
    tally = Tally(contract, time_column)
    tally.add(typed, checks, ~failing, np.arange(len(frame)))
    quarantine = quarantine_frame(frame, checks, failing)
    return tally.result(clean=clean_rows(contract, typed, ~failing, frame.index),
                        quarantine=quarantine, quarantined=len(quarantine), issues=issues,
                        history=history, now=now, warnings=warnings)
