"""Forget: erase customers from main through a run branch, then from the online store and the
analysts' scores, and keep them out of every later run (the erasure list)."""
from __future__ import annotations

from dataclasses import dataclass, field

from prefect import flow, get_run_logger
from pydantic import SecretStr
from tideline.core.errors import ConfigError, ModelError
from tideline.core.settings import Settings, flow_settings
from tideline.features.store import FeatureStore
from tideline.flows.hooks import FAILURE_HOOKS
from tideline.lake.base import check_branch
from tideline.lake.erasure import ErasureRequest, read_request
from tideline.lake.publish import find_published, new_run_id, publish
from tideline.models.registry import open_model_registry
from tideline.models.spec import load_model_spec
from tideline.tasks.erasure import erase_from_lake, forget_online, forget_scores


@dataclass(frozen=True)
class Erasure:
    """What one erasure removed: the lake's record (rows per table, never the keys) and the
    commit publishing it, the online entries per view, the rows of the analysts' scores."""

    record: ErasureRequest
    commit: str
    online: dict[str, int] = field(default_factory=dict)
    scores: int = 0


@flow(name="forget", **FAILURE_HOOKS)
def forget(keys: list[SecretStr], reason: str = "", column: str | None = None,
           request: str | None = None) -> Erasure:
    """keys → run branch without their rows, on the erasure list → merge into main → online
    store and scores without them. Re-running a request id publishes nothing twice."""
    request = check_branch(request or new_run_id())
    settings = flow_settings()
    store, registry = FeatureStore.open(settings), open_model_registry(settings)
    model_key = _model_key(settings, store)
    column = column or model_key or _views_key(store)
    run_id = f"forget-{request}"
    done = find_published(store.lake, run_id)
    if done is not None:
        get_run_logger().info("erasure %s was published at %s already", request, done.id)
        record, commit = read_request(store.lake, done.id, request), done.id
    else:
        with publish(store.lake, run_id, message=f"erase {len(keys)} {column} keys",
                     metadata={"stage": "forget", "request": request}) as run:
            record = erase_from_lake(store.lake, run.branch, column, keys, request=request,
                                     reason=reason)
        commit = run.published.id
    online = forget_online(store, column, keys)
    scores = forget_scores(registry, keys) if column == model_key else 0
    get_run_logger().info("erasure %s: %d rows removed from main at %s, %d online entries, "
                          "%d scores", request, sum(record.removed.values()), commit,
                          sum(online.values()), scores)
    return Erasure(record=record, commit=commit, online=online, scores=scores)


def _model_key(settings: Settings, store: FeatureStore) -> str | None:
    """The entity key of the project's model, if it declares one."""
    try:
        return load_model_spec(settings.declared("model"), store.views).label.entity_key
    except (ConfigError, ModelError):
        return None


def _views_key(store: FeatureStore) -> str:
    keys = {view.entity.key for view in store.views}
    if len(keys) != 1:
        raise ConfigError(f"the project's views have {len(keys)} entity keys "
                          f"({', '.join(sorted(keys)) or 'none'}); name the column to erase "
                          "by with --column")
    return keys.pop()
