"""Plan time: check feature views against the lake's source tables before any Ray work starts,
and work out which columns each source must provide. Columns the contracts tag as personal data
(`pii`) are aggregated only in ways that show nothing of their values."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import pyarrow as pa
from tideline.core.errors import FeatureDefinitionError
from tideline.features.definitions import (
    APPROXIMATE,
    COUNTING,
    DAILY,
    NUMERIC,
    TEMPORAL,
    VIRTUAL_COLUMNS,
    CustomView,
    FeatureView,
    Source,
    View,
    with_reads,
)
from tideline.features.expressions import exposed_names, names_in
from tideline.features.offline import source_layout, source_schema
from tideline.lake.base import Lake


@dataclass(frozen=True)
class FeaturePlan:
    views: tuple[View, ...]
    """The views to build, and the views they read, a read view before its readers."""
    columns: dict[str, tuple[str, ...]]
    """Source name -> the columns to read (entity key and event time included)."""
    sources: dict[str, Source]
    rows: dict[str, int] = field(default_factory=dict)
    """Source name -> its rows at the planned commit (from the Parquet footers), which size
    the build; empty until `measured`."""
    bucket_rows: dict[int, int] = field(default_factory=dict)
    """Every source's rows by the bucket count of their objects (0: not bucketed by the
    view's entity key): a partition count that divides it reads only its row groups."""

    @property
    def versions(self) -> dict[str, str]:
        return {view.name: view.version for view in self.views}


BLIND_AGGREGATIONS = {"count", "share", "nunique", "approx_nunique"}
"""What a feature may compute over a PII-tagged column: counts, which show nothing of the
values."""


def _check_private(view: FeatureView, private: Mapping[str, str]) -> None:
    """Refuse a view that would put personal data into features: its entity key tagged, a
    feature aggregating a tagged column's values, or a filter comparing them as they are."""
    where = f"feature view {view.name!r}"
    fix = ("aggregate it with nunique or approx_nunique, or filter on a declared "
           "transformation: bucket({c}, n), domain({c}) or length({c}); if it holds no "
           "personal data, remove its pii tag in the contract")
    if view.entity.key in private:
        raise FeatureDefinitionError(
            f"{where}: entity key {view.entity.key!r} of dataset {view.source.dataset!r} is "
            f"tagged pii ({private[view.entity.key]}), and feature tables, the online store and "
            "serving would hold its values; key the entity by a pseudonymous id")
    for feature in view.features:
        at = f"{where}, feature {feature.name!r}"
        column = feature.column
        if column in private and feature.agg not in BLIND_AGGREGATIONS:
            raise FeatureDefinitionError(
                f"{at}: column {column!r} of dataset {view.source.dataset!r} is tagged pii "
                f"({private[column]}), and {feature.agg!r} would show its values; "
                + fix.format(c=column))
        for name in sorted(exposed_names(feature.filter, at) if feature.filter else ()):
            if name in private:
                raise FeatureDefinitionError(
                    f"{at}: the filter {feature.filter!r} compares column {name!r} of dataset "
                    f"{view.source.dataset!r}, tagged pii ({private[name]}), as it is; "
                    + fix.format(c=name))


def _numeric(dtype: pa.DataType) -> bool:
    return pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_decimal(
        dtype)


def _temporal(dtype: pa.DataType) -> bool:
    return pa.types.is_timestamp(dtype) or pa.types.is_date(dtype)


def plan_views(views: Sequence[View], schemas: dict[str, pa.Schema],
               private: Mapping[str, Mapping[str, str]] | None = None) -> FeaturePlan:
    """Check every view (and every view they read) against its sources' schemas, and against
    the PII-tagged columns of their datasets (`private`: dataset -> column -> kind, from the
    contracts); the first problem raises, naming the view and feature."""
    views = with_reads(views)
    names: dict[str, str] = {}
    columns: dict[str, set[str]] = {}
    sources: dict[str, Source] = {}
    for view in views:
        kind = "custom view" if isinstance(view, CustomView) else "feature view"
        where = f"{kind} {view.name!r}"
        for source in view.sources:
            _check_source(view, source, schemas[source.name], where)
            if sources.setdefault(source.name, source) != source:
                raise FeatureDefinitionError(f"{where}: two different sources are named "
                                             f"{source.name!r}")
            columns.setdefault(source.name, {view.entity.key, source.timestamp})
        for name in view.feature_names:
            if name in names:
                raise FeatureDefinitionError(
                    f"{where}, feature {name!r}: the name is used by view {names[name]!r} too; "
                    "feature names must be unique across the views built together")
            names[name] = view.name
        if isinstance(view, CustomView):
            for item in view.inputs:
                columns[item.source.name] |= _custom_columns(
                    view, item.source, item.columns, schemas[item.source.name],
                    (private or {}).get(item.source.dataset, {}))
            continue
        _check_private(view, (private or {}).get(view.source.dataset, {}))
        columns[view.source.name] |= _feature_columns(view, schemas[view.source.name], where)
    return FeaturePlan(views=tuple(views), sources=sources,
                       columns={name: tuple(sorted(cols)) for name, cols in columns.items()})


