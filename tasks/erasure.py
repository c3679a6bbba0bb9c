"""Tasks around erasure: a customer's rows out of the lake branch, their online entries and
scores out of the stores. Keys arrive as `SecretStr`, so Prefect records them masked."""
from __future__ import annotations

from collections.abc import Sequence

from prefect import task
from prefect.cache_policies import NONE
from pydantic import SecretStr
from tideline.features.online import forget_entities
from tideline.features.store import FeatureStore
from tideline.lake.base import Lake
from tideline.lake.erasure import ErasureRequest, erase_rows
from tideline.models.registry import ModelRegistry


def _plain(keys: Sequence[SecretStr]) -> list[str]:
    return [key.get_secret_value() for key in keys]


@task(name="erase-rows", cache_policy=NONE)
def erase_from_lake(lake: Lake, branch: str, column: str, keys: Sequence[SecretStr], *,
                    request: str, reason: str) -> ErasureRequest:
    """Every table on the run branch without the keys' rows, the keys on the erasure list."""
    return erase_rows(lake, branch, column, _plain(keys), request=request, reason=reason)


@task(name="forget-online", retries=2, retry_delay_seconds=[5, 30], cache_policy=NONE)
def forget_online(store: FeatureStore, column: str, keys: Sequence[SecretStr]
                  ) -> dict[str, int]:
    """The keys' entries out of every view of the online store (retried: Redis may restart)."""
    return forget_entities(store.online, [view.name for view in store.views], column,
                           _plain(keys))


@task(name="forget-scores", retries=2, retry_delay_seconds=5, cache_policy=NONE)
def forget_scores(registry: ModelRegistry, keys: Sequence[SecretStr]) -> int:
    """The keys' rows out of the analysts' `scores` table."""
    return registry.forget_scores(_plain(keys))
