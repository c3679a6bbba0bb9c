"""The model registry: every trained model version with its stage (candidate, champion,
archived), metrics, parameters and lineage (training set tag and commit, feature view
versions, code version) in the metadata database, and its artifacts in the lake:

    models/<name>/v<version>/model.txt        the LightGBM booster
    models/<name>/v<version>/baseline.joblib  the logistic-regression baseline
    models/<name>/v<version>/card.json        everything needed to score: columns, categories,
                                              threshold, metrics, lineage
    models/<name>/v<version>/*.png|csv        plots and feature importance

published through a branch of their own and tagged `model-<name>-v<version>`. One champion per
name at most; the promotion history (with each comparison) is kept in `model_events`, and batch
scores in `scores` (one row per model, as-of date and customer) for analysts.
"""
from __future__ import annotations

import io
import json
import logging
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime
from functools import cached_property
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import joblib
import lightgbm as lgb
import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from tideline.core.database import database_url, open_database
from tideline.core.errors import LakeError, ModelError, RunInProgress
from tideline.core.faults import failpoint
from tideline.features.store import TrainingSet
from tideline.lake.base import Lake
from tideline.lake.publish import RunBranch, find_published, publish, run_branch_name
from tideline.models.evaluation import save_plots
from tideline.models.experiment import Experiment
from tideline.models.explain import path_tables
from tideline.models.spec import ModelSpec
from tideline.models.training import FeatureMatrix, TrainedModel

log = logging.getLogger(__name__)

