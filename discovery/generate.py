"""Candidate generation: from each child table's profile, a grid of ordinary feature
declarations (aggregation x column x window x filter), tsfresh-like statistics of the daily
series, ratios and differences between windows, and (in a second round) interactions of the
best candidates. Every candidate is a `Feature` or `Derived` in a `FeatureView`, so the batch
engine computes it point-in-time correct, and a selected one needs no translation to serve."""
from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import combinations

from tideline.core.errors import DiscoveryError
from tideline.discovery.schema import ChildTable, Column
from tideline.features.definitions import Derived, Entity, Feature, FeatureView

WINDOWS = (7, 30, 90)
HASH_BUCKETS = 8
"""Hash buckets of a high-cardinality column (the hashing trick): one count per bucket."""
SESSION_GAP = "30m"
CHUNK = 60
"""Features per candidate view: one engine pass (and one Ray task per partition) computes a
view, so the time budget is checked between views of about this size."""


@dataclass(frozen=True)
class Candidate:
    """One generated feature: its declaration and what it belongs to."""

    name: str
    source: str
    family: str
    """`count`, `numeric`, `statistics`, `series`, `levels`, `distinct`, `hashed`, `recency`,
    `sessions`, `window ratio` or `interaction`."""
    description: str
    feature: Feature | None = None
    derived: Derived | None = None
    needs: tuple[str, ...] = ()
    """The candidates a derived one is computed from (they travel in its view)."""


@dataclass
class CandidateSet:
    """Generated candidates in their views, and what the budget left out."""

    candidates: dict[str, Candidate] = field(default_factory=dict)
    views: list[FeatureView] = field(default_factory=list)
    over_budget: int = 0

    def view_of(self, name: str) -> FeatureView:
        return next(v for v in self.views if name in v.feature_names)


def _slug(text: str) -> str:
    slug = re.sub(r"[^0-9a-zA-Z]+", "_", text).strip("_").lower()
    return slug or "blank"


def _days(window: int) -> str:
    return f"{window} days" if window != 1 else "day"


