"""The input's columns against the contract's: missing, unexpected, and renamed upstream (a
missing column and a new one with a similar name whose values fit the missing one's rules)."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from tideline.ingestion.contracts import Column, Contract
from tideline.ingestion.validation.coercion import coerce
from tideline.ingestion.validation.rules import column_checks


@dataclass(frozen=True)
class SchemaIssue:
    kind: Literal["missing", "unexpected", "renamed"]
    column: str
    """The declared column (missing, renamed) or the unexpected one."""
    breaking: bool
    detail: str
    renamed_to: str | None = None


def _normalised(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _fit(raw: pd.Series, column: Column, now_ns: int) -> float:
    """Share of a sample of present values that would pass `column`'s value rules."""
    sample = raw.iloc[:2000]
    typed = coerce(sample, column)
    present = ~typed.null
    if not present.any():
        return 0.0
    failing = np.zeros(len(sample), dtype=bool)
    for check in column_checks(column, sample, typed, key=False, now_ns=now_ns):
        if check.rule not in ("not_null", "unique"):
            failing |= check.mask
    return float((present & ~failing).sum() / present.sum())


SEPARATORS = (";", "\t", "|", ",")
"""Characters a header may be joined by when a file was read with another delimiter."""


def _joined(absent: list[str], unexpected: list[str]) -> list[SchemaIssue]:
    """An unexpected column whose name is missing columns joined by one character: the input
    was split at another character than its own (a CSV's `delimiter`)."""
    for extra in unexpected:
        for separator in SEPARATORS:
            names = [name.strip().strip('"') for name in extra.split(separator)]
            found = [name for name in names if name in absent]
            if len(found) >= 2:
                shown = separator.encode("unicode_escape").decode()
                return [SchemaIssue(
                    "unexpected", extra, True,
                    f"schema break: the input has one column {extra!r} where the contract "
                    f"has {', '.join(map(repr, found))}: its fields are separated by "
                    f'"{shown}"; a CSV file source reads them with `delimiter: "{shown}"`')]
    return []


def schema_issues(frame: pd.DataFrame, contract: Contract, now_ns: int) -> list[SchemaIssue]:
    declared = {column.name: column for column in contract.columns}
    absent = [name for name in declared if name not in frame.columns]
    originals = {str(name): name for name in frame.columns if name not in declared}
    unexpected = list(originals)
    alone = len(absent) == 1 and len(unexpected) == 1
    pairs = []
    for missing in absent:
        for extra in unexpected:
            similarity = difflib.SequenceMatcher(
                None, _normalised(missing), _normalised(extra)).ratio()
            if similarity < 0.5 and not alone:
                continue
            fit = _fit(frame[originals[extra]], declared[missing], now_ns)
            if fit >= 0.9:
                pairs.append((similarity + fit, missing, extra, fit))
    renamed: dict[str, str] = {}
    fits: dict[str, float] = {}
    for _, missing, extra, fit in sorted(pairs, reverse=True):
        if missing not in renamed and extra not in renamed.values():
            renamed[missing], fits[missing] = extra, fit

    issues = _joined(absent, unexpected)
    for missing in absent:
        if missing in renamed:
            extra = renamed[missing]
            issues.append(SchemaIssue(
                "renamed", missing, True,
                f"schema break: column {missing!r} looks renamed upstream to {extra!r} "
                f"({missing!r} is missing, {extra!r} is new and {fits[missing]:.0%} of its "
                f"values fit {missing!r}); map it back at the source or update the contract",
                renamed_to=extra))
        elif declared[missing].required:
            issues.append(SchemaIssue(
                "missing", missing, True,
                f"schema break: required column {missing!r} is missing from the input"))
    for extra in unexpected:
        if extra not in renamed.values() and all(issue.column != extra for issue in issues):
            issues.append(SchemaIssue(
                "unexpected", extra, not contract.allow_extra_columns,
                f"column {extra!r} is not in the contract"
                + ("" if contract.allow_extra_columns else " (schema break: extra columns are "
                   "not allowed)")))
    return issues
