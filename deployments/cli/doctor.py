"""`tideline doctor`: every service the settings name checked in one line each (what was
checked, ok / failed / not configured, how long it took, a hint for what fails). Checks only
read: no repository is created, no schema migrated, no mail sent. Needs no project."""
# heavy imports stay inside the checks of the services that are configured

from __future__ import annotations

import asyncio
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import typer
from rich.markup import escape
from tideline.core.settings import Settings, load_settings
from tideline.deployments.cli.common import FORMAT_OPTION, Format, Section, show

TIMEOUT = 3.0
"""Seconds one network step of a check may take."""
DEADLINE = 4.5
"""Seconds all checks together may take (they run at once); a check still busy then fails."""

OK, FAILED, NOT_CONFIGURED = "ok", "failed", "not configured"
COLUMNS = ["service", "endpoint", "status", "ms", "detail", "hint"]


class Failure(Exception):
    """A check's failure with a hint more precise than the check's general one."""

    def __init__(self, reason: str, hint: str) -> None:
        super().__init__(reason)
        self.hint = hint


@dataclass(frozen=True)
class Result:
    service: str
    endpoint: str
    status: str
    ms: int | None
    detail: str
    hint: str | None = None

    def row(self) -> list[Any]:
        return [self.service, self.endpoint, self.status, self.ms, self.detail, self.hint]


@dataclass
class Probe:
    """A configured service to check: `run` returns what it found or raises; `hint` says what
    to look at when it raises anything but a `Failure`."""

    service: str
    endpoint: str
    run: Callable[[], str]
    hint: str
    result: Result | None = field(default=None, init=False)

    def __call__(self) -> None:
        start = time.perf_counter()
        try:
            detail, status, hint = self.run(), OK, None
        except Failure as exc:
            detail, status, hint = str(exc), FAILED, exc.hint
        except Exception as exc:  # noqa: BLE001 - whatever a client raises is the finding
            detail, status, hint = reason(exc), FAILED, self.hint
        ms = round((time.perf_counter() - start) * 1000)
        self.result = Result(self.service, self.endpoint, status, ms, detail, hint)


