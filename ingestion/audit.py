"""The audit step of write-audit-publish: validate every dataset a run landed, write the clean
rows, the quarantine and the quality report to the run's branch, and decide the gate.

Layout on the branch::

    clean/<dataset>/dt=<day>/part-<run_id>.parquet     typed rows that passed every rule, in
                                                       hash buckets of the contract's
                                                       `bucket_by` key (`tideline.lake.buckets`)
    quarantine/<dataset>/part-<run_id>.parquet         failing rows as received, with reasons
    quarantine/<dataset>/rejected-<run_id>.parquet     records no connector could parse
    quality/<dataset>/stats/<run_id>.json              row count and null rates, for volume checks
    reports/quality/<run_id>.html | .csv               the report people read
"""
from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from tideline.core.errors import QualityGateFailed
from tideline.ingestion.contracts import Contract
from tideline.ingestion.landing import IngestRecord, clear_days, partition_dates, read_landed
from tideline.ingestion.project import Project
from tideline.ingestion.report import render_csv, render_html
from tideline.ingestion.sources import Window
from tideline.ingestion.validation import ValidationResult, validate
from tideline.ingestion.validation.anomalies import DatasetStats
from tideline.lake.base import Lake
from tideline.lake.buckets import clean_path, write_bucketed
from tideline.lake.tables import read_frame, read_table, write_table

HISTORY_RUNS = 20


@dataclass(frozen=True)
class DatasetOutcome:
    """One dataset's verdict: small and serialisable, for summaries and artifacts."""

    dataset: str
    rows: int
    clean: int
    quarantined: int
    rejected: int
    score: float
    gate_passed: bool
    gate_reasons: tuple[str, ...]
    contract_version: str
    failures: dict[str, int]
    """Failing rows per `rule:column`."""


@dataclass(frozen=True)
class Audit:
    run_id: str
    outcomes: tuple[DatasetOutcome, ...]
    report: str
    """Lake path of the HTML report on the run's branch."""
    local_report: str
    """The same report on local disk, for people to open."""

    @property
    def passed(self) -> bool:
        return all(outcome.gate_passed for outcome in self.outcomes)

    def failure_message(self) -> str:
        failed = [o for o in self.outcomes if not o.gate_passed]
        reasons = "; ".join(f"{o.dataset}: {', '.join(o.gate_reasons)}" for o in failed)
        return (f"run {self.run_id}: {len(failed)} dataset(s) failed the quality gate — {reasons}."
                f" Nothing was published; report: {self.local_report}")


_KEYS_REMEMBERED = 200_000
"""Objects whose key sets a process remembers (a long-lived worker checks references on every
run; the soak showed re-reading every clean partition making each run slower than the last)."""
_object_keys: OrderedDict[tuple[str, str], frozenset[str]] = OrderedDict()


def clean_keys(lake: Lake, ref: str, dataset: str, column: str) -> set[str]:
    """Every value of `column` in the clean table of `dataset`, as text. Objects never change
    under a checksum, so each one's keys are read once per process."""
    keys: set[str] = set()
    for info in lake.list(ref, f"clean/{dataset}/dt="):
        remembered = _object_keys.get((info.checksum, column))
        if remembered is None:
            values = read_table(lake, ref, info.path, columns=[column]).column(column)
            remembered = frozenset(pc.cast(values.drop_null(), pa.string()).to_pylist())
            _object_keys[(info.checksum, column)] = remembered
            if len(_object_keys) > _KEYS_REMEMBERED:
                _object_keys.popitem(last=False)
        keys.update(remembered)
    return keys


def known_keys(lake: Lake, ref: str, dataset: str, column: str) -> set[str]:
    """The keys a reference may point at: clean rows, plus quarantined rows whose failure is not
    about `column` itself. A customer quarantined for a bad e-mail still exists, so its orders
    are not orphans; a customer whose id is malformed does not."""
    keys = clean_keys(lake, ref, dataset, column)
    for info in lake.list(ref, f"quarantine/{dataset}/part-"):
        frame = read_frame(lake, ref, info.path, columns=[column, "_rules"])
        about_key = frame["_rules"].str.contains(f":{column}(?:;|$)", regex=True)
        keys.update(frame.loc[~about_key, column].dropna().astype(str))
    return keys


def _history(lake: Lake, ref: str, dataset: str) -> list[DatasetStats]:
    stats = [DatasetStats.model_validate_json(lake.get(ref, info.path))
             for info in lake.list(ref, f"quality/{dataset}/stats/")]
    return sorted(stats, key=lambda s: s.validated_at)[-HISTORY_RUNS:]