SCHEMA = "model_registry_schema"
STAGES = ("candidate", "champion", "archived")
metadata = sa.MetaData()
models_table = sa.Table(
    "models", metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("stage", sa.String(16), nullable=False),
    sa.Column("spec_version", sa.String(32), nullable=False),
    sa.Column("owner", sa.String(320), nullable=False),
    sa.Column("roc_auc", sa.Float, nullable=False),
    sa.Column("pr_auc", sa.Float, nullable=False),
    sa.Column("metrics", sa.Text, nullable=False),
    sa.Column("baseline_metrics", sa.Text, nullable=False),
    sa.Column("params", sa.Text, nullable=False),
    sa.Column("threshold", sa.Float, nullable=False),
    sa.Column("features", sa.Text, nullable=False),
    sa.Column("feature_views", sa.Text, nullable=False),
    sa.Column("training_set", sa.String(255), nullable=False),
    sa.Column("training_set_tag", sa.String(255), nullable=False),
    sa.Column("training_set_commit", sa.String(64), nullable=False),
    sa.Column("feature_commit", sa.String(64), nullable=False),
    sa.Column("code_version", sa.String(255), nullable=False),
    sa.Column("artifact_path", sa.Text, nullable=False),
    sa.Column("artifact_commit", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
events_table = sa.Table(
    "model_events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("event", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)


scores_table = sa.Table(
    "scores", metadata,
    sa.Column("model", sa.String(255), primary_key=True),
    sa.Column("as_of", sa.Date, primary_key=True),
    sa.Column("entity_id", sa.String(255), primary_key=True),
    sa.Column("model_version", sa.Integer, nullable=False),
    sa.Column("probability", sa.Float, nullable=False),
    sa.Column("risk", sa.String(16), nullable=False),
    sa.Column("reasons", sa.Text, nullable=False),
    sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
)


experiments_table = sa.Table(
    "experiments", metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("model", sa.String(255), nullable=False),
    sa.Column("champion", sa.Integer, nullable=False),
    sa.Column("challenger", sa.Integer, nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("share", sa.Float, nullable=False),
    sa.Column("metric", sa.String(64), nullable=False),
    sa.Column("baseline", sa.Float, nullable=False),
    sa.Column("min_effect", sa.Float, nullable=False),
    sa.Column("alpha", sa.Float, nullable=False),
    sa.Column("power", sa.Float, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("outcome", sa.Text, nullable=False),
)


predictions_table = sa.Table(
    "experiment_predictions", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("experiment", sa.String(255), nullable=False, index=True),
    sa.Column("entity_id", sa.String(255), nullable=False),
    sa.Column("arm", sa.String(16), nullable=False),
    sa.Column("probability_champion", sa.Float, nullable=False),
    sa.Column("probability_challenger", sa.Float, nullable=False),
    sa.Column("risk_champion", sa.String(16), nullable=False),
    sa.Column("risk_challenger", sa.String(16), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)


def _create_v1(connection: Connection) -> None:
    metadata.create_all(connection, tables=[models_table, events_table])


def _add_scores(connection: Connection) -> None:
    metadata.create_all(connection, tables=[scores_table])


def _add_experiments(connection: Connection) -> None:
    metadata.create_all(connection, tables=[experiments_table, predictions_table])


MIGRATIONS = (_create_v1, _add_scores, _add_experiments)


def code_version() -> str:
    """The tideline release, and the git commit when running from a checkout."""
    text = f"tideline {package_version('tideline')}"
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True,
                              text=True, timeout=5, cwd=Path(__file__).parent, check=True)
        return f"{text} @ {head.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        return text


@dataclass(frozen=True)
class ModelRecord:
    name: str
    version: int
    stage: str
    spec_version: str
    owner: str
    roc_auc: float
    pr_auc: float
    metrics: dict[str, Any]
    baseline_metrics: dict[str, Any]
    params: dict[str, Any]
    threshold: float
    features: list[str]
    feature_views: dict[str, str]
    training_set: str
    training_set_tag: str
    training_set_commit: str
    feature_commit: str
    code_version: str
    artifact_path: str
    artifact_commit: str
    created_at: datetime

    @property
    def ref(self) -> str:
        return f"{self.name}:v{self.version}"


@dataclass
class LoadedModel:
    """A registered model ready to score: the booster and how to build its input."""

    record: ModelRecord
    booster: lgb.Booster
    matrix: FeatureMatrix

    def predict(self, frame: Any) -> Any:
        return self.booster.predict(self.matrix.transform(frame))

    @cached_property
    def paths(self) -> tuple[list[np.ndarray], float]:
        """The booster's decision-path tables (`explain.path_tables`), built once per model."""
        return path_tables(self.booster)


_JSON = ("metrics", "baseline_metrics", "params", "features", "feature_views")


class ModelRegistry:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = open_database(url, SCHEMA, MIGRATIONS)

    def close(self) -> None:
        self.engine.dispose()

    def _records(self, where: sa.ColumnElement[bool] | None = None) -> list[ModelRecord]:
        query = sa.select(models_table).order_by(models_table.c.name, models_table.c.version)
        with self.engine.connect() as connection:
            rows = connection.execute(query if where is None else query.where(where)).mappings()
            return [ModelRecord(**{**row, **{k: json.loads(row[k]) for k in _JSON},
                                   "created_at": _utc(row["created_at"])})
                    for row in rows]

    def models(self, name: str | None = None) -> list[ModelRecord]:
        return self._records(None if name is None else models_table.c.name == name)

    def get(self, name: str, version: int | None = None) -> ModelRecord:
        """A version, or with none the champion (else the newest version)."""
        records = self.models(name)
        if not records:
            known = sorted({r.name for r in self.models()})
            raise ModelError(f"no model named {name!r} in the registry (models: "
                             f"{', '.join(known) or 'none yet; train one with `tideline train`'})")
        if version is None:
            champions = [r for r in records if r.stage == "champion"]
            return champions[0] if champions else records[-1]
        for record in records:
            if record.version == version:
                return record
        raise ModelError(f"model {name!r} has no version {version} (versions: "
                         f"{', '.join(str(r.version) for r in records)})")

    def trained_on(self, name: str, training_set: str, spec_version: str) -> ModelRecord | None:
        """The version trained from this training set with this spec, if there is one (a
        re-run of a training finds it instead of registering a twin)."""
        return next((r for r in self.models(name) if r.training_set == training_set
                     and r.spec_version == spec_version), None)

    def champion(self, name: str) -> ModelRecord | None:
        return next((r for r in self.models(name) if r.stage == "champion"), None)

    def events(self, name: str) -> list[dict[str, Any]]:
        query = sa.select(events_table).where(events_table.c.name == name).order_by(
            events_table.c.id)
        with self.engine.connect() as connection:
            return [{**row, "detail": json.loads(row["detail"])}
                    for row in connection.execute(query).mappings()]

    def next_version(self, name: str, lake: Lake) -> int:
        """One past every version the registry or the lake's tags know (a tag without a row is
        left by a run that died between publishing and registering; its number is skipped)."""
        known = [r.version for r in self.models(name)]
        prefix = f"model-{name}-v"  # `_run_id` without the number
        known += [int(t[len(prefix):]) for t in lake.tags() if t.startswith(prefix)
                  and t[len(prefix):].isdigit()]
        return max(known, default=0) + 1

    def version_taken(self, name: str, version: int, lake: Lake) -> bool:
        """Whether `version` of `name` is registered, tagged or published already. Asked while
        holding the version's run id, after which nobody else can publish it."""
        if any(r.version == version for r in self.models(name)):
            return True
        run_id = _run_id(name, version)
        return run_id in lake.tags() or find_published(lake, run_id) is not None

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        """A write transaction that takes the database's write lock at its start: SQLite's
        `BEGIN IMMEDIATE` (a deferred transaction that reads and then writes fails with
        `database is locked` when another process writes meanwhile, without waiting)."""
        with self.engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            yield connection
            connection.commit()

    def add(self, record: ModelRecord, detail: dict[str, Any]) -> None:
        values = {**asdict(record), **{k: json.dumps(getattr(record, k), sort_keys=True)
                                       for k in _JSON}}
        with self._writing() as connection:
            connection.execute(sa.insert(models_table).values(**values))
            self._event(connection, record, "registered", detail)

    def _event(self, connection: Connection, record: ModelRecord, event: str,
               detail: dict[str, Any]) -> None:
        connection.execute(sa.insert(events_table).values(
            name=record.name, version=record.version, event=event,
            detail=json.dumps(detail, sort_keys=True, default=str), at=datetime.now(UTC)))

    def set_champion(self, record: ModelRecord, detail: dict[str, Any]) -> None:
        """Make `record` the champion and archive the one before, in one transaction."""
        t = models_table
        with self._writing() as connection:
            # lock the name's versions first (PostgreSQL; SQLite's lock is the whole database):
            # two promotions at once would otherwise both archive the same champion and leave
            # two champions
            connection.execute(sa.select(t.c.version).where(t.c.name == record.name)
                               .with_for_update()).all()
            for old in connection.execute(sa.select(t.c.version).where(
                    (t.c.name == record.name) & (t.c.stage == "champion"))).scalars().all():
                connection.execute(sa.update(t).where((t.c.name == record.name)
                                                      & (t.c.version == old))
                                   .values(stage="archived"))
                connection.execute(sa.insert(events_table).values(
                    name=record.name, version=old, event="archived",
                    detail=json.dumps({"replaced_by": record.version}), at=datetime.now(UTC)))
            connection.execute(sa.update(t).where((t.c.name == record.name)
                                                  & (t.c.version == record.version))
                               .values(stage="champion"))
            self._event(connection, record, "promoted", detail)

    def retire(self, record: ModelRecord, detail: dict[str, Any]) -> None:
        """Archive a version that is not the champion (a challenger that lost)."""
        t = models_table
        with self._writing() as connection:
            changed = connection.execute(sa.update(t).where(
                (t.c.name == record.name) & (t.c.version == record.version)
                & (t.c.stage != "champion")).values(stage="archived")).rowcount
            if not changed:
                raise ModelError(f"{record.ref} is the champion: promote another version first")
            self._event(connection, record, "retired", detail)

    def note(self, record: ModelRecord, event: str, detail: dict[str, Any]) -> None:
        with self.engine.begin() as connection:
            self._event(connection, record, event, detail)


    def save_scores(self, record: ModelRecord, day: date, scores: pd.DataFrame,
                    key: str) -> None:
        """The scores of `day` for analysts, replacing an earlier scoring of that day; each
        row's `model_version` when the scores have one (an experiment's split), else the
        record's."""
        t = scores_table
        now = datetime.now(UTC)
        versions = (scores["model_version"] if "model_version" in scores
                    else [record.version] * len(scores))
        rows = [{"model": record.name, "as_of": day, "entity_id": str(entity),
                 "model_version": int(version), "probability": float(p), "risk": risk,
                 "reasons": reasons, "scored_at": now}
                for entity, version, p, risk, reasons in zip(
                    scores[key], versions, scores["probability"], scores["risk"],
                    scores["reasons"], strict=True)]
        with self.engine.begin() as connection:
            connection.execute(sa.delete(t).where((t.c.model == record.name)
                                                  & (t.c.as_of == day)))
            if rows:
                connection.execute(sa.insert(t), rows)

    # -- experiments ---------------------------------------------------------------------------

    def experiments(self, model: str | None = None) -> list[Experiment]:
        t = experiments_table
        query = sa.select(t).order_by(t.c.started_at)
        with self.engine.connect() as connection:
            rows = connection.execute(query if model is None else query.where(
                t.c.model == model)).mappings()
            return [Experiment(**{**row, "outcome": json.loads(row["outcome"]),
                                  "started_at": _utc(row["started_at"])}) for row in rows]

    def experiment(self, name: str) -> Experiment:
        for found in self.experiments():
            if found.name == name:
                return found
        raise ModelError(f"no experiment named {name!r} (experiments: "
                         f"{', '.join(e.name for e in self.experiments()) or 'none'})")

    def running_experiment(self, model: str) -> Experiment | None:
        return next((e for e in self.experiments(model) if e.status == "running"), None)

    def start_experiment(self, experiment: Experiment) -> Experiment:
        """Record a new experiment: its champion must be the model's champion now, its
        challenger another registered version, and no other experiment of the model running."""
        champion = self.champion(experiment.model)
        challenger = self.get(experiment.model, experiment.challenger)
        if champion is None or champion.version != experiment.champion:
            raise ModelError(f"experiment {experiment.name!r}: {experiment.model}:v"
                             f"{experiment.champion} is not the champion "
                             f"({champion.ref if champion else 'there is none'})")
        running = self.running_experiment(experiment.model)
        if running is not None:
            raise ModelError(f"experiment {running.name!r} of {experiment.model!r} is running; "
                             "stop it first (`tideline models experiment stop`)")
        if any(e.name == experiment.name for e in self.experiments()):
            raise ModelError(f"an experiment named {experiment.name!r} exists already")
        started = replace(experiment, status="running", started_at=datetime.now(UTC))
        values = {**started.as_dict(), "outcome": json.dumps(started.outcome)}
        with self._writing() as connection:
            connection.execute(sa.insert(experiments_table).values(**values))
            self._event(connection, challenger, "experiment started",
                        {"experiment": started.name, "mode": started.mode,
                         "share": started.share, "against": champion.ref})
        return started

    def end_experiment(self, name: str, status: str, outcome: dict[str, Any]) -> Experiment:
        """Mark a running experiment stopped or concluded, with its outcome."""
        t = experiments_table
        with self._writing() as connection:
            done = connection.execute(sa.update(t).where(
                (t.c.name == name) & (t.c.status == "running")).values(
                status=status, outcome=json.dumps(outcome, default=str))).rowcount
        if not done:
            raise ModelError(f"experiment {name!r} is not running")
        return self.experiment(name)

    def record_predictions(self, experiment: str, rows: pd.DataFrame, key: str) -> None:
        """Online predictions made during an experiment: both models' scores and the arm."""
        now = datetime.now(UTC)
        values = [{"experiment": experiment, "entity_id": str(entity), "arm": arm,
                   "probability_champion": float(p1), "probability_challenger": float(p2),
                   "risk_champion": r1, "risk_challenger": r2, "at": now}
                  for entity, arm, p1, p2, r1, r2 in zip(
                      rows[key], rows["arm"], rows["probability_champion"],
                      rows["probability_challenger"], rows["risk_champion"],
                      rows["risk_challenger"], strict=True)]
        if values:
            with self.engine.begin() as connection:
                connection.execute(sa.insert(predictions_table), values)

    def predictions(self, experiment: str) -> pd.DataFrame:
        t = predictions_table
        with self.engine.connect() as connection:
            return pd.read_sql(sa.select(t).where(t.c.experiment == experiment).order_by(t.c.id),
                               connection)

    def forget_scores(self, entities: Sequence[str]) -> int:
        """Delete every model's scores of `entities`, and their online predictions made in
        experiments (an erasure); returns the rows deleted."""
        ids = [str(e) for e in entities]
        with self.engine.begin() as connection:
            return sum(connection.execute(sa.delete(t).where(t.c.entity_id.in_(ids))).rowcount
                       for t in (scores_table, predictions_table))


def _utc(moment: datetime) -> datetime:
    """A time the database returned, as UTC (SQLite keeps no zone)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def open_model_registry(settings: Any) -> ModelRegistry:
    return ModelRegistry(database_url(settings))


class _VersionTaken(Exception):
    """Another process registered the version this one was about to publish."""


REGISTER_ATTEMPTS = 20


def _run_id(name: str, version: int) -> str:
    """The run (and tag) a model version is published as."""
    return f"model-{name}-v{version}"


def _artifact_path(name: str, version: int) -> str:
    return f"models/{name}/v{version}"


def register_model(registry: ModelRegistry, lake: Lake, spec: ModelSpec, trained: TrainedModel,
                   training: TrainingSet) -> ModelRecord:
    """Publish the model's artifacts to the lake (tagged), then record it as a candidate.

    A version number is claimed by publishing it: version N is published only as run
    `model-<name>-vN`, whose hold lets one process at a time in, and inside the hold N is
    checked to be still free. A process registering the same name at the same time makes
    this one take the next number; neither model is overwritten or lost."""
    files = _artifacts(trained)  # the same whatever the number: made once
    version = 0
    for _ in range(REGISTER_ATTEMPTS):
        # past the number just tried: its holder may not have tagged or recorded it yet
        version = max(registry.next_version(spec.name, lake), version + 1)
        card = _card(spec, trained, training, version)
        try:
            run = _publish_version(registry, lake, spec, trained, training, version,
                                   {**files, "card.json": json.dumps(
                                       card, indent=1, sort_keys=True, default=str).encode()})
            break
        except RunInProgress:
            log.info("model %s v%d is being published by another process; taking the next",
                     spec.name, version)
        except _VersionTaken:
            log.info("model %s v%d was registered by another process; taking the next",
                     spec.name, version)
            with suppress(LakeError):  # the branch this attempt opened holds nothing
                lake.delete_branch(run_branch_name(_run_id(spec.name, version)))
    else:
        raise ModelError(f"model {spec.name!r}: no free version number after "
                         f"{REGISTER_ATTEMPTS} attempts; other processes keep registering it")
    return _record(registry, lake, spec, trained, training, card, run)


def _card(spec: ModelSpec, trained: TrainedModel, training: TrainingSet,
          version: int) -> dict[str, Any]:
    return {
        "name": spec.name, "version": version, "spec_version": spec.version,
        "label": asdict(spec.label), "columns": list(trained.matrix.columns),
        "categories": trained.matrix.categories, "threshold": trained.threshold,
        "rounds": trained.booster.current_iteration(),
        "metrics": trained.metrics.as_dict(),
        "baseline_metrics": trained.baseline_metrics.as_dict(),
        "importance": trained.importance, "leaks": trained.leaks,
        "time_leaks": trained.time_leaks, "dates": trained.dates,
        "params": trained.params, "boosting_rule": trained.boosting,
        "search": [asdict(t) for t in trained.trials],
        "training_set": {"name": training.name, "tag": training.tag,
                         "commit": training.lake_commit, "feature_commit": training.ref_commit},
        "feature_views": training.views, "code_version": code_version()}


def _artifacts(trained: TrainedModel) -> dict[str, bytes]:
    """The model's files but its card: booster, baseline, importance table and plots."""
    with tempfile.TemporaryDirectory() as scratch:
        plots = save_plots(trained.test_labels, trained.test_scores, trained.threshold,
                           Path(scratch))
        buffer = io.BytesIO()
        joblib.dump(trained.baseline, buffer)
        return {
            "model.txt": trained.booster.model_to_string().encode(),
            "baseline.joblib": buffer.getvalue(),
            "importance.csv": ("feature,gain\n" + "".join(
                f"{k},{v:.6g}\n" for k, v in trained.importance.items())).encode(),
            **{p.name: p.read_bytes() for p in plots.values()}}


def _publish_version(registry: ModelRegistry, lake: Lake, spec: ModelSpec,
                     trained: TrainedModel, training: TrainingSet, version: int,
                     files: dict[str, bytes]) -> RunBranch:
    """Publish version `version`'s files, or raise _VersionTaken (or RunInProgress while
    another process is publishing it)."""
    path = _artifact_path(spec.name, version)
    with publish(lake, _run_id(spec.name, version),
                 message=f"model {spec.name} v{version}: test ROC-AUC "
                         f"{trained.metrics.roc_auc:.4f}",
                 metadata={"stage": "model", "training_set": training.tag}) as run:
        if registry.version_taken(spec.name, version, lake):
            raise _VersionTaken(version)
        for name, body in files.items():
            lake.put(run.branch, f"{path}/{name}", body)
        failpoint("model-register")
    return run


def _record(registry: ModelRegistry, lake: Lake, spec: ModelSpec, trained: TrainedModel,
            training: TrainingSet, card: dict[str, Any], run: RunBranch) -> ModelRecord:
    """Tag the published version and record it as a candidate."""
    version = card["version"]
    commit = run.published.id
    lake.tag(_run_id(spec.name, version), commit)
    record = ModelRecord(
        name=spec.name, version=version, stage="candidate", spec_version=spec.version,
        owner=spec.owner, roc_auc=trained.metrics.roc_auc, pr_auc=trained.metrics.pr_auc,
        metrics=trained.metrics.as_dict(), baseline_metrics=trained.baseline_metrics.as_dict(),
        params={**(trained.params or spec.params),
                "rounds": trained.booster.current_iteration()},
        threshold=trained.threshold, features=list(trained.matrix.columns),
        feature_views=training.views, training_set=training.name,
        training_set_tag=training.tag, training_set_commit=training.lake_commit,
        feature_commit=training.ref_commit, code_version=card["code_version"],
        artifact_path=_artifact_path(spec.name, version), artifact_commit=commit,
        created_at=datetime.now(UTC))
    registry.add(record, {"leaks": trained.leaks, "time_leaks": trained.time_leaks,
                         "dates": trained.dates})
    return record


def load_model(lake: Lake, record: ModelRecord) -> LoadedModel:
    """A registered model's booster and input encoding, from its commit in the lake."""
    try:
        card = json.loads(lake.get(record.artifact_commit, f"{record.artifact_path}/card.json"))
        text = lake.get(record.artifact_commit, f"{record.artifact_path}/model.txt").decode()
    except Exception as exc:  # noqa: BLE001 - any lake error: the artifact is not there
        raise ModelError(f"model {record.ref}: its artifacts at {record.artifact_path} "
                         f"(commit {record.artifact_commit[:12]}) cannot be read: {exc}") from exc
    return LoadedModel(record=record, booster=lgb.Booster(model_str=text),
                       matrix=FeatureMatrix(tuple(card["columns"]), card["categories"]))
