"""A project declares its sources and the contract of each dataset they feed, in one YAML file
(or in code). The pipeline reads nothing else to know what to ingest and how to judge it."""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from tideline.core.errors import ConfigError
from tideline.core.project import interpolate, is_project_file, relative_to
from tideline.ingestion.contracts import Column, Contract
from tideline.ingestion.sources import Source


class Project(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    sources: tuple[Source, ...]
    contracts: tuple[Contract, ...]
    validation_time: datetime | None = None
    """The 'now' of freshness and not-in-future checks; None means the wall clock. The demo sets
    it to the end of its generated period so its checks mean the same on any day."""

    @model_validator(mode="after")
    def _consistent(self) -> Project:
        names = [source.name for source in self.sources]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"source names must be unique; repeated: {', '.join(repeated)}")
        declared = {contract.dataset for contract in self.contracts}
        for source in self.sources:
            if source.dataset not in declared:
                raise ValueError(f"source {source.name!r} feeds dataset {source.dataset!r}, "
                                 "which has no contract")
        for contract in self.contracts:
            for ref in contract.references:
                if ref.dataset not in declared:
                    raise ValueError(f"contract {contract.dataset!r} references dataset "
                                     f"{ref.dataset!r}, which has no contract")
        self.validation_order()  # raises on cycles
        return self

    @property
    def pii(self) -> dict[str, dict[str, str]]:
        """Dataset -> its PII-tagged columns and their kinds (datasets with none left out)."""
        return {c.dataset: c.pii for c in self.contracts if c.pii}

    def contract(self, dataset: str) -> Contract:
        return next(c for c in self.contracts if c.dataset == dataset)

    def timestamp_of(self, source: Source) -> Column | None:
        """The contract's declaration of a source's timestamp column (None if undeclared)."""
        try:
            return self.contract(source.dataset).column(source.timestamp_column)
        except KeyError:
            return None

    def sources_of(self, dataset: str) -> list[Source]:
        return [source for source in self.sources if source.dataset == dataset]

    def validation_order(self) -> list[str]:
        """Datasets ordered so every referenced dataset is validated before its referrers."""
        depends = {c.dataset: {r.dataset for r in c.references} - {c.dataset}
                   for c in self.contracts}
        order: list[str] = []
        while depends:
            ready = sorted(name for name, needs in depends.items() if needs <= set(order))
            if not ready:
                raise ValueError(f"contract references form a cycle among: {sorted(depends)}")
            order += ready
            for name in ready:
                del depends[name]
        return order


def fill_placeholders(text: str, placeholders: Mapping[str, str]) -> str:
    """`text` with each `{name}` replaced by its value in `placeholders`."""
    for name, value in placeholders.items():
        text = text.replace("{" + name + "}", value)
    return text


def load_project(path: Path, **placeholders: str) -> Project:
    """Read the sources and contracts of a project file (`tideline.yaml`, whose relative file
    and event-log paths are taken from its directory, with `${VAR}` interpolated) or of a YAML
    holding only them; `{name}` placeholders are filled from `placeholders`."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read project file {path}: {exc}") from None
    text = fill_placeholders(text, placeholders)
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid project file {path}: {exc}") from None
    if is_project_file(path) and isinstance(data, dict):
        data = interpolate({k: data[k] for k in ("sources", "contracts", "validation_time")
                            if k in data}, path.name)
        for source in data.get("sources") or []:
            if not isinstance(source, dict) or not isinstance(source.get("url"), str):
                continue
            if source.get("kind") == "file" or (source.get("kind") == "stream" and
                                               source.get("transport", "eventlog") == "eventlog"):
                source["url"] = relative_to(path, source["url"])
    try:
        return Project.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid project file {path}: {exc}") from None
