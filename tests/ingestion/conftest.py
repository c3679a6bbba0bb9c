"""Fixtures for the ingestion tests: `@pytest.mark.service("postgres")` and friends skip when
the service is not listening (with the reason), but fail under `CI=true`, where it must be."""
from __future__ import annotations

import os
import socket

import pytest

SERVICES = {
    "postgres": ("127.0.0.1", 5432),
    "nats": ("127.0.0.1", 4222),
    "redis": ("127.0.0.1", 6379),
}


def service_listening(name: str) -> bool:
    host, port = SERVICES[name]
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(autouse=True)
def _require_services(request: pytest.FixtureRequest) -> None:
    for marker in request.node.iter_markers("service"):
        name = marker.args[0]
        if name not in SERVICES:
            pytest.fail(f"unknown service {name!r}; known: {', '.join(SERVICES)}")
        if service_listening(name):
            continue
        host, port = SERVICES[name]
        reason = f"{name} is not listening on {host}:{port}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}, and CI=true requires it")
        pytest.skip(f"{reason} (start it to run this test)")
