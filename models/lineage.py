"""Where a model came from: model → training set (tag, commits) → feature views and versions →
the builds that materialised them → the source commits and the ingestion runs behind them."""
from __future__ import annotations

import json
from typing import Any

from tideline.features.registry import Registry
from tideline.lake.base import Commit, Lake
from tideline.models.registry import ModelRecord


def last_ingestion(lake: Lake, commit_id: str, depth: int = 10_000) -> Commit | None:
    """The newest ingestion publish on main's first-parent history at or before a commit: the
    run whose clean tables a build read."""
    commit = lake.get_commit(commit_id)
    for _ in range(depth):
        if commit.metadata.get("stage") == "ingest":
            return commit
        if not commit.parents:
            return None
        commit = lake.get_commit(commit.parents[0])
    return None


def lineage(record: ModelRecord, features: Registry, lake: Lake) -> dict[str, Any]:
    manifest = json.loads(lake.get(record.training_set_tag,
                                   f"training_sets/{record.training_set}/manifest.json"))
    reachable = {commit.id for commit in lake.log(record.feature_commit, 100_000)}
    views = []
    for name, version in sorted(record.feature_views.items()):
        used = set(manifest["as_of"].get(name, []))
        builds = []
        for build in features.materializations(name, version):
            if f"{build.as_of}" not in used or build.published_commit not in reachable:
                continue
            ingested = last_ingestion(lake, build.source_commit)
            builds.append({"run_id": build.run_id, "as_of": f"{build.as_of}",
                           "rows": build.rows, "published_commit": build.published_commit,
                           "source_commit": build.source_commit,
                           "ingestion_run": ingested.metadata.get("run_id", "?")
                           if ingested else "?",
                           "ingested_at": f"{ingested.created_at:%Y-%m-%d %H:%M}"
                           if ingested else "?"})
        view = features.view(name, version)
        views.append({"view": name, "version": version, "owner": view.owner,
                      "source_dataset": view.source_dataset, "builds": builds})
    return {"model": record.ref, "stage": record.stage, "code_version": record.code_version,
            "artifacts": f"{record.artifact_path} @ {record.artifact_commit[:12]}",
            "training_set": {"name": record.training_set, "tag": record.training_set_tag,
                             "commit": record.training_set_commit,
                             "feature_commit": record.feature_commit,
                             "rows": manifest["rows"]},
            "feature_views": views}
