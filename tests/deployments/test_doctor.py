"""`tideline doctor` against the suite's real servers, an in-process SMTP server (aiosmtpd) and
closed ports: what each line says, the exit code, and that no secret is printed."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from tideline.deployments.cli.doctor import doctor
from typer.testing import CliRunner

from tests.services import LAKEFS_KEYS, free_port

app = typer.Typer()
app.command()(doctor)
runner = CliRunner()

SMTP_USER, SMTP_PASSWORD = "alerts", "smtp-Pa55-do-not-print"
DB_PASSWORD = "db-Pa55-do-not-print"
NATS_TOKEN = "nats-token-do-not-print"
SERVICE_SETTINGS = ("LAKE_BACKEND", "LAKEFS_ENDPOINT", "LAKEFS_ACCESS_KEY_ID",
                    "LAKEFS_SECRET_ACCESS_KEY", "LAKEFS_REPOSITORY", "REGISTRY_URL",
                    "ONLINE_STORE", "REDIS_URL", "SMTP_HOST", "SMTP_PORT", "SMTP_SECURITY",
                    "SMTP_USERNAME", "SMTP_PASSWORD", "SMTP_PASSWORD_SECRET", "RAY_ADDRESS",
                    "NATS_URL", "PROJECT", "PROFILE")


@pytest.fixture
def environment(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """No service configured (whatever the shell or an earlier test's Prefect harness set);
    the test fills in the variables it wants."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    for name in SERVICE_SETTINGS:
        monkeypatch.delenv(f"TIDELINE_{name}", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    env: dict[str, str] = {}
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        yield env


def run_doctor(env: dict[str, str], fmt: str = "json") -> tuple[int, str]:
    result = runner.invoke(app, ["--format", fmt], env=env, terminal_width=300)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def lines(env: dict[str, str]) -> tuple[int, dict[str, dict]]:
    code, output = run_doctor(env)
    return code, {line["service"]: line for line in json.loads(output)}


class Inbox:
    def __init__(self) -> None:
        self.messages = 0

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001 - aiosmtpd
        self.messages += 1
        return "250 OK"


def _authenticate(server, session, envelope, mechanism, auth_data) -> AuthResult:  # noqa: ANN001
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        SMTP_USER.encode(), SMTP_PASSWORD.encode())
    # handled=False: aiosmtpd then answers 535; its default (True) leaves a refusal unanswered
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()  # aiosmtpd's readiness check cannot connect to port 0
    controller = Controller(inbox, hostname="127.0.0.1", port=port,
                            authenticator=_authenticate, auth_require_tls=False)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def smtp_env(port: int, password: str = SMTP_PASSWORD) -> dict[str, str]:
    return {"TIDELINE_SMTP_HOST": "127.0.0.1", "TIDELINE_SMTP_PORT": str(port),
            "TIDELINE_SMTP_SECURITY": "none", "TIDELINE_SMTP_USERNAME": SMTP_USER,
            "TIDELINE_SMTP_PASSWORD": password}


def test_unset_services_are_the_embedded_defaults(environment: dict[str, str],
                                                  data_dir: Path) -> None:
    code, found = lines(environment)
    assert code == 0
    assert {s: line["status"] for s, line in found.items()} == dict.fromkeys(
        ["lake", "registry database", "online store", "smtp", "prefect api", "ray", "nats"],
        "not configured")
    assert found["lake"]["endpoint"] == f"local lake at {data_dir / 'lake'}"
    assert found["registry database"]["endpoint"] == f"SQLite {data_dir / 'registry.db'}"
    assert found["online store"]["endpoint"] == f"SQLite {data_dir / 'online.db'}"
    assert found["smtp"]["endpoint"] == f".eml outbox at {data_dir / 'outbox'}"
    assert found["prefect api"]["endpoint"] == "ephemeral Prefect server per command"
    assert found["ray"]["endpoint"] == "local Ray started per command"
    assert "TIDELINE_NATS_URL" in found["nats"]["detail"]
    assert not data_dir.exists()  # looking creates nothing


@pytest.mark.service("postgres")
@pytest.mark.service("redis")
@pytest.mark.service("nats")
@pytest.mark.service("lakefs")
def test_configured_services_answer_ok(environment: dict[str, str], lakefs_lake,  # noqa: ANN001
                                       postgres_database: str, redis_server, nats_url: str,  # noqa: ANN001
                                       smtp_server: tuple[Inbox, int]) -> None:
    inbox, port = smtp_server
    # the suite's PostgreSQL trusts local connections: a password in the URL is accepted
    registry = postgres_database.replace("postgres@", f"postgres:{DB_PASSWORD}@")
    environment.update({
        "TIDELINE_LAKE_BACKEND": "lakefs", "TIDELINE_LAKEFS_ENDPOINT": lakefs_lake.endpoint,
        "TIDELINE_LAKEFS_ACCESS_KEY_ID": LAKEFS_KEYS[0],
        "TIDELINE_LAKEFS_SECRET_ACCESS_KEY": LAKEFS_KEYS[1],
        "TIDELINE_LAKEFS_REPOSITORY": lakefs_lake.repository,
        "TIDELINE_REGISTRY_URL": registry,
        "TIDELINE_ONLINE_STORE": "redis", "TIDELINE_REDIS_URL": redis_server.url,
        "TIDELINE_NATS_URL": nats_url, **smtp_env(port)})

    code, found = lines(environment)

    assert code == 0, found
    for service in ("lake", "registry database", "online store", "smtp", "nats"):
        assert found[service]["status"] == "ok", found[service]
        assert found[service]["hint"] is None
        assert 0 <= found[service]["ms"] < 3000
    assert f"repository {lakefs_lake.repository!r} exists" in found["lake"]["detail"]
    assert found["registry database"]["detail"].startswith("postgresql 1")
    assert found["registry database"]["endpoint"].startswith("postgresql+psycopg://postgres:***@")
    assert found["online store"]["detail"].startswith("Redis 7")
    assert found["smtp"]["detail"] == f"EHLO, login as {SMTP_USER}, QUIT"
    assert inbox.messages == 0  # checked, nothing sent
    assert "JetStream account" in found["nats"]["detail"]
    assert found["prefect api"]["status"] == found["ray"]["status"] == "not configured"
    _, table = run_doctor(environment, "table")
    for output in (json.dumps(found), table):
        for secret in (DB_PASSWORD, LAKEFS_KEYS[1], SMTP_PASSWORD):
            assert secret not in output


@pytest.mark.service("lakefs")
def test_a_missing_lakefs_repository_is_reported_not_created(environment: dict[str, str],
                                                             lakefs_endpoint: str) -> None:
    import lakefs_sdk

    name = f"doctor-{uuid.uuid4().hex[:12]}"
    environment.update({
        "TIDELINE_LAKE_BACKEND": "lakefs", "TIDELINE_LAKEFS_ENDPOINT": lakefs_endpoint,
        "TIDELINE_LAKEFS_ACCESS_KEY_ID": LAKEFS_KEYS[0],
        "TIDELINE_LAKEFS_SECRET_ACCESS_KEY": LAKEFS_KEYS[1],
        "TIDELINE_LAKEFS_REPOSITORY": name})
    code, found = lines(environment)
    assert code == 0
    assert found["lake"]["status"] == "ok"
    assert "does not exist yet (created on first use)" in found["lake"]["detail"]
    config = lakefs_sdk.Configuration(host=f"{lakefs_endpoint}/api/v1", username=LAKEFS_KEYS[0],
                                      password=LAKEFS_KEYS[1])
    with lakefs_sdk.ApiClient(config) as client:
        names = [r.id for r in lakefs_sdk.RepositoriesApi(client).list_repositories(
            amount=1000).results]
    assert name not in names

    environment["TIDELINE_LAKEFS_SECRET_ACCESS_KEY"] = "not-the-secret-key"
    code, found = lines(environment)
    assert code == 1
    assert found["lake"]["status"] == "failed"
    assert "TIDELINE_LAKEFS_SECRET_ACCESS_KEY" in found["lake"]["hint"]
    assert "not-the-secret-key" not in json.dumps(found)


def test_closed_ports_fail_with_hints_and_exit_1(environment: dict[str, str]) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    port = free_port()  # nothing listens there
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    environment.update({
        "TIDELINE_LAKE_BACKEND": "lakefs", "TIDELINE_LAKEFS_ENDPOINT": f"http://127.0.0.1:{port}",
        "TIDELINE_LAKEFS_ACCESS_KEY_ID": LAKEFS_KEYS[0],
        "TIDELINE_LAKEFS_SECRET_ACCESS_KEY": LAKEFS_KEYS[1],
        "TIDELINE_REGISTRY_URL": f"postgresql+psycopg://tideline:{DB_PASSWORD}@127.0.0.1:{port}/x",
        "TIDELINE_ONLINE_STORE": "redis",
        "TIDELINE_REDIS_URL": f"redis://:{DB_PASSWORD}@127.0.0.1:{port}/0",
        "TIDELINE_RAY_ADDRESS": f"ray://127.0.0.1:{port}",
        "TIDELINE_NATS_URL": f"nats://{NATS_TOKEN}@127.0.0.1:{port}", **smtp_env(port)})

    with temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{port}/api"}):
        code, found = lines(environment)
        table_code, table = run_doctor(environment, "table")

    assert code == table_code == 1
    assert {s: line["status"] for s, line in found.items()} == dict.fromkeys(found, "failed")
    for line in found.values():
        assert "Connection refused" in line["detail"] or "Connect call failed" in line["detail"]
        assert line["ms"] < 3000  # refused at once, not waited out
    assert found["lake"]["hint"] == (f"is lakeFS running at http://127.0.0.1:{port}? check "
                                     "TIDELINE_LAKEFS_ENDPOINT and keys")
    assert "TIDELINE_REGISTRY_URL" in found["registry database"]["hint"]
    assert "TIDELINE_REDIS_URL" in found["online store"]["hint"]
    assert "TIDELINE_SMTP_HOST" in found["smtp"]["hint"]
    assert "PREFECT_API_URL" in found["prefect api"]["hint"]
    assert "ray start --head" in found["ray"]["hint"]
    assert "TIDELINE_NATS_URL" in found["nats"]["hint"]
    assert found["nats"]["endpoint"] == f"nats://***@127.0.0.1:{port}"
    assert len(table.splitlines()) < 20  # one line a service
    for output in (json.dumps(found), table):
        for secret in (DB_PASSWORD, LAKEFS_KEYS[1], SMTP_PASSWORD, NATS_TOKEN):
            assert secret not in output


def test_a_refused_smtp_login_names_the_settings(environment: dict[str, str],
                                                 smtp_server: tuple[Inbox, int]) -> None:
    _, port = smtp_server
    environment.update(smtp_env(port, password="wrong-Pa55-do-not-print"))
    code, output = run_doctor(environment)
    smtp = next(line for line in json.loads(output) if line["service"] == "smtp")
    assert code == 1
    assert smtp["status"] == "failed"
    assert smtp["detail"] == f"login as {SMTP_USER} refused (535)"
    assert smtp["hint"] == "check TIDELINE_SMTP_USERNAME and TIDELINE_SMTP_PASSWORD"
    assert "wrong-Pa55" not in output


@pytest.fixture(scope="session")
def prefect_api(prefect_server: None) -> str:
    """The test server's API (read before `environment` hides it)."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value()


def test_a_running_prefect_server_answers(prefect_api: str,
                                          environment: dict[str, str]) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: prefect_api}):
        code, found = lines(environment)
    assert code == 0
    assert found["prefect api"]["status"] == "ok"
    assert found["prefect api"]["endpoint"] == prefect_api
    assert found["prefect api"]["detail"].startswith("GET /health: 200")


def test_a_ray_head_answers(environment: dict[str, str], ray_cluster: str) -> None:
    environment["TIDELINE_RAY_ADDRESS"] = ray_cluster
    code, found = lines(environment)
    assert code == 0
    assert found["ray"]["status"] == "ok"
    assert found["ray"]["detail"] == f"Ray GCS accepts connections at {ray_cluster}"