class _Grid:
    """The candidates of one child table, in groups that must share a view (a derived
    candidate and what it is computed from)."""

    def __init__(self, table: ChildTable, windows: Sequence[int], approximate: bool) -> None:
        self.table, self.windows, self.approximate = table, tuple(sorted(windows)), approximate
        self.rows = table.source.name
        self.longest = self.windows[-1]

    def feature(self, name: str, family: str, description: str, **spec: object) -> Candidate:
        name = f"{self.rows}_{name}"
        return Candidate(name, self.rows, family, description,
                         feature=Feature(name, description=description, **spec))  # type: ignore[arg-type]

    def derived(self, name: str, family: str, description: str, expression: str,
                needs: Sequence[Candidate]) -> Candidate:
        name = f"{self.rows}_{name}"
        return Candidate(name, self.rows, family, description,
                         derived=Derived(name, expression, description=description),
                         needs=tuple(c.name for c in needs))

    def groups(self) -> Iterator[list[Candidate]]:
        """Cheapest and most commonly useful first, so a tight budget keeps those."""
        rows = self.rows
        yield self.windowed("count", "count", f"number of {rows}", agg="count")
        numeric = self.table.of_kind("numeric")
        for column in numeric:
            for agg, what in (("sum", "sum"), ("mean", "mean"), ("max", "largest"),
                              ("min", "smallest"), ("std", "standard deviation")):
                yield self.windowed(f"{column.name}_{agg}", "numeric",
                                    f"{what} of {column.name}", agg=agg, column=column.name,
                                    ratios=agg == "sum")
        yield [self.feature("days_since_last", "recency", f"days since the last {rows} event",
                            agg="days_since_last"),
               self.feature("days_since_first", "recency", f"days since the first {rows} event",
                            agg="days_since_first")]
        for column in self.table.of_kind("categorical"):
            for level in column.levels:
                yield from self.level_groups(column, level, numeric)
        for column in self.table.of_kind("categorical") + self.table.of_kind("high_cardinality"):
            yield from self.distinct_groups(column)
        yield from self.series_groups(numeric)
        yield [self.feature(f"sessions_{w}d", "sessions",
                            f"sessions of {rows} events (a new one after {SESSION_GAP} "
                            f"without any) over the last {_days(w)}",
                            agg="sessions", window=w, gap=SESSION_GAP) for w in self.windows]
        for column in self.table.of_kind("high_cardinality"):
            yield [self.feature(f"{column.name}_bucket{b}_count_{self.longest}d", "hashed",
                                f"number of {rows} over the last {_days(self.longest)} whose "
                                f"{column.name} hashes to bucket {b} of {HASH_BUCKETS}",
                                agg="count", window=self.longest,
                                filter=f"bucket({column.name}, {HASH_BUCKETS}) == {b}")
                   for b in range(HASH_BUCKETS)]

    def windowed(self, name: str, family: str, what: str, ratios: bool = True,
                 where: str = "", **spec: object) -> list[Candidate]:
        """One aggregation over every window, then the ratios of its shorter windows to its
        longer ones and the change of its daily rate (last window vs the longest) when it is
        a count or a sum."""
        base = [self.feature(f"{name}_{w}d", family, f"{what} over the last {_days(w)}{where}",
                             window=w, **spec) for w in self.windows]
        if not ratios or spec.get("agg") not in {"count", "sum"}:
            return base
        out = list(base)
        for (short, a), (long, b) in combinations(zip(self.windows, base, strict=True), 2):
            out.append(self.derived(
                f"{name}_{short}d_over_{long}d", "window ratio",
                f"{what} over the last {_days(short)} as a share of the last {_days(long)}"
                f"{where}", f"ratio({a.name}, {b.name})", [a, b]))
        short, long = base[0], base[-1]
        out.append(self.derived(
            f"{name}_rate_change_{self.windows[0]}d_vs_{self.longest}d", "window ratio",
            f"daily rate of {what} over the last {_days(self.windows[0])} minus its daily rate "
            f"over the last {_days(self.longest)}{where}",
            f"{short.name} / {self.windows[0]} - {long.name} / {self.longest}", [short, long]))
        return out

    def level_groups(self, column: Column, level: str, numeric: Sequence[Column]
                     ) -> Iterator[list[Candidate]]:
        condition = f"{column.name} == {level!r}"
        slug = f"{column.name}_{_slug(level)}"
        where = f" where {column.name} = {level!r}"
        yield self.windowed(f"count_{slug}", "levels", f"number of {self.rows}", where=where,
                            agg="count", filter=condition)
        yield [self.feature(f"share_{slug}_{w}d", "levels",
                            f"share of {self.rows} over the last {_days(w)}{where}",
                            agg="share", window=w, filter=condition) for w in self.windows]
        for value in numeric:
            yield self.windowed(f"{value.name}_sum_{slug}", "levels", f"sum of {value.name}",
                                where=where, ratios=False, agg="sum", column=value.name,
                                filter=condition)

    def distinct_groups(self, column: Column) -> Iterator[list[Candidate]]:
        agg = "approx_nunique" if self.approximate else "nunique"
        what = "approximate number" if self.approximate else "number"
        yield self.windowed(f"{column.name}_distinct", "distinct",
                            f"{what} of distinct {column.name} values", ratios=False, agg=agg,
                            column=column.name)
        if column.kind == "categorical":
            yield [self.feature(f"last_{column.name}", "distinct",
                                f"{column.name} of the last {self.rows} event", agg="last",
                                column=column.name)]

    def series_groups(self, numeric: Sequence[Column]) -> Iterator[list[Candidate]]:
        w = self.longest
        over = f"over the last {_days(w)}"
        quantile = "approx_p" if self.approximate else "p"
        yield [self.feature(f"daily_count_{agg}_{w}d", "series", f"{what} of daily {self.rows} "
                            f"counts {over}", agg=agg, window=w)
               for agg, what in (("trend_slope", "trend (slope per day)"),
                                 ("trend_r2", "linearity (r²) of the trend"),
                                 ("ema_7d", "7-day-half-life moving average"))]
        for column in numeric:
            name = column.name
            yield [self.feature(f"{name}_{agg}_{w}d", "statistics", f"{what} of {name} {over}",
                                agg=agg, column=name, window=w)
                   for agg, what in (("skew", "skewness"), ("kurtosis", "excess kurtosis"),
                                     ("cv", "coefficient of variation"), ("range", "range"),
                                     (f"{quantile}50", "median"),
                                     (f"{quantile}95", "95th percentile"))]
            yield [self.feature(f"daily_{name}_{agg}_{w}d", "series",
                                f"{what} of daily {name} totals {over}", agg=agg, column=name,
                                window=w)
                   for agg, what in (("trend_slope", "trend (slope per day)"),
                                     ("trend_r2", "linearity (r²) of the trend"),
                                     ("ema_7d", "7-day-half-life moving average"))]


