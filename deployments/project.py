"""A project as a whole: the JSON Schema of `tideline.yaml` (from the same models and
definitions each section is read into), `plan` (every section loaded and checked against the
others without running anything, and what would change in the feature registry) and `init`
(a new project from the packaged template)."""
from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_type_hints

import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, create_model
from tideline.core.errors import (
    ConfigError,
    SourceAbsent,
    SourceError,
    SourceUnavailable,
    TidelineError,
)
from tideline.core.project import FILE_NAME
from tideline.core.settings import Settings
from tideline.demo.project import declared_project
from tideline.features.definitions import (
    AGGREGATIONS,
    APPROXIMATE,
    CustomView,
    Derived,
    Entity,
    Feature,
    FeatureView,
    Input,
    View,
    load_definitions,
    with_reads,
)
from tideline.features.definitions import Source as FeatureSource
from tideline.features.plan import plan_views
from tideline.ingestion.connectors.files import list_files, sample_file
from tideline.ingestion.connectors.sql import sample_rows
from tideline.ingestion.contracts import Column, Contract
from tideline.ingestion.project import Project
from tideline.ingestion.sources import FileSource, Source, SqlSource
from tideline.ingestion.validation import now_nanoseconds
from tideline.ingestion.validation.coercion import coerce
from tideline.ingestion.validation.schema import schema_issues
from tideline.models.labels import ChurnLabel
from tideline.models.spec import ModelSpec, PromotionGate, load_model_spec

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE / "template"
SCHEMA_FILE = HERE / "tideline.schema.json"
DEPLOYMENTS_FILE = HERE / "prefect.yaml"
_CLOSED = ConfigDict(extra="forbid", use_attribute_docstrings=True)
AGGREGATION = Literal[tuple(sorted(AGGREGATIONS | set(APPROXIMATE)))]  # type: ignore[valid-type]


def _as_written(cls: type, name: str, **replaced: Any) -> type[BaseModel]:
    """A pydantic model of a frozen definition dataclass as the project file writes it: its
    fields and defaults, with `replaced` fields (name -> type, or None to leave out) in the
    file's terms (names of entities and sources instead of the objects)."""
    hints = get_type_hints(cls)
    fields: dict[str, Any] = {}
    for item in dataclasses.fields(cls):
        annotation = replaced.get(item.name, hints[item.name])
        if annotation is None:
            continue
        if item.default is not dataclasses.MISSING:
            fields[item.name] = (annotation, item.default)
        elif item.default_factory is not dataclasses.MISSING:
            fields[item.name] = (annotation, Field(default_factory=item.default_factory))
        else:
            fields[item.name] = (annotation, ...)
    return create_model(name, __config__=_CLOSED, __doc__=cls.__doc__, **fields)


class Features(BaseModel):
    """Feature definitions: entities, the datasets views read (feature sources), views."""

    model_config = _CLOSED
    entities: list[_as_written(Entity, "Entity")] = []  # type: ignore[valid-type]
    sources: list[_as_written(FeatureSource, "FeatureSource")] = []  # type: ignore[valid-type]
    views: list[_as_written(  # type: ignore[valid-type]
        FeatureView, "View", entity=str, source=str,
        features=list[_as_written(Feature, "Feature", agg=AGGREGATION)],
        derived=list[_as_written(Derived, "Derived")], reads=list[str])] = []
    custom_views: list[_as_written(  # type: ignore[valid-type]
        CustomView, "CustomView", entity=str, function=str, features=list[str],
        inputs=list[_as_written(Input, "Input", source=str, columns=list[str])],
        derived=list[_as_written(Derived, "Derived")], reads=list[str])] = []
    """Views whose features a Python function (`module:function`) computes."""


class Model(_as_written(  # type: ignore[misc]
        ModelSpec, "ModelBase",
        label=_as_written(ChurnLabel, "Label", activity=list[str]),
        gate=_as_written(PromotionGate, "PromotionGate"))):
    """The model trained, scored and monitored; the label names feature sources."""


class ProjectFile(BaseModel):
    """`tideline.yaml`: a whole project in one file."""

    model_config = _CLOSED
    name: str | None = None
    """The project's name."""
    demo: bool = False
    """The bundled demo's sources: generated under the data directory, its API served."""
    sources: list[Source] = []
    """Where the data comes from; each feeds the dataset of one contract."""
    contracts: list[Contract] = []
    """What each dataset must look like: types, rules, references, the quality gate."""
    validation_time: datetime | str | None = None
    """A fixed 'now' for freshness and not-in-future checks; unset: the wall clock."""
    features: Features | str | None = None
    """Feature definitions, or `module:attribute` / a YAML file declaring them."""
    model: Model | str | None = None
    """The model, or `module:attribute` of a ModelSpec / a YAML file."""
    settings: dict[str, Any] = {}
    """Settings for every profile (see the configuration reference)."""
    profiles: dict[str, dict[str, Any]] = {}
    """Named settings overlays, chosen with `--profile NAME` or TIDELINE_PROFILE."""