def reason(exc: BaseException) -> str:
    """An exception as one short line (clients' messages run to several): the socket error at
    its root when there is one (`ConnectionRefusedError: Connection refused`)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            return f"{type(cause).__name__}: {cause.strerror}"
        # urllib3 keeps the cause of a failed connection in `reason`
        reason_ = getattr(cause, "reason", None)
        cause = reason_ if isinstance(reason_, BaseException) else (
            cause.__cause__ or cause.__context__)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def public(url: str) -> str:
    """A server URL without user information (a password, a NATS token) or query."""
    parts = urlsplit(url)
    if "@" not in parts.netloc and not parts.query:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = "***@" if "@" in parts.netloc else ""
    return parts._replace(netloc=user + host, query="").geturl()


def url_secrets(url: str) -> set[str]:
    """The secret parts of a URL, as written and decoded."""
    from urllib.parse import unquote

    parts = urlsplit(url)
    found = {parts.password or "", unquote(parts.password or "")}
    if parts.username and not parts.password:  # nats://TOKEN@host
        found |= {parts.username, unquote(parts.username)}
    return found


# ---- the services -------------------------------------------------------------------------


def plan_lake(settings: Settings) -> Result | Probe:
    if settings.lake_backend != "lakefs":
        return Result("lake", f"local lake at {settings.lake_dir}", NOT_CONFIGURED, None,
                      "embedded default; TIDELINE_LAKE_BACKEND=lakefs uses a lakeFS server")
    import lakefs_sdk

    endpoint = (settings.lakefs_endpoint or "").rstrip("/").removesuffix("/api/v1")
    repository = settings.lakefs_repository
    key_id = settings.lakefs_access_key_id
    secret = settings.lakefs_secret_access_key
    shown = f"{public(endpoint)} repository {repository}"

    def run() -> str:
        from lakefs_sdk.exceptions import ApiException

        if not endpoint.startswith(("http://", "https://")) or "@" in urlsplit(endpoint).netloc:
            raise Failure("the endpoint is not an http(s) URL without user information",
                          "set TIDELINE_LAKEFS_ENDPOINT to e.g. http://localhost:8000")
        config = lakefs_sdk.Configuration(
            host=f"{endpoint}/api/v1",
            username=key_id.get_secret_value() if key_id else "",
            password=secret.get_secret_value() if secret else "")
        config.retries = 0  # urllib3 would try each request four times
        with lakefs_sdk.ApiClient(config) as client:
            lakefs_sdk.HealthCheckApi(client).health_check(_request_timeout=TIMEOUT)
            version = found = None
            try:
                version = lakefs_sdk.ConfigApi(client).get_config(
                    _request_timeout=TIMEOUT).version_config.version
                found = lakefs_sdk.RepositoriesApi(client).get_repository(
                    repository, _request_timeout=TIMEOUT)
            except ApiException as exc:
                if exc.status == 404 and version is not None:
                    return (f"lakeFS {version}; repository {repository!r} does not exist yet "
                            "(created on first use)")
                if exc.status == 401:
                    raise Failure(f"lakeFS refused the credentials ({exc.status} {exc.reason})",
                                  "check TIDELINE_LAKEFS_ACCESS_KEY_ID and "
                                  "TIDELINE_LAKEFS_SECRET_ACCESS_KEY") from None
                raise
        if found.default_branch != "main":
            raise Failure(f"repository {repository!r} has default branch "
                          f"{found.default_branch!r}", "tideline publishes to main: use a "
                          "repository whose default branch is main (TIDELINE_LAKEFS_REPOSITORY)")
        return f"lakeFS {version}; repository {repository!r} exists"

    return Probe("lake", f"lakeFS {shown}", run,
                 f"is lakeFS running at {public(endpoint)}? check TIDELINE_LAKEFS_ENDPOINT and "
                 "keys")


def plan_registry(settings: Settings) -> Result | Probe:
    if settings.registry_url is None:
        return Result("registry database", f"SQLite {settings.data_dir / 'registry.db'}",
                      NOT_CONFIGURED, None,
                      "embedded default; TIDELINE_REGISTRY_URL names a database server")
    import sqlalchemy as sa
    from tideline.core.database import shown

    url = settings.registry_url.get_secret_value()
    try:
        endpoint = shown(url)
    except sa.exc.ArgumentError:
        endpoint = "(not a SQLAlchemy URL)"

    def run() -> str:
        parsed = sa.engine.make_url(url)
        timeout = ({"connect_timeout": max(2, round(TIMEOUT))}
                   if parsed.get_backend_name() in ("postgresql", "mysql") else {})
        engine = sa.create_engine(parsed, connect_args=timeout, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as connection:
                connection.execute(sa.text("SELECT 1")).scalar()
                version = connection.dialect.server_version_info or ()
        finally:
            engine.dispose()
        return f"{engine.dialect.name} {'.'.join(map(str, version))}".strip() + ": SELECT 1"

    return Probe("registry database", endpoint, run,
                 f"is the database at {endpoint} up? check TIDELINE_REGISTRY_URL (host, user, "
                 "password, database)")


def plan_online_store(settings: Settings) -> Result | Probe:
    if settings.online_store != "redis":
        return Result("online store", f"SQLite {settings.data_dir / 'online.db'}",
                      NOT_CONFIGURED, None,
                      "embedded default; TIDELINE_ONLINE_STORE=redis serves from Redis")
    import redis

    url = settings.redis_url.get_secret_value()

    def run() -> str:
        client = redis.Redis.from_url(url, socket_timeout=TIMEOUT,
                                      socket_connect_timeout=TIMEOUT)
        try:
            client.ping()
            try:
                version = client.info("server").get("redis_version", "")
            except redis.ResponseError:  # INFO may be refused to this user
                version = ""
        finally:
            client.close()
        return f"Redis {version}: PING" if version else "PING"

    return Probe("online store", f"Redis {public(url)}", run,
                 f"is Redis running at {public(url)}? check TIDELINE_REDIS_URL, or "
                 "TIDELINE_ONLINE_STORE=sqlite")


def plan_smtp(settings: Settings) -> Result | Probe:
    if not settings.smtp_host:
        return Result("smtp", f".eml outbox at {settings.data_dir / 'outbox'}", NOT_CONFIGURED,
                      None, "embedded default; TIDELINE_SMTP_HOST sends through a server")
    host, port, security = settings.smtp_host, settings.smtp_port, settings.smtp_security
    username = settings.smtp_username
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    from_block = password is None and settings.smtp_password_secret
    if from_block and prefect_api_url():
        # the transport's own way to the password: the Prefect Secret block
        from tideline.monitoring.mail import open_transport

        password = open_transport(settings).password  # type: ignore[attr-defined]
        from_block = False
    where = f"smtp://{host}:{port} ({security}" + (f", user {username})" if username else ")")

    def run() -> str:
        steps = ["EHLO"]
        context = ssl.create_default_context()
        try:
            if security == "tls":
                client: smtplib.SMTP = smtplib.SMTP_SSL(host, port, timeout=TIMEOUT,
                                                        context=context)
            else:
                client = smtplib.SMTP(host, port, timeout=TIMEOUT)
            with client:
                client.ehlo()
                if security == "starttls":
                    client.starttls(context=context)
                    client.ehlo()
                    steps.append("STARTTLS")
                if username and from_block:
                    steps.append(f"login not tried (password in Prefect Secret "
                                 f"{settings.smtp_password_secret!r}, no PREFECT_API_URL)")
                elif username:
                    client.login(username, password or "")
                    steps.append(f"login as {username}")
        except smtplib.SMTPAuthenticationError as exc:
            raise Failure(f"login as {username} refused ({exc.smtp_code})",
                          "check TIDELINE_SMTP_USERNAME and TIDELINE_SMTP_PASSWORD") from None
        except (ssl.SSLError, smtplib.SMTPNotSupportedError) as exc:
            raise Failure(reason(exc), "check TIDELINE_SMTP_SECURITY (starttls on 587, tls on "
                          "465) and the server's certificate") from None
        return ", ".join(steps) + ", QUIT"

    return Probe("smtp", where, run,
                 f"is an SMTP server listening at {host}:{port}? check TIDELINE_SMTP_HOST and "
                 "TIDELINE_SMTP_PORT")


def prefect_api_url() -> str | None:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def plan_prefect(settings: Settings) -> Result | Probe:
    from prefect.settings import (
        PREFECT_API_AUTH_STRING,
        PREFECT_API_KEY,
        PREFECT_API_TLS_INSECURE_SKIP_VERIFY,
    )

    api = prefect_api_url()
    if api is None:
        return Result("prefect api", "ephemeral Prefect server per command", NOT_CONFIGURED,
                      None, "embedded default; PREFECT_API_URL names a server (`tideline "
                      "server`)")
    import base64

    import httpx

    auth, key = PREFECT_API_AUTH_STRING.value(), PREFECT_API_KEY.value()
    headers = ({"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()} if auth
               else {"Authorization": f"Bearer {key}"} if key else {})
    verify = not PREFECT_API_TLS_INSECURE_SKIP_VERIFY.value()

    def run() -> str:
        reply = httpx.get(f"{api.rstrip('/')}/health", headers=headers, timeout=TIMEOUT,
                          verify=verify)
        if reply.status_code in (401, 403):
            raise Failure(f"{reply.status_code} {reply.reason_phrase}",
                          "check PREFECT_API_KEY (Prefect Cloud) or PREFECT_API_AUTH_STRING")
        reply.raise_for_status()
        return f"GET /health: {reply.status_code} {reply.text.strip()[:40]}"

    return Probe("prefect api", public(api), run,
                 f"is the Prefect server running at {public(api)} (`tideline server`)? check "
                 "PREFECT_API_URL, or unset it for an ephemeral server per command")


def plan_ray(settings: Settings) -> Result | Probe:
    import os

    # Ray's own variable, honoured by `ray.init` when tideline passes no address
    address = settings.ray_address or os.environ.get("RAY_ADDRESS") or None
    if address is None or address == "local":
        return Result("ray", "local Ray started per command", NOT_CONFIGURED, None,
                      "embedded default; TIDELINE_RAY_ADDRESS joins a cluster")
    where = "on this machine" if address == "auto" else f"at {address}"
    hint = (f"is a Ray head running {where} (`ray start --head`)? check "
            "TIDELINE_RAY_ADDRESS, or unset it to compute on a local Ray")

    def run() -> str:
        target = address
        if target == "auto":  # the cluster `ray start` left on this machine, as Ray finds it
            from ray._private.services import canonicalize_bootstrap_address

            target = canonicalize_bootstrap_address("auto") or ""
        host, _, port = target.removeprefix("ray://").rpartition(":")
        if not host or not port.isdigit():
            raise Failure(f"{address!r} is not host:port or ray://host:port",
                          "set TIDELINE_RAY_ADDRESS to ray://head:10001 or head:6379")
        socket.create_connection((host, int(port)), timeout=TIMEOUT).close()
        what = "Ray client server" if target.startswith("ray://") else "Ray GCS"
        return f"{what} accepts connections at {host}:{port}"

    return Probe("ray", address, run, hint)


def plan_nats(settings: Settings) -> Result | Probe:
    url = settings.nats_url
    if not url:
        return Result("nats", "-", NOT_CONFIGURED, None,
                      "TIDELINE_NATS_URL names the NATS JetStream server of `tideline stream`")
    import nats
    from nats.errors import NoRespondersError, NoServersError
    from nats.errors import TimeoutError as NatsTimeout
    from nats.js.errors import ServiceUnavailableError

    async def check() -> str:
        errors: list[Exception] = []

        async def keep(exc: Exception) -> None:  # reported by the check, not logged
            errors.append(exc)

        try:
            # nats-py gives up a first connect after two tries with 1; with 0, or reconnects
            # disallowed, it retries for ever
            client = await asyncio.wait_for(nats.connect(
                servers=[url], connect_timeout=TIMEOUT, max_reconnect_attempts=1,
                reconnect_time_wait=0, error_cb=keep), timeout=TIMEOUT)
        except NoServersError:
            raise errors[-1] if errors else ConnectionError("no server answered") from None
        version = client.connected_server_version
        try:
            try:
                info = await client.jetstream(timeout=TIMEOUT).account_info()
            except (ServiceUnavailableError, NoRespondersError, NatsTimeout) as exc:
                raise Failure(f"no JetStream ({type(exc).__name__})",
                              "enable JetStream on the server (nats-server -js)") from None
        finally:
            await client.close()
        return f"NATS {version}; JetStream account: {info.streams} streams"

    def run() -> str:
        return asyncio.run(check())

    return Probe("nats", public(url), run,
                 f"is nats-server running at {public(url)}? check TIDELINE_NATS_URL")


PLANS = (plan_lake, plan_registry, plan_online_store, plan_smtp, plan_prefect, plan_ray,
         plan_nats)


def secrets(settings: Settings) -> set[str]:
    """Every secret value the settings hold, never to be printed."""
    found: set[str] = set()
    for value in (settings.registry_url, settings.redis_url, settings.prefect_database_url):
        if value is not None:
            found |= url_secrets(value.get_secret_value())
    for value in (settings.smtp_password, settings.lakefs_secret_access_key):
        if value is not None:
            found.add(value.get_secret_value())
    if settings.nats_url:
        found |= url_secrets(settings.nats_url)
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_KEY

    found |= {PREFECT_API_KEY.value() or "", PREFECT_API_AUTH_STRING.value() or ""}
    found.discard("")
    return found


def scrubbed(result: Result, hidden: Iterable[str]) -> Result:
    """The result with any secret a client's message repeated masked."""
    def clean(text: str | None) -> str | None:
        for secret in sorted(hidden, key=len, reverse=True):
            text = text.replace(secret, "***") if text else text
        return text

    return Result(result.service, clean(result.endpoint) or "", result.status, result.ms,
                  clean(result.detail) or "", clean(result.hint))


