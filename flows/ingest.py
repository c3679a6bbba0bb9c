"""Ingest: every source into the run's branch, audit, and publish to main only past the gate."""
from __future__ import annotations

from datetime import date

from prefect import flow, get_run_logger
from tideline.core.settings import load_settings
from tideline.demo.project import open_project
from tideline.flows.hooks import FAILURE_HOOKS
from tideline.ingestion.audit import Audit, load_audit
from tideline.ingestion.sources import Window
from tideline.lake import open_lake
from tideline.lake.publish import find_published, new_run_id, publish
from tideline.tasks.ingestion import (
    acknowledge_source,
    audit_run,
    gate,
    ingest_source,
    publish_quality_artifacts,
)


@flow(name="ingest", **FAILURE_HOOKS)
def ingest(run_id: str | None = None, since: date | None = None, until: date | None = None
           ) -> Audit:
    """sources → run branch → validate → quality gate → merge into main."""
    run_id = run_id or new_run_id()
    settings = load_settings()
    logger = get_run_logger()
    window = Window.of_days(since, until)
    lake = open_lake(settings)
    done = find_published(lake, run_id)
    if done is not None:
        logger.info("run %s was published at %s already; nothing to do", run_id, done.id)
        return load_audit(lake, done.id, run_id)
    with open_project(settings) as project:
        with publish(lake, run_id, message=f"ingest {len(project.sources)} sources",
                     metadata={"stage": "ingest", "backfill": "yes" if window else "no"}) as run:
            batch = int(settings.ingest_batch_bytes)
            futures = [ingest_source.submit(lake, run.branch, source, run_id=run_id,
                                            window=window, batch_bytes=batch,
                                            timestamp=project.timestamp_of(source))
                       for source in project.sources]
            records = [future.result() for future in futures]
            for record in records:
                logger.info("%s: %d rows landed, %d unparseable, %d of erased customers "
                            "dropped", record.source, record.rows, record.rejected, record.erased)
            result = audit_run(lake, run.branch, project, records, run_id=run_id,
                               report_dir=settings.data_dir / "reports", window=window,
                               batch_bytes=batch)
            publish_quality_artifacts(result)
            gate(lake, run.branch, result)
        for source, record in zip(project.sources, records, strict=True):
            acknowledge_source(source, record)  # only now that main holds the data
    logger.info("published run %s to main at %s", run_id, run.published.id)
    return result
