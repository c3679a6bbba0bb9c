"""Talking to the suite's NATS JetStream in tests: publishing, reading a subject back."""
from __future__ import annotations

from datetime import datetime

from tideline.ingestion.connectors.stream import run_sync


def publish(url: str, subject: str, payloads: list[bytes]) -> None:
    import nats

    async def send() -> None:
        nc = await nats.connect(url)
        js = nc.jetstream()
        for payload in payloads:
            await js.publish(subject, payload)
        await nc.close()

    run_sync(send)


def read_subject(url: str, subject: str, since: datetime | None = None) -> list[tuple[dict, bytes]]:
    """(headers, payload) of every message on a subject (published at or after `since`)."""
    import nats
    from nats.js import api

    config = None if since is None else api.ConsumerConfig(
        deliver_policy=api.DeliverPolicy.BY_START_TIME, opt_start_time=since.isoformat())

    async def read() -> list[tuple[dict, bytes]]:
        nc = await nats.connect(url)
        sub = await nc.jetstream().pull_subscribe(subject, durable=None, config=config)
        found = []
        try:
            while True:
                for message in await sub.fetch(100, timeout=0.5):
                    found.append((message.headers or {}, message.data))
        except TimeoutError:  # nats.errors.TimeoutError and asyncio's alike
            pass
        await nc.close()
        return found

    return run_sync(read)


def dead_letters(url: str, name: str) -> list[tuple[str, bytes]]:
    """(reason, payload) of every dead letter of processor `name`."""
    return [(headers["Tideline-Reason"], data)
            for headers, data in read_subject(url, f"tideline.dead-letter.{name}")]
