"""Tasks around the feature engine: plan, one entity partition per Ray task, the build record
and its artifacts."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import date

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE
from tideline.core.settings import Settings
from tideline.features.materialize import (
    FeatureBuild,
    PartitionResult,
    materialize_partition,
    record_build,
)
from tideline.features.plan import FeaturePlan, plan_from_lake
from tideline.features.store import FeatureStore, OnlineWrite, register_build
from tideline.lake import open_lake
from tideline.tasks.remote import worker_traceback

plan_features = task(plan_from_lake, name="plan-features", cache_policy=NONE)
record_feature_build = task(record_build, name="record-feature-build", cache_policy=NONE)


@task(name="register-feature-build", retries=2, retry_delay_seconds=5, cache_policy=NONE)
def register_feature_build(store: FeatureStore, build: FeatureBuild,
                           published_commit: str) -> None:
    """Views, lineage and value statistics of a published build into the registry (again on
    a re-run: recording is idempotent)."""
    register_build(store.lake, store.registry, build, store.views, published_commit)


@task(name="materialize-online", retries=2, retry_delay_seconds=[5, 30], cache_policy=NONE)
def materialize_online_store(store: FeatureStore) -> list[OnlineWrite]:
    """The newest feature tables on main into the online store (retried: Redis may restart)."""
    return store.materialize_online()


@task(name="publish-online-artifacts")
def publish_online_artifacts(writes: list[OnlineWrite], backend: str) -> None:
    create_table_artifact(
        key="online-store",
        table=[{"view": w.view, "version": w.version, "as of": f"{w.as_of}", "mode": w.mode,
                "written": w.written, "deleted": w.deleted} for w in writes],
        description=f"Online store ({backend}): entities written per view",
    )


@task(name="compute-partition", task_run_name="features[{partition}/{partitions}]",
      retries=2, retry_delay_seconds=5, cache_policy=NONE)
@worker_traceback
def compute_partition(settings: Settings, ref: str, branch: str, plan: FeaturePlan,
                      as_of: Sequence[date], partition: int, partitions: int,
                      full: bool = False) -> PartitionResult:
    """One entity partition on a Ray worker: it opens the lake itself (lake clients do not
    travel between processes) and returns only a small summary (its features' statistics
    included), naming its node."""
    import ray

    result = materialize_partition(open_lake(settings), ref, branch, plan, as_of, partition,
                                   partitions, full)
    node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    return replace(result, node=node)


@task(name="publish-feature-artifacts")
def publish_feature_artifacts(build: FeatureBuild) -> None:
    create_table_artifact(
        key="feature-partitions",
        table=[{"partition": p.partition, "entities": p.entities, "rows": p.rows,
                "seconds": p.seconds, "ray node": p.node[:12]} for p in build.partitions],
        description=f"Feature build {build.run_id}: one Ray task per entity partition",
    )
    views = "\n".join(f"| {name} | `{version}` |" for name, version in build.versions.items())
    create_markdown_artifact(
        key="feature-build",
        markdown=f"# Feature build `{build.run_id}`\n\n{build.features} features as of "
                 f"{', '.join(build.as_of)} for {build.entities:,} entities, from lake commit "
                 f"`{build.source_commit[:12]}`.\n\n| view | version |\n|---|---|\n{views}\n\n"
                 f"Manifest: `{build.manifest}`\n",
        description=f"feature build {build.run_id}",
    )