def project_schema() -> dict[str, Any]:
    """The JSON Schema of `tideline.yaml`, its `settings` and profiles typed by the settings
    (less `project` and `profile`, which choose the file)."""
    schema = ProjectFile.model_json_schema()
    settings = Settings.model_json_schema()
    settings["properties"] = {k: v for k, v in settings["properties"].items()
                              if k not in ("project", "profile")}
    settings.pop("required", None)
    settings["additionalProperties"] = False
    schema.setdefault("$defs", {}).update(settings.pop("$defs", {}))
    schema["$defs"]["Settings"] = settings
    reference = {"$ref": "#/$defs/Settings"}
    schema["properties"]["settings"] = {**reference, "description":
                                        schema["properties"]["settings"]["description"]}
    schema["properties"]["profiles"] = {
        "type": "object", "additionalProperties": reference,
        "description": schema["properties"]["profiles"]["description"]}
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "tideline project (tideline.yaml)"
    return schema


def schema_text() -> str:
    return json.dumps(project_schema(), indent=1, sort_keys=True) + "\n"


# -- plan ---------------------------------------------------------------------------------------

_ARROW = {"string": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(),
          "timestamp": pa.timestamp("ns", "UTC"), "date": pa.timestamp("ns")}
"""Contract column types as the clean tables hold them."""


@dataclass
class ProjectPlan:
    """What `tideline plan` found: the project's parts, its problems, and how its views compare
    with the registry's."""

    project: Path | None
    sources: list[str] = field(default_factory=list)
    sources_read: list[str] = field(default_factory=list)
    """What the first records of each file and SQL source showed, or why none were read."""
    views: dict[str, str] = field(default_factory=dict)
    """View -> its version as declared."""
    model: str | None = None
    errors: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    changed: list[tuple[str, str, str]] = field(default_factory=list)
    """(view, registered version, declared version)."""
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    discovered: list[str] = field(default_factory=list)
    """Registered by feature discovery, not declared in the project (kept as they are)."""


def contract_schemas(project: Project, views: list[View]) -> dict[str, pa.Schema]:
    """Each feature source's schema as its dataset's contract declares it; a view reading a
    dataset without a contract raises, naming both."""
    schemas = {}
    for view in with_reads(views):
        for source in view.sources:
            contract = next((c for c in project.contracts if c.dataset == source.dataset), None)
            if contract is None:
                raise ConfigError(
                    f"feature view {view.name!r}: source {source.name!r} reads dataset "
                    f"{source.dataset!r}, which no contract declares (contracts: "
                    f"{', '.join(c.dataset for c in project.contracts) or 'none'})")
            schemas[source.name] = pa.schema([(c.name, _ARROW[c.type])
                                              for c in contract.columns])
    return schemas


def plan_project(settings: Settings) -> ProjectPlan:
    """Load every part of the project and check them together, stopping at the first part
    that cannot load; then compare the views with the registry (read only: a registry that
    does not exist yet has nothing registered)."""
    plan = ProjectPlan(project=settings.project)
    try:
        project = declared_project(settings)
        plan.sources = [source.name for source in project.sources]
        views = load_definitions(settings.declared("features"))
        plan.views = {view.name: view.version for view in views}
        plan_views(views, contract_schemas(project, views), project.pii)
        spec = load_model_spec(settings.declared("model"), views)
        plan.model = f"{spec.name} ({spec.version})"
        _check_model(spec, views)
    except TidelineError as exc:
        plan.errors.append(str(exc))
        return plan
    for source in project.sources:
        if isinstance(source, FileSource | SqlSource):
            _check_source(source, project, plan)
    registered, discovered = _registered(settings)
    for name, version in plan.views.items():
        if name not in registered:
            plan.added.append(name)
        elif registered[name] != version:
            plan.changed.append((name, registered[name], version))
        else:
            plan.unchanged.append(name)
    plan.removed = sorted(set(registered) - set(plan.views) - discovered)
    plan.discovered = sorted(discovered - set(plan.views))
    return plan


