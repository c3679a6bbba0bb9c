"""Sources declared as data: where raw records come from, which dataset they feed, and how a
connector reads them incrementally. Loaded from the project's `sources.yaml` (or built in code)."""
from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Annotated, Any, Literal, Protocol

import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

BATCH_BYTES = 256 * 2**20
"""Records a landing or an audit holds in memory at a time, about (setting
`ingest_batch_bytes`)."""
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class SourceBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    """Unique source name; it becomes `source=<name>` in the lake, so it must be path-safe."""
    dataset: str
    """The dataset (and validation contract) this source feeds, e.g. `transactions`."""
    timestamp_column: str
    """Event or update time of a record: it picks the `dt=` partition and bounds backfills."""
    description: str = ""

    @field_validator("name", "dataset")
    @classmethod
    def _path_safe(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError(
                f"{value!r} is not a valid name: use lowercase letters, digits, '_' and '-' "
                "(at most 63), starting with a letter or digit"
            )
        return value


class FileSource(SourceBase):
    """Files through fsspec: a local path, any fsspec URL, or a glob of them."""

    kind: Literal["file"] = "file"
    url: str
    format: Literal["csv", "parquet", "jsonl"]
    encoding: str = "utf-8"
    delimiter: str = Field(",", min_length=1, max_length=1)
    """CSV: the character between fields (`;` in many European exports, `\t`, `|`)."""
    storage_options: dict[str, Any] = Field(default_factory=dict)


class SqlSource(SourceBase):
    """A table or a query through SQLAlchemy, pulled incrementally by a cursor column."""

    kind: Literal["sql"] = "sql"
    url_env: str
    """Name of the environment variable holding the SQLAlchemy URL (it may carry a password)."""
    table: str | None = None
    query: str | None = None
    cursor_column: str
    chunk_rows: int = 100_000

    @model_validator(mode="after")
    def _table_or_query(self) -> SqlSource:
        if (self.table is None) == (self.query is None):
            raise ValueError(f"sql source {self.name!r}: give exactly one of 'table' or 'query'")
        return self


class RestSource(SourceBase):
    """A paged JSON API through httpx, pulled incrementally from a checkpoint."""

    kind: Literal["rest"] = "rest"
    url: str
    paging: Literal["page", "cursor"] = "cursor"
    page_size: int = 500
    records_key: str = "data"
    next_key: str = "next_cursor"
    since_param: str = "updated_since"
    cursor_column: str
    token_env: str | None = None
    """Environment variable holding the bearer token, sent as `Authorization: Bearer …`."""
    max_retries: int = 5
    timeout_seconds: float = 30.0


class StreamSource(SourceBase):
    """An event stream: NATS JetStream, or the embedded append-only event log (the default for
    the demo, so the quick start needs no broker). Both consume from the last acknowledged
    position and acknowledge only after the lake commit."""

    kind: Literal["stream"] = "stream"
    transport: Literal["nats", "eventlog"] = "eventlog"
    url: str
    """`nats://host:port` for NATS, or the event log's directory for `eventlog`."""
    subject: str
    stream: str | None = None
    durable: str | None = None
    batch_size: int = 5_000
    max_messages: int | None = None


Source = Annotated[FileSource | SqlSource | RestSource | StreamSource, Field(discriminator="kind")]


@dataclass(frozen=True)
class Window:
    """A backfill range `[since, until)` on the source's timestamp column; None = open."""

    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def of_days(cls, since: date | None, until: date | None) -> Window | None:
        """The backfill of whole days `[since, until)` in UTC; None when neither is given."""
        if since is None and until is None:
            return None
        return cls(*(day and datetime.combine(day, time(), tzinfo=UTC) for day in (since, until)))


@dataclass
class Pull:
    """What one connector call brought back, before anything is committed."""

    frame: pd.DataFrame | None
    """The records as read, one column per field; types are coerced later by validation. None
    when the records come as `batches` instead."""
    checkpoint: dict[str, Any]
    """The position to resume from once this pull is committed to the lake."""
    rejected: list[tuple[str, str]] = field(default_factory=list)
    """Records that could not even be parsed (raw text, reason): they are quarantined too.
    With `batches`, complete only once they are read."""
    ack: Any = None
    """Connector-specific handle acknowledged after the commit (stream messages)."""
    batches: Iterable[pd.DataFrame | pa.Table] | None = None
    """The records in order, a batch at a time, read as they are asked for: sources too big
    to hold at once (files) come this way, so landing holds one batch, not the source."""
    typed: bool = False
    """The source's own types are its values (Parquet, SQL): they land as they are, not as
    text."""

    def chunks(self) -> Iterator[pd.DataFrame | pa.Table]:
        """The records, batch by batch (the frame as one batch)."""
        if self.batches is not None:
            yield from self.batches
        elif self.frame is not None:
            yield self.frame

    def to_frame(self) -> pd.DataFrame:
        """Every record in one frame, which becomes the pull's `frame`: for small pulls and
        tests."""
        if self.batches is not None:
            from tideline.ingestion.rawtext import batches_frame

            self.frame = batches_frame(self.batches)
            self.batches = None
        return self.frame if self.frame is not None else pd.DataFrame()


class Connector(Protocol):
    def pull(
        self, source: Source, checkpoint: dict[str, Any] | None, window: Window | None
    ) -> Pull:
        """Read what is new since `checkpoint` (or exactly `window` when backfilling)."""
        ...

    def acknowledge(self, source: Source, pull: Pull) -> None:
        """Called after the pull's data is committed; streams ack their messages here."""
        ...
