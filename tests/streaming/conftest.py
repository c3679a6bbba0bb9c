"""A JetStream stream of its own for each streaming test."""
from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from tideline.ingestion.connectors.stream import run_sync


@pytest.fixture
def subject(nats_url: str) -> Iterator[str]:
    """A JetStream stream of its own for the test, deleted after."""
    import nats

    name = f"test-{uuid.uuid4().hex[:10]}"

    async def create() -> None:
        nc = await nats.connect(nats_url)
        await nc.jetstream().add_stream(name=name.upper(), subjects=[name])
        await nc.close()

    async def delete() -> None:
        nc = await nats.connect(nats_url)
        await nc.jetstream().delete_stream(name.upper())
        await nc.close()

    run_sync(create)
    yield name
    run_sync(delete)
