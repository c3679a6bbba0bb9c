"""The feature registry: every feature view version ever built (definition, owner, tags, TTL),
its features, the builds that materialised it (source and published lake commits) and the
statistics captured then, plus the training sets drawn from the store. SQLite by default,
PostgreSQL by setting (`TIDELINE_REGISTRY_URL`), through SQLAlchemy.

Rows are only added or updated, never removed: an old version stays readable, and a view's
prose (owner, description, tags, TTL) may change without a new version, because it does not
change values. The schema is versioned (`registry_schema`); opening a registry applies the
migrations it lacks, in order, in one transaction each. `docs/feature_store.md` documents the
tables for analysts.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from tideline.core.database import database_url, open_database, schema_version, shown
from tideline.core.errors import FeatureDefinitionError
from tideline.features.definitions import (
    CustomView,
    Derived,
    Entity,
    Feature,
    FeatureView,
    Source,
    View,
    whole_days,
)
from tideline.features.stats import FeatureStats

metadata = sa.MetaData()
_text = sa.String(255)

SCHEMA = "registry_schema"
views_table = sa.Table(
    "feature_views", metadata,
    sa.Column("name", _text, primary_key=True),
    sa.Column("version", sa.String(32), primary_key=True),
    sa.Column("entity", _text, nullable=False),
    sa.Column("entity_key", _text, nullable=False),
    sa.Column("source", _text, nullable=False),
    sa.Column("source_dataset", _text, nullable=False),
    sa.Column("source_timestamp", _text, nullable=False),
    sa.Column("owner", _text, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("tags", sa.Text, nullable=False),
    sa.Column("ttl_days", sa.Integer),
    sa.Column("definition", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
features_table = sa.Table(
    "features", metadata,
    sa.Column("view_name", _text, primary_key=True),
    sa.Column("version", sa.String(32), primary_key=True),
    sa.Column("name", _text, primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("source_column", _text),
    sa.Column("aggregation", sa.String(32)),
    sa.Column("window_days", sa.Integer),
    sa.Column("event_filter", sa.Text),
    sa.Column("expression", sa.Text),
    sa.Column("description", sa.Text, nullable=False),
    sa.ForeignKeyConstraint(["view_name", "version"],
                            ["feature_views.name", "feature_views.version"]),
)
DURATIONS = (sa.Column("window_length", sa.String(16)), sa.Column("session_gap", sa.String(16)))
"""Schema version 2: a window as written (`7`, `"1h"`; `window_days` is null unless it is
whole days) and a session feature's gap."""
for _column in DURATIONS:
    features_table.append_column(_column)