def _rejected(lake: Lake, ref: str, records: list[IngestRecord]) -> pd.DataFrame:
    frames = [read_frame(lake, ref, path).assign(_source=record.source)
              for record in records for path in record.parts if "/rejected/" in path]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _outcome(result: ValidationResult, rejected: int) -> DatasetOutcome:
    failures = {f"{row.rule}:{row.column}" if row.column else row.rule: int(row.failed_rows)
                for row in result.rules.itertuples() if row.failed_rows}
    return DatasetOutcome(
        dataset=result.dataset, rows=result.rows + rejected, clean=len(result.clean),
        quarantined=len(result.quarantine) + rejected, rejected=rejected,
        score=round(result.score, 3), gate_passed=result.gate_passed,
        gate_reasons=tuple(result.gate_reasons), contract_version=result.contract_version,
        failures=failures,
    )


def validate_dataset(
    lake: Lake,
    branch: str,
    contract: Contract,
    records: list[IngestRecord],
    *,
    timestamp_column: str,
    run_id: str,
    now: datetime,
    window: Window | None = None,
) -> ValidationResult:
    """Validate what this run landed for one dataset and write its clean rows and quarantine."""
    frames = [read_landed(lake, branch, record) for record in records]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if frame.empty and frame.columns.empty:  # nothing new since the checkpoint: not a schema break
        frame = pd.DataFrame({c.name: pd.Series(dtype="string") for c in contract.columns})
    references = {f"{ref.dataset}.{ref.ref_column}": known_keys(lake, branch, ref.dataset,
                                                                ref.ref_column)
                  for ref in contract.references}
    result = validate(frame, contract, references=references,
                      history=_history(lake, branch, contract.dataset),
                      time_column=timestamp_column, now=now)
    prefix = f"clean/{contract.dataset}"
    if window is not None:
        clear_days(lake, branch, prefix, window)
    days = partition_dates(result.clean, timestamp_column)
    for day, rows in result.clean.groupby(days, sort=True):
        write_bucketed(lake, branch, clean_path(contract.dataset, day, run_id),
                       rows.reset_index(drop=True), contract.bucket_by)
    if len(result.quarantine):
        write_table(lake, branch, f"quarantine/{contract.dataset}/part-{run_id}.parquet",
                    result.quarantine.reset_index(drop=True))
    rejected = _rejected(lake, branch, records)
    if len(rejected):
        write_table(lake, branch, f"quarantine/{contract.dataset}/rejected-{run_id}.parquet",
                    rejected)
    lake.put(branch, f"quality/{contract.dataset}/stats/{run_id}.json",
             result.stats.model_dump_json().encode())
    return result


def audit(
    lake: Lake,
    branch: str,
    project: Project,
    records: list[IngestRecord],
    *,
    run_id: str,
    report_dir: Path,
    window: Window | None = None,
) -> Audit:
    """Validate every dataset (referenced ones first), then write one report for the run."""
    now = project.validation_time or datetime.now(UTC)
    results: dict[str, ValidationResult] = {}
    outcomes = []
    for dataset in project.validation_order():
        mine = [record for record in records if record.dataset == dataset]
        if not mine:
            continue
        result = validate_dataset(
            lake, branch, project.contract(dataset), mine,
            timestamp_column=project.sources_of(dataset)[0].timestamp_column,
            run_id=run_id, now=now, window=window,
        )
        results[dataset] = result
        outcomes.append(_outcome(result, sum(record.rejected for record in mine)))
    html = render_html(results, title=f"Data quality — run {run_id}", run_id=run_id)
    report = f"reports/quality/{run_id}.html"
    lake.put(branch, report, html.encode())
    lake.put(branch, f"reports/quality/{run_id}.csv", render_csv(results).encode())
    report_dir.mkdir(parents=True, exist_ok=True)
    local = report_dir / f"quality-{run_id}.html"
    local.write_text(html, encoding="utf-8")
    result = Audit(run_id=run_id, outcomes=tuple(outcomes), report=report,
                   local_report=str(local.resolve()))
    lake.put(branch, _summary_path(run_id), json.dumps(asdict(result), indent=1).encode())
    return result


def _summary_path(run_id: str) -> str:
    return f"reports/quality/{run_id}.json"


def load_audit(lake: Lake, ref: str, run_id: str) -> Audit:
    """The audit a run published, read back from the lake."""
    data = json.loads(lake.get(ref, _summary_path(run_id)))
    outcomes = tuple(DatasetOutcome(**{**o, "gate_reasons": tuple(o["gate_reasons"])})
                     for o in data.pop("outcomes"))
    return Audit(outcomes=outcomes, **data)


def enforce_gate(lake: Lake, branch: str, result: Audit) -> None:
    """Publish nothing when any dataset failed: commit the evidence on the run's branch (kept for
    inspection) and raise `QualityGateFailed` naming the datasets, rules and the report."""
    if result.passed:
        return
    lake.commit(branch, f"Audit failed for run {result.run_id}",
                {"run_id": result.run_id, "gate": "failed", "report": result.report})
    raise QualityGateFailed(result.failure_message())
