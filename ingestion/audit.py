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
import tempfile
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tideline.core.errors import QualityGateFailed
from tideline.ingestion.contracts import Contract
from tideline.ingestion.landing import (
    IngestRecord,
    LandedPart,
    clear_days,
    landed_batches,
    landed_parts,
    landed_schema,
    read_ahead,
)
from tideline.ingestion.project import Project
from tideline.ingestion.rawtext import as_raw_text
from tideline.ingestion.report import PLOT_VALUES, render_csv, render_html, section
from tideline.ingestion.sources import BATCH_BYTES, Window
from tideline.ingestion.validation import (
    Tally,
    ValidationResult,
    check_columns,
    clean_rows,
    known_values,
    now_nanoseconds,
    row_checks,
    utc,
)
from tideline.ingestion.validation.anomalies import DatasetStats
from tideline.ingestion.validation.coercion import Typed
from tideline.ingestion.validation.quarantine import quarantine_frame
from tideline.ingestion.validation.repeats import Earlier, Spec, Spill, repeat_specs, spec_hashes
from tideline.ingestion.validation.rules import Check
from tideline.ingestion.validation.schema import SchemaIssue, schema_issues
from tideline.lake.base import Lake
from tideline.lake.buckets import clean_path, write_bucketed
from tideline.lake.tables import read_frame, read_table, write_table

HISTORY_RUNS = 20
AUDITS = 2
"""Datasets validated at a time: Arrow's and Parquet's work releases the GIL."""
WRITERS = 2
"""Clean objects written at a time: Parquet's encoder releases the GIL."""
SHOWN_QUARANTINE = 1_000
"""Quarantined rows a result keeps of a dataset checked in batches (the lake has them all)."""


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
        dataset=result.dataset, rows=result.rows + rejected, clean=result.clean_rows,
        quarantined=result.quarantined_rows + rejected, rejected=rejected,
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
    batch_bytes: int = BATCH_BYTES,
) -> ValidationResult:
    """Validate what this run landed for one dataset and write its clean rows and quarantine,
    a batch of about `batch_bytes` at a time: every rule gives the verdict it gives on the
    whole dataset (`validate`), rules across rows through `repeats`.

    Rows are numbered in the order `read_landed` reads them. Each pull's clean rows of a day go
    to one object (a dataset fed by several sources has one per source and day). Of a dataset
    bigger than one batch, the result holds a sample of the clean rows and the first
    quarantined ones; the lake holds them all."""
    parts = landed_parts(lake, branch, records)
    columns = list(dict.fromkeys(column for record in records for column in record.columns))
    if not columns:  # nothing new since the checkpoint: not a schema break
        columns = [column.name for column in contract.columns]
    schema = landed_schema(parts, columns)
    rows = batch_rows(schema, batch_bytes)
    total = sum(part.rows for part in parts)
    now, now_ns = utc(now), now_nanoseconds(now)
    references = {f"{ref.dataset}.{ref.ref_column}": known_keys(lake, branch, ref.dataset,
                                                                ref.ref_column)
                  for ref in contract.references}
    known, warnings = known_values(contract, references, columns)
    if window is not None:
        clear_days(lake, branch, f"clean/{contract.dataset}", window)
    specs = repeat_specs(contract, columns)
    tally = Tally(contract, timestamp_column)
    outputs = Outputs(lake, branch, contract, run_id, parts, whole=total <= rows,
                      sample=PLOT_VALUES / max(total, 1))
    issues: list[SchemaIssue] | None = None
    with tempfile.TemporaryDirectory(prefix="tideline-audit-") as spill:
        repeated = (None if total <= rows else
                    _repeated(lake, branch, parts, schema, rows, contract, specs, Path(spill)))
        # no hash seen twice: no row repeats another, in its batch or across batches, so each
        # batch is checked alone and the repeat rules compare no rows
        unrepeated = repeated is not None and not any(len(hashes) for hashes in repeated)
        if unrepeated:
            repeated = None
        earlier = Earlier(len(specs))
        start = 0
        for table, owners in read_ahead(landed_batches(lake, branch, parts, schema, rows)
                                        ) if total else [
                (schema.empty_table(), np.zeros(0, dtype=np.int32))]:
            frame = as_raw_text(table)
            check_columns(frame, contract)
            numbers = np.arange(start, start + len(frame))
            start += len(frame)
            if issues is None:  # the schema, and a sample of an unexpected column's values
                issues = schema_issues(frame, contract, now_ns)
            prior, prior_numbers, hashes, candidate = None, numbers[:0], [], None
            repeating = np.zeros(len(frame), dtype=bool) if unrepeated else None
            if repeated is not None:
                found = [spec_hashes(frame, contract, spec) for spec in specs]
                matches = [counted & np.isin(values, repeats) for (values, counted), repeats
                           in zip(found, repeated, strict=True)]
                candidate = np.logical_or.reduce(matches)
                hashes = [values for values, _ in found]
                prior, prior_numbers = earlier.matching(
                    [values[match] for values, match in zip(hashes, matches, strict=True)])
                # the rows whose hashes repeat: this batch's candidates and the earlier ones
                repeating = np.concatenate([np.ones(len(prior_numbers), dtype=bool), candidate])
            combined = frame if prior is None else pd.concat([prior, frame], ignore_index=True)
            typed, checks = row_checks(combined, contract, known, now_ns,
                                       np.concatenate([prior_numbers, numbers]), repeating)
            if prior is not None:
                typed = {name: t.rows(slice(len(prior), None)) for name, t in typed.items()}
                checks = [_tail_check(check, len(prior)) for check in checks]
            failing = np.zeros(len(frame), dtype=bool)
            for check in checks:
                failing |= check.mask
            tally.add(typed, checks, ~failing, numbers)
            outputs.add(frame, typed, checks, failing, numbers, owners)
            if candidate is not None and candidate.any():
                earlier.keep(frame.iloc[np.flatnonzero(candidate)], numbers[candidate],
                             [values[candidate] for values in hashes])
    outputs.close()
    rejected = _rejected(lake, branch, records)
    if len(rejected):
        write_table(lake, branch, f"quarantine/{contract.dataset}/rejected-{run_id}.parquet",
                    rejected)
    result = tally.result(clean=outputs.clean(), quarantine=outputs.quarantine(),
                          quarantined=outputs.quarantined, issues=issues or [],
                          history=_history(lake, branch, contract.dataset), now=now,
                          warnings=warnings)
    lake.put(branch, f"quality/{contract.dataset}/stats/{run_id}.json",
             result.stats.model_dump_json().encode())
    return result


