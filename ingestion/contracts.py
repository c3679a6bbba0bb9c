"""Schema contracts as data: the columns, keys, references, freshness and quality gate a dataset
must meet. Frozen pydantic models, loaded from YAML or dicts, each with a stable version hash;
`tideline.ingestion.validation` is the one engine that interprets them.

A contract in YAML::

    dataset: transactions
    key: [transaction_id]
    columns:
      - {name: transaction_id, type: string, nullable: false, regex: "t[0-9]+"}
      - {name: customer_id, type: string, nullable: false}
      - {name: email, type: string, pii: email}
      - {name: amount, type: float, min: 0, max: 10000, outliers: iqr}
      - {name: ts, type: timestamp, nullable: false, not_in_future: true}
    references:
      - {column: customer_id, dataset: customers, ref_column: customer_id}
    freshness: {column: ts, max_age: 24h}
    bucket_by: customer_id
    gate: {min_score: 95, max_rule_failure_rate: {reference: 0.01, "type:amount": 0.001}}

`columns` may also be a mapping `{name: {type: ..., ...}}`; `max_age` takes `90s`, `30m`, `24h`,
`2d`, `1w`, ISO 8601 (`PT24H`) or seconds. `pii` tags a column holding personal data
(`tideline.ingestion.privacy` masks its values wherever they are shown to people).
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from tideline.core.durations import PositiveDuration
from tideline.core.errors import ContractError

ColumnType = Literal["string", "int", "float", "timestamp", "date", "bool"]
EPOCH_UNITS = {"unix_s": 10**9, "unix_ms": 10**6, "unix_us": 10**3, "unix_ns": 1}
"""Column formats of times since the Unix epoch: nanoseconds per unit."""
PiiKind = Literal["email", "name", "phone", "address", "free_text"]
Scalar = bool | int | float | str

ROW_RULES = ("type", "not_null", "range", "allowed", "regex", "not_in_future", "unique")
"""Rules checked per column, in the order reasons are written."""
DATASET_ROW_RULES = ("duplicate", "duplicate_key", "reference")
"""Rules checked per row across columns (or against another dataset)."""
RULES = ROW_RULES + DATASET_ROW_RULES

_NUMERIC = ("int", "float")
_TEMPORAL = ("timestamp", "date")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Column(_Frozen):
    """One declared column: its type and the row-level rules its values must pass."""

    name: str
    type: ColumnType
    required: bool = True
    """A required column missing from the frame is a schema break; an optional one is null."""
    nullable: bool = True
    min: float | datetime | None = None
    """Inclusive lower bound: a number for int/float, a date or timestamp for temporal types."""
    max: float | datetime | None = None
    allowed: tuple[Scalar, ...] | None = None
    regex: str | None = None
    """Must match the whole value (string columns), e.g. `[^@\\s]+@[^@\\s]+\\.[a-z]+`."""
    unique: bool = False
    not_in_future: bool = False
    outliers: Literal["iqr", "zscore"] | None = None
    """Flag (never quarantine) values outside 1.5·IQR of the quartiles, or beyond |z| > 3."""
    format: str | None = None
    """How timestamps and dates are written, when not ISO 8601 or one of the formats tried: a
    `strftime` pattern (`%d.%m.%Y %H:%M`), or seconds, milliseconds, microseconds or
    nanoseconds since the Unix epoch (`unix_s`, `unix_ms`, `unix_us`, `unix_ns`), as numbers
    or their text. Ingestion also picks each record's `dt=` day with it."""
    decimal: Literal[".", ","] = "."
    """The decimal mark of numbers read from text: `,` for many European exports. With `,`, a
    number with a `.` (a thousands mark, say) does not parse rather than read as another."""
    pii: bool | PiiKind = False
    """Personal data: `true`, or its kind. Its values are masked in reports, reasons, logs,
    e-mails and artifacts, and features may use it only through declared transformations."""

    @field_validator("name")
    @classmethod
    def _named(cls, value: str) -> str:
        if not value or value.startswith("_"):
            raise ValueError(
                f"column name {value!r} must be non-empty and not start with '_' "
                "(names starting with '_' are reserved for quarantine bookkeeping)"
            )
        return value

    @field_validator("min", "max", mode="before")
    @classmethod
    def _date_bound(cls, value: Any) -> Any:
        if isinstance(value, date) and not isinstance(value, datetime):
            return datetime(value.year, value.month, value.day)
        return value

    @field_validator("min", "max")
    @classmethod
    def _utc_bound(cls, value: float | datetime | None) -> float | datetime | None:
        # naive timestamps are UTC, as they are in the data
        if isinstance(value, datetime) and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"regex {value!r} does not compile: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _rules_fit_type(self) -> Column:
        where = f"column {self.name!r} ({self.type})"
        for bound in (self.min, self.max):
            if bound is None:
                continue
            if self.type in _NUMERIC and isinstance(bound, datetime):
                raise ValueError(f"{where}: min/max must be numbers, got {bound!r}")
            if self.type in _TEMPORAL and not isinstance(bound, datetime):
                raise ValueError(f"{where}: min/max must be dates or timestamps, got {bound!r}")
            if self.type not in _NUMERIC + _TEMPORAL:
                raise ValueError(f"{where}: min/max apply to int, float, timestamp and date")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"{where}: min {self.min} is above max {self.max}")
        if self.regex is not None and self.type != "string":
            raise ValueError(f"{where}: regex applies to string columns only")
        if self.not_in_future and self.type not in _TEMPORAL:
            raise ValueError(f"{where}: not_in_future applies to timestamp and date columns")
        if self.outliers is not None and self.type not in _NUMERIC:
            raise ValueError(f"{where}: outliers apply to int and float columns")
        if self.format is not None and self.type not in _TEMPORAL:
            raise ValueError(f"{where}: format applies to timestamp and date columns")
        if self.format is not None and self.format not in EPOCH_UNITS and "%" not in self.format:
            raise ValueError(f"{where}: format {self.format!r} is neither a strftime pattern "
                             f"(with % codes) nor one of {', '.join(EPOCH_UNITS)}")
        if self.decimal != "." and self.type not in _NUMERIC:
            raise ValueError(f"{where}: a decimal mark applies to int and float columns")
        if self.allowed is not None:
            if not self.allowed:
                raise ValueError(f"{where}: allowed is empty; drop it or list the values")
            for value in self.allowed:
                if not _allowed_fits(value, self.type):
                    raise ValueError(f"{where}: allowed value {value!r} is not a {self.type}")
        return self

    @property
    def dtype(self) -> str:
        """The pandas dtype of this column in the validated (clean) frame."""
        return DTYPES[self.type]

    @property
    def pii_kind(self) -> str | None:
        """The kind of personal data the column holds (`pii` for an untyped tag), or None."""
        if self.pii is False:
            return None
        return "pii" if self.pii is True else self.pii


