"""The lease that holds a run id on a lakeFS-like store for one live process at a time.

A crashed holder cannot release its hold, so the hold expires unless renewed; the backend refuses
a run's writes once its holder lost the lease, since another process may be running it by then.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any, Protocol

from tideline.core.errors import (
    BranchExists,
    ConfigError,
    LakeError,
    ObjectNotFound,
    RunInProgress,
)
from tideline.lake.base import MAIN, Commit, ObjectInfo

log = logging.getLogger(__name__)

HOLDS_BRANCH = "_tideline-holds"
"""The branch run holds live on (`RunHold`): created from main on first use, committed when a
hold is released (so deletions do not pile up as staged tombstones), never merged, so a hold
never reaches main or a run's branch."""

HOLDS_PREFIX = "runs/"

RUN_HOLD_TTL = 60.0
"""Seconds a run hold lasts without renewal; the holder renews it every third of that."""


class LeaseStore(Protocol):
    """What a `RunHold` needs of its repository (`LakeFSLake` has it): create-only uploads, and
    `_discard`, a delete that does not mind a missing path."""

    repository: str

    def branches(self) -> dict[str, str]: ...
    def create_branch(self, name: str, source: str = MAIN) -> str: ...
    def list(self, ref: str, prefix: str = "") -> list[ObjectInfo]: ...
    def get(self, ref: str, path: str) -> bytes: ...
    def create_object(
        self, branch: str, path: str, data: bytes, *, timeout: float | None = None
    ) -> bool: ...
    def _discard(self, branch: str, path: str) -> None: ...
    def commit(
        self, branch: str, message: str, metadata: dict[str, str] | None = None
    ) -> Commit: ...


