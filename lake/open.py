"""Pick the lake backend the settings ask for."""

from __future__ import annotations

from tideline.core.settings import Settings
from tideline.lake.base import Lake


def open_lake(settings: Settings) -> Lake:
    if settings.lake_backend == "lakefs":
        from tideline.lake.lakefs import LakeFSLake

        return LakeFSLake(
            settings.lakefs_endpoint or "",
            settings.lakefs_access_key_id.get_secret_value()
            if settings.lakefs_access_key_id
            else "",
            settings.lakefs_secret_access_key.get_secret_value()
            if settings.lakefs_secret_access_key
            else "",
            settings.lakefs_repository,
            storage_namespace=settings.lakefs_storage_namespace,
            max_read_bytes=settings.lake_max_read_bytes,
            run_hold_ttl=settings.lakefs_run_hold_ttl,
        )
    from tideline.lake.local import LocalLake

    return LocalLake(
        settings.lake_dir, fsync=settings.lake_fsync, max_read_bytes=settings.lake_max_read_bytes
    )


def commit_link(settings: Settings, commit: str) -> str:
    """Where a person looks at a commit: its page in the lakeFS UI, or the local lake's
    directory (then `tideline lake show <commit>`)."""
    if settings.lake_backend == "lakefs":
        endpoint = (settings.lakefs_endpoint or "").rstrip("/").removesuffix("/api/v1")
        return f"{endpoint}/repositories/{settings.lakefs_repository}/commits/{commit}"
    return f"{settings.lake_dir.resolve().as_uri()}#commit={commit}"
