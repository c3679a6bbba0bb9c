"""Tasks around ingestion: pull-and-land per source, audit, and the run's quality artifacts."""
from __future__ import annotations

from prefect import task
from prefect.artifacts import create_link_artifact, create_table_artifact
from prefect.cache_policies import NONE
from tideline.ingestion.audit import Audit, audit, enforce_gate
from tideline.ingestion.landing import acknowledge, pull_and_land

ingest_source = task(
    pull_and_land, name="ingest", task_run_name="ingest[{source.name}]",
    retries=3, retry_delay_seconds=[2, 10, 30], retry_jitter_factor=0.5, cache_policy=NONE,
)
acknowledge_source = task(
    acknowledge, name="acknowledge", task_run_name="acknowledge[{source.name}]",
    retries=3, retry_delay_seconds=[2, 10, 30], cache_policy=NONE,
)
# their inputs hold the lake (a lakeFS client has locks Prefect cannot hash for a cache key)
audit_run = task(audit, name="audit", task_run_name="audit[{run_id}]", cache_policy=NONE)
gate = task(enforce_gate, name="quality-gate", cache_policy=NONE)


@task(name="publish-quality-artifacts")
def publish_quality_artifacts(result: Audit) -> None:
    """A table of every dataset's verdict and a link to the report, on the flow run's page."""
    create_table_artifact(
        key="data-quality",
        table=[{"dataset": o.dataset, "rows": o.rows, "clean": o.clean,
                "quarantined": o.quarantined, "score": o.score,
                "gate": "pass" if o.gate_passed else "FAIL: " + "; ".join(o.gate_reasons)}
               for o in result.outcomes],
        description=f"Data quality of run {result.run_id}",
    )
    create_link_artifact(
        key="data-quality-report", link=f"file://{result.local_report}",
        link_text=f"quality report for run {result.run_id}",
    )
