"""Failpoints: named places where the reliability suite kills the process with SIGKILL, to prove
that a crash there loses nothing and publishes nothing half-done. Inert unless the
`TIDELINE_KILL_AT` variable names the point (read at each call: a test sets it for one
subprocess or one Ray worker, never for a user's run).

The points (`tests/reliability/test_kill.py` kills at each and checks what survives):

- `landing` (ingestion/landing.py): a source's day partitions are on the run branch, its
  rejects, checkpoint and ingestion record are not.
- `lake-commit` (lake/local.py): a merge commit's tree and record are stored, the destination
  branch (main, in a publish) has not moved to it.
- `pre-merge` (lake/publish.py): the run passed its checks and is committed on its branch, not
  yet merged into main.
- `feature-write` (features/materialize.py, in a Ray worker): one view's table of a partition is
  written, the partition's other views are not.
- `model-register` (models/registry.py): the model's files are on its branch, neither merged,
  tagged nor in the registry.
- `online-write` (features/online/sqlite.py): a view's rows are inserted in the online store's
  open transaction, its state and the serving view are not yet switched.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path

KILL_AT = "TIDELINE_KILL_AT"
"""`point` kills every time the point is reached; `point@/path/marker` only the first time
(the marker file records that it happened, so a retried task or a re-run goes through)."""


def failpoint(name: str) -> None:
    """Die here, at once and without cleanup, if `TIDELINE_KILL_AT` names this point."""
    spec = os.environ.get(KILL_AT)
    if not spec:
        return
    point, _, marker = spec.partition("@")
    if point != name:
        return
    if marker:
        try:
            Path(marker).open("x").close()
        except FileExistsError:
            return
    os.kill(os.getpid(), signal.SIGKILL)
