"""Discover features: the project's tables and references → candidate views → their values
for the model's labelled examples, one (view, entity partition) per Ray task, within a time
budget → interactions of the best → selection on the training split → the kept features as
views in the lake (`views.yaml`), registered in the store, with the selection report."""
from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from uuid import UUID

import numpy as np
import pandas as pd
from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from tideline.core.errors import DiscoveryError
from tideline.core.ray_runtime import ray_cpus
from tideline.core.settings import Settings, flow_settings
from tideline.demo.project import declared_project
from tideline.discovery.compute import ComputedPart, read_values, write_examples
from tideline.discovery.generate import (
    CandidateSet,
    generate,
    interactions,
    selected_views,
)
from tideline.discovery.report import selection_report
from tideline.discovery.schema import ChildTable, SchemaGraph, profile
from tideline.discovery.select import SelectionRules, Selector, select
from tideline.features.definitions import Entity, FeatureView, dump_views, load_definitions
from tideline.features.materialize import partition_count
from tideline.features.plan import measured, plan_from_lake
from tideline.features.store import FeatureStore
from tideline.flows.build_features import ConfiguredRayTaskRunner
from tideline.flows.hooks import FAILURE_HOOKS
from tideline.lake.base import MAIN, Commit, Lake
from tideline.lake.publish import find_published, new_run_id, publish
from tideline.models.spec import load_model_spec
from tideline.tasks.discovery import compute_candidates, publish_discovery_artifacts
from tideline.tasks.models import label_training_examples

INTERACTING = 6
"""The best candidates (by mutual information) whose pairs become interaction candidates."""
IN_FLIGHT = 2
"""Candidate views computed at once (each as one Ray task per partition)."""


MAX_EXAMPLES = 250_000
"""Labelled examples the candidates are computed for at most (all dates of a sample of
customers): the driver holds examples x candidates values (250k x 600 in about 1.2 GB)."""


@dataclass(frozen=True)
class Discovery:
    run_id: str
    commit: str
    """The main commit that published the report and the views."""
    source_commit: str
    generated: int
    computed: int
    over_budget: int
    """Candidates the candidate budget left out."""
    out_of_time: int
    """Generated candidates the time budget left uncomputed."""
    kept: list[str]
    views: list[str]
    paths: dict[str, str]
    """Lake paths of `report`, `decisions` and `views`."""
    local: str
    """A local directory with the same three files."""
    seconds: float


def _customers_sample(examples: pd.DataFrame, key: str, limit: int) -> pd.DataFrame:
    """All the examples of a random (seeded) sample of entities, at most `limit` rows."""
    if len(examples) <= limit:
        return examples.reset_index(drop=True)
    counts = examples[key].value_counts(sort=False)
    counts = counts.iloc[np.random.default_rng(0).permutation(len(counts))]
    chosen = counts.index[counts.cumsum().to_numpy() <= limit]
    get_run_logger().info("candidates computed for %d of %d entities (%d examples at most)",
                          len(chosen), len(counts), limit)
    return examples[examples[key].isin(chosen)].reset_index(drop=True)


def _entity(views: Sequence[FeatureView], key: str) -> Entity:
    return next((view.entity for view in views if view.entity.key == key),
                Entity(key.removesuffix("_id") or key, key=key))


def cannot_discover(settings: Settings) -> str | None:
    """Why the project's shape gives discovery nothing to work on (no table of events that
    belongs to the model's entity), or None when it can run."""
    views = load_definitions(settings.declared("features"))
    spec = load_model_spec(settings.declared("model"), views)
    try:
        SchemaGraph.of_project(declared_project(settings)).children(
            _entity(views, spec.label.entity_key))
    except DiscoveryError as exc:
        return str(exc)
    return None


@dataclass
class _Progress:
    """Candidates computed so far, shown as a Prefect progress artifact and in the log."""

    artifact: UUID
    total: int
    done: int = 0

    def advance(self, count: int, view: str, seconds: float) -> None:
        self.done += count
        update_progress_artifact(self.artifact, 100 * min(1.0, self.done / self.total))
        get_run_logger().info("candidates: %d/%d computed (%s, %.1f s)", self.done,
                              self.total, view, seconds)


