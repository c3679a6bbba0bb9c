"""SIGKILL at every failpoint (`tideline.core.faults`): the `tideline` CLI runs one stage of the
demo in a subprocess with `TIDELINE_KILL_AT` set, starting from a copy of an uninterrupted reference
run's data directory as it stood before that stage. After the kill main is exactly where it was
and nothing half-done is visible; the same run id re-run without the fault publishes the same
content as the reference."""
from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import signal
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from tideline.core.faults import KILL_AT
from tideline.demo.model import CHURN_MODEL
from tideline.demo.views import CHURN_VIEWS
from tideline.features.registry import Registry
from tideline.features.store import FeatureStore
from tideline.lake.base import MAIN
from tideline.lake.local import LocalLake
from tideline.lake.publish import run_branch_name
from tideline.models.labels import label_examples, labelable_dates, load_activity
from tideline.models.registry import ModelRegistry
from tideline.models.training import train_model

from tests.reliability.conftest import Ledger
from tests.waiting import CLI, ROOT

RUN_ID = "t1"
STAGES = {
    "ingest": ["ingest", "--run-id", RUN_ID],
    "features": ["features", "build", "--run-id", RUN_ID],
    "online": ["features", "materialize"],
}
"""The stages in pipeline order; each starts from the data directory the one before left."""
VOLATILE = ("/_runs/", "reports/")
"""Objects that record when and how long a run took (ingestion and build records, quality
reports): they differ between any two runs, so content is compared without them."""

pytestmark = pytest.mark.slow


def tideline(data_dir: Path, stage: str, kill_at: str | None = None
             ) -> subprocess.CompletedProcess[str]:
    """One stage of the demo pipeline, as a user runs it, in its own process."""
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "TIDELINE_DATA_DIR": str(data_dir),
           "PREFECT_API_URL": PREFECT_API_URL.value()}
    env.pop(KILL_AT, None)
    if kill_at:
        env[KILL_AT] = kill_at
    return subprocess.run([*CLI, *STAGES[stage]], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)


def published_content(data_dir: Path) -> dict[str, object]:
    """Main's objects and their checksums, less the run records that carry timings; checkpoints
    by their positions (a file source's checkpoint names the data directory's files by absolute
    path and modification time, which differ between two directories holding the same data)."""
    lake = LocalLake(data_dir / "lake")
    return {o.path: position(json.loads(lake.get(MAIN, o.path)))
            if o.path.startswith("checkpoints/") else o.checksum
            for o in lake.list(MAIN) if not any(v in o.path for v in VOLATILE)}


def position(checkpoint: object) -> object:
    """A checkpoint with files named without their directory and no modification times."""
    if isinstance(checkpoint, dict):
        return {position(k): position(v) for k, v in checkpoint.items() if k != "mtime"}
    if isinstance(checkpoint, list):
        return [position(v) for v in checkpoint]
    if isinstance(checkpoint, str) and Path(checkpoint).is_absolute():
        return Path(checkpoint).name
    return checkpoint


def published_rows(data_dir: Path) -> int:
    """Rows in every Parquet table on main: raw, clean, quarantined and feature tables."""
    lake = LocalLake(data_dir / "lake")
    return sum(pq.ParquetFile(io.BytesIO(lake.get(MAIN, o.path))).metadata.num_rows
               for o in lake.list(MAIN) if o.path.endswith(".parquet"))


