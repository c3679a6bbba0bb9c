"""Tasks around the stream processor: a replay of a stream into the online store, and the
run's artifacts."""
from __future__ import annotations

from collections import Counter

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE
from tideline.core.settings import Settings
from tideline.ingestion.project import Project
from tideline.streaming.processor import StreamConfig, StreamRun, replay


@task(name="stream-replay", cache_policy=NONE)
def replay_stream(settings: Settings, config: StreamConfig, project: Project | None = None
                  ) -> StreamRun:
    return replay(settings, config, fresh=True, project=project)


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
            table=[{"entity": a["entity"], "probability": round(a["probability"], 4),
                    "trigger": ", ".join(a["trigger"]), "reasons": "; ".join(a["reasons"])}
                   for a in sorted(run.alerts, key=lambda a: -a["probability"])])
