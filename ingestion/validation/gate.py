"""The quality score (share of rows that pass every check, overall and per rule) and the gate's
verdict: the reasons, if any, that keep a run's data from being published."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from tideline.ingestion.contracts import Contract
from tideline.ingestion.validation.anomalies import Anomaly
from tideline.ingestion.validation.schema import SchemaIssue


@dataclass(frozen=True)
class Scores:
    score: float
    """Percentage of rows that pass every check (100 for no rows)."""
    rules: pd.DataFrame
    """One row per check: rule, column, failed_rows, failure_rate (0–1)."""
    rule_rates: dict[str, float]
    """Share of rows failing, per check label (`range:amount`) and per rule (`range`)."""
    rule_scores: dict[str, float]
    """Percentage of rows passing, per rule."""


def score(labels: list[tuple[str, str]], failed: list[int], by_rule: dict[str, int],
          kept: int, rows: int) -> Scores:
    """Scores of the checks `labels` (rule, column), each failing `failed` rows; `by_rule` the
    rows failing any check of each rule, `kept` the rows that failed none, of `rows`."""
    rules = pd.DataFrame([(rule, column, count) for (rule, column), count
                          in zip(labels, failed, strict=True)],
                         columns=["rule", "column", "failed_rows"])
    rules["failure_rate"] = rules["failed_rows"] / rows if rows else 0.0
    rule_rates: dict[str, float] = {}
    for (rule, column), count in zip(labels, failed, strict=True):
        rule_rates[f"{rule}:{column}" if column else rule] = count / rows if rows else 0.0
    for rule, count in by_rule.items():
        rule_rates[rule] = count / rows if rows else 0.0
    rule_scores = {rule: 100.0 * (1 - rule_rates[rule]) for rule in by_rule}
    overall = 100.0 * kept / rows if rows else 100.0
    return Scores(float(overall), rules, rule_rates, rule_scores)


def gate_reasons(contract: Contract, scores: Scores, issues: list[SchemaIssue],
                 anomalies: list[Anomaly]) -> list[str]:
    """Why the contract's gate fails the run; empty when it passes."""
    gate, reasons = contract.gate, []
    if not gate.allow_schema_break:
        reasons += [issue.detail for issue in issues if issue.breaking]
    if scores.score < gate.min_score:
        rules = scores.rules
        worst = rules[rules.failed_rows > 0].sort_values("failed_rows", ascending=False).head(3)
        named = ", ".join(
            f"{r.rule}:{r.column}" if r.column else r.rule for r in worst.itertuples()
        )
        reasons.append(f"score {scores.score:.2f} below minimum {gate.min_score:g}"
                       + (f" (most failures: {named})" if named else ""))
    for rule, limit in (gate.max_rule_failure_rate or {}).items():
        rate = scores.rule_rates.get(rule, 0.0)
        if rate > limit:
            reasons.append(f"rule {rule} failed on {rate:.2%} of rows, above the limit "
                           f"{limit:.2%}")
    if not gate.allow_anomalies:
        reasons += [f"{a.kind} anomaly: {a.detail}" for a in anomalies]
    return reasons


def unapplied_limits(contract: Contract, scores: Scores) -> list[str]:
    """Warnings for the gate's per-rule limits on checks that did not run."""
    return [f"gate limit on {rule!r} not applied: that check did not run "
            "(column absent, or no reference keys given)"
            for rule in contract.gate.max_rule_failure_rate or {}
            if rule not in scores.rule_rates]
