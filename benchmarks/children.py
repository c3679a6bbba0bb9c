"""Running one benchmark case in a fresh interpreter and measuring its whole process tree (Ray
workers, LightGBM threads' process, subprocesses), shared by the benchmark scripts."""
from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
from argparse import Namespace
from collections.abc import Callable
from pathlib import Path

import psutil

SAMPLE_SECONDS = 0.2


def tree_rss(pid: int) -> tuple[int, int]:
    """Summed RSS of a process and all its descendants, and how many there are."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, 0
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += process.memory_info().rss
    return total, len(processes)


class PeakMemory(threading.Thread):
    """The largest `tree_rss` of a process while it runs, sampled every `SAMPLE_SECONDS`."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.processes = pid, 0, 0
        self._done = threading.Event()

    def run(self) -> None:
        while True:
            total, count = tree_rss(self.pid)
            if total > self.peak:
                self.peak, self.processes = total, count
            if self._done.wait(SAMPLE_SECONDS):
                return

    def stop(self) -> None:
        self._done.set()
        self.join()


def run_child(script: str, args: list[str], log: Path, env: dict[str, str] | None = None
              ) -> tuple[dict, PeakMemory]:
    """`script` with `args` in a fresh interpreter: the JSON it prints last, and the peak
    memory of its process tree. Its stderr goes to `log`; a failure shows the log's end."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as errors:
        child = subprocess.Popen([sys.executable, script, *args], stdout=subprocess.PIPE,
                                 stderr=errors, text=True, env=env)
        memory = PeakMemory(child.pid)
        memory.start()
        out, _ = child.communicate()
        memory.stop()
    if child.returncode:
        tail = "".join(log.read_text().splitlines(keepends=True)[-20:])
        raise SystemExit(f"{Path(script).name} {' '.join(args)[:80]} failed (exit "
                         f"{child.returncode}); end of {log}:\n{tail}")
    return json.loads(out.splitlines()[-1]), memory


def dispatch(args: Namespace, run_case: Callable[[dict], dict],
             run_bench: Callable[[Namespace], int]) -> None:
    """In a `--case` child, print that case's JSON (what `run_child` reads); otherwise run
    the whole benchmark and exit with its status."""
    if args.case:
        print(json.dumps(run_case(json.loads(args.case)), default=str))
        return
    sys.exit(run_bench(args))
