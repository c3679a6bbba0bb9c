"""Talking to the real NATS JetStream of this machine in tests: publishing, reading dead
letters."""
from __future__ import annotations

from ingestion.connectors.stream import run_sync

NATS = "nats://127.0.0.1:4222"


def publish(subject: str, payloads: list[bytes]) -> None:
    import nats

    async def send() -> None:
        nc = await nats.connect(NATS)
        js = nc.jetstream()
        for payload in payloads:
            await js.publish(subject, payload)
        await nc.close()

    run_sync(send)


def dead_letters(name: str) -> list[tuple[str, bytes]]:
    """(reason, payload) of every dead letter of processor `name`."""
    import nats

    async def read() -> list[tuple[str, bytes]]:
        nc = await nats.connect(NATS)
        js = nc.jetstream()
        sub = await js.pull_subscribe(f"tideline.dead-letter.{name}", durable=None)
        found = []
        try:
            while True:
                for message in await sub.fetch(100, timeout=0.5):
                    found.append((message.headers["Tideline-Reason"], message.data))
                    await message.ack()
        except nats.errors.TimeoutError:
            pass
        await nc.close()
        return found

    return run_sync(read)
