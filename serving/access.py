"""Who may call the HTTP service: the API keys the settings configure (`api_keys`, or the
Prefect Secret block named by `api_keys_secret`), the middleware that refuses a request without
one of them, and the security schemes the OpenAPI description declares for them."""
from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Collection, Sequence
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from tideline.core.errors import ConfigError
from tideline.core.secrets import secret_value
from tideline.core.settings import Settings

REFUSED = ("this service needs an API key: send `Authorization: Bearer <key>` or "
           "`X-API-Key: <key>` with a key it is configured with")
"""The one answer to a missing and to a wrong key alike: it tells a caller nothing more."""
SCHEMES = {"bearer": {"type": "http", "scheme": "bearer",
                      "description": "`Authorization: Bearer <key>`, a key of `api_keys`."},
           "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                      "description": "`X-API-Key: <key>`, a key of `api_keys`."}}


def api_keys(settings: Settings) -> tuple[str, ...]:
    """The keys the service accepts, from `api_keys` or else the `api_keys_secret` block
    (comma-separated text, or a JSON list of strings); none: the service is open. A setting
    that is given but holds no key is a `ConfigError`, never an open service."""
    value = secret_value(settings.api_keys, settings.api_keys_secret, "api_keys_secret")
    if value is None:
        return ()
    where = "api_keys" if settings.api_keys is not None else (
        f"the Prefect Secret block {settings.api_keys_secret!r} (api_keys_secret)")
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
        raise ConfigError(f"{where} holds {type(value).__name__}: give the API keys as "
                          "comma-separated text or a list of strings")
    keys = tuple(k.strip() for k in value if k.strip())
    if not keys:
        raise ConfigError(f"{where} is set but holds no API key; give at least one, or unset it "
                          "to serve without keys")
    return keys


def _digest(key: bytes) -> bytes:
    # equal lengths for compare_digest, so a key's length does not show in the timing either
    return hashlib.sha256(key).digest()


class RequireKey:
    """ASGI middleware: an HTTP request to any path but `open_paths` gets a 401 unless it
    carries one of `keys`. Every key is compared, in constant time, whatever matches; keys are
    never logged and the answer never repeats what was sent."""

    def __init__(self, app: ASGIApp, keys: Sequence[str], open_paths: Collection[str]) -> None:
        if not keys:
            raise ValueError("RequireKey needs at least one key")
        self.app = app
        self.digests = [_digest(k.encode()) for k in keys]
        self.open_paths = frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["path"] in self.open_paths
                or self._accepts(Headers(scope=scope))):
            await self.app(scope, receive, send)
            return
        await JSONResponse(status_code=401, content={"detail": REFUSED},
                           headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)

    def _accepts(self, headers: Headers) -> bool:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        given = [token.strip()] if scheme.lower() == "bearer" else []
        given += headers.getlist("x-api-key")
        accepted = False
        for candidate in given:
            # Starlette decodes header bytes as latin-1: encoding so gives back the bytes sent
            digest = _digest(candidate.encode("latin-1"))
            for known in self.digests:
                accepted |= hmac.compare_digest(digest, known)
        return accepted


def secured_openapi(openapi: Callable[[], dict[str, Any]], open_paths: Collection[str]
                    ) -> Callable[[], dict[str, Any]]:
    """`openapi` (an app's schema function) with the key schemes declared, so `/docs` offers
    "Authorize", and every operation outside `open_paths` marked as needing either one and
    documented to answer 401 without."""

    def schema() -> dict[str, Any]:
        described = openapi()
        if "bearer" in described.get("components", {}).get("securitySchemes", {}):
            return described  # FastAPI keeps the schema once built; this runs on each call
        described.setdefault("components", {}).setdefault("securitySchemes", {}).update(SCHEMES)
        for path, operations in described.get("paths", {}).items():
            if path in open_paths:
                continue
            for operation in operations.values():
                operation["security"] = [{name: []} for name in SCHEMES]
                operation.setdefault("responses", {})["401"] = {
                    "description": "No API key, or not one the service accepts.",
                    "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/Problem"}}}}
        return described

    return schema
