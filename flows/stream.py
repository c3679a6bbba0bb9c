"""Real-time features on the demo: its live events (the day after the batch data) → the stream
processor (same feature definitions as the batch engine) → fresh values in the online store →
the champion scores customers on a failed payment or a cancel-page visit → high-risk alerts.
In production `tideline stream` runs the same processor against NATS JetStream for ever."""
from __future__ import annotations

from prefect import flow
from tideline.core.settings import flow_settings
from tideline.deployments.demo import LIVE_SUBJECT
from tideline.flows.hooks import FAILURE_HOOKS
from tideline.streaming.processor import StreamConfig, StreamRun
from tideline.tasks.streaming import demo_live_events, publish_stream_artifacts, replay_stream


@flow(name="stream-live", **FAILURE_HOOKS)
def stream_live() -> StreamRun:
    """live events → stream processor → online store → scores → alerts."""
    settings = flow_settings()
    log = demo_live_events(settings)
    run = replay_stream(settings, StreamConfig(
        name="demo-live", url=str(log), subject=LIVE_SUBJECT, start="all",
        max_wait_seconds=0.2, score_on=("payment_failed", "cancel_page")))
    publish_stream_artifacts(run)
    return run
