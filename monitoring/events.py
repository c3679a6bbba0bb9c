"""The Prefect events the monitor sends: `tideline.drift.detected` for a retrain-worthy drift
report, about the model (the resource), naming the drifted features (related resources, role
`feature`), with the scores and the report's place in the lake in the payload; and
`tideline.experiment.concluded` when a split experiment has a significant verdict. Sent through
Prefect's events client with a checkpoint after the event, so the monitor knows it reached the
server; when it cannot, the report says the event is undelivered instead of failing the run."""
from __future__ import annotations

from dataclasses import dataclass

from prefect.events import Event
from prefect.utilities.asyncutils import run_coro_as_sync
from tideline.core.retry import with_retries
from tideline.models.experiment import Measured
from tideline.monitoring.monitor import MonitorResult

DRIFT_EVENT = "tideline.drift.detected"


def model_resource(model_ref: str) -> str:
    """`churn:v3` → `tideline.model.churn` (automations match the model, any version)."""
    return f"tideline.model.{model_ref.partition(':')[0]}"


def drift_event(result: MonitorResult, report: dict[str, str]) -> Event:
    name, _, version = result.model.partition(":v")
    return Event(
        event=DRIFT_EVENT,
        resource={"prefect.resource.id": model_resource(result.model),
                  "prefect.resource.name": result.model, "tideline.model.version": version},
        related=[{"prefect.resource.id": f"tideline.feature.{f.view}.{f.column}",
                  "prefect.resource.role": "feature", "prefect.resource.name": f.column,
                  "tideline.owner": f.owner} for f in result.drifted],
        payload={"model": name, "model_ref": result.model, "as_of": f"{result.as_of}",
                 "report": report["summary"], "html": report["html"],
                 "commit": report["commit"], "reasons": result.reasons,
                 "drifted_share": round(result.share, 4),
                 "scores": {f.column: round(f.drift.score, 6) for f in result.drifted}})


@dataclass(frozen=True)
class Emitted:
    event: str
    id: str
    delivered: bool
    attempts: int
    detail: str


async def _send(event: Event) -> str:
    from prefect.events.clients import get_events_client

    async with get_events_client(reconnection_attempts=1, checkpoint_every=1) as client:
        await client.emit(event)
    return "delivered"


def emit(event: Event, attempts: int = 3, backoff: float = 1.0) -> Emitted:
    """Send the event and wait for the server's acknowledgement; retry, then record (any
    transport failure counts as undelivered)."""
    done, tries, error = with_retries(lambda: run_coro_as_sync(_send(event)), (Exception,),
                                      attempts, backoff)
    return Emitted(event.event, str(event.id), done is not None, tries, done or error)


EXPERIMENT_EVENT = "tideline.experiment.concluded"


def experiment_event(measured: Measured, report: dict[str, str]) -> Event:
    """A split experiment's verdict, about the model (the resource), naming both versions."""
    e, v = measured.experiment, measured.verdict
    return Event(
        event=EXPERIMENT_EVENT,
        resource={"prefect.resource.id": model_resource(e.model),
                  "prefect.resource.name": f"{e.model}:v{e.challenger}",
                  "tideline.experiment": e.name},
        related=[{"prefect.resource.id": f"tideline.model.{e.model}.v{version}",
                  "prefect.resource.role": role, "prefect.resource.name": f"{e.model}:v{version}"}
                 for role, version in (("champion", e.champion), ("challenger", e.challenger))],
        payload={"experiment": e.name, "model": e.model, "winner": v.winner,
                 "champion": e.champion, "challenger": e.challenger, "metric": e.metric,
                 "difference": round(v.difference, 6), "p_value": v.p_value,
                 "report": report["html"], "commit": report["commit"]})