def check_services(settings: Settings, deadline: float = DEADLINE) -> list[Result]:
    """Check every service at once, each in a thread of its own; a check still running after
    `deadline` seconds is reported failed (its thread is a daemon, left to end alone)."""
    planned = []
    for plan in PLANS:
        try:
            planned.append(plan(settings))
        except Exception as exc:  # noqa: BLE001 - a check that cannot even start has failed
            service = plan.__name__.removeprefix("plan_").replace("_", " ")
            planned.append(Result(service, "-", FAILED, None, reason(exc),
                                  "check the service's settings"))
    probes = [p for p in planned if isinstance(p, Probe)]
    threads = [threading.Thread(target=p, name=f"doctor {p.service}", daemon=True)
               for p in probes]
    for thread in threads:
        thread.start()
    end = time.monotonic() + deadline
    for thread in threads:
        thread.join(max(0.0, end - time.monotonic()))
    results = []
    for item in planned:
        if isinstance(item, Probe):
            item = item.result or Result(
                item.service, item.endpoint, FAILED, round(deadline * 1000),
                f"no answer within {deadline:g} s", item.hint)
        results.append(item)
    hidden = secrets(settings)
    return [scrubbed(r, hidden) for r in results]


STYLES = {OK: "green", FAILED: "bold red", NOT_CONFIGURED: "dim"}


def doctor(fmt: Format = FORMAT_OPTION) -> None:
    """Check every configured service (lake, registry database, online store, SMTP, Prefect
    API, Ray, NATS): one line each, with a hint for what fails. Exits 1 if one fails."""
    results = check_services(load_settings())
    section = Section("services", COLUMNS, [r.row() for r in results], shown={
        "status": lambda s: f"[{STYLES[s]}]{s}[/]", "endpoint": escape, "detail": escape,
        "hint": escape})
    show(fmt, section)
    if any(r.status == FAILED for r in results):
        raise typer.Exit(1)
