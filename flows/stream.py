"""Real-time features on the demo: its live events (the day after the batch data) → the stream
processor (same feature definitions as the batch engine) → fresh values in the online store →
the champion scores customers on a failed payment or a cancel-page visit → high-risk alerts.
In production `tideline stream` runs the same processor against NATS JetStream for ever."""
from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NONE
from tideline.core.settings import flow_settings
from tideline.demo.project import LIVE_SUBJECT, declared_project, write_live_events
from tideline.flows.hooks import FAILURE_HOOKS
from tideline.lake.open import open_lake
from tideline.streaming.processor import StreamConfig, StreamRun
from tideline.tasks.streaming import publish_stream_artifacts, replay_stream

live_events = task(name="live-events", cache_policy=NONE)(write_live_events)


@flow(name="stream-live", **FAILURE_HOOKS)
def stream_live() -> StreamRun:
    """live events → stream processor → online store → scores → alerts."""
    settings = flow_settings()
    log = live_events(open_lake(settings), settings.data_dir / "demo" / "live")
    run = replay_stream(settings, StreamConfig(
        name="demo-live", url=str(log), subject=LIVE_SUBJECT, start="all",
        max_wait_seconds=0.2, score_on=("payment_failed", "cancel_page")),
        declared_project(settings))
    publish_stream_artifacts(run)
    return run
