"""The online store: the latest feature values of every view, one row per entity, for
low-latency lookup. Backends (one module each) implement `OnlineStore`; `open_online_store`
picks the one the settings name."""
from __future__ import annotations

from typing import Any

from tideline.features.online.base import OnlineState, OnlineStore, forget_entities

__all__ = ["OnlineState", "OnlineStore", "forget_entities", "open_online_store"]


def open_online_store(settings: Any) -> OnlineStore:
    if settings.online_store == "redis":
        from tideline.features.online.redis import RedisOnlineStore

        return RedisOnlineStore(settings.redis_url.get_secret_value())
    from tideline.features.online.sqlite import SQLiteOnlineStore

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return SQLiteOnlineStore(settings.data_dir / "online.db")
