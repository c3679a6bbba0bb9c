"""Secrets that settings name: a `SecretStr` setting from the environment or, instead of it, a
Prefect Secret block (the SMTP password, the HTTP service's API keys)."""
from __future__ import annotations

from typing import Any

from pydantic import SecretStr
from tideline.core.errors import ConfigError


def secret_value(value: SecretStr | None, block: str | None, setting: str) -> Any:
    """`value` when it is set, else what the Prefect Secret block named `block` holds (a
    string, or the JSON value it was saved with), else None. `setting` names the setting in
    errors; a missing block is a `ConfigError`. Loading a block needs the Prefect API."""
    if value is not None:
        return value.get_secret_value()
    if not block:
        return None
    from prefect.blocks.system import Secret

    try:
        loaded = Secret.load(block)
    except ValueError as exc:  # Prefect's "Unable to find block document named …"
        raise ConfigError(f"{setting} names the Prefect Secret block {block!r}, which could not "
                          f"be loaded ({exc}); create it, or check PREFECT_API_URL") from None
    # the stored value as saved: Secret.get() would turn a string such as "123" into a number
    return loaded.value.get_secret_value()
