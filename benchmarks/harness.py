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

import numpy as np
import pandas as pd

SAMPLE_SECONDS = 0.2
RTOL, ATOL = 1e-6, 1e-9
"""The tolerance of every comparison of values unless a benchmark states its own:
|ours - theirs| <= ATOL + RTOL * |theirs|, nulls equal to nulls, other types exactly."""
PERTURB = "TIDELINE_BENCH_PERTURB"
"""Environment variable naming a reference whose output `agreement` changes (one value of its
first compared column, first row) before comparing: a run must then fail (tests/benchmarks)."""
HERE = Path(__file__).parent
RESULTS, SMOKE_RESULTS = HERE / "results", HERE / "out"
"""Full-size results are committed; smoke results are not (gitignored)."""
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


def spread(seconds: list[float]) -> dict:
    """Every run's seconds with their median and minimum: what each side of a comparison
    reports, each side having run the same number of times."""
    ordered = sorted(seconds)
    middle = len(ordered) // 2
    median = (ordered[middle] if len(ordered) % 2
              else (ordered[middle - 1] + ordered[middle]) / 2)
    return {"runs": len(seconds), "seconds": list(seconds), "median": median,
            "min": ordered[0]}


def repeated(repeat: int, run: Callable[[], object]) -> dict:
    """`spread` of `repeat` calls."""
    return spread([timed(run) for _ in range(repeat)])


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


