"""Several hosts on this machine: network namespaces joined by a bridge, each with its own
address and its own directory (home, temporary files, Prefect home, tideline data), sharing no
data directory. The bridge holds the operator's address (the test itself, as a user's laptop
on the same network); the hosts have no route off their subnet. Needs root and iproute2.

Names carry the owning process id (`tl<pid>-<host>`, links `tl<pid>b`, `tl<pid>h<n>`), so a
run killed before its teardown is cleaned up by the next one without touching a live run."""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil

PREFIX = "tl"
NETNS_ETC = Path("/etc/netns")
"""`ip netns exec` mounts /etc/netns/<name>/<file> over /etc/<file>: each host's own `hosts`
(the others by name) and an empty `resolv.conf` (no name server to wait for)."""


def _ip(*args: str, check: bool = True) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and done.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


@dataclass
class Host:
    """One namespace: its address on the bridge and a directory only its processes use."""

    name: str
    netns: str
    address: str
    root: Path
    processes: list[subprocess.Popen] = field(default_factory=list)

    def environment(self, extra: Mapping[str, str] = {}) -> dict[str, str]:  # noqa: B006
        """The machine's environment with this host's own home, temporary and Prefect
        directories (Ray keeps its session under TMPDIR)."""
        env = {**os.environ, "HOME": str(self.root / "home"), "TMPDIR": str(self.root / "tmp"),
               "PREFECT_HOME": str(self.root / "prefect"),
               "TIDELINE_DATA_DIR": str(self.root / "data")}
        for inherited in ("PREFECT_API_URL", "RAY_ADDRESS"):  # the operator's, not this host's
            env.pop(inherited, None)
        return {**env, **extra}

    def start(self, name: str, argv: Sequence[str], extra: Mapping[str, str] = {},  # noqa: B006
              cwd: Path | None = None) -> subprocess.Popen:
        """`argv` running on this host in the background, its output in `<root>/<name>.log`."""
        with (self.root / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(["ip", "netns", "exec", self.netns, *argv],
                                       env=self.environment(extra), cwd=cwd or self.root,
                                       stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        self.processes.append(process)
        return process

    def run(self, argv: Sequence[str], extra: Mapping[str, str] = {},  # noqa: B006
            cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
        """`argv` run to its end on this host."""
        return subprocess.run(["ip", "netns", "exec", self.netns, *argv],
                              env=self.environment(extra), cwd=cwd or self.root,
                              capture_output=True, text=True, timeout=timeout)

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


@dataclass
class Network:
    """The bridge, its hosts (by name) and the operator's address on it."""

    bridge: str
    operator: str
    hosts: dict[str, Host]
    cables: dict[str, str]

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def unplug(self, name: str) -> None:
        """Host `name`'s cable out of the bridge: its packets are dropped both ways, without a
        reset or an error to either side (a pulled cable, a host lost); its processes run on."""
        _ip("link", "set", self.cables[name], "down")


def _pids(netns: str) -> list[int]:
    return [int(p) for p in _ip("netns", "pids", netns, check=False).split()]


def _kill_inside(netns: str) -> None:
    """Every process in the namespace: SIGTERM, a grace period, then SIGKILL."""
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        pids = _pids(netns)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while _pids(netns) and time.monotonic() < deadline:
            time.sleep(0.2)


def _remove(owner: int) -> None:
    """Everything named after `owner`: the processes in its namespaces, the namespaces and
    their /etc files, the links left in this namespace."""
    mine = re.compile(rf"^{PREFIX}{owner}-\S+")
    for line in _ip("netns", "list", check=False).splitlines():
        found = mine.match(line)
        if found:
            _kill_inside(found.group(0))
            _ip("netns", "delete", found.group(0), check=False)
    for etc in NETNS_ETC.glob(f"{PREFIX}{owner}-*"):
        shutil.rmtree(etc, ignore_errors=True)
    for line in _ip("-o", "link", "show", check=False).splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if re.fullmatch(rf"{PREFIX}{owner}[bh]\d*", name):
            _ip("link", "delete", name, check=False)


def remove_leftovers() -> None:
    """Namespaces and links of runs whose process is gone (killed before tearing down)."""
    owners = {int(m.group(1)) for line in _ip("netns", "list", check=False).splitlines()
              if (m := re.match(rf"^{PREFIX}(\d+)-", line))}
    owners |= {int(m.group(1)) for etc in NETNS_ETC.glob(f"{PREFIX}*-*")
               if (m := re.match(rf"^{PREFIX}(\d+)-", etc.name))}
    owners |= {int(m.group(1)) for line in _ip("-o", "link", "show", check=False).splitlines()
               if (m := re.match(rf"^\d+: {PREFIX}(\d+)[bh]\d*[:@]", line))}
    for owner in owners - {os.getpid()}:
        if not psutil.pid_exists(owner):
            _remove(owner)


@contextmanager
def network(names: Sequence[str], root: Path) -> Iterator[Network]:
    """Hosts `names` on a bridge of their own, 10.<a>.<b>.0/24 picked from this process id;
    on exit every process started in them is stopped and the namespaces and links removed."""
    if shutil.which("ip") is None:
        raise RuntimeError("iproute2's `ip` is not installed")
    remove_leftovers()
    owner = os.getpid()
    subnet = f"10.{200 + owner % 50}.{owner // 50 % 250}"
    bridge = f"{PREFIX}{owner}b"
    try:
        _ip("link", "add", bridge, "type", "bridge")
        _ip("addr", "add", f"{subnet}.1/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        hosts, cables = {}, {}
        for n, name in enumerate(names, start=2):
            netns, cable = f"{PREFIX}{owner}-{name}", f"{PREFIX}{owner}h{n}"
            _ip("netns", "add", netns)
            _ip("link", "add", cable, "type", "veth", "peer", "name", "eth0", "netns", netns)
            _ip("link", "set", cable, "master", bridge)
            _ip("link", "set", cable, "up")
            inside = ("ip", "-n", netns)
            for args in (("link", "set", "lo", "up"),
                         ("addr", "add", f"{subnet}.{n}/24", "dev", "eth0"),
                         ("link", "set", "eth0", "up")):
                _ip(*inside[1:], *args)
            host_root = root / name
            for sub in ("home", "tmp", "prefect", "data"):
                (host_root / sub).mkdir(parents=True, exist_ok=True)
            hosts[name] = Host(name, netns, f"{subnet}.{n}", host_root)
            cables[name] = cable
        names_file = "127.0.0.1 localhost\n" + "".join(
            f"{host.address} {host.name}\n" for host in hosts.values())
        for host in hosts.values():
            etc = NETNS_ETC / host.netns
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "hosts").write_text(names_file)
            (etc / "resolv.conf").write_text("")
        yield Network(bridge, f"{subnet}.1", hosts, cables)
    finally:
        _remove(owner)
