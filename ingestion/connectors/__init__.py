"""Source connectors: one module per kind of source, each reading raw records incrementally.

`connector_for(source)` picks the connector, importing its module when first asked, so a
file-only project never loads the database, HTTP or NATS clients.
"""
from __future__ import annotations

from tideline.core.errors import SourceError
from tideline.ingestion.sources import BATCH_BYTES, Connector, Source


def connector_for(source: Source, batch_bytes: int = BATCH_BYTES) -> Connector:
    """The connector for a source's kind; files are read about `batch_bytes` at a time."""
    if source.kind == "file":
        from tideline.ingestion.connectors.files import FileConnector

        return FileConnector(batch_bytes)
    if source.kind == "sql":
        from tideline.ingestion.connectors.sql import SqlConnector

        return SqlConnector()
    if source.kind == "rest":
        from tideline.ingestion.connectors.rest import RestConnector

        return RestConnector()
    if source.kind == "stream":
        from tideline.ingestion.connectors.stream import StreamConnector

        return StreamConnector()
    raise SourceError(source.name, f"no connector for sources of kind {source.kind!r}")