def _check_source(source: Source, project: Project, plan: ProjectPlan) -> None:
    """The columns of the source's first records against its contract (a file source's first
    file, a SQL source's table or query), as validation will see them: a missing, renamed or
    joined column, or values of the wrong type, is an error. A source not there yet (no file,
    its database's URL not set) is checked when a run reads it."""
    try:
        if isinstance(source, FileSource):
            fs, files = list_files(source)
            where = min(files)
            sample = sample_file(fs, where, source)
        else:
            where, sample = sample_rows(source)
    except SourceAbsent as exc:
        plan.sources_read.append(f"{source.name}: nothing to read yet: {exc.detail}")
        return
    except SourceUnavailable as exc:
        plan.sources_read.append(f"{source.name}: not read: {exc.detail}")
        return
    except SourceError as exc:
        plan.errors.append(str(exc))
        return
    contract = project.contract(source.dataset)
    issues = schema_issues(sample, contract,
                           now_nanoseconds(project.validation_time or datetime.now(UTC)))
    breaking = [issue for issue in issues if issue.breaking]
    plan.errors += [f"source {source.name!r}: {where}: {issue.detail}" for issue in breaking]
    unread = _unread_types(sample, contract)
    plan.errors += [f"source {source.name!r}: {where}: {detail}" for detail in unread]
    extra = [issue.column for issue in issues if not issue.breaking]
    plan.sources_read.append(f"{source.name}: {where}: " + (
        "its columns break the contract" if breaking else
        "values that are not of their column's type" if unread else
        f"the contract's columns are there ({len(sample):,} records read)"
        + (f"; kept beside them: {', '.join(extra)}" if extra else "")))


def _unread_types(sample: pd.DataFrame, contract: Contract) -> list[str]:
    """Columns of which most sampled values do not read as their declared type (a decimal
    mark or a time format the contract does not say), with an example each; a few such
    values are bad rows, which a run quarantines."""
    found = []
    for column in contract.columns:
        if column.name not in sample.columns:
            continue
        typed = coerce(sample[column.name], column)
        present = int((~typed.null | typed.bad).sum())
        if present and typed.bad.sum() * 2 > present:
            example = sample[column.name][typed.bad].iloc[0]
            found.append(f"column {column.name!r}: {int(typed.bad.sum())} of {present} values "
                         f"read are not {column.type} (e.g. {example!r}); "
                         + _type_hint(column, example))
    return found


_EPOCH_DIGITS = {10: "unix_s", 13: "unix_ms", 16: "unix_us", 19: "unix_ns"}


def _type_hint(column: Column, example: object) -> str:
    text = str(example)
    if column.type in ("float", "int") and "," in text and column.decimal == ".":
        return 'with a decimal comma, declare `decimal: ","` on the column'
    digits = text.strip().lstrip("-")
    if column.type in ("timestamp", "date") and digits.isdigit():
        unit = _EPOCH_DIGITS.get(len(digits), "unix_s")  # today's epoch, as each unit writes it
        return f"for epoch numbers, declare `format: {unit}` (or unix_s, unix_ms, unix_us, unix_ns)"
    if column.type in ("timestamp", "date"):
        return "declare the column's `format` as a strftime pattern (e.g. %d.%m.%Y %H:%M)"
    return "check the column's type in the contract"


def _check_model(spec: ModelSpec, views: list[View]) -> None:
    """The model's feature references name declared views and features, and its label's
    entity key is the key of a view's entity."""
    names = {view.name: set(view.feature_names) for view in views}
    everything = set().union(*names.values()) if names else set()
    for ref in spec.features:
        view, _, feature = ref.rpartition(":")
        known = (names.get(view, set()) if view else everything)
        if (view and view not in names) or (feature != "*" and feature not in known):
            raise ConfigError(f"model {spec.name!r}: feature {ref!r} is not declared by the "
                              f"views ({', '.join(names) or 'none'})")
    keys = {view.entity.key for view in views}
    if spec.label.entity_key not in keys:
        raise ConfigError(f"model {spec.name!r}: label entity_key {spec.label.entity_key!r} is "
                          f"no view's entity key ({', '.join(sorted(keys)) or 'none'})")


def _registered(settings: Settings) -> tuple[dict[str, str], set[str]]:
    """View -> newest registered version, and the views feature discovery registered; nothing
    when the embedded registry is not there."""
    if settings.registry_url is None and not (settings.data_dir / "registry.db").exists():
        return {}, set()
    from tideline.features.registry import open_registry

    registry = open_registry(settings)
    try:
        records = registry.views()
    finally:
        registry.close()
    return ({record.name: record.version for record in records},
            {record.name for record in records if "discovered" in record.tags})


# -- init ---------------------------------------------------------------------------------------

def init_project(directory: Path, name: str | None = None) -> list[Path]:
    """A runnable project in `directory` (new, or empty): the template's `tideline.yaml`,
    sample data and README, the packaged `prefect.yaml` and the project file's JSON Schema.
    Returns the files written."""
    if directory.exists() and any(directory.iterdir()):
        raise ConfigError(f"{directory} is not empty; `tideline init` writes a new project "
                          "into a new or empty directory")
    name = name or directory.resolve().name
    shutil.copytree(TEMPLATE, directory, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    project = directory / FILE_NAME
    text = project.read_text().replace("name: payments", f"name: {json.dumps(name)}", 1)
    project.write_text(text)
    readme = directory / "README.md"
    readme.write_text(readme.read_text().replace("{name}", name))
    shutil.copyfile(DEPLOYMENTS_FILE, directory / "prefect.yaml")
    (directory / SCHEMA_FILE.name).write_text(schema_text())
    return sorted(p for p in directory.rglob("*") if p.is_file())
