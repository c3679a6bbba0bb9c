"""The whole pipeline, end to end, on whatever stages exist so far."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from lake import open_lake
from lake.publish import publish
from tasks.lake import record_run
from tideline.settings import load_settings

STAGES = ["lake"]


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


@flow(name="pipeline")
def pipeline(run_id: str | None = None) -> dict[str, str]:
    """sources → run branch → quality gate → main (later stages extend this)."""
    settings = load_settings()
    run_id = run_id or new_run_id()
    logger = get_run_logger()
    lake = open_lake(settings)
    with publish(
        lake, run_id, message="pipeline run", metadata={"stages": ",".join(STAGES)}
    ) as run:
        logger.info("run %s writes to branch %s", run_id, run.branch)
        record_run(lake, run.branch, run_id, STAGES)
    commit = run.published
    create_markdown_artifact(
        key="pipeline-summary",
        markdown=f"# Pipeline run `{run_id}`\n\nPublished to `main` at commit `{commit.id}`.\n\n"
        f"Stages: {', '.join(STAGES)}\n",
        description=f"tideline pipeline run {run_id}",
    )
    return {"run_id": run_id, "commit": commit.id}