def _compute(settings: Settings, lake: Lake, commit: str, branch: str, run_id: str,
             views: Sequence[FeatureView], key: str, rows: int, deadline: float,
             progress: _Progress, fresh: Collection[str]
             ) -> tuple[pd.DataFrame, list[FeatureView]]:
    """Candidate values for the examples, view by view (IN_FLIGHT at a time) until the
    deadline; the views not started by then are returned as left out. Progress counts the
    `fresh` candidates (an interaction view recomputes what its pairs are made of)."""
    whole = plan_from_lake(views, lake, commit)  # every view checked before any Ray work
    count = settings.feature_partitions or partition_count(
        measured(whole, lake, commit), settings.feature_memory_budget // IN_FLIGHT, ray_cpus())
    pending, running = deque(views), deque()
    columns: list[pd.DataFrame] = []
    while pending or running:
        while pending and len(running) < IN_FLIGHT and time.monotonic() < deadline:
            view = pending.popleft()
            plan = plan_from_lake([view], lake, commit)
            running.append((view, [compute_candidates.submit(settings, commit, branch, run_id,
                                                             plan, key, k, count)
                                   for k in range(count)]))
        if not running:
            break
        view, futures = running.popleft()
        parts: list[ComputedPart] = [future.result() for future in futures]
        columns.append(read_values(lake, branch, parts, rows))
        progress.advance(sum(1 for n in view.feature_names if n in fresh), view.name,
                         max(p.seconds for p in parts))
    frame = pd.concat(columns, axis=1) if columns else pd.DataFrame(index=pd.RangeIndex(rows))
    return frame, list(pending)


@flow(name="discover-features", task_runner=ConfiguredRayTaskRunner(), **FAILURE_HOOKS)
def discover_features(run_id: str | None = None, max_candidates: int = 600,
                      seconds: float = 900.0, max_selected: int = 30,
                      approximate: bool = False, owner: str | None = None,
                      force: bool = False) -> Discovery:
    """tables + references → candidates → values on Ray (time-boxed) → interactions →
    selection on the training split → selected views, report and registry. Unless `force`,
    the last discovery stands when no clean table changed since it and it was asked the
    same."""
    run_id = run_id or new_run_id()
    started = time.monotonic()
    deadline = started + seconds
    settings = flow_settings()
    logger = get_run_logger()
    store = FeatureStore.open(settings)
    lake = store.lake
    spec = load_model_spec(settings.declared("model"), store.views)
    owner = owner or settings.pipeline_owner
    commit = lake.resolve(MAIN)
    asked = json.dumps({"max_candidates": max_candidates, "max_selected": max_selected,
                        "approximate": approximate, "owner": owner, "model": spec.version},
                       sort_keys=True)
    done = find_published(lake, f"{run_id}-discovery") or (
        None if force else _unchanged_since(lake, commit, asked))
    if done is not None:
        logger.info("discovery of run %s published at %s holds for these tables and settings",
                    done.metadata["run_id"], done.id[:12])
        return Discovery(**{**json.loads(lake.get(done.id, done.metadata["summary"])),
                            "commit": done.id})
    entity = _entity(store.views, spec.label.entity_key)
    project = declared_project(settings)
    graph = SchemaGraph.of_project(project)
    tables: list[ChildTable] = [  # personal data is never a candidate's column
        profile(lake, commit, source, entity.key,
                [*graph.tables[source.dataset], *project.pii.get(source.dataset, {})])
        for source, _ in graph.children(entity)]
    generated = generate(entity, tables, owner, max_candidates, approximate=approximate)
    logger.info("generated %d candidates in %d views over %s (%d over budget)",
                len(generated.candidates), len(generated.views),
                ", ".join(t.source.name for t in tables), generated.over_budget)
    examples = _customers_sample(label_training_examples(store, spec)[0], entity.key,
                                 MAX_EXAMPLES)
    artifact = create_progress_artifact(0.0, key="feature-discovery-progress",
                                        description=f"discovery {run_id}: candidates computed")
    rules = SelectionRules(max_selected=max_selected)
    prefix = f"discovery/{run_id}"
    with publish(lake, f"{run_id}-discovery", message=f"feature discovery {run_id}",
                 metadata={"stage": "discovery", "source_commit": commit, "asked": asked,
                           "summary": f"{prefix}/summary.json"}) as run:
        write_examples(lake, run.branch, run_id, examples, entity.key)
        progress = _Progress(artifact, len(generated.candidates))
        values, late = _compute(settings, lake, commit, run.branch, run_id, generated.views,
                                entity.key, len(examples), deadline, progress,
                                generated.candidates)
        frame = pd.concat([examples, values], axis=1)
        candidates = dict(generated.candidates)
        names = list(values.columns)
        first = Selector(frame, spec, rules)
        best = first.most_informative(names, INTERACTING)
        extra = interactions([candidates[n] for n in best], tables, entity, owner, candidates)
        candidates.update(extra.candidates)
        progress.total = progress.done + len(extra.candidates)
        more, late_pairs = _compute(settings, lake, commit, run.branch, run_id, extra.views,
                                    entity.key, len(examples), deadline, progress,
                                    extra.candidates)
        new = [c for c in more.columns if c in extra.candidates]
        frame = pd.concat([frame, more[new]], axis=1)
        selector = Selector(frame, spec, rules)
        selector.mi.update(first.mi)  # the same sample of the same training rows
        selection = select(frame, [*names, *new], spec, rules, selector)
        for path in [*(p.path for p in lake.list(run.branch, f"{prefix}/candidates/")),
                     f"{prefix}/examples.parquet"]:
            lake.delete(run.branch, path)  # scratch: the decisions keep what was measured
        views = selected_views(selection.kept, candidates, tables, entity, owner, run_id,
                               f"{prefix}/report.html")
        out_of_time = _uncomputed(late, generated) + _uncomputed(late_pairs, extra)
        report = selection_report(run_id, commit, selection, candidates,
                                  computed=len(names) + len(new), rows=len(examples),
                                  over_budget=generated.over_budget + out_of_time,
                                  views=[v.name for v in views],
                                  correlations=selector.correlations)
        paths = {"report": f"{prefix}/report.html", "decisions": f"{prefix}/decisions.csv",
                 "views": f"{prefix}/views.yaml"}
        files = {"report": report.html, "decisions": report.csv, "views": dump_views(views)}
        local = settings.data_dir / "discovery" / run_id
        local.mkdir(parents=True, exist_ok=True)
        for what, path in paths.items():
            lake.put(run.branch, path, files[what].encode())
            (local / Path(path).name).write_text(files[what])
        result = Discovery(run_id=run_id, commit="", source_commit=commit,
                           generated=len(candidates), computed=len(names) + len(new),
                           over_budget=generated.over_budget, out_of_time=out_of_time,
                           kept=selection.kept, views=[v.name for v in views], paths=paths,
                           local=str(local), seconds=round(time.monotonic() - started, 1))
        lake.put(run.branch, f"{prefix}/summary.json",
                 json.dumps(asdict(result), indent=1).encode())
    store.registry.register_views(views)
    result = Discovery(**{**asdict(result), "commit": run.published.id})  # type: ignore[union-attr]
    kept = selection.decisions[selection.decisions["status"] == "kept"].merge(
        pd.DataFrame({"candidate": list(candidates),
                      "description": [c.description for c in candidates.values()]}))
    publish_discovery_artifacts(run_id, kept.to_dict("records"), _summary(result))
    logger.info("kept %d of %d candidates (%s); report %s", len(result.kept), result.computed,
                ", ".join(result.views), local / "report.html")
    return result


def _unchanged_since(lake: Lake, commit: str, asked: str) -> Commit | None:
    """The newest discovery on main asked the same, if no clean table changed since its
    source commit."""
    for published in lake.log(MAIN, 1000):
        if published.metadata.get("stage") == "discovery" and len(published.parents) == 2:
            if published.metadata.get("asked") != asked:
                return None
            changed = lake.diff(published.metadata["source_commit"], commit)
            return None if any(c.path.startswith("clean/") for c in changed) else published
    return None


def _uncomputed(views: Sequence[FeatureView], generated: CandidateSet) -> int:
    return sum(1 for view in views for name in view.feature_names
               if name in generated.candidates)


def _summary(result: Discovery) -> str:
    return (f"# Feature discovery `{result.run_id}`\n\n{result.generated} candidates "
            f"generated, {result.computed} computed ({result.over_budget} over the candidate "
            f"budget, {result.out_of_time} out of time) in {result.seconds:.0f} s; "
            f"**{len(result.kept)} kept** in {', '.join(result.views) or 'no view'}.\n\n"
            f"Report `{result.paths['report']}`, decisions `{result.paths['decisions']}`, "
            f"views `{result.paths['views']}` at commit `{result.commit[:12]}`; local copy "
            f"`{result.local}`.\n\nUse them beside the project's own, from its directory: "
            f"`TIDELINE_FEATURE_VIEWS=\"tideline.yaml,{result.local}/views.yaml\"`\n")

