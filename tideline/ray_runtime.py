"""How tideline starts Ray when it must start it itself."""
from __future__ import annotations

import os

RAY_INIT = {"include_dashboard": False, "log_to_driver": False}
LOCAL_RAY = {**RAY_INIT, **({} if os.environ.get("RAY_ADDRESS") else {"address": "local"})}
"""Without an address (ours or Ray's own RAY_ADDRESS), a new local Ray: never the cluster a
leftover /tmp/ray/ray_current_cluster names, whose head may be long gone (`ray.init()` would
wait minutes for it)."""


def ensure_ray() -> None:
    """Ray for this process: the instance it is connected to, else a new local one (or the
    cluster RAY_ADDRESS names)."""
    import ray

    if not ray.is_initialized():
        ray.init(**LOCAL_RAY)
