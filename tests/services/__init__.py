"""Private servers for tests: PostgreSQL, Redis, NATS JetStream and lakeFS, each on a free port
with its data in a temporary directory, on loopback or, for the cluster scenario, on a network
namespace's address. `Unavailable` says why one cannot start here (a missing binary, no Go
to build lakeFS with); the suite's fixtures turn it into a skip, or a failure under
`CI=true`."""
from __future__ import annotations

import base64
import contextlib
import glob
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn, TypeVar

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAKEFS_TOOL = ROOT / "tools" / "lakefs.sh"


class Unavailable(Exception):
    """A server cannot be started on this machine; the message says what is missing."""


S = TypeVar("S", bound="Server")


def skip_or_fail(reason: str) -> NoReturn:
    """Skip the test with `reason`; under `CI=true` fail instead: nothing the docs claim may
    skip there."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}, and CI=true requires it", pytrace=False)
    pytest.skip(reason)


def start_or_skip(name: str, create: Callable[[], S]) -> S:
    """`create()`, or `skip_or_fail` saying why the server cannot start here."""
    try:
        return create()
    except Unavailable as exc:
        skip_or_fail(f"{name} cannot start here: {exc}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), 0.5):
        return True
    return False


def _binary(name: str, *also: str) -> str:
    found = shutil.which(name) or next((p for p in also if Path(p).exists()), None)
    if found is None:
        raise Unavailable(f"{name} is not installed (Debian: `make test` installs it)")
    return found


@dataclass
class Server:
    """A server process of ours, started from `argv` and ready once its port listens: on
    loopback, or on `host` inside the network namespace `netns` (`tests/cluster`)."""

    root: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    host: str = "127.0.0.1"
    netns: str | None = None
    name = "server"

    def inside(self, argv: list[str]) -> list[str]:
        """`argv` run in this server's network namespace, if it has one."""
        return ["ip", "netns", "exec", self.netns, *argv] if self.netns else argv

    def argv(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def ready(self) -> bool:
        return listening(self.port, self.host)

    def start(self, timeout: float = 60) -> None:
        log = (self.root / f"{self.name}.log").open("ab")
        self.process = subprocess.Popen(self.inside(self.argv()), stdout=log,
                                        stderr=subprocess.STDOUT, env=self.environment(),
                                        cwd=self.root)
        log.close()
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = (self.root / f"{self.name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{self.name} on port {self.port} did not start:\n{tail}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM (what a service manager's restart sends), then wait for it to exit."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def launched(self: S) -> S:
        """This server started, or closed (nothing left running) if it could not start."""
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    @classmethod
    def create(cls: type[S], **where: str) -> S:
        """A new server in a temporary directory of its own, started (`where`: its `host`
        and `netns`); `Unavailable` (from `argv`) when its binary is missing."""
        return cls(_temporary(cls.name), **where).launched()


def _temporary(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"tideline-{prefix}-"))


# -- NATS JetStream ------------------------------------------------------------------------


@dataclass
class Nats(Server):
    """nats-server with JetStream; its store outlives restarts (so do streams and consumers)."""

    name = "nats"

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def argv(self) -> list[str]:
        return [_binary("nats-server", "/usr/sbin/nats-server"), "-a", self.host,
                "-p", str(self.port), "-js", "-sd", str(self.root / "store")]


# -- Redis ---------------------------------------------------------------------------------


@dataclass
class Redis(Server):
    """redis-server without persistence, on its one address only."""

    name = "redis"

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def argv(self) -> list[str]:
        # off loopback, Redis without a password refuses other hosts unless told not to
        return [_binary("redis-server"), "--bind", self.host, "--port", str(self.port),
                "--save", "", "--appendonly", "no", "--dir", str(self.root),
                "--protected-mode", "yes" if self.host == "127.0.0.1" else "no"]


# -- PostgreSQL ----------------------------------------------------------------------------


def _postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise Unavailable("PostgreSQL is not installed (Debian: `make test` installs it)")
    return Path(initdb).resolve().parent


@dataclass
class Postgres(Server):
    """A PostgreSQL cluster of our own (trust auth, its socket in its directory), run as the
    `postgres` user when we are root (PostgreSQL refuses to run as root)."""

    name = "postgres"
    bin: Path = field(default_factory=_postgres_bin)
    restarts: list[threading.Thread] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@{self.host}:{self.port}/postgres"

    def _admin(self, statement: str) -> None:
        import sqlalchemy as sa

        admin = sa.create_engine(self.url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as connection:
                connection.execute(sa.text(statement))
        finally:
            admin.dispose()

    def database(self, name: str) -> str:
        """A new database `name`: its URL (psycopg's, as `url`)."""
        self._admin(f"CREATE DATABASE {name}")
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def drop_database(self, name: str) -> None:
        self._admin(f"DROP DATABASE {name} WITH (FORCE)")

    def _run(self, *argv: str) -> None:
        user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run(self.inside([*user, *argv]), check=True, capture_output=True, text=True)

    def ctl(self, *args: str) -> None:
        options = (f"-p {self.port} -k {self.root / 'sock'} "
                   f"-c listen_addresses={self.host} -c fsync=off -c max_connections=200")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-l",
                  str(self.root / "log"), "-w", "-t", "60", "-o", options, *args)

    def start(self, timeout: float = 60) -> None:
        self.ctl("start")

    def stop(self) -> None:
        """Immediate stop: every backend killed, no checkpoint, as if the server crashed."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self.ctl("-m", "immediate", "stop")

    def restart_after(self, seconds: float) -> None:
        """Start the server again `seconds` from now, from another thread."""
        def later() -> None:
            time.sleep(seconds)
            self.start()

        thread = threading.Thread(target=later, name="postgres-restart")
        thread.start()
        self.restarts.append(thread)

    def ensure_up(self) -> None:
        """Wait for pending restarts; start the server if a test left it down."""
        while self.restarts:
            self.restarts.pop().join()
        if not listening(self.port, self.host):
            self.start()

    def close(self) -> None:
        while self.restarts:
            self.restarts.pop().join()
        super().close()

    @classmethod
    def create(cls, **where: str) -> Postgres:
        if os.geteuid() == 0 and shutil.which("runuser") is None:
            raise Unavailable("running as root needs runuser to start PostgreSQL as postgres")
        server = cls(_temporary("pg"), **where)
        (server.root / "sock").mkdir()
        if os.geteuid() == 0:
            for path in (server.root, server.root / "sock"):
                shutil.chown(path, "postgres", "postgres")
        try:
            server._run(str(server.bin / "initdb"), "-D", str(server.root / "data"), "-A",
                        "trust", "-U", "postgres", "--no-sync")
            if server.host != "127.0.0.1":  # initdb trusts loopback only: also the subnet's hosts
                with (server.root / "data" / "pg_hba.conf").open("a") as hba:
                    hba.write("host all all samenet trust\n")
        except BaseException:
            server.close()
            raise
        return server.launched()


# -- lakeFS --------------------------------------------------------------------------------

LAKEFS_KEYS = ("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
"""The installation user's keys the test server is set up with."""


def lakefs_binary() -> Path:
    """The lakeFS server built from its Go module (`tools/lakefs.sh build`, cached per
    machine); `Unavailable` without Go."""
    done = subprocess.run(["bash", str(LAKEFS_TOOL), "build"], capture_output=True, text=True)
    if done.returncode == 3:
        raise Unavailable(done.stderr.strip())
    if done.returncode != 0:
        raise RuntimeError(f"building lakeFS failed:\n{done.stderr[-3000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


@dataclass
class LakeFS(Server):
    """A real lakeFS server (`tools/lakefs.sh serve`): local KV store and blockstore in its
    directory, an installation user with `LAKEFS_KEYS`."""

    name = "lakefs"
    version: str = ""

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def argv(self) -> list[str]:
        return ["bash", str(LAKEFS_TOOL), "serve", str(self.root), str(self.port), self.host]

    def environment(self) -> dict[str, str]:
        key_id, secret = LAKEFS_KEYS
        return {**os.environ, "LAKEFS_ACCESS_KEY_ID": key_id, "LAKEFS_SECRET_ACCESS_KEY": secret}

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/api/v1/healthcheck", timeout=1) as r:
                return r.status == 204
        except OSError:
            return False

    def start(self, timeout: float = 60) -> None:
        super().start(timeout)
        token = base64.b64encode(":".join(LAKEFS_KEYS).encode()).decode()
        request = urllib.request.Request(f"{self.endpoint}/api/v1/config/version",
                                         headers={"Authorization": f"Basic {token}"})
        with urllib.request.urlopen(request, timeout=5) as reply:
            self.version = json.load(reply).get("version", "")

    @classmethod
    def create(cls, **where: str) -> LakeFS:
        lakefs_binary()  # built (or found) before the clock of start() runs
        return super().create(**where)
