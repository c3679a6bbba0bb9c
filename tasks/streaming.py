"""Tasks around the stream processor: the demo's live events, a replay of them into the
online store, and the run's artifacts."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE
from tideline.core.settings import Settings
from tideline.lake.open import open_lake
from tideline.streaming.processor import StreamConfig, StreamRun, replay


@task(name="live-events", cache_policy=NONE)
def demo_live_events(settings: Settings) -> Path:
    from tideline.deployments.demo import write_live_events

    return write_live_events(open_lake(settings), settings.data_dir / "demo" / "live")


@task(name="stream-replay", cache_policy=NONE)
def replay_stream(settings: Settings, config: StreamConfig) -> StreamRun:
    return replay(settings, config, fresh=True)


@task(name="stream-artifacts", cache_policy=NONE)
def publish_stream_artifacts(run: StreamRun) -> None:
    reasons = Counter(why.split(":")[0] for why in run.dead_letters)
    create_markdown_artifact(
        key="realtime-summary",
        markdown=f"# Real-time features: `{run.name}`\n\n{run.applied:,} events applied to "
        f"{run.entities:,} customers' state (newest event {run.clock}), {run.duplicates:,} "
        f"duplicates dropped, {len(run.dead_letters)} dead-lettered:\n\n"
        + "".join(f"- {kind}: {n}\n" for kind, n in reasons.most_common())
        + f"\n{len(run.alerts)} high-risk alert(s) published.\n",
        description="the stream processor's replay of the live events")
    if run.alerts:
        create_table_artifact(
            key="realtime-alerts", description="customers scored at high risk on a live event",
            table=[{"customer": a["customer_id"], "probability": round(a["probability"], 4),
                    "trigger": ", ".join(a["trigger"]), "reasons": "; ".join(a["reasons"])}
                   for a in sorted(run.alerts, key=lambda a: -a["probability"])])