def project_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for `tideline` run in a project directory: without `TIDELINE_PROJECT`,
    which would point the CLI at another project than the one in its working directory."""
    return {k: v for k, v in (base or os.environ).items() if k != "TIDELINE_PROJECT"}


def dispatch(args: Namespace, run_case: Callable[[dict], dict],
             run_bench: Callable[[Namespace], int | None]) -> None:
    """In a `--case` child, print that case's JSON (what `Child.result` reads); otherwise run
    the whole benchmark and exit with its status."""
    if args.case:
        print(json.dumps(run_case(json.loads(args.case)), default=str))
        return
    sys.exit(run_bench(args))


# -- agreement -------------------------------------------------------------------------------


def perturbed(reference: str, frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """`frame` itself, or, when `PERTURB` names `reference`, a copy with the first row's value
    of the first of `columns` changed (a number moved well past the tolerance, a flag flipped,
    anything else replaced)."""
    if os.environ.get(PERTURB) != reference or frame.empty or not columns:
        return frame
    frame, column = frame.copy(), columns[0]
    value = frame[column].iloc[0]
    if pd.api.types.is_bool_dtype(frame[column]):
        changed: object = not bool(value)
    elif pd.api.types.is_numeric_dtype(frame[column]):
        changed = 1.0 if pd.isna(value) else value * 2 + 1
        if pd.api.types.is_integer_dtype(frame[column]):
            changed = int(changed)
        else:
            frame[column] = frame[column].astype(float)
    else:
        frame[column] = frame[column].astype(object)
        changed = f"{value}, perturbed"
    frame.iloc[0, frame.columns.get_loc(column)] = changed
    return frame


def _keyed(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    return frame if frame.index.name == key or key not in frame.columns \
        else frame.set_index(key)


def _same(ours: pd.Series, theirs: pd.Series, rtol: float, atol: float) -> np.ndarray:
    numeric = [pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)
               for s in (ours, theirs)]
    if all(numeric):
        return np.isclose(ours.to_numpy(float, na_value=np.nan),
                          theirs.to_numpy(float, na_value=np.nan),
                          rtol=rtol, atol=atol, equal_nan=True)
    both_null = (ours.isna() & theirs.isna()).to_numpy(bool)
    return ((ours.astype(object) == theirs.astype(object)).to_numpy(bool) | both_null)


def _shown(value: object) -> str:
    """A value as text, numpy scalars as the Python ones they hold."""
    item = getattr(value, "item", None)
    return repr(item() if callable(item) and getattr(value, "ndim", 1) == 0 else value)


def agreement(reference: str, ours: pd.DataFrame, theirs: pd.DataFrame, key: str,
              columns: dict[str, str] | list[str] | None = None, rtol: float = RTOL,
              atol: float = ATOL) -> dict:
    """`theirs` (a reference's output) against `ours` (tideline's), aligned on `key` (a column
    or the index's name): rows missing from either side, and per column the rows whose values
    differ beyond the tolerance, with an example. `columns` maps our column names to theirs
    (a list: the same names; default: every column of ours). `agrees` is the verdict."""
    pairs = (dict(columns) if isinstance(columns, dict)
             else {c: c for c in (columns if columns is not None else
                                  [c for c in ours.columns if c != key])})
    ours, theirs = _keyed(ours, key), _keyed(theirs, key)
    theirs = perturbed(reference, theirs, [pairs[c] for c in pairs if pairs[c] in theirs])
    common = ours.index.intersection(theirs.index)
    found: dict = {"reference": reference, "key": key, "rtol": rtol, "atol": atol,
                   "compared_rows": len(common),
                   "missing_rows": len(ours.index.difference(theirs.index)),
                   "extra_rows": len(theirs.index.difference(ours.index)),
                   "columns_compared": len(pairs), "columns": {},
                   "missing_columns": sorted(c for c, t in pairs.items()
                                             if c not in ours or t not in theirs)}
    ours, theirs = ours.reindex(common), theirs.reindex(common)
    for name, their_name in pairs.items():
        if name in found["missing_columns"]:
            continue
        a, b = ours[name], theirs[their_name]
        differ = np.flatnonzero(~_same(a, b, rtol, atol))
        if len(differ):
            at = differ[0]
            example = {key: str(common[at]), "tideline": _shown(a.iloc[at]),
                       reference: _shown(b.iloc[at])}
            found["columns"][name] = {"rows": len(differ), "their_column": their_name,
                                      "example": example}
    found["agrees"] = not (found["columns"] or found["missing_rows"] or found["extra_rows"]
                           or found["missing_columns"])
    return found


def agreement_text(check: dict) -> str:
    """One line: what agrees, or what does not."""
    parts = []
    if check["missing_rows"] or check["extra_rows"]:
        parts.append(f"{check['missing_rows']:,} rows missing, {check['extra_rows']:,} extra")
    if check["missing_columns"]:
        parts.append(f"columns absent: {', '.join(check['missing_columns'])}")
    if check["columns"]:
        worst = max(check["columns"].values(), key=lambda c: c["rows"])
        parts.append(f"{len(check['columns'])} of {check['columns_compared']} columns differ "
                     f"(up to {worst['rows']:,} rows)")
    if not parts:
        parts.append(f"all {check['columns_compared']} columns agree on "
                     f"{check['compared_rows']:,} rows")
    return "; ".join(parts)


def disagreements(checks: dict[str, dict]) -> list[str]:
    """A line per disagreement beyond tolerance in `checks` (by reference), naming the
    reference, the column and an example."""
    lines = []
    for check in checks.values():
        name, tolerance = check["reference"], f"rtol {check['rtol']:g}, atol {check['atol']:g}"
        if check["missing_rows"] or check["extra_rows"]:
            lines.append(f"{name}: {check['missing_rows']:,} of tideline's rows missing, "
                         f"{check['extra_rows']:,} rows tideline has not (key "
                         f"{check['key']})")
        for column in check["missing_columns"]:
            lines.append(f"{name}: column {column} absent from one side")
        for column, found in check["columns"].items():
            lines.append(f"{name}: column {column} differs on {found['rows']:,} rows beyond "
                         f"{tolerance}, e.g. {found['example']}")
    return lines


def verdict(checks: dict[str, dict]) -> int:
    """Log every disagreement in `checks` to standard error and return the exit status: 1 if
    any reference disagrees beyond its tolerance, else 0. Call it after printing and writing
    the results."""
    lines = disagreements(checks)
    for line in lines:
        print(f"DISAGREEMENT {line}", file=sys.stderr)
    if lines:
        print(f"{len(lines)} disagreement(s) with tideline: failing", file=sys.stderr)
    return 1 if lines else 0


# -- results ---------------------------------------------------------------------------------


def results_path(name: str, smoke: bool) -> Path:
    """Where a benchmark's results go: `results/<name>.json` at full size (committed),
    `out/<name>_smoke.json` for a smoke run."""
    return SMOKE_RESULTS / f"{name}_smoke.json" if smoke else RESULTS / f"{name}.json"



def machine() -> dict:
    """What a result depends on besides the code: CPUs, memory, Python, package versions."""
    packages = {}
    for name in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            packages[name] = metadata.version(name)
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {"cpus": os.cpu_count(), "cores_usable": len(os.sched_getaffinity(0)),
            "load_average": os.getloadavg(), "memory_bytes": memory,
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
