"""Tasks of feature discovery: one candidate view for one entity partition per Ray task, and
the run's artifacts."""
from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE
from tideline.core.settings import Settings
from tideline.discovery.compute import ComputedPart, compute_part
from tideline.features.plan import FeaturePlan
from tideline.lake import open_lake
from tideline.tasks.remote import worker_traceback


@task(name="compute-candidates", task_run_name="candidates[{partition}/{partitions}]",
      retries=2, retry_delay_seconds=5, cache_policy=NONE)
@worker_traceback
def compute_candidates(settings: Settings, ref: str, branch: str, run_id: str,
                       plan: FeaturePlan, key: str, partition: int, partitions: int
                       ) -> ComputedPart:
    """On a Ray worker: it opens the lake itself and returns where it wrote the values."""
    return compute_part(open_lake(settings), ref, branch, run_id, plan, key, partition,
                        partitions)


@task(name="publish-discovery-artifacts")
def publish_discovery_artifacts(run_id: str, decisions: list[dict[str, object]],
                                summary: str) -> None:
    create_markdown_artifact(key="feature-discovery", markdown=summary,
                             description=f"feature discovery {run_id}")
    create_table_artifact(
        key="discovered-features",
        table=[{"feature": d["candidate"], "description": d["description"],
                "permutation ΔAUC": round(float(d["permutation"]), 4),  # type: ignore[arg-type]
                "mutual information": round(float(d["mutual_information"]), 4),  # type: ignore[arg-type]
                "why": d["reason"]} for d in decisions],
        description=f"feature discovery {run_id}: the kept features, best first")
