"""The feature store: one set of definitions serving training (point-in-time training sets from
the offline store in the lake, saved and tagged there) and inference (the latest values in the
online store), with the registry recording what was built, from which commit, and how its values
were distributed.

    store = FeatureStore.open(settings)
    training = store.get_training_set(labels, ["spend_30d", "customer_activity:*"],
                                      timestamp_column="as_of")
    store.materialize_online()
    store.get_online_features(["C0000042"], ["spend_30d"]).frame
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from tideline.core.errors import LakeError, OnlineStoreUnavailable, RetrievalError
from tideline.features.definitions import FeatureView, load_definitions
from tideline.features.materialize import FeatureBuild
from tideline.features.online import OnlineState, OnlineStore, open_online_store
from tideline.features.online.base import arrow_types, feature_columns
from tideline.features.registry import Registry, open_registry
from tideline.features.retrieval import (
    FeatureRef,
    materialized_dates,
    point_in_time,
    read_snapshot,
    resolve_features,
    view_prefix,
)
from tideline.features.stats import merge_stats, summarise
from tideline.lake import open_lake
from tideline.lake.base import MAIN, Lake
from tideline.lake.publish import publish
from tideline.lake.tables import read_table, write_table

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][-\w]{0,80}$", re.ASCII)
_REMEMBERED_REQUESTS = 256
"""Resolved feature lists a store remembers, the oldest forgotten first (serving asks the same
few again and again)."""


@dataclass(frozen=True)
class TrainingSet:
    """A point-in-time training set, saved in the lake and tagged."""

    name: str
    frame: pd.DataFrame = field(repr=False)
    tag: str
    lake_commit: str
    """The commit that published the training set (the tag points at it)."""
    ref_commit: str
    """The lake commit the features were read from."""
    path: str
    features: tuple[str, ...]
    views: dict[str, str]
    """View name -> version."""
    as_of: dict[str, list[str]]
    """View name -> the as-of dates of the materialisations used."""


@dataclass(frozen=True)
class OnlineWrite:
    """What materialising one view to the online store did."""

    view: str
    version: str
    as_of: date
    mode: str
    """`full` (new version or empty store), `incremental` (changed entities only),
    `unchanged`, or `stream` (the stream processor's values are newer: kept)."""
    written: int
    deleted: int


@dataclass(frozen=True)
class OnlineFeatures:
    frame: pd.DataFrame
    """The entity key column, then one column per requested feature, in request order."""
    views: dict[str, dict[str, Any]]
    """View name -> version, as-of date and whether the values are past the view's TTL."""
    found: list[bool] = field(default_factory=list)
    """Per entity: whether any requested view holds a row for it."""


def register_build(lake: Lake, registry: Registry, build: FeatureBuild,
                   views: Sequence[FeatureView], published_commit: str) -> None:
    """Record a published build in the registry with the statistics of every table it wrote:
    merged from its partitions', or, for a build loaded from its manifest (a re-run), read
    from the tables."""
    built = [view for view in views if build.versions.get(view.name) == view.version]
    rows, stats = {}, {}
    for view in built:
        for text in build.as_of:
            day = date.fromisoformat(text)
            parts = [p.stats[f"{view.name}@{text}"] for p in build.partitions
                     if f"{view.name}@{text}" in p.stats]
            if len(parts) != len(build.partitions) or not parts:
                parts = [summarise(read_snapshot(lake, published_commit, view, day,
                                                 view.feature_names).to_pandas(),
                                   view.feature_names)]
            stats[view.name, day] = [merge_stats(list(column)) for column in zip(*parts,
                                                                                strict=True)]
            rows[view.name, day] = stats[view.name, day][0].row_count
    registry.record_build(build.run_id, build.source_commit, published_commit, built, rows,
                          stats)


def _changed_rows(previous: pa.Table, current: pa.Table, key: str,
                  columns: Sequence[str]) -> tuple[pa.Table, list[str]]:
    """The rows of `current` that are new or differ from `previous` (nulls equal nulls), and
    the keys that `current` no longer has."""
    where = pc.index_in(current.column(key), value_set=previous.column(key))
    changed = pc.is_null(where)
    aligned = previous.take(where)
    for name in columns:
        a, b = current.column(name), aligned.column(name)
        same = pc.or_kleene(pc.and_(pc.is_null(a), pc.is_null(b)), pc.fill_null(pc.equal(a, b),
                                                                                 False))
        changed = pc.or_(changed, pc.invert(same))
    gone = pc.invert(pc.is_in(previous.column(key), value_set=current.column(key)))
    return current.filter(changed), previous.column(key).filter(gone).to_pylist()


class FeatureStore:
    """Training and serving from one set of feature views."""

    def __init__(self, lake: Lake, registry: Registry, views: Sequence[FeatureView],
                 online: OnlineStore | None = None, settings: Any = None) -> None:
        self.lake, self.registry, self.views = lake, registry, list(views)
        self._online, self._settings = online, settings
        self._refs: OrderedDict[tuple[Any, ...], list[FeatureRef]] = OrderedDict()

    @classmethod
    def open(cls, settings: Any) -> FeatureStore:
        """The lake, registry and definitions the settings name; the online store is opened
        on first use (offline work never needs it)."""
        return cls(open_lake(settings), open_registry(settings),
                   load_definitions(settings.declared("features")), settings=settings)

    @property
    def online(self) -> OnlineStore:
        if self._online is None:
            if self._settings is None:
                raise OnlineStoreUnavailable("this feature store was opened without an online "
                                             "store (pass one, or open it from settings)")
            self._online = open_online_store(self._settings)
        return self._online

    # -- offline -------------------------------------------------------------------------

    def get_training_set(self, entity_df: pd.DataFrame, features: Sequence[str],
                         ref: str = MAIN, timestamp_column: str = "event_timestamp",
                         name: str | None = None, save: bool = True) -> TrainingSet:
        """One row per entity_df row, in its order, with the features as known at the row's
        timestamp (entity_df's other columns, labels say, are kept). Saved to the lake under
        `training_sets/<name>/`, tagged `training-set-<name>` and recorded in the registry;
        the same inputs at the same commit give the same name, so asking again is free."""
        refs = resolve_features(self.views, features)
        ref_commit = self.lake.resolve(ref)
        if save:
            name = name or self._content_name(entity_df, refs, ref_commit, timestamp_column)
        name = name or "unsaved"
        if not _NAME.match(name):
            raise RetrievalError(f"training set name {name!r}: use letters, digits, - and _")
        if save and f"training-set-{name}" in self.lake.tags():
            log.info("training set %s exists; reading it back", name)
            return self.load_training_set(name)
        frame, used = point_in_time(self.lake, ref_commit, entity_df, refs, timestamp_column)
        views = {r.view.name: r.view.version for r in refs}
        result = TrainingSet(name=name, frame=frame, tag=f"training-set-{name}", lake_commit="",
                             ref_commit=ref_commit, path=f"training_sets/{name}/data.parquet",
                             features=tuple(r.column for r in refs), views=views,
                             as_of={v: [f"{d:%Y-%m-%d}" for d in days]
                                    for v, days in used.items()})
        return self._save(result) if save else result

    def _content_name(self, entity_df: pd.DataFrame, refs: Sequence[FeatureRef], ref_commit: str,
                      timestamp_column: str) -> str:
        """A name from what the training set is made of: the entity table, the features and
        the feature tables they are read from (by checksum), so another commit with the same
        tables gives the same name."""
        digest = hashlib.sha256()
        digest.update(pd.util.hash_pandas_object(entity_df, index=False).to_numpy().tobytes())
        tables = sorted((info.path, info.checksum) for view in {r.view for r in refs}
                        for info in self.lake.list(ref_commit, view_prefix(view)))
        digest.update(json.dumps([list(map(str, entity_df.columns)), [r.column for r in refs],
                                  tables, timestamp_column]).encode())
        return f"ts-{digest.hexdigest()[:12]}"

    def _manifest(self, result: TrainingSet) -> dict[str, Any]:
        return {"name": result.name, "ref_commit": result.ref_commit, "path": result.path,
                "rows": len(result.frame), "features": list(result.features),
                "views": result.views, "as_of": result.as_of,
                "columns": list(map(str, result.frame.columns))}

    def _save(self, result: TrainingSet) -> TrainingSet:
        manifest = self._manifest(result)
        with publish(self.lake, f"training-set-{result.name}",
                     message=f"training set {result.name}: {len(result.frame):,} rows",
                     metadata={"stage": "training-set", "ref_commit": result.ref_commit,
                               "views": json.dumps(result.views, sort_keys=True)}) as run:
            write_table(self.lake, run.branch, result.path, result.frame)
            self.lake.put(run.branch, f"training_sets/{result.name}/manifest.json",
                          json.dumps(manifest, indent=1, sort_keys=True).encode())
        commit = run.published.id
        self.lake.tag(result.tag, commit)
        self.registry.record_training_set(result.name, result.tag, commit, result.path,
                                          result.ref_commit, len(result.frame),
                                          result.features, result.views)
        return replace(result, lake_commit=commit)

    def load_training_set(self, name: str) -> TrainingSet:
        """A saved training set, exactly as it was written (from its tag)."""
        tag = f"training-set-{name}"
        if tag not in self.lake.tags():
            raise RetrievalError(f"no training set {name!r} in the lake (no tag {tag})")
        manifest = json.loads(self.lake.get(tag, f"training_sets/{name}/manifest.json"))
        frame = read_table(self.lake, tag, manifest["path"]).to_pandas()
        return TrainingSet(name=name, frame=frame, tag=tag, lake_commit=self.lake.resolve(tag),
                           ref_commit=manifest["ref_commit"], path=manifest["path"],
                           features=tuple(manifest["features"]), views=manifest["views"],
                           as_of=manifest["as_of"])

    # -- online --------------------------------------------------------------------------

    def materialize_online(self, ref: str = MAIN, as_of: date | None = None
                           ) -> list[OnlineWrite]:
        """Load each view's newest materialisation at `ref` (or the one as of `as_of`) into the
        online store. When the store holds the same version, only the entities whose values
        differ from what it holds (read back from the commit it was loaded from) are written
        and the ones gone are deleted; a new version, or an empty store, is written whole. A
        view the stream processor keeps fresh is left alone while its values are as new as
        the table's (or newer)."""
        commit = self.lake.resolve(ref)
        writes = []
        for view in self.views:
            dates = materialized_dates(self.lake, commit, view)
            day = as_of or (dates[-1] if dates else None)
            if day not in dates:
                raise RetrievalError(
                    f"view {view.name!r} version {view.version} has no feature table as of "
                    f"{day or 'any date'} at {ref}; build it (`tideline features build`)")
            current = read_snapshot(self.lake, commit, view, day, view.feature_names)
            key = view.entity.key
            old = self.online.state(view.name)
            state = OnlineState(view=view.name, version=view.version, as_of=day, key=key,
                                columns=tuple(view.feature_names),
                                types=arrow_types(current.schema, view.feature_names),
                                ttl_days=view.ttl_days, source_commit=commit,
                                written_at=datetime.now(UTC))
            if (old is not None and old.version == view.version and old.from_stream
                    and old.as_of >= day):
                writes.append(OnlineWrite(view.name, view.version, day, "stream", 0, 0))
                continue
            previous = self._loaded(old, view)
            if previous is None:
                self.online.write(state, current, [], replace=True)
                writes.append(OnlineWrite(view.name, view.version, day, "full", len(current),
                                          0))
                continue
            rows, deleted = _changed_rows(previous, current, key, view.feature_names)
            if len(rows) or deleted or old.as_of != day:
                self.online.write(state, rows, deleted, replace=False)
                writes.append(OnlineWrite(view.name, view.version, day, "incremental",
                                          len(rows), len(deleted)))
            else:
                writes.append(OnlineWrite(view.name, view.version, day, "unchanged", 0, 0))
        for w in writes:
            log.info("online store: %s %s as of %s (%s, %d written, %d deleted)", w.view,
                     w.version, w.as_of, w.mode, w.written, w.deleted)
        return writes

    def _loaded(self, state: OnlineState | None, view: FeatureView) -> pa.Table | None:
        """The table the online store holds for a view, read back from the lake commit it was
        loaded from; None when it holds another version or that commit is gone."""
        if state is None or state.version != view.version:
            return None
        try:
            return read_snapshot(self.lake, state.source_commit, view, state.as_of,
                                 view.feature_names)
        except (LakeError, RetrievalError):
            return None

    def _resolved(self, features: tuple[str, ...]) -> list[FeatureRef]:
        """`resolve_features`, remembered per request and definitions (serving asks the same
        again and again)."""
        key = (tuple((v.name, v.version) for v in self.views), features)
        refs = self._refs.get(key)
        if refs is None:
            refs = self._refs[key] = resolve_features(self.views, features)
            if len(self._refs) > _REMEMBERED_REQUESTS:  # a client can send endless variants
                self._refs.popitem(last=False)  # atomic: the server's threads share the store
        return refs

    def get_online_features(self, entity_ids: Sequence[Any], features: Sequence[str],
                            now: datetime | None = None) -> OnlineFeatures:
        """The latest values of `features` for each entity, in order; unknown entities get
        nulls, and so does a view past its TTL."""
        refs = self._resolved(tuple(features))
        keys = {r.view.entity.key for r in refs}
        if len(keys) > 1:
            raise RetrievalError(f"the features describe different entities ({', '.join(keys)}); "
                                 "ask for one entity's features at a time")
        ids = [str(k) for k in entity_ids]
        now = now or datetime.now(UTC)
        columns: dict[str, Any] = {}
        meta: dict[str, dict[str, Any]] = {}
        found = [False] * len(ids)
        views = {r.view.name: r.view for r in refs}
        for (name, view), (state, rows) in zip(views.items(),
                                               self.online.read_views(list(views), ids),
                                               strict=True):
            if state is None:
                raise RetrievalError(f"view {name!r} is not in the online store yet; "
                                     "materialise it (`tideline features materialize`)")
            if state.version != view.version:
                raise RetrievalError(
                    f"the online store holds view {name!r} at version {state.version}, "
                    f"the definitions are at {view.version}; materialise again")
            stale = state.expired(now)
            meta[name] = {"version": state.version, "as_of": state.as_of.isoformat(),
                          "stale": stale}
            found = [f or row is not None for f, row in zip(found, rows, strict=True)]
            wanted = [r for r in refs if r.view.name == name]
            columns.update(zip([r.column for r in wanted], feature_columns(
                state, [None] * len(rows) if stale else rows, [r.feature for r in wanted]),
                strict=True))
        frame = pd.DataFrame({keys.pop(): np.array(ids, dtype=object),
                              **{r.column: columns[r.column] for r in refs}})
        return OnlineFeatures(frame=frame, views=meta, found=found)