def served_rows(data_dir: Path) -> dict[str, list[tuple]]:
    """What the SQLite online store serves: every view's rows, by entity."""
    if not (data_dir / "online.db").exists():
        return {}
    with sqlite3.connect(data_dir / "online.db") as connection:
        views = [name for (name,) in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'view' ORDER BY name")]
        return {view: connection.execute(f'SELECT * FROM "{view}" ORDER BY 1').fetchall()
                for view in views}


@dataclass(frozen=True)
class Reference:
    """An uninterrupted run: the data directory before each stage, and after the last."""

    root: Path

    def before(self, stage: str) -> Path:
        return self.root / f"before-{stage}"

    @property
    def done(self) -> Path:
        return self.root / "done"

    def after(self, stage: str) -> Path:
        later = list(STAGES)[list(STAGES).index(stage) + 1:]
        return self.before(later[0]) if later else self.done

    def copy_before(self, stage: str, into: Path) -> Path:
        if self.before(stage).exists():
            shutil.copytree(self.before(stage), into)
        return into


@pytest.fixture(scope="module")
def reference(prefect_server: None, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """The demo run once without faults, stage by stage, snapshotting the data directory."""
    ref = Reference(tmp_path_factory.mktemp("reference"))
    data_dir = ref.root / "data"
    for stage in STAGES:
        if data_dir.exists():
            shutil.copytree(data_dir, ref.before(stage))
        result = tideline(data_dir, stage)
        assert result.returncode == 0, result.stderr[-3000:]
    shutil.copytree(data_dir, ref.done)
    return ref


@dataclass(frozen=True)
class Point:
    name: str
    stage: str
    promise: str


POINTS = [
    Point("landing", "ingest", "raw files half landed on the run branch never reach main"),
    Point("lake-commit", "ingest", "a merge commit stored but not referenced leaves main"),
    Point("pre-merge", "ingest", "a run validated but not merged leaves main as it was"),
    Point("online-write", "online", "the online store serves the old rows, none of the new"),
]


@pytest.mark.parametrize("point", POINTS, ids=[p.name for p in POINTS])
def test_kill_publishes_nothing_half_done_and_rerun_matches(
    point: Point, reference: Reference, tmp_path: Path, ledger: Ledger
) -> None:
    """Killed with SIGKILL at the point, the stage leaves main at the same commit and the
    online store as it was; re-running the same run id publishes exactly the reference's
    content, with every row accounted for."""
    data_dir = reference.copy_before(point.stage, tmp_path / "data")
    before = LocalLake(data_dir / "lake").resolve(MAIN) if data_dir.exists() else None
    served_before = served_rows(data_dir)

    killed = tideline(data_dir, point.stage, kill_at=point.name)
    ledger.fault()
    lake = LocalLake(data_dir / "lake")
    # the first run ever leaves main with only the repository's first commit
    main_after_kill = lake.resolve(MAIN) if before else (lake.list(MAIN), len(lake.log(MAIN)))
    served_after_kill = served_rows(data_dir)

    rerun = tideline(data_dir, point.stage)
    expected = reference.after(point.stage)
    lost = ledger.reconcile(f"kill at {point.name}, re-run", published_rows(expected),
                            published_rows(data_dir))
    assert killed.returncode == -signal.SIGKILL, (point.promise, killed.stderr[-3000:])
    assert main_after_kill == (before if before else ([], 1)), point.promise
    assert served_after_kill == served_before, point.promise
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert lost == 0
    assert published_content(data_dir) == published_content(expected)
    assert served_rows(data_dir) == served_rows(expected)
    assert run_branch_name(RUN_ID) not in LocalLake(data_dir / "lake").branches()


def test_a_ray_worker_killed_mid_write_costs_a_retry_not_data(
    reference: Reference, tmp_path: Path, ledger: Ledger
) -> None:
    """A Ray worker killed after writing part of a view (`feature-write`, once): Ray retries
    the partition, and the build publishes exactly the reference's feature tables, with no
    part left over from the dead attempt."""
    data_dir = reference.copy_before("features", tmp_path / "data")
    marker = tmp_path / "killed-once"
    result = tideline(data_dir, "features", kill_at=f"feature-write@{marker}")
    ledger.fault()
    lost = ledger.reconcile("Ray worker killed mid-write",
                            published_rows(reference.after("features")),
                            published_rows(data_dir))
    assert marker.exists()  # a worker did die at the point
    assert result.returncode == 0, result.stderr[-3000:]
    assert lost == 0
    assert published_content(data_dir) == published_content(reference.after("features"))


REGISTER = """
import pickle, sys
from pathlib import Path
from tideline.lake.local import LocalLake
from tideline.demo.model import CHURN_MODEL
from tideline.models.registry import ModelRegistry, register_model

root = Path(sys.argv[1])
training, trained = pickle.loads((root / "trained.pickle").read_bytes())
register_model(ModelRegistry(f"sqlite:///{root / 'models.db'}"), LocalLake(root / "lake"),
               CHURN_MODEL, trained, training)
"""
"""Register the pickled model of `<root>/trained.pickle` into `<root>`'s lake and registry
(the last step of `tideline train`, without the minutes of training before it)."""


@pytest.fixture(scope="module")
def trained_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small demo lake with the churn features and a model trained on them, not registered."""
    from tests.features.built import build_features
    from tests.features.conftest import write_clean
    from tests.models.conftest import demo_tables

    root = tmp_path_factory.mktemp("trained")
    lake = LocalLake(root / "lake")
    write_clean(lake, demo_tables(customers=600))
    activity = load_activity(lake, MAIN, CHURN_MODEL.label)
    dates = labelable_dates(activity, CHURN_MODEL.label, CHURN_MODEL.as_of_dates,
                            CHURN_MODEL.every_days)
    build_features(lake, dates, partitions=1)
    store = FeatureStore(lake, Registry(f"sqlite:///{root / 'registry.db'}"), CHURN_VIEWS)
    training = store.get_training_set(label_examples(activity, CHURN_MODEL.label, dates),
                                      CHURN_MODEL.features, timestamp_column="as_of")
    trained = train_model(training.frame, training.features, CHURN_MODEL)
    (root / "trained.pickle").write_bytes(pickle.dumps((training, trained)))
    return root


def register(root: Path, kill_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ}
    env.pop(KILL_AT, None)
    if kill_at:
        env[KILL_AT] = kill_at
    return subprocess.run([sys.executable, "-c", REGISTER, str(root)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_kill_while_registering_leaves_no_half_registered_model(
    trained_root: Path, tmp_path: Path, ledger: Ledger
) -> None:
    """Killed after the model's files are written but before they are published and recorded
    (`model-register`): main, the tags and the registry are as before, no version number is
    used up, and the re-run registers v1 with the same artifacts as an uninterrupted one."""
    reference, data = tmp_path / "reference", tmp_path / "data"
    shutil.copytree(trained_root, reference)
    shutil.copytree(trained_root, data)
    done = register(reference)
    assert done.returncode == 0, done.stderr[-3000:]
    lake = LocalLake(data / "lake")
    before, tags = lake.resolve(MAIN), lake.tags()

    killed = register(data, kill_at="model-register")
    ledger.fault()
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert (lake.resolve(MAIN), lake.tags()) == (before, tags)
    assert not lake.list(MAIN, "models/")
    assert ModelRegistry(f"sqlite:///{data / 'models.db'}").models() == []

    rerun = register(data)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    [record] = ModelRegistry(f"sqlite:///{data / 'models.db'}").models()
    assert (record.ref, record.stage) == ("churn:v1", "candidate")
    assert lake.tags()["model-churn-v1"] == record.artifact_commit
    assert published_content(data) == published_content(reference)
    assert len(lake.list(MAIN, "models/churn/v1/")) == 6
