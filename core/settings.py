"""The one settings object: read from `TIDELINE_*` environment variables and the project file's
`settings` and chosen profile, validated once at start and passed down."""

from __future__ import annotations

import os
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import ByteSize, Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from tideline.core.addresses import valid_address
from tideline.core.durations import PositiveDuration
from tideline.core.errors import ConfigError
from tideline.core.project import NoProject, find_project, settings_of


class Settings(BaseSettings):
    """Everything tideline can be configured with. Secrets are `SecretStr` and never printed."""

    model_config = SettingsConfigDict(
        env_prefix="TIDELINE_", extra="forbid", frozen=True, use_attribute_docstrings=True
    )

    project: Path | None = None
    """The project file, `tideline.yaml` (or its directory); unset: `tideline.yaml` in the
    working directory. Set by `--project`."""
    profile: str | None = None
    """The project file's settings profile to apply over its `settings` (`--profile`)."""

    data_dir: Path = Path(".tideline")
    """Where embedded state lives: the local lake, SQLite databases, the e-mail outbox;
    `.tideline` beside the project file unless set."""

    project_file: Path | None = None
    """Override of the project file's `sources` and `contracts`: a YAML holding only them."""

    lake_backend: Literal["local", "lakefs"] = "local"
    lake_fsync: bool = False
    """fsync objects, commits and refs (survive power loss, not only process crashes)."""
    lake_max_read_bytes: int = 2 * 1024**3
    """Refuse to read a single object larger than this into memory."""
    lake_retention: PositiveDuration = timedelta(days=7)
    """How long `tideline lake gc` keeps a finished run's `run-<id>` branch (merged or
    abandoned) and, on the local lake, objects no branch or tag reaches; on lakeFS, the
    garbage-collection rules it sets. Text such as `7d`, `36h` or `2w`, or seconds."""
    table_retention: PositiveDuration | None = None
    """With it, `tideline lake gc` also drops from main the feature tables whose as-of date,
    and the training sets made, longer ago than this (`180d`), except each view version's
    newest table and the training sets registered models name. Unset: tables stay."""

    feature_views: str | None = None
    """Override of the project file's `features`: `module:attribute` of a list of views, or a
    YAML file of `entities`, `sources` and `views`."""
    model_spec: str | None = None
    """Override of the project file's `model`: `module:attribute` of a ModelSpec, or a YAML
    file (see `tideline.models.spec.load_model_spec`)."""
    ingest_batch_bytes: ByteSize = Field(default=ByteSize(256 * 2**20), gt=0)
    """Records an ingest run holds in memory at a time while landing and validating each
    source, about: bytes, or text such as `256MiB`; the run's peak is a few times this."""
    feature_partitions: int | None = Field(default=None, ge=1)
    """Entity hash partitions, one Ray task each; unset: chosen from the sources' rows and
    `feature_memory_budget` (`tideline.features.materialize.partition_count`)."""
    feature_memory_budget: ByteSize = Field(default=ByteSize(8 * 2**30), gt=0)
    """Memory a feature build may use across its process tree (driver and Ray processes):
    bytes, or text such as `8GiB` or `500MB`."""
    ray_address: str | None = None
    """Join this Ray cluster (`ray://host:10001`, `auto`); unset starts Ray locally (Ray's own
    RAY_ADDRESS variable is honoured too)."""

    registry_url: SecretStr | None = None
    """SQLAlchemy URL of the feature registry (`postgresql+psycopg://user:pw@host/db`); unset:
    SQLite in the data directory."""
    online_store: Literal["sqlite", "redis"] = "sqlite"
    """Where the latest feature values are served from."""
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    nats_url: str | None = None
    """The NATS JetStream server `tideline stream` reads live events from
    (`nats://host:4222`)."""

    api_keys: SecretStr | None = None
    """Keys the HTTP service (`tideline serve`) accepts, comma-separated; with keys (here or
    in `api_keys_secret`) every route but `/health` and the docs needs one, sent as
    `Authorization: Bearer <key>` or `X-API-Key: <key>`; with none the service is open."""
    api_keys_secret: str | None = None
    """Name of a Prefect Secret block holding the API keys (comma-separated, or a JSON list),
    instead of `api_keys`."""

    prefect_database_url: SecretStr | None = None
    """The database of the server `tideline server` starts (`postgresql+asyncpg://…`); unset:
    SQLite in the data directory."""

    smtp_host: str | None = None
    """SMTP server for alerts; unset writes `.eml` files to `<data_dir>/outbox/`."""
    smtp_port: int = 587
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_password_secret: str | None = None
    """Name of a Prefect Secret block holding the SMTP password (instead of the variable)."""
    mail_from: str = "tideline@localhost.localdomain"
    pipeline_owner: str = "data-platform@example.com"
    """Who is told when a flow fails."""

    lakefs_endpoint: str | None = None
    lakefs_access_key_id: SecretStr | None = None
    lakefs_secret_access_key: SecretStr | None = None
    lakefs_repository: str = "tideline"
    lakefs_storage_namespace: str | None = None
    """Where a repository tideline creates keeps its data (`s3://bucket/tideline`); unless set,
    the server's default namespace prefix and the repository's name."""
    lakefs_run_hold_ttl: float = Field(default=60.0, gt=0)
    """Seconds a run's lease on lakeFS lasts unrenewed (a dead run's id is free after it)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, ProjectSettings(settings_cls, init_settings))

    @field_validator("project")
    @classmethod
    def _project_file(cls, value: Path | None) -> Path | None:
        return find_project(value) if value is not None else None

    @field_validator("mail_from", "pipeline_owner")
    @classmethod
    def _one_address(cls, value: str) -> str:
        # checked here too, not only before sending: a bad sender would lose every alert
        if not valid_address(value):
            raise ValueError(f"{value!r} is not one bare e-mail address (local@domain)")
        return value

    @model_validator(mode="after")
    def _lakefs_complete(self) -> Settings:
        if self.lake_backend == "lakefs":
            missing = [
                f"TIDELINE_{name.upper()}"
                for name in ("lakefs_endpoint", "lakefs_access_key_id", "lakefs_secret_access_key")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(f"lake_backend 'lakefs' needs {', '.join(missing)}")
        return self

    @cached_property
    def lake_dir(self) -> Path:
        return self.data_dir / "lake"

    @property
    def project_dir(self) -> Path | None:
        """The directory of the project file: its relative paths and `prefect.yaml` are here."""
        return self.project.parent if self.project is not None else None

    def declared(self, part: Literal["sources", "features", "model"]) -> str:
        """Where a part of the project is declared: its override setting, else the project
        file; `NoProject` when there is neither."""
        override = {"sources": self.project_file, "features": self.feature_views,
                    "model": self.model_spec}[part]
        if override is not None:
            return str(override)
        if self.project is None:
            raise NoProject(Path.cwd())
        return str(self.project)


class ProjectSettings(PydanticBaseSettingsSource):
    """The project file's `settings` and chosen profile, below the environment: the file is
    the one given (`project=`, TIDELINE_PROJECT) or `tideline.yaml` in the working
    directory; the profile likewise (`profile=`, TIDELINE_PROFILE)."""

    def __init__(self, settings_cls: type[BaseSettings],
                 init_settings: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self._given = init_settings()

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ reads the whole file at once

    def __call__(self) -> dict[str, Any]:
        given = self._given.get("project", os.environ.get("TIDELINE_PROJECT"))
        path = find_project(given)
        if path is None:
            return {}
        profile = self._given.get("profile", os.environ.get("TIDELINE_PROFILE"))
        body = settings_of(path, profile)
        for key in ("project", "profile"):
            if key in body:
                raise ConfigError(f"project file {path}: `{key}` is not a setting of the file")
        return {"data_dir": str(path.parent / ".tideline"), **body, "project": str(path)}


def load_settings(**overrides: object) -> Settings:
    """Build and validate the settings, turning pydantic's error into a `ConfigError`."""
    from pydantic import ValidationError

    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(f"invalid tideline settings: {exc}") from None


def flow_settings() -> Settings:
    """The settings a flow runs with: the data directory made absolute, so Ray workers and
    subprocesses started elsewhere find the same lake."""
    settings = load_settings()
    return settings.model_copy(update={"data_dir": settings.data_dir.resolve()})
