"""Versioned storage: a small `Lake` protocol, an embedded `local` backend and a `lakefs` one."""
from tideline.lake.base import Change, Commit, Lake, ObjectInfo
from tideline.lake.open import open_lake

__all__ = ["Change", "Commit", "Lake", "ObjectInfo", "open_lake"]