def batch_rows(schema: pa.Schema, batch_bytes: int) -> int:
    """Rows per batch for `batch_bytes`: checking holds each value about six times over (as
    received, coerced, compared, kept), text counted at 32 bytes a value."""
    width = sum(32 if pa.types.is_large_string(field.type) or pa.types.is_string(field.type)
                else 8 for field in schema)
    return min(max(batch_bytes // (6 * max(width, 8)), 256), 4_000_000)


def _repeated(lake: Lake, branch: str, parts: list[LandedPart], schema: pa.Schema, rows: int,
              contract: Contract, specs: list[Spec], directory: Path) -> list[np.ndarray]:
    """The first pass: for each spec, the hashes of the rows that repeat one (`repeats`)."""
    spill = Spill(directory, len(specs))
    names = list(dict.fromkeys(name for _, spec in specs for name in spec))
    try:
        for table, _ in read_ahead(landed_batches(lake, branch, parts, schema, rows,
                                                  columns=names)):
            frame = as_raw_text(table)
            for i, spec in enumerate(specs):
                values, counted = spec_hashes(frame, contract, spec)
                spill.add(i, values[counted])
        return [spill.repeated(i) for i in range(len(specs))]
    finally:
        spill.close()


def _tail_check(check: Check, start: int) -> Check:
    """A check of a batch checked after `start` earlier rows, for the batch's rows alone."""
    return Check(check.rule, check.column, check.mask[start:],
                 lambda positions, describe=check.describe: describe(positions + start))


class Outputs:
    """Where a dataset's verdicts go as batches are checked: clean rows by pull and day (each
    written once its last row is in), the quarantine appended, and what the result keeps."""

    def __init__(self, lake: Lake, branch: str, contract: Contract, run_id: str,
                 parts: list[LandedPart], *, whole: bool, sample: float) -> None:
        self._lake, self._branch, self._contract = lake, branch, contract
        several = len({part.record for part in parts}) > 1
        keys = [(part.record, part.day) for part in parts]
        first: dict[tuple[int, str], int] = {}
        self._group = np.array([first.setdefault(key, i) for i, key in enumerate(keys)],
                               dtype=np.int64)
        self._paths = [clean_path(contract.dataset, day, run_id) if not several or not record
                       else clean_path(contract.dataset, day, f"{run_id}-{record}")
                       for record, day in keys]
        self._waiting: dict[int, list[pa.Table]] = {}
        self._pool = ThreadPoolExecutor(WRITERS, thread_name_prefix="clean")
        self._writing: list[Future] = []
        self._quarantine_path = f"quarantine/{contract.dataset}/part-{run_id}.parquet"
        self._stack = ExitStack()
        self._writer: pq.ParquetWriter | None = None
        self._whole, self._sample = whole, sample
        self._rng = np.random.default_rng(0)
        self._clean: list[pd.DataFrame] = []
        self._shown: list[pd.DataFrame] = []
        self._shown_rows = 0
        self.quarantined = 0

    def add(self, frame: pd.DataFrame, typed: dict[str, Typed], checks: list[Check],
            failing: np.ndarray, numbers: np.ndarray, owners: np.ndarray) -> None:
        keep = ~failing
        if not self._shown:  # the quarantine's columns, should no row fail
            self._shown.append(quarantine_frame(frame.iloc[:0], [], keep[:0]))
        clean = clean_rows(self._contract, typed, keep, frame.index)
        if self._whole:
            self._clean.append(clean)
        elif len(clean):
            self._clean.append(clean[self._rng.random(len(clean)) < self._sample])
        table = pa.Table.from_pandas(clean, preserve_index=False)
        groups = self._group[owners[keep]]
        for group in np.flatnonzero(np.bincount(groups)):  # groups present: no sort
            self._waiting.setdefault(int(group), []).append(
                table.filter(pa.array(groups == group)))
        if len(owners):
            self._write([g for g in self._waiting if g < self._group[owners[-1]]])
        if failing.any():
            quarantine = quarantine_frame(frame, checks, failing, numbers).reset_index(drop=True)
            self._append(quarantine)
            if self._whole or self._shown_rows < SHOWN_QUARANTINE:
                self._shown.append(quarantine)
                self._shown_rows += len(quarantine)
            self.quarantined += len(quarantine)

    def close(self) -> None:
        self._write(list(self._waiting))
        self._pool.shutdown()
        for done in self._writing:
            done.result()
        self._stack.close()

    def clean(self) -> pd.DataFrame:
        if not self._clean:
            return clean_rows(self._contract, {}, np.zeros(0, dtype=bool), pd.RangeIndex(0))
        return pd.concat(self._clean)

    def quarantine(self) -> pd.DataFrame:
        shown = pd.concat(self._shown, ignore_index=True)
        return shown if self._whole else shown.head(SHOWN_QUARANTINE)

    def _write(self, groups: list[int]) -> None:
        """Write the groups' clean rows on the pool, while the next batch is checked; at most
        `WRITERS` groups wait to be written, so memory stays bounded."""
        for group in sorted(groups):
            table = pa.concat_tables(self._waiting.pop(group))
            if table.num_rows:
                while len(self._writing) >= WRITERS:
                    self._writing.pop(0).result()
                self._writing.append(self._pool.submit(
                    write_bucketed, self._lake, self._branch, self._paths[group], table,
                    self._contract.bucket_by))

    def _append(self, quarantine: pd.DataFrame) -> None:
        if self._writer is None:
            table = pa.Table.from_pandas(quarantine, preserve_index=False)
            sink = self._stack.enter_context(self._lake.writer(self._branch,
                                                                 self._quarantine_path))
            self._writer = self._stack.enter_context(pq.ParquetWriter(sink, table.schema))
        else:
            table = pa.Table.from_pandas(quarantine, schema=self._writer.schema,
                                         preserve_index=False)
        self._writer.write_table(table)


def audit(
    lake: Lake,
    branch: str,
    project: Project,
    records: list[IngestRecord],
    *,
    run_id: str,
    report_dir: Path,
    window: Window | None = None,
    batch_bytes: int = BATCH_BYTES,
) -> Audit:
    """Validate every dataset (referenced ones first, `AUDITS` at a time), about `batch_bytes`
    of records at a time in all, then write one report for the run."""
    now = project.validation_time or datetime.now(UTC)
    order = [dataset for dataset in project.validation_order()
             if any(record.dataset == dataset for record in records)]
    share = max(batch_bytes // min(AUDITS, max(len(order), 1)), 1)
    done: dict[str, Future[ValidationResult]] = {}
    sections: dict[str, dict[str, object]] = {}

    def check(dataset: str) -> ValidationResult:
        contract = project.contract(dataset)
        for ref in contract.references:  # its references' keys come from their clean rows
            if ref.dataset in done and ref.dataset != dataset:
                done[ref.dataset].result()
        result = validate_dataset(
            lake, branch, contract, [r for r in records if r.dataset == dataset],
            timestamp_column=project.sources_of(dataset)[0].timestamp_column,
            run_id=run_id, now=now, window=window, batch_bytes=share)
        sections[dataset] = section(dataset, result)  # its plots, while others are checked
        return result

    # datasets side by side, each as soon as the datasets it references are done: in
    # validation order, so a dataset's references were started before it
    with ThreadPoolExecutor(AUDITS, thread_name_prefix="audit") as pool:
        for dataset in order:
            done[dataset] = pool.submit(check, dataset)
        results = {dataset: done[dataset].result() for dataset in order}
    outcomes = [_outcome(results[dataset], sum(r.rejected for r in records
                                               if r.dataset == dataset)) for dataset in order]
    html = render_html(results, title=f"Data quality — run {run_id}", run_id=run_id,
                       sections=sections)
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
