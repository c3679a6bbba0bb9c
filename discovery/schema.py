"""What discovery generates from: the clean tables that hang off an entity's table through the
project's declared references (child.column -> parent.column), and a profile of their columns
at one lake commit (types, levels of low-cardinality text columns, nulls)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
from tideline.core.errors import DiscoveryError
from tideline.features.definitions import Entity, Source
from tideline.features.offline import read_source, source_schema
from tideline.ingestion.project import Project
from tideline.lake.base import Lake

MAX_LEVELS = 12
"""A text column with at most this many values is categorical: discovery filters by each
value. With more, it is high-cardinality: distinct counts and hash buckets instead."""


@dataclass(frozen=True)
class Relationship:
    """Rows of `child` belong to the `parent` row whose `parent_column` equals `column`."""

    child: str
    column: str
    parent: str
    parent_column: str


@dataclass(frozen=True)
class Column:
    name: str
    kind: str
    """`numeric`, `categorical` (with `levels`) or `high_cardinality`."""
    levels: tuple[str, ...] = ()
    """The values of a categorical column, most frequent first."""
    distinct: int = 0


@dataclass(frozen=True)
class ChildTable:
    """One table of events of the entity, and the columns discovery may aggregate."""

    source: Source
    key: str
    """The column holding the entity's key."""
    rows: int
    columns: tuple[Column, ...] = field(default_factory=tuple)

    def of_kind(self, kind: str) -> list[Column]:
        return [column for column in self.columns if column.kind == kind]


@dataclass(frozen=True)
class SchemaGraph:
    """The tables and references a project declares, with each table's event-time column."""

    tables: dict[str, tuple[str, ...]]
    """Dataset -> the columns that identify a row (never aggregated)."""
    times: dict[str, str]
    """Dataset -> its event-time column (the source's `timestamp_column`)."""
    relationships: tuple[Relationship, ...]
    """Every declared reference."""
    columns: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Dataset -> its contract's columns."""

    @classmethod
    def of_project(cls, project: Project) -> SchemaGraph:
        times: dict[str, str] = {}
        for source in project.sources:
            times.setdefault(source.dataset, source.timestamp_column)
        return cls(tables={c.dataset: tuple(c.key) for c in project.contracts}, times=times,
                   relationships=tuple(Relationship(c.dataset, r.column, r.dataset, r.ref_column)
                                       for c in project.contracts for r in c.references),
                   columns={c.dataset: tuple(col.name for col in c.columns)
                            for c in project.contracts})

    def children(self, entity: Entity) -> list[tuple[Source, Relationship]]:
        """The tables whose rows belong to the entity's table (the one keyed by the entity's
        key): its events, with their sources. Without such a table the entity's table is
        implied, and its events are the tables with an event time that carry its key. Raises
        on a reference cycle, on a reference to an undeclared table, and when no table refers
        to the entity's."""
        where = f"feature discovery for entity {entity.name!r} (key {entity.key!r})"
        owners = sorted(name for name, key in self.tables.items() if key == (entity.key,))
        if not owners:
            return self._carrying(entity, where)
        table = owners[0]
        for link in self.relationships:
            for end in (link.child, link.parent):
                if end not in self.tables:
                    raise DiscoveryError(
                        f"{where}: the reference {link.child}.{link.column} -> "
                        f"{link.parent}.{link.parent_column} names table {end!r}, which the "
                        "project does not declare")
        cycle = self._cycle()
        if cycle:
            raise DiscoveryError(f"{where}: the references form a cycle "
                                 f"({' -> '.join(cycle)}); a child table cannot also be an "
                                 "ancestor of its parent")
        found = []
        for link in self.relationships:
            if link.parent != table or link.child == table:
                continue
            if link.column != entity.key or link.parent_column != entity.key:
                raise DiscoveryError(
                    f"{where}: {link.child}.{link.column} refers to {table}.{link.parent_column}; "
                    f"discovery needs the child's rows keyed by {entity.key!r} as well")
            time = self.times.get(link.child)
            if time is None:
                raise DiscoveryError(f"{where}: table {link.child!r} refers to it but has no "
                                     "event-time column (its source's timestamp_column)")
            found.append((Source(link.child, dataset=link.child, timestamp=time), link))
        if not found:
            raise DiscoveryError(
                f"{where}: no table refers to {table}.{entity.key}, so there is nothing to "
                f"aggregate; declare references (e.g. `references: [{{column: {entity.key}, "
                f"dataset: {table}, ref_column: {entity.key}}}]`) in the child tables' "
                "contracts")
        return found

    def _carrying(self, entity: Entity, where: str) -> list[tuple[Source, Relationship]]:
        """The event tables that carry the entity's key, children of its implied table."""
        found = [(Source(name, dataset=name, timestamp=self.times[name]),
                  Relationship(name, entity.key, entity.name, entity.key))
                 for name in sorted(self.tables)
                 if entity.key in self.columns.get(name, ()) and name in self.times]
        if not found:
            raise DiscoveryError(
                f"{where}: no table is keyed by {entity.key!r} and no table with an event "
                f"time has a column {entity.key!r}; the project declares "
                f"{', '.join(sorted(self.tables))}")
        return found

    def _cycle(self) -> list[str]:
        edges: dict[str, set[str]] = {}
        for link in self.relationships:
            if link.child != link.parent:
                edges.setdefault(link.child, set()).add(link.parent)
        state: dict[str, int] = {}  # 1 on the path, 2 done
        path: list[str] = []

        def visit(node: str) -> list[str]:
            state[node] = 1
            path.append(node)
            for parent in sorted(edges.get(node, ())):
                if state.get(parent) == 1:
                    return [*path[path.index(parent):], parent]
                if parent not in state and (found := visit(parent)):
                    return found
            path.pop()
            state[node] = 2
            return []

        for node in sorted(edges):
            if node not in state and (found := visit(node)):
                return found
        return []


