"""Ingest: every source into the run's branch, audit, and publish to main only past the gate."""
from __future__ import annotations

from datetime import UTC, date, datetime, time

from prefect import flow, get_run_logger

from deployments.demo import demo_project
from ingestion.audit import Audit, load_audit
from ingestion.project import load_project
from ingestion.sources import Window
from lake import open_lake
from lake.publish import find_published, publish
from tasks.ingestion import (
    acknowledge_source,
    audit_run,
    gate,
    ingest_source,
    publish_quality_artifacts,
)
from tideline.settings import Settings, load_settings


def _window(since: date | None, until: date | None) -> Window | None:
    if since is None and until is None:
        return None
    as_utc = lambda day: day and datetime.combine(day, time(), tzinfo=UTC)  # noqa: E731
    return Window(as_utc(since), as_utc(until))


def _project(settings: Settings):  # noqa: ANN202 - a context manager yielding a Project
    if settings.project_file is None:
        return demo_project(settings.data_dir)
    from contextlib import nullcontext

    return nullcontext(load_project(settings.project_file))


@flow(name="ingest")
def ingest(run_id: str, since: date | None = None, until: date | None = None) -> Audit:
    """sources → run branch → validate → quality gate → merge into main."""
    settings = load_settings()
    logger = get_run_logger()
    window = _window(since, until)
    lake = open_lake(settings)
    done = find_published(lake, run_id)
    if done is not None:
        logger.info("run %s was published at %s already; nothing to do", run_id, done.id)
        return load_audit(lake, done.id, run_id)
    with _project(settings) as project:
        with publish(lake, run_id, message=f"ingest {len(project.sources)} sources",
                     metadata={"stage": "ingest", "backfill": "yes" if window else "no"}) as run:
            futures = [ingest_source.submit(lake, run.branch, source, run_id=run_id,
                                            window=window) for source in project.sources]
            records = [future.result() for future in futures]
            for record in records:
                logger.info("%s: %d rows landed, %d unparseable", record.source, record.rows,
                            record.rejected)
            result = audit_run(lake, run.branch, project, records, run_id=run_id,
                               report_dir=settings.data_dir / "reports", window=window)
            publish_quality_artifacts(result)
            gate(lake, run.branch, result)
        for source, record in zip(project.sources, records, strict=True):
            acknowledge_source(source, record)  # only now that main holds the data
    logger.info("published run %s to main at %s", run_id, run.published.id)
    return result