class RunHold:
    """A lease on a run id in a lakeFS repository: one process at a time holds it.

    The lease is a sequence of small JSON objects `runs/<run id>/<generation>.json` on
    `HOLDS_BRANCH`, each saying who holds the run (host/pid/uuid) and until when. Only the
    highest generation counts. Taking, renewing and releasing a hold each create the next
    generation with `If-None-Match: *`, which lakeFS checks and writes atomically, so of two
    processes acting on the same generation exactly one succeeds and the other gets 412:

    - take: free when there is no lease, or the latest is released or past its expiry (its
      holder died or stalled); otherwise `RunInProgress`;
    - renew (every third of the TTL, in a thread): the next generation with a new expiry; a
      412 there means another process took over the expired lease, and the hold is lost;
    - release: the next generation, marked released. Older generations are then deleted and
      the branch committed; the latest stays (a few hundred bytes per run id), as the counter
      that keeps a slow taker from creating a generation that is no longer the latest.

    Expiry is the holder's wall clock plus the TTL, compared with the taker's clock: hosts
    sharing a repository need clocks that agree to well within the TTL.
    """

    def __init__(self, lake: LeaseStore, run_id: str, ttl: float) -> None:
        if ttl <= 0:
            raise ConfigError(f"run hold TTL must be positive seconds, not {ttl!r}")
        self.lake, self.run_id, self.ttl = lake, run_id, ttl
        self.owner = f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex}"
        self.prefix = f"{HOLDS_PREFIX}{run_id}/"
        self.generation = -1
        self.expires_at = 0.0
        self.lost = ""
        """Why the hold was lost while the run went on (empty while it holds)."""
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one lease write at a time: heartbeat, renew, release
        self._beating: threading.Thread | None = None

    def _path(self, generation: int) -> str:
        return f"{self.prefix}{generation:012d}.json"

    def _latest(self) -> tuple[int, dict[str, Any]] | None:
        """The highest generation and its record; ObjectNotFound if it went away meanwhile."""
        leases = self.lake.list(HOLDS_BRANCH, self.prefix)
        if not leases:
            return None
        path = leases[-1].path
        try:
            generation = int(path.rsplit("/", 1)[1].removesuffix(".json"))
            record = json.loads(self.lake.get(HOLDS_BRANCH, path))
            float(record["expires_at"])
        except (ValueError, KeyError, TypeError):
            raise LakeError(
                f"run hold {path!r} on branch {HOLDS_BRANCH!r} of repository "
                f"{self.lake.repository!r} is not a tideline lease; delete it"
            ) from None
        return generation, record

    def _create(self, generation: int, *, released: bool = False) -> bool:
        """Create lease `generation` for this holder; false if it exists (412) and is not ours
        (it is ours when an earlier attempt was written but its answer lost)."""
        expires_at = 0.0 if released else time.time() + self.ttl
        record = {"run_id": self.run_id, "owner": self.owner, "generation": generation,
                  "expires_at": expires_at, "ttl": self.ttl, "released": released}
        path = self._path(generation)
        created = self.lake.create_object(
            HOLDS_BRANCH, path, json.dumps(record).encode(), timeout=max(self.ttl / 3, 1.0)
        )
        if not created:
            try:
                stored = json.loads(self.lake.get(HOLDS_BRANCH, path))
            except (ObjectNotFound, ValueError):
                stored = {}
            if stored.get("owner") == self.owner and stored.get("released") == released:
                created, expires_at = True, float(stored["expires_at"])
        if created:
            self.generation, self.expires_at = generation, expires_at
        return created

    def _forget_before(self, generation: int, *, every: bool = True) -> None:
        """Delete the generations below `generation` (nobody creates them again), or with
        `every` false only the one just below: best effort, a leftover is harmless."""
        try:
            if every:
                paths = [lease.path for lease in self.lake.list(HOLDS_BRANCH, self.prefix)
                         if lease.path < self._path(generation)]
            else:
                paths = [self._path(generation - 1)] if generation > 0 else []
            for path in paths:
                self.lake._discard(HOLDS_BRANCH, path)
        except LakeError as exc:
            log.debug("run %s: old leases not deleted (%s)", self.run_id, exc)

    def _ensure_branch(self) -> None:
        if HOLDS_BRANCH not in self.lake.branches():
            with suppress(BranchExists):  # another process created it first
                self.lake.create_branch(HOLDS_BRANCH, MAIN)

    def held(self) -> bool:
        """Whether a live holder has the run now (its latest lease is unreleased and unexpired);
        reads only, so a dry run can ask."""
        if HOLDS_BRANCH not in self.lake.branches():
            return False
        for _ in range(20):  # a renewal deleted the generation being read: look again
            try:
                latest = self._latest()
            except ObjectNotFound:
                continue
            if latest is None:
                return False
            record = latest[1]
            return not record.get("released") and float(record["expires_at"]) > time.time()
        return True

    def take(self) -> None:
        self._ensure_branch()
        for _ in range(20):  # another taker or a renewal moved the lease: look again
            try:
                latest = self._latest()
            except ObjectNotFound:
                continue
            if latest is None:
                generation = 0
            else:
                generation, record = latest
                if not record.get("released") and float(record["expires_at"]) > time.time():
                    log.info("run %s is held by %s until %s", self.run_id, record.get("owner"),
                             datetime.fromtimestamp(float(record["expires_at"]), UTC))
                    raise RunInProgress(self.run_id)
                if not record.get("released"):
                    log.warning("run %s: the hold of %s expired %.1f s ago; taking it over",
                                self.run_id, record.get("owner"),
                                time.time() - float(record["expires_at"]))
                generation += 1
            if self._create(generation):
                self._forget_before(generation)
                self._beating = threading.Thread(
                    target=self._beat, name=f"run-hold-{self.run_id}", daemon=True)
                self._beating.start()
                return
        raise RunInProgress(self.run_id)

    def renew(self) -> None:
        """Extend the lease by creating its next generation (every third of the TTL, and
        before a merge or once it has lapsed); set `lost` if another process took it over, or
        if lakeFS could not be reached before it expired."""
        with self._lock:
            if self.lost:
                return
            try:
                renewed = self._create(self.generation + 1)
            except LakeError as exc:
                if time.time() >= self.expires_at:
                    self.lost = f"not renewed before it expired: {exc}"
                    log.error("run %s: hold lost, %s", self.run_id, self.lost)
                else:
                    log.warning("run %s: hold not renewed (%s); trying again", self.run_id, exc)
                return
            if not renewed:
                self.lost = "it expired and another process took it over"
                log.error("run %s: hold lost, %s", self.run_id, self.lost)
                return
        self._forget_before(self.generation, every=False)

    def check(self, what: str, *, renew: bool = False) -> None:
        """Refuse `what` if this hold is lost: a run that stalled past its lease may find
        another process running it on the same branch. The lease is renewed first when it has
        lapsed (or always, with `renew`: before a merge)."""
        if renew or self.lost or time.time() >= self.expires_at:
            self.renew()
        if self.lost:
            raise LakeError(
                f"{what} refused: run {self.run_id!r} lost its hold ({self.lost}), so "
                "another process may be running it; re-run it"
            )

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl / 3) and not self.lost:
            self.renew()

    def release(self) -> None:
        self._stop.set()
        if self._beating is not None:
            self._beating.join()
        with self._lock:
            if self.lost:
                return
            try:
                released = self._create(self.generation + 1, released=True)
            except LakeError as exc:  # never mask the run's own outcome; the lease expires
                log.warning("run %s: hold not released (%s); it expires within %.0f s",
                            self.run_id, exc, self.ttl)
                return
        if released:
            self._forget_before(self.generation)
            self._settle()

    def _settle(self) -> None:
        """Commit the holds branch after a release: the generations deleted meanwhile would
        otherwise stay as staged tombstones, which every later listing of leases walks over.
        Best effort, as `_forget_before`: the next release commits what this one leaves."""
        try:
            self.lake.commit(HOLDS_BRANCH, f"Release run {self.run_id}",
                             {"run_id": self.run_id})
        except LakeError as exc:
            log.debug("run %s: holds branch not committed (%s)", self.run_id, exc)