def _numeric(dtype: pa.DataType) -> bool:
    return (pa.types.is_integer(dtype) or pa.types.is_floating(dtype)
            or pa.types.is_decimal(dtype)) and not pa.types.is_boolean(dtype)


def _text(dtype: pa.DataType) -> bool:
    return (pa.types.is_string(dtype) or pa.types.is_large_string(dtype)
            or pa.types.is_dictionary(dtype) or pa.types.is_boolean(dtype))


def profile(lake: Lake, ref: str, source: Source, key: str, identifiers: Sequence[str],
            max_levels: int = MAX_LEVELS) -> ChildTable:
    """Read a child table's columns at `ref` and sort them into numeric, categorical (with
    their levels, most frequent first) and high-cardinality text; identifiers, the entity key
    and temporal columns are left out. A null event time is an error naming table and
    column (the engine could not place the row in time)."""
    schema = source_schema(lake, ref, source, f"discovery:{source.name}")
    if source.timestamp not in schema.names:
        raise DiscoveryError(f"table {source.dataset!r}: no event-time column "
                             f"{source.timestamp!r}; it has {', '.join(schema.names)}")
    usable = [f for f in schema if f.name not in {key, source.timestamp, *identifiers}
              and (_numeric(f.type) or _text(f.type))]
    table = read_source(lake, ref, source, key, [source.timestamp, *[f.name for f in usable]])
    nulls = table.column(source.timestamp).null_count
    if nulls:
        raise DiscoveryError(f"table {source.dataset!r}: event-time column "
                             f"{source.timestamp!r} has {nulls:,} null values in "
                             f"{table.num_rows:,} rows; windows need every row placed in time")
    columns = []
    for f in usable:
        if _numeric(f.type):
            columns.append(Column(f.name, "numeric"))
            continue
        values = table.column(f.name)
        if pa.types.is_boolean(f.type):
            values = values.cast(pa.string())
        counts = pc.value_counts(values.drop_null() if values.null_count else values)
        if len(counts) > max_levels:  # only levels are ordered (a session id has millions)
            columns.append(Column(f.name, "high_cardinality", distinct=len(counts)))
            continue
        order = sorted(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(),
                           strict=True), key=lambda pair: (-pair[1], str(pair[0])))
        columns.append(Column(f.name, "categorical", tuple(str(v) for v, _ in order),
                              len(order)))
    return ChildTable(source=source, key=key, rows=table.num_rows, columns=tuple(columns))