builds_table = sa.Table(
    "feature_builds", metadata,
    sa.Column("run_id", _text, primary_key=True),
    sa.Column("source_commit", sa.String(64), nullable=False),
    sa.Column("published_commit", sa.String(64), nullable=False),
    sa.Column("as_of", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
materializations_table = sa.Table(
    "materializations", metadata,
    sa.Column("run_id", _text, sa.ForeignKey("feature_builds.run_id"), primary_key=True),
    sa.Column("view_name", _text, primary_key=True),
    sa.Column("as_of", sa.Date, primary_key=True),
    sa.Column("version", sa.String(32), nullable=False),
    sa.Column("row_count", sa.Integer, nullable=False),
    sa.ForeignKeyConstraint(["view_name", "version"],
                            ["feature_views.name", "feature_views.version"]),
)
stats_table = sa.Table(
    "feature_stats", metadata,
    sa.Column("run_id", _text, primary_key=True),
    sa.Column("view_name", _text, primary_key=True),
    sa.Column("as_of", sa.Date, primary_key=True),
    sa.Column("feature", _text, primary_key=True),
    sa.Column("version", sa.String(32), nullable=False),
    *(sa.Column(f.name, sa.Integer if f.name in ("row_count", "distinct_count") else
                sa.Text if f.name == "top_value" else sa.Float)
      for f in fields(FeatureStats) if f.name != "feature"),
    sa.ForeignKeyConstraint(["run_id", "view_name", "as_of"], ["materializations.run_id",
                                                               "materializations.view_name",
                                                               "materializations.as_of"]),
)
training_sets_table = sa.Table(
    "training_sets", metadata,
    sa.Column("name", _text, primary_key=True),
    sa.Column("tag", _text, nullable=False),
    sa.Column("lake_commit", sa.String(64), nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("ref_commit", sa.String(64), nullable=False),
    sa.Column("row_count", sa.Integer, nullable=False),
    sa.Column("features", sa.Text, nullable=False),
    sa.Column("views", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)


def _create_v1(connection: Connection) -> None:
    metadata.create_all(connection, tables=[views_table, features_table, builds_table,
                                            materializations_table, stats_table,
                                            training_sets_table])


def _add_durations(connection: Connection) -> None:
    """Version 2; a registry created at version 1 by this code has the columns already."""
    present = {c["name"] for c in sa.inspect(connection).get_columns(features_table.name)}
    for column in DURATIONS:
        if column.name not in present:
            kind = column.type.compile(connection.dialect)
            connection.execute(sa.text(f"ALTER TABLE {features_table.name} ADD COLUMN "
                                       f"{column.name} {kind}"))


MIGRATIONS: tuple[Callable[[Connection], None], ...] = (_create_v1, _add_durations)
"""Migration k brings the schema from version k to k + 1; append, never edit."""


@dataclass(frozen=True)
class ViewRecord:
    name: str
    version: str
    entity: str
    entity_key: str
    source: str
    source_dataset: str
    source_timestamp: str
    owner: str
    description: str
    tags: tuple[str, ...]
    ttl_days: int | None
    definition: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    def feature_view(self) -> FeatureView:
        """The view as it was declared at this version (a declared view reading no other view:
        a custom view's function and a read view live in code)."""
        body = dict(self.definition)
        if "function" in body or "reads" in body:
            raise FeatureDefinitionError(
                f"view {self.name!r} version {self.version} runs a function or reads other "
                "views; load it from the project's definitions instead")
        return FeatureView(
            **{**body, "entity": Entity(**body["entity"]), "source": Source(**body["source"]),
               "features": [Feature(**f) for f in body["features"]],
               "derived": [Derived(**d) for d in body["derived"]]})


@dataclass(frozen=True)
class Materialization:
    run_id: str
    view: str
    version: str
    as_of: date
    rows: int
    source_commit: str
    published_commit: str
    created_at: datetime


@dataclass(frozen=True)
class ViewDiff:
    left: ViewRecord
    right: ViewRecord
    changed: dict[str, tuple[Any, Any]]
    """View field -> (left, right), for the fields that differ."""
    added: tuple[str, ...]
    removed: tuple[str, ...]
    features_changed: dict[str, dict[str, tuple[Any, Any]]]


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _definition(view: View) -> dict[str, Any]:
    """What the registry keeps of a view's declaration: its fields, with the views it reads
    by name and version."""
    body = {item.name: getattr(view, item.name) for item in fields(view) if item.name != "reads"}
    if view.reads:
        body["reads"] = {other.name: other.version for other in view.reads}
    return json.loads(json.dumps(body, default=lambda value: asdict(value), sort_keys=True))


def _feature_rows(view: View) -> list[dict[str, Any]]:
    if isinstance(view, CustomView):
        rows = [{"name": name, "kind": "custom", "source_column": None,
                 "aggregation": str(view.function), "window_days": whole_days(view.lookback),
                 "window_length": None if view.lookback is None else str(view.lookback),
                 "session_gap": None, "event_filter": None, "expression": None,
                 "description": ""} for name in view.features]
    else:
        rows = [{"name": f.name, "kind": "windowed", "source_column": f.column,
                 "aggregation": f.agg, "window_days": whole_days(f.window),
                 "window_length": None if f.window is None else str(f.window),
                 "session_gap": f.gap, "event_filter": f.filter,
                 "expression": None, "description": f.description} for f in view.features]
    rows += [{"name": d.name, "kind": "derived", "source_column": None, "aggregation": None,
              "window_days": None, "window_length": None, "session_gap": None,
              "event_filter": None,
              "expression": d.expression or json.dumps({"cases": d.cases, "default": d.default}),
              "description": d.description} for d in view.derived]
    return [{**row, "view_name": view.name, "version": view.version, "position": k}
            for k, row in enumerate(rows)]


class Registry:
    """The registry behind one SQLAlchemy URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = open_database(url, SCHEMA, MIGRATIONS)

    def __repr__(self) -> str:
        return f"Registry({shown(self.url)!r})"

    def close(self) -> None:
        self.engine.dispose()

    @property
    def schema_version(self) -> int:
        return schema_version(self.engine, SCHEMA)

    # -- writing -------------------------------------------------------------------------

    def register_views(self, views: Sequence[View], now: datetime | None = None) -> None:
        """Add new view versions with their features; refresh the prose of known ones."""
        now = now or datetime.now(UTC)
        with self.engine.begin() as connection:
            for view in views:
                prose = {"owner": view.owner, "description": view.description,
                         "tags": json.dumps(list(view.tags)), "ttl_days": view.ttl_days,
                         "definition": json.dumps(_definition(view), sort_keys=True)}
                key = (views_table.c.name == view.name) & (views_table.c.version == view.version)
                known = connection.execute(sa.select(views_table.c.owner, views_table.c.description,
                                                     views_table.c.tags, views_table.c.ttl_days,
                                                     views_table.c.definition).where(key)).first()
                if known is None:
                    connection.execute(sa.insert(views_table).values(
                        name=view.name, version=view.version, entity=view.entity.name,
                        entity_key=view.entity.key,
                        source=",".join(s.name for s in view.sources),
                        source_dataset=",".join(s.dataset for s in view.sources),
                        source_timestamp=",".join(s.timestamp for s in view.sources),
                        created_at=now, updated_at=now,
                        **prose))
                    connection.execute(sa.insert(features_table), _feature_rows(view))
                elif dict(known._mapping) != prose:
                    connection.execute(sa.update(views_table).where(key).values(
                        updated_at=now, **prose))

    def record_build(self, run_id: str, source_commit: str, published_commit: str,
                     views: Sequence[FeatureView], rows: dict[tuple[str, date], int],
                     stats: dict[tuple[str, date], list[FeatureStats]],
                     now: datetime | None = None) -> None:
        """Record a published build: what it materialised and the statistics of each table.
        Recording the same run again changes nothing (a re-run of a published build)."""
        now = now or datetime.now(UTC)
        self.register_views(views, now)
        versions = {view.name: view.version for view in views}
        days = sorted({day for _, day in rows})
        with self.engine.begin() as connection:
            if connection.execute(sa.select(builds_table.c.run_id).where(
                    builds_table.c.run_id == run_id)).first() is not None:
                return
            connection.execute(sa.insert(builds_table).values(
                run_id=run_id, source_commit=source_commit, published_commit=published_commit,
                as_of=json.dumps([f"{day:%Y-%m-%d}" for day in days]), created_at=now))
            connection.execute(sa.insert(materializations_table), [
                {"run_id": run_id, "view_name": view, "as_of": day, "version": versions[view],
                 "row_count": count} for (view, day), count in rows.items()])
            stat_rows = [{**asdict(s), "run_id": run_id, "view_name": view, "as_of": day,
                          "version": versions[view]}
                         for (view, day), items in stats.items() for s in items]
            if stat_rows:
                connection.execute(sa.insert(stats_table), stat_rows)

    def record_training_set(self, name: str, tag: str, commit: str, path: str, ref_commit: str,
                            rows: int, features: Sequence[str], views: dict[str, str]) -> None:
        with self.engine.begin() as connection:
            if connection.execute(sa.select(training_sets_table.c.name).where(
                    training_sets_table.c.name == name)).first() is None:
                connection.execute(sa.insert(training_sets_table).values(
                    name=name, tag=tag, lake_commit=commit, path=path, ref_commit=ref_commit,
                    row_count=rows, features=json.dumps(list(features)),
                    views=json.dumps(views, sort_keys=True), created_at=datetime.now(UTC)))

    # -- reading -------------------------------------------------------------------------

    def _views(self, where: sa.ColumnElement[bool] | None = None) -> list[ViewRecord]:
        query = sa.select(views_table).order_by(views_table.c.name, views_table.c.created_at)
        with self.engine.connect() as connection:
            rows = connection.execute(query if where is None else query.where(where)).mappings()
            return [ViewRecord(**{**row, "tags": tuple(json.loads(row["tags"])),
                                  "definition": json.loads(row["definition"]),
                                  "created_at": _utc(row["created_at"]),
                                  "updated_at": _utc(row["updated_at"])}) for row in rows]

    def views(self) -> list[ViewRecord]:
        """The newest version of every view, by name."""
        latest: dict[str, ViewRecord] = {}
        for record in self._views():
            latest[record.name] = record  # ordered by creation: the last one wins
        return list(latest.values())

    def versions(self, name: str) -> list[ViewRecord]:
        """Every version of a view, oldest first."""
        return self._views(views_table.c.name == name)

    def view(self, name: str, version: str | None = None) -> ViewRecord:
        """A view by name (its newest version, or the version that starts with `version`)."""
        records = self.versions(name)
        if version is not None:
            records = [r for r in records if r.version.startswith(version)]
        if not records:
            known = ", ".join(sorted(r.name for r in self.views())) or "none registered yet"
            raise FeatureDefinitionError(
                f"no feature view {name!r}" + (f" with version {version!r}" if version else "")
                + f" in the registry (views: {known})")
        if version is not None and len(records) > 1:
            raise FeatureDefinitionError(f"version {version!r} of view {name!r} is ambiguous: "
                                         f"{', '.join(r.version for r in records)}")
        return records[-1]

    def find_version(self, spec: str) -> ViewRecord:
        """A view version from `name@version`, `name` (newest) or a version hash (or its
        unique prefix)."""
        name, _, version = spec.partition("@")
        if version or any(r.name == name for r in self.views()):
            return self.view(name, version or None)
        matches = self._views(views_table.c.version.startswith(spec))
        if len(matches) != 1:
            found = ", ".join(f"{r.name}@{r.version}" for r in matches)
            raise FeatureDefinitionError(f"{spec!r} is " + (
                f"ambiguous: {found}" if matches else "no view name or version in the registry"))
        return matches[0]

    def features(self, view: ViewRecord) -> list[dict[str, Any]]:
        query = sa.select(features_table).where(
            (features_table.c.view_name == view.name) & (features_table.c.version == view.version)
        ).order_by(features_table.c.position)
        with self.engine.connect() as connection:
            return [dict(row) for row in connection.execute(query).mappings()]

    def materializations(self, name: str, version: str | None = None) -> list[Materialization]:
        """The builds that materialised a view (one version, or all), oldest first."""
        m, b = materializations_table, builds_table
        query = (sa.select(m.c.run_id, m.c.view_name.label("view"), m.c.version, m.c.as_of,
                           m.c.row_count.label("rows"),
                           b.c.source_commit, b.c.published_commit, b.c.created_at)
                 .join(b, b.c.run_id == m.c.run_id).where(m.c.view_name == name)
                 .order_by(b.c.created_at, m.c.as_of))
        if version is not None:
            query = query.where(m.c.version == version)
        with self.engine.connect() as connection:
            return [Materialization(**{**row, "created_at": _utc(row["created_at"])})
                    for row in connection.execute(query).mappings()]

    def stats(self, name: str, version: str) -> list[FeatureStats]:
        """The statistics of a view version's newest materialisation: its latest as-of date,
        from the newest build of that date."""
        done = self.materializations(name, version)
        if not done:
            return []
        last = max(done, key=lambda m: (m.as_of, m.created_at))
        s = stats_table
        query = sa.select(*(s.c[f.name] for f in fields(FeatureStats))).where(
            (s.c.run_id == last.run_id) & (s.c.view_name == name) & (s.c.as_of == last.as_of))
        with self.engine.connect() as connection:
            rows = {row["feature"]: FeatureStats(**row)
                    for row in connection.execute(query).mappings()}
        order = [f["name"] for f in self.features(self.view(name, version))]
        return [rows[name] for name in order if name in rows]

    def training_set(self, name: str) -> dict[str, Any] | None:
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(training_sets_table).where(
                training_sets_table.c.name == name)).mappings().first()
        return None if row is None else {**row, "features": json.loads(row["features"]),
                                         "views": json.loads(row["views"])}

    def diff(self, left: str, right: str) -> ViewDiff:
        """What changed between two view versions (`name@version`, or version hashes)."""
        a, b = self.find_version(left), self.find_version(right)
        compared = ("name", "entity", "entity_key", "source", "source_dataset",
                    "source_timestamp", "owner", "description", "tags", "ttl_days")
        changed = {name: (getattr(a, name), getattr(b, name)) for name in compared
                   if getattr(a, name) != getattr(b, name)}
        fa = {f["name"]: f for f in self.features(a)}
        fb = {f["name"]: f for f in self.features(b)}
        details = ("kind", "source_column", "aggregation", "window_days", "event_filter",
                   "expression", "description")
        features_changed = {}
        for name in fa.keys() & fb.keys():
            delta = {key: (fa[name][key], fb[name][key]) for key in details
                     if fa[name][key] != fb[name][key]}
            if delta:
                features_changed[name] = delta
        return ViewDiff(a, b, changed, added=tuple(n for n in fb if n not in fa),
                        removed=tuple(n for n in fa if n not in fb),
                        features_changed=dict(sorted(features_changed.items())))


def open_registry(settings: Any) -> Registry:
    """The registry in the settings' metadata database (`registry_url`, else SQLite in the
    data directory)."""
    return Registry(database_url(settings))