def _check_source(view: View, source: Source, schema: pa.Schema, where: str) -> None:
    """The source has the entity key and a timestamp event time."""
    known = set(schema.names)
    for column, role in ((view.entity.key, f"entity key of {view.entity.name!r}"),
                         (source.timestamp, "event time")):
        if column not in known:
            raise FeatureDefinitionError(
                f"{where}: source {source.name!r} has no column {column!r} (the "
                f"{role}); it has {', '.join(schema.names)}")
    if not _temporal(schema.field(source.timestamp).type):
        raise FeatureDefinitionError(
            f"{where}: event time {source.timestamp!r} is "
            f"{schema.field(source.timestamp).type}, not a timestamp")


def _custom_columns(view: CustomView, source: Source, wanted: Sequence[str],
                    schema: pa.Schema, private: Mapping[str, str]) -> set[str]:
    """A custom view's input columns, all in the source and none tagged as personal data (the
    function sees their values as they are)."""
    where = f"custom view {view.name!r}, input {source.name!r}"
    if view.entity.key in private:
        raise FeatureDefinitionError(
            f"{where}: entity key {view.entity.key!r} of dataset {source.dataset!r} is tagged "
            f"pii ({private[view.entity.key]}); key the entity by a pseudonymous id")
    for column in wanted:
        if column not in schema.names:
            raise FeatureDefinitionError(f"{where}: unknown column {column!r}; it has "
                                         f"{', '.join(schema.names)}")
        if column in private:
            raise FeatureDefinitionError(
                f"{where}: column {column!r} of dataset {source.dataset!r} is tagged pii "
                f"({private[column]}), and function {view.function} would see its values; "
                "read a declared view's count of it instead, or remove its pii tag in the "
                "contract if it holds no personal data")
    return set(wanted)


def _feature_columns(view: FeatureView, schema: pa.Schema, where: str) -> set[str]:
    """The source columns a declared view's features read, checked against their types."""
    known = set(schema.names)
    needed: set[str] = set()
    for feature in view.features:
        at = f"{where}, feature {feature.name!r}"
        used = names_in(feature.filter, at) if feature.filter else set()
        if feature.column is not None:
            used.add(feature.column)
        used -= VIRTUAL_COLUMNS
        for column in sorted(used):
            if column not in known:
                raise FeatureDefinitionError(
                    f"{at}: unknown column {column!r} in source {view.source.name!r}; it "
                    f"has {', '.join(schema.names)}")
        needed |= used
        if feature.column is None or feature.agg in COUNTING:
            continue
        if feature.column in VIRTUAL_COLUMNS:  # whole numbers from the event time
            if feature.agg in TEMPORAL:
                raise FeatureDefinitionError(
                    f"{at}: {feature.agg!r} needs a date or timestamp column, and "
                    f"{feature.column!r} is a number of the event time")
            continue
        dtype = schema.field(feature.column).type
        if APPROXIMATE.get(feature.agg, feature.agg) in NUMERIC | DAILY and not _numeric(
                dtype):
            raise FeatureDefinitionError(
                f"{at}: {feature.agg!r} needs a numeric column, but {feature.column!r} is "
                f"{dtype}")
        if feature.agg in TEMPORAL and not _temporal(dtype):
            raise FeatureDefinitionError(
                f"{at}: {feature.agg!r} of a column needs a date or timestamp, but "
                f"{feature.column!r} is {dtype}")
    return needed


def plan_from_lake(views: Sequence[View], lake: Lake, ref: str,
                   private: Mapping[str, Mapping[str, str]] | None = None) -> FeaturePlan:
    """Plan against the source tables at `ref` (a commit, so every partition reads the same),
    and the PII-tagged columns of their datasets (`private`, as `plan_views` takes it)."""
    schemas: dict[str, pa.Schema] = {}
    for view in with_reads(views):
        for source in view.sources:
            if source.name not in schemas:
                schemas[source.name] = source_schema(lake, ref, source, view.name)
    return plan_views(views, schemas, private)


def measured(plan: FeaturePlan, lake: Lake, ref: str) -> FeaturePlan:
    """`plan` with its sources' rows and bucket layout at `ref`, from every object's Parquet
    footer: what sizes a build's partitions (only a build that chooses them reads this)."""
    rows: dict[str, int] = {}
    bucket_rows: dict[int, int] = {}
    for view in plan.views:
        for source in view.sources:
            if source.name not in rows:
                layout = source_layout(lake, ref, source, view.entity.key)
                rows[source.name] = sum(layout.values())
                for buckets, count in layout.items():
                    bucket_rows[buckets] = bucket_rows.get(buckets, 0) + count
    return replace(plan, rows=rows, bucket_rows=bucket_rows)
