"""What every benchmark measures with, so that their numbers mean the same thing: wall time,
peak RSS of a whole process tree (a benchmark's own process or a case in a fresh interpreter,
with every process it starts: Ray's GCS, raylet and workers, servers, pools), and results written
as JSON with the facts of the machine and the run.

Memory is sampled as `../shared/tools/tree-rss` does: the summed RSS of the process and all its
descendants (psutil), the largest sum seen; here every `SAMPLE_SECONDS`. A page shared by
several processes (Ray's object store) counts once per process, so for Ray it is an upper bound.
A spike between two samples would be missed, so the peak is never taken below the root
process's own high-water mark (`peak_rss`, read at every sample, and as the case reports it)."""
from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import threading
import time
from argparse import Namespace
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

SAMPLE_SECONDS = 0.2
PACKAGES = ("tideline", "numpy", "pandas", "pyarrow", "ray", "lightgbm", "duckdb", "polars",
            "evidently", "featuretools")
"""Versions recorded with every result, of those installed."""


# -- time ------------------------------------------------------------------------------------


class Timer:
    """Wall seconds, and this process's CPU seconds (all its threads), of a `with` block."""

    seconds = cpu_seconds = 0.0

    def __enter__(self) -> Timer:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._wall
        self.cpu_seconds = time.process_time() - self._cpu


def timed(run: Callable[[], object]) -> float:
    """Wall seconds of one call."""
    with Timer() as timer:
        run()
    return timer.seconds


def best_of(repeat: int, run: Callable[[], object]) -> float:
    """The fastest of `repeat` calls (the one least disturbed by anything else running)."""
    return min(timed(run) for _ in range(repeat))


# -- memory ----------------------------------------------------------------------------------


def tree_rss(pid: int, children_only: bool = False) -> tuple[int, int]:
    """Summed RSS of a process and all its descendants (or the descendants alone), and how many
    processes that is."""
    import psutil  # the bench extra: benchmarks that measure no memory run without it

    try:
        root = psutil.Process(pid)
        processes = root.children(recursive=True) + ([] if children_only else [root])
    except psutil.NoSuchProcess:
        return 0, 0
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += process.memory_info().rss
    return total, len(processes)


def current_rss() -> int:
    """This process's resident set now, in bytes."""
    import psutil

    return psutil.Process().memory_info().rss


def peak_rss(pid: int | str = "self") -> int:
    """The peak resident set so far of this process (or `pid`), in bytes: its `VmHWM`; 0 once
    it has exited. Not `ru_maxrss`: Linux keeps the parent's peak in it across fork and exec, so
    a child of a large process reports the parent's. (Standard library only: store_bench ships
    this function's source to Feast's interpreter.)"""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # gone
        pass
    return 0


class PeakMemory(threading.Thread):
    """The largest `tree_rss` of a process (by default this one) while sampled, every
    `SAMPLE_SECONDS` from `start()` to `stop()`, or over a `with` block; at least the process's
    own `peak_rss` at any sample."""

    def __init__(self, pid: int | None = None) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.processes = pid or os.getpid(), 0, 0
        self._done = threading.Event()

    def run(self) -> None:
        while True:
            total, count = tree_rss(self.pid)
            if total > self.peak:
                self.peak, self.processes = total, count
            self.peak = max(self.peak, peak_rss(self.pid))
            if self._done.wait(SAMPLE_SECONDS):
                return

    def stop(self) -> None:
        self._done.set()
        self.join()

    def __enter__(self) -> PeakMemory:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- a case in a fresh interpreter -----------------------------------------------------------


class ChildFailed(SystemExit):
    """A child exited non-zero; the message ends with the last lines of its log."""


class Child:
    """`command` running while its process tree's RSS is sampled: its standard output is kept
    (the JSON it prints last is its result), its standard error goes to `log`."""

    def __init__(self, command: list[str], log: Path, env: dict[str, str] | None = None,
                 name: str | None = None, cwd: Path | None = None) -> None:
        self.log, self.name = log, name or " ".join(
            [Path(command[1]).name, *command[2:]])[:100]
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as errors:  # the child keeps its own descriptor
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors,
                                            text=True, env=env, cwd=cwd)
        self.memory = PeakMemory(self.process.pid)
        self.memory.start()

    @classmethod
    def case(cls, script: str, body: dict, log: Path, env: dict[str, str] | None = None
             ) -> Child:
        """`script --case <body as JSON>` in this interpreter's Python: one case of a
        benchmark, which runs it through `dispatch` (or its own `--case` branch)."""
        return cls([sys.executable, script, "--case", json.dumps(body, default=str)], log, env)

    def running(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        """What the child printed, once it has exited; `ChildFailed` if it failed."""
        out, _ = self.process.communicate()
        self.memory.stop()
        if self.process.returncode:
            tail = "".join(self.log.read_text().splitlines(keepends=True)[-20:])
            raise ChildFailed(f"{self.name} failed (exit {self.process.returncode}); end of "
                              f"{self.log}:\n{tail}")
        return out

    def result(self) -> dict:
        """The JSON the child printed last, once it has exited; `ChildFailed` if it failed."""
        return json.loads(self.output().splitlines()[-1])

    def measured(self) -> dict:
        """`result()` with its process tree's peak RSS, `tree_peak_rss_bytes` (at least the
        child's own, when it reports it as `driver_peak_rss_bytes`), and the number of
        processes in the tree at its largest sampled sum, `tree_peak_processes`."""
        result = self.result()
        result["tree_peak_rss_bytes"] = max(self.memory.peak,
                                            result.get("driver_peak_rss_bytes") or 0)
        result["tree_peak_processes"] = self.memory.processes
        return result


def dispatch(args: Namespace, run_case: Callable[[dict], dict],
             run_bench: Callable[[Namespace], int | None]) -> None:
    """In a `--case` child, print that case's JSON (what `Child.result` reads); otherwise run
    the whole benchmark and exit with its status."""
    if args.case:
        print(json.dumps(run_case(json.loads(args.case)), default=str))
        return
    sys.exit(run_bench(args))


# -- results ---------------------------------------------------------------------------------


def machine() -> dict:
    """What a result depends on besides the code: CPUs, memory, Python, package versions."""
    packages = {}
    for name in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            packages[name] = metadata.version(name)
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {"cpus": os.cpu_count(), "memory_bytes": memory,
            "python": platform.python_version(), "platform": platform.platform(),
            "packages": packages}


def write_results(path: Path, payload: dict) -> Path:
    """`payload` as JSON at `path` (its folder made), with the run's facts: `machine` (what the
    payload has under that key wins), the `command` line (a password in a URL masked) and the
    `date` (UTC)."""
    command = re.sub(r"(://[^/:@\s]*:)[^/@\s]+@", r"\1***@", shlex.join(["python", *sys.argv]))
    document = {**payload, "machine": {**machine(), **payload.get("machine", {})},
                "command": command,
                "date": datetime.now(UTC).isoformat(timespec="seconds")}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path
