"""What happens when a flow fails or crashes: the pipeline's owner is told (same transport as
the drift alerts) which flow and run failed, in which task, why, and how to resume. The run's
lake branch is kept by write-audit-publish, main is as it was, and re-running the same run id
skips every stage that already published."""
from __future__ import annotations

import logging
from html import escape
from typing import Any

from prefect.client.schemas.objects import Flow, FlowRun, State
from tideline.core.errors import TidelineError
from tideline.core.settings import load_settings
from tideline.monitoring.mail import Mail, deliver, open_transport

log = logging.getLogger(__name__)
RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")
"""Where Prefect logs a run's exception, with its traceback."""


class ExplainedFailures(logging.Filter):
    """Keeps Prefect's log of a run that failed with a tideline error (a failed quality gate,
    a bad source, a wrong setting) to the error's message, which says what is wrong and what
    to do: its traceback, once per task, subflow and flow, only buried it. Any other exception
    keeps its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], TidelineError):
            record.exc_info, record.exc_text = None, None
        return True


def explain_failures() -> None:
    """Install `ExplainedFailures` on Prefect's run loggers (once)."""
    for name in RUN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, ExplainedFailures) for f in logger.filters):
            logger.addFilter(ExplainedFailures())


def _failed_tasks(flow_run: FlowRun) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        TaskRunFilter,
        TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])),
            task_run_filter=TaskRunFilter(state=TaskRunFilterStateType(
                type={"any_": [StateType.FAILED, StateType.CRASHED]})), limit=20)
    return [r.name for r in runs]


def failure_mail(flow: Flow, flow_run: FlowRun, state: State, owner: str,
                 failed: list[str]) -> Mail:
    run_id = (flow_run.parameters or {}).get("run_id") or "(a new one)"
    lines = [f"Flow {flow.name!r}, run {flow_run.name} ({flow_run.id}), ended {state.name}.",
             f"Failed task(s): {', '.join(failed) or 'none (the flow itself)'}",
             f"Reason: {state.message or 'see the run logs'}",
             "",
             "Main is unchanged by the failed stage; its run branch (run-<run id>-...) is kept "
             "in the lake for inspection.",
             f"To resume, re-run with the same run id ({run_id}): stages that already "
             "published are skipped."]
    return Mail(to=(owner,), subject=f"[tideline] {flow.name} run {flow_run.name} "
                                     f"{state.name.lower()}",
                text="\n".join(lines),
                html="".join(f"<p>{escape(line)}</p>" for line in lines if line))


def notify_failure(flow: Flow, flow_run: FlowRun, state: State) -> None:
    """Prefect on_failure / on_crashed hook: e-mail the pipeline owner; never raise. A
    subflow leaves it to its parent (one message per failure)."""
    if flow_run.parent_task_run_id is not None:
        return
    try:
        settings = load_settings()
        try:
            failed = _failed_tasks(flow_run)
        except Exception:  # noqa: BLE001 - the API may be what failed
            failed = []
        mail = failure_mail(flow, flow_run, state, settings.pipeline_owner, failed)
        (delivery,) = deliver(open_transport(settings), [mail], settings.mail_from)
        log.warning("flow %s run %s %s; owner %s %s: %s", flow.name, flow_run.name,
                    state.name, settings.pipeline_owner,
                    "told" if delivery.sent else "NOT told", delivery.detail)
    except Exception as exc:  # noqa: BLE001 - a hook must not mask the flow's own failure
        log.error("could not report the failure of %s: %s", flow.name, exc)


FAILURE_HOOKS: dict[str, Any] = {"on_failure": [notify_failure],
                                 "on_crashed": [notify_failure]}
"""`@flow(..., **FAILURE_HOOKS)`."""