DTYPES: dict[str, str] = {
    "string": "string[pyarrow]",
    "int": "Int64",
    "float": "float64",
    "timestamp": "datetime64[ns, UTC]",
    "date": "datetime64[ns]",
    "bool": "boolean",
}


def _allowed_fits(value: Scalar, column_type: str) -> bool:
    if column_type == "string":
        return isinstance(value, str)
    if column_type == "bool":
        return isinstance(value, bool)
    if column_type == "int":
        number = isinstance(value, int | float) and not isinstance(value, bool)
        return number and value == int(value)
    if column_type == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, str)  # temporal: ISO text, parsed by the engine


class Reference(_Frozen):
    """Every non-null `column` value must exist in `dataset.ref_column` (no orphans)."""

    column: str
    dataset: str
    ref_column: str

    @property
    def label(self) -> str:
        return f"{self.dataset}.{self.ref_column}"


class Freshness(_Frozen):
    """The newest valid `column` value must be at most `max_age` old at validation time."""

    column: str
    max_age: PositiveDuration

    @model_validator(mode="before")
    @classmethod
    def _pair(cls, value: Any) -> Any:
        if isinstance(value, list | tuple) and len(value) == 2:
            return {"column": value[0], "max_age": value[1]}
        return value


class Gate(_Frozen):
    """When validated data may be published."""

    min_score: float = Field(95.0, ge=0, le=100)
    """Percentage of rows that pass every rule."""
    allow_schema_break: bool = False
    allow_anomalies: bool = False
    """When False, a freshness or volume anomaly fails the gate (outliers never do)."""
    max_rule_failure_rate: dict[str, float] | None = None
    """Per-rule ceilings on the failing fraction: `{"reference": 0.01, "type:amount": 0}` —
    a bare rule counts rows failing it on any column."""

    @field_validator("max_rule_failure_rate")
    @classmethod
    def _rates(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for rule, rate in (value or {}).items():
            if rule.split(":", 1)[0] not in RULES:
                raise ValueError(f"unknown rule {rule!r} in max_rule_failure_rate; "
                                 f"use one of {', '.join(RULES)}, optionally ':<column>'")
            if not 0 <= rate <= 1:
                raise ValueError(f"max_rule_failure_rate[{rule!r}] = {rate} is not in [0, 1]")
        return value


class Contract(_Frozen):
    """What one dataset must look like before it is published."""

    dataset: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()
    """Columns that identify a row: implicitly not null; repeats are `duplicate_key`."""
    references: tuple[Reference, ...] = ()
    freshness: Freshness | None = None
    volume_mad_k: float = Field(5.0, gt=0)
    """Row count and null rates outside median ± k·MAD of past runs are volume anomalies."""
    allow_extra_columns: bool = True
    """When False, a column the contract does not declare is a schema break."""
    gate: Gate = Gate()
    description: str = ""
    bucket_by: str | None = None
    """The entity key column (e.g. `customer_id`) whose hash buckets group each day's clean
    rows (`tideline.lake.buckets`), so that a feature partition reads only its entities' rows. A
    storage layout, not a rule: it does not change the version."""

    @field_validator("columns", mode="before")
    @classmethod
    def _mapping_form(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return [{"name": name, **(spec or {})} for name, spec in value.items()]
        return value

    @field_validator("key", mode="before")
    @classmethod
    def _single_key(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> Contract:
        names = [column.name for column in self.columns]
        if not names:
            raise ValueError(f"contract {self.dataset!r} declares no columns")
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"contract {self.dataset!r} declares {repeated} more than once")
        where = f"contract {self.dataset!r}"
        for name in self.key:
            if name not in names:
                raise ValueError(f"{where}: key column {name!r} is not declared")
        if self.bucket_by is not None and self.bucket_by not in names:
            raise ValueError(f"{where}: bucket_by column {self.bucket_by!r} is not declared")
        for ref in self.references:
            if ref.column not in names:
                raise ValueError(f"{where}: reference column {ref.column!r} is not declared")
        if self.freshness is not None:
            column = self.column(self.freshness.column) if self.freshness.column in names else None
            if column is None or column.type not in _TEMPORAL:
                raise ValueError(f"{where}: freshness column {self.freshness.column!r} must be "
                                 "a declared timestamp or date column")
        for rule in (self.gate.max_rule_failure_rate or {}):
            _, _, column_name = rule.partition(":")
            if column_name and column_name not in names and column_name != "+".join(self.key):
                raise ValueError(f"{where}: max_rule_failure_rate names {rule!r}, "
                                 f"but {column_name!r} is not a declared column")
        return self

    @property
    def pii(self) -> dict[str, str]:
        """The PII-tagged columns and their kinds."""
        return {c.name: kind for c in self.columns if (kind := c.pii_kind) is not None}

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"contract {self.dataset!r} has no column {name!r}")

    @property
    def version(self) -> str:
        """A stable hash of the definition: equal contracts give equal versions on any machine;
        editing only the description, the bucketing or the PII tags keeps the version (none of
        them changes which rows pass)."""
        definition = self.model_dump(mode="json", exclude={
            "description": True, "bucket_by": True, "columns": {"__all__": {"pii"}}})
        body = json.dumps(definition, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, origin: str = "<dict>") -> Contract:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ContractError(f"{origin}: invalid contract "
                                f"{data.get('dataset', '?')!r}: {exc}") from exc

    @classmethod
    def from_yaml(cls, source: str | Path) -> Contract:
        """One contract from a YAML file path, or from YAML text."""
        data, origin = _read_yaml(source)
        if not isinstance(data, dict):
            raise ContractError(f"{origin}: expected a mapping with 'dataset' and 'columns'")
        return cls.from_dict(data, origin=origin)

    def to_pandera(self) -> Any:
        """The clean frame's contract as a pandera `DataFrameSchema` (row rules only), for
        checking `ValidationResult.clean` independently of this engine."""
        import pandas as pd
        import pandera.pandas as pa

        columns = {}
        for column in self.columns:
            checks = []
            low, high = (_pandera_bound(column, b) for b in (column.min, column.max))
            if low is not None:
                checks.append(pa.Check.ge(low))
            if high is not None:
                checks.append(pa.Check.le(high))
            if column.allowed is not None:
                checks.append(pa.Check.isin(list(column.allowed)))
            if column.regex is not None:
                checks.append(pa.Check.str_matches(f"(?:{column.regex})$"))
            columns[column.name] = pa.Column(
                pd.api.types.pandas_dtype(column.dtype), checks=checks,
                nullable=column.nullable and column.name not in self.key,
                unique=column.unique, required=column.required,
            )
        return pa.DataFrameSchema(columns, unique=list(self.key) or None, strict=True,
                                  ordered=True, name=self.dataset)


def _pandera_bound(column: Column, bound: float | datetime | None) -> Any:
    if bound is None or not isinstance(bound, datetime):
        return bound
    import pandas as pd

    stamp = pd.Timestamp(bound).tz_convert("UTC")
    return stamp.tz_localize(None) if column.type == "date" else stamp


def _read_yaml(source: str | Path) -> tuple[Any, str]:
    text, origin = str(source), "<yaml>"
    if isinstance(source, Path) or ("\n" not in text and text.endswith((".yaml", ".yml"))):
        path = Path(source)
        try:
            text, origin = path.read_text(encoding="utf-8"), str(path)
        except OSError as exc:
            raise ContractError(f"cannot read contract file {path}: {exc}") from exc
    try:
        return yaml.safe_load(text), origin
    except yaml.YAMLError as exc:
        raise ContractError(f"{origin}: not valid YAML: {exc}") from exc


def load_contracts(source: str | Path) -> dict[str, Contract]:
    """Every contract of a `contracts.yaml`: a list under `contracts:`, keyed by dataset."""
    data, origin = _read_yaml(source)
    items = data.get("contracts") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ContractError(f"{origin}: expected a list under 'contracts:'")
    contracts: dict[str, Contract] = {}
    for item in items:
        contract = Contract.from_dict(item, origin=origin)
        if contract.dataset in contracts:
            raise ContractError(f"{origin}: dataset {contract.dataset!r} has two contracts")
        contracts[contract.dataset] = contract
    return contracts