def generate(entity: Entity, tables: Sequence[ChildTable], owner: str,
             max_candidates: int, windows: Sequence[int] = WINDOWS,
             approximate: bool = False) -> CandidateSet:
    """Candidates over every child table, in their views (`discovery_<table>_<k>`), cut at
    `max_candidates` (whole groups: a derived candidate never loses what it needs)."""
    if not isinstance(max_candidates, int) or max_candidates < 1:
        raise DiscoveryError(f"the candidate budget must be at least 1, got {max_candidates!r}")
    if not windows or any(not isinstance(w, int) or w < 1 for w in windows):
        raise DiscoveryError(f"windows must be positive numbers of days, got {list(windows)}")
    grids = [_Grid(table, windows, approximate).groups() for table in tables]
    result = CandidateSet()
    chunks: dict[str, list[list[Candidate]]] = {}
    # round robin over the tables, so a tight budget spreads over all of them
    while grids:
        for grid in list(grids):
            group = next(grid, None)
            if group is None:
                grids.remove(grid)
                continue
            if len(result.candidates) + len(group) > max_candidates:
                result.over_budget += len(group)
                continue
            for candidate in group:
                result.candidates[candidate.name] = candidate
            views = chunks.setdefault(group[0].source, [[]])
            if len(views[-1]) + len(group) > CHUNK:
                views.append([])
            views[-1].extend(group)
    by_name = {table.source.name: table for table in tables}
    for k in range(max((len(views) for views in chunks.values()), default=0)):
        for source, views in chunks.items():  # interleaved: a time budget spreads too
            if k < len(views):
                result.views.append(candidate_view(f"discovery_{source}_{k}", entity,
                                                   by_name[source], views[k], owner))
    return result


def candidate_view(name: str, entity: Entity, table: ChildTable,
                   members: Sequence[Candidate], owner: str, description: str = "") -> FeatureView:
    return FeatureView(
        name=name, entity=entity, source=table.source, owner=owner,
        description=description or f"Discovery candidates over {table.source.name}",
        features=[c.feature for c in members if c.feature is not None],
        derived=[c.derived for c in members if c.derived is not None],
        tags=("discovered",))


def with_needs(names: Sequence[str], candidates: dict[str, Candidate]) -> dict[str, Candidate]:
    """The named candidates and, before each, what it is computed from (transitively)."""
    out: dict[str, Candidate] = {}

    def add(name: str) -> None:
        if name not in out:
            for need in candidates[name].needs:
                add(need)
            out[name] = candidates[name]

    for name in names:
        add(name)
    return out


def interactions(best: Sequence[Candidate], tables: Sequence[ChildTable], entity: Entity,
                 owner: str, candidates: dict[str, Candidate]) -> CandidateSet:
    """Products and ratios of pairs of the best candidates of the same table (one view per
    table holds the pair's candidates too; derived features see only their own view's)."""
    result = CandidateSet()
    by_table: dict[str, list[Candidate]] = {}
    for candidate in best:
        by_table.setdefault(candidate.source, []).append(candidate)
    for source, chosen in by_table.items():
        members = with_needs([c.name for c in chosen], candidates)
        pairs = []
        for a, b in combinations(chosen, 2):
            for op, symbol, what in (("*", "times", "product"), ("/", "per", "ratio")):
                expression = f"{a.name} * {b.name}" if op == "*" else f"ratio({a.name}, {b.name})"
                name = f"{a.name}_{symbol}_{b.name.removeprefix(source + '_')}"
                text = f"{what} of ({a.description}) and ({b.description})"
                pairs.append(Candidate(name, source, "interaction", text,
                                       derived=Derived(name, expression, description=text),
                                       needs=(a.name, b.name)))
        for pair in pairs:
            result.candidates[pair.name] = pair
        table = next(t for t in tables if t.source.name == source)
        result.views.append(candidate_view(f"discovery_{source}_interactions", entity, table,
                                           [*members.values(), *pairs], owner))
    return result


def selected_views(kept: Sequence[str], candidates: dict[str, Candidate],
                   tables: Sequence[ChildTable], entity: Entity, owner: str, run_id: str,
                   report: str) -> list[FeatureView]:
    """The kept candidates as one view per table (`discovered_<table>`), with what a kept
    derived candidate is computed from; their descriptions say what each one is."""
    views = []
    for table in tables:
        source = table.source.name
        members = with_needs([n for n in kept if candidates[n].source == source], candidates)
        if members:
            views.append(candidate_view(
                f"discovered_{source}", entity, table, list(members.values()), owner,
                f"Features over {source} that automated discovery (run {run_id}) selected; "
                f"why each one was kept: {report}"))
    return views
