"""Build features: the clean tables at one main commit → plan → one Ray task per entity
partition → offline feature tables, published to main with their versions and source commit,
and recorded in the registry; then the newest tables into the online store."""
from __future__ import annotations

import json
from datetime import date

import ray
from prefect import flow, get_run_logger
from prefect_ray import RayTaskRunner
from tideline.core.ray_runtime import LOCAL_RAY, connect, init_kwargs, ray_cpus
from tideline.core.settings import Settings, flow_settings, load_settings
from tideline.demo.project import declared_pii
from tideline.features.materialize import FeatureBuild, load_build, partition_count
from tideline.features.offline import default_as_of
from tideline.features.plan import measured
from tideline.features.store import FeatureStore, OnlineWrite
from tideline.features.tiles import tile_partitions
from tideline.flows.hooks import FAILURE_HOOKS
from tideline.lake.base import MAIN
from tideline.lake.publish import find_published, new_run_id, publish
from tideline.tasks.features import (
    compute_partition,
    materialize_online_store,
    plan_features,
    publish_feature_artifacts,
    publish_online_artifacts,
    record_feature_build,
    register_feature_build,
)


class JoiningRayTaskRunner(RayTaskRunner):
    """Prefect's `RayTaskRunner`, joining a cluster through `tideline.core.ray_runtime.connect`
    (a client server the head fails to start is asked for again), and leaving it after the
    flow as Prefect's does."""

    def __enter__(self) -> JoiningRayTaskRunner:
        self._joined = self.address is not None and not ray.is_initialized()
        if self._joined:
            connect({**self.init_kwargs, "address": self.address})
        return super().__enter__()

    def __exit__(self, *exc_info: object) -> None:
        super().__exit__(*exc_info)
        if self._joined:
            ray.shutdown()


def ray_task_runner(settings: Settings) -> RayTaskRunner:
    """Local Ray by default, else the cluster `ray_address` names (checked to answer first),
    with the project's code shipped to it (`tideline.core.ray_runtime.init_kwargs`)."""
    if settings.ray_address is None:
        return RayTaskRunner(init_kwargs=LOCAL_RAY)
    kwargs = init_kwargs(settings.ray_address)
    return JoiningRayTaskRunner(address=kwargs.pop("address"), init_kwargs=kwargs)


class ConfiguredRayTaskRunner(JoiningRayTaskRunner):
    """`ray_task_runner` of the settings as they are when the flow starts, not when its module
    is imported: a deployment's run (a Prefect worker, maybe on another host) computes on the
    cluster `ray_address` names instead of a Ray of its own."""

    def __enter__(self) -> ConfiguredRayTaskRunner:
        configured = ray_task_runner(load_settings())
        self.address, self.init_kwargs = configured.address, configured.init_kwargs
        return super().__enter__()


@flow(name="build-features", task_runner=ConfiguredRayTaskRunner(), **FAILURE_HOOKS)
def build_features(run_id: str | None = None, as_of: list[date] | None = None,
                   partitions: int | None = None, full: bool = False) -> FeatureBuild:
    """clean tables at a main commit → plan → entity partitions on Ray (merging daily tiles,
    or recomputing every window from raw events with `full`) → offline store."""
    run_id = run_id or new_run_id()
    settings = flow_settings()
    logger = get_run_logger()
    store = FeatureStore.open(settings)
    lake = store.lake
    done = find_published(lake, f"{run_id}-features")
    if done is not None:
        logger.info("features of run %s were published at %s already", run_id, done.id)
        build = load_build(lake, done.id, run_id)
        register_feature_build(store, build, done.id)
        return build
    source_commit = lake.resolve(MAIN)
    plan = plan_features(store.views, lake, source_commit, declared_pii(settings))
    dates = as_of or [default_as_of(lake, source_commit, plan.sources.values())]
    count = partitions or settings.feature_partitions
    tiled = None if full else tile_partitions(lake, source_commit, plan.views)
    if count is None:
        sized = measured(plan, lake, source_commit)
        count = partition_count(sized, settings.feature_memory_budget, ray_cpus(), tiled)
        logger.info("%d entity partitions for %s source rows (memory budget %s%s)", count,
                    f"{sum(sized.rows.values()):,}",
                    settings.feature_memory_budget.human_readable(),
                    "; as the daily tiles" if count == tiled else "")
    if tiled is not None and count != tiled:
        logger.warning("the daily tiles are of %d entity partitions, this build of %d: it "
                       "reads every day's raw events (tiles are per partition)", tiled, count)
    with publish(lake, f"{run_id}-features", message=f"features as of {dates[-1]}",
                 metadata={"stage": "features", "source_commit": source_commit,
                           "views": json.dumps(plan.versions, sort_keys=True)}) as run:
        futures = [compute_partition.submit(settings, source_commit, run.branch, plan, dates, k,
                                            count, full) for k in range(count)]
        build = record_feature_build(lake, run.branch, run_id, source_commit, plan, dates,
                                     [future.result() for future in futures])
    register_feature_build(store, build, run.published.id)
    publish_feature_artifacts(build)
    logger.info("published %d features for %d entities as of %s (source days: %d from "
                "tiles, %d from raw events)", build.features, build.entities,
                ", ".join(build.as_of), build.days_from_tiles, build.days_from_events)
    return build


@flow(name="materialize-online", **FAILURE_HOOKS)
def materialize_online() -> list[OnlineWrite]:
    """The newest feature tables on main → the online store (only changed entities)."""
    settings = load_settings()
    writes = materialize_online_store(FeatureStore.open(settings))
    publish_online_artifacts(writes, settings.online_store)
    return writes
