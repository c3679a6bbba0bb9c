"""Feature definitions as data: entities, sources, windowed features, derived features and the
feature views that group them. Each view's version is a stable hash of its definition, so a
changed definition is a new version and the old one stays readable.

A view reads like this::

    FeatureView(
        name="transactions_30d", entity=CUSTOMER, source=TRANSACTIONS,
        owner="growth@example.com", description="Spending over the last month",
        features=[Feature("spend_30d", "amount", "sum", window=30),
                  Feature("refund_share_30d", agg="share", window=30,
                          filter="category == 'refund'")],
    )

Every windowed value at as-of time t uses the source's events with event time in [t - w, t):
strictly before t, never at or after it.
"""
from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from tideline.core.addresses import valid_address
from tideline.core.errors import FeatureDefinitionError
from tideline.core.project import is_project_file, section

# Aggregations over a window's events, by what they need of the column.
COUNTING = {"count", "share"}
"""No column: they count events (`share` is the fraction of events matching the filter)."""
ANY_COLUMN = {"nunique", "first", "last"}
"""Any column type."""
NUMERIC = {"sum", "mean", "min", "max", "std", "var", "skew", "kurtosis", "cv", "range",
           "p25", "p50", "p75", "p95"}
"""A numeric column."""
DAILY = {"daily_mean", "trend_slope", "trend_r2", "ema_7d"}
"""Over the window's daily totals of a numeric column (daily event counts without a column);
day k covers [t - (k+1) d, t - k d), empty days count as 0. `daily_mean` is the moving average,
`trend_slope`/`trend_r2` fit a line through the days (oldest first), `ema_7d` weighs them by a
7-day half-life."""
TEMPORAL = {"days_since_last", "days_since_first"}
"""Days from the newest / oldest event in the window to t; with a column (a date or timestamp),
from that column's newest / oldest value instead (tenure from a signup date, say)."""
SESSIONS = {"sessions"}
"""Sessions in the window: runs of events (matching the filter) with less than `gap` between
one and the next; a run cut by the window's start counts from its first event inside."""
AGGREGATIONS = COUNTING | ANY_COLUMN | NUMERIC | DAILY | TEMPORAL | SESSIONS
STREAM_UNBOUNDED = {"count", "share", "sum", "mean", "var", "std", "min", "max", "first", "last",
                    "days_since_first", "days_since_last"}
"""What a streamable view may compute over all history (no window): running counts, sums,
Welford's mean and variance, extremes and the first and last event, which a stream processor
keeps without holding the events."""
QUANTILES = {"p25": 0.25, "p50": 0.5, "p75": 0.75, "p95": 0.95}
APPROXIMATE = {"approx_nunique": "nunique", "approx_p25": "p25", "approx_p50": "p50",
               "approx_p75": "p75", "approx_p95": "p95"}
"""Sketch estimates, for high-cardinality columns, of the exact aggregation each names (whose
column rules and empty value they share). Kept apart from `AGGREGATIONS`, the exact ones, each of
which has one right value."""
HLL_PRECISION = 12
"""`approx_nunique` is what a HyperLogLog++ sketch of 2**12 registers reports: standard error
1.04 / sqrt(4096) = 1.6%, from Ertl's improved estimator (no bias from small to large counts).
While it has seen at most 4096 distinct 25-bit hash prefixes it is still sparse and counts those
(linear counting over 2**25 cells: exact in practice)."""
HLL_SPARSE_PRECISION = 25
DDSKETCH_ALPHA = 0.01
"""`approx_p*` is within 1% (relative) of the exact quantile: the representative of the
value's log bucket, a DDSketch with relative accuracy 0.01."""
VIRTUAL_COLUMNS = {"weekday", "hour", "day"}
"""Usable in filters and as a feature's column: the event time's weekday (Monday = 0), hour and
calendar day (days since 1970-01-01), in UTC. Active days in a window are `nunique` of `day`."""


DURATION_UNITS = {"m": 60 * 10**9, "h": 3600 * 10**9, "d": 86_400 * 10**9}
DAY_NS = DURATION_UNITS["d"]


def duration_ns(value: int | str) -> int:
    """A window or gap in nanoseconds: a whole number of days, or text such as ``"30m"``,
    ``"1h"`` or ``"7d"``."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(f"not a positive number of days: {value!r}")
        return value * DAY_NS
    match = re.fullmatch(r"([1-9][0-9]*)([mhd])", str(value))
    if match is None:
        raise ValueError(f"not a duration: {value!r} (days as a number, or e.g. '30m', '1h', "
                         "'7d')")
    return int(match.group(1)) * DURATION_UNITS[match.group(2)]


def whole_days(value: int | str | None) -> int | None:
    """A window as whole days (None when it is not a whole number of days)."""
    if value is None:
        return None
    ns = duration_ns(value)
    return ns // DAY_NS if ns % DAY_NS == 0 else None


def _stable_hash(payload: Any) -> str:
    body = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(body.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Entity:
    """What features describe: one row per `key` value (a customer, say)."""

    name: str
    key: str


@dataclass(frozen=True)
class Source:
    """A clean, validated lake table (`clean/<dataset>/`) of events of an entity."""

    name: str
    dataset: str
    timestamp: str
    """Event time: the column windows and point-in-time correctness are measured on."""


@dataclass(frozen=True)
class Feature:
    """One value per entity and as-of time: `agg` of `column` over the events of the `window`
    before the as-of time (days as a number, or a duration such as ``"1h"``; all history before
    it when None), optionally only the events matching `filter` (an expression over the
    source's columns, e.g. ``category == 'refund'`` or ``weekday >= 5``). `gap` is the
    inactivity that ends a session (`sessions` only)."""

    name: str
    column: str | None = None
    agg: str = "count"
    window: int | str | None = None
    filter: str | None = None
    description: str = ""
    gap: str | None = None

    @property
    def window_ns(self) -> int | None:
        return None if self.window is None else duration_ns(self.window)


@dataclass(frozen=True)
class Derived:
    """A feature computed from other features of the same view, row by row: an arithmetic
    expression over their names (``spend_30d / spend_90d``), with `ratio(a, b)` (null when b is
    0), `where(cond, a, b)`, `log1p`, `clip(x, lo, hi)`, `abs`, `fillna(x, v)`, `least`,
    `greatest`. With `cases`, a CASE-style segment: the label of the first condition that holds,
    else `default`."""

    name: str
    expression: str | None = None
    cases: tuple[tuple[str, str], ...] = ()
    default: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        # YAML and declarations give lists; tuples keep the feature hashable and comparable
        object.__setattr__(self, "cases", tuple(tuple(case) for case in self.cases))


@dataclass(frozen=True)
class FeatureView:
    """A named group of features of one entity from one source, with an owner to tell."""

    name: str
    entity: Entity
    source: Source
    features: tuple[Feature, ...]
    owner: str
    description: str = ""
    derived: tuple[Derived, ...] = ()
    tags: tuple[str, ...] = field(default_factory=tuple)
    ttl_days: int | None = None
    """How long a materialised value stays valid after its as-of date; past that, online and
    offline retrieval both return null for the view (None: valid until the next one)."""
    drift_method: str | None = None
    """The drift test for this view's features (`wasserstein`, `jensenshannon`, `psi`, `ks`,
    `chisquare`, `z`); None chooses by type and sample size."""
    drift_threshold: float | None = None
    """Its threshold (a distance at or above it, or a p-value below it, is drift)."""
    streamable: bool = False
    """Also computed by the stream processor (`tideline stream`) from live events, with the
    same values the batch engine gives at the same time."""
    reads: tuple[View, ...] = ()
    """Other views of the same entity whose features the derived expressions may name
    (`txn_mean_30d * cancel_page_7d`); built with this one, and part of its version."""

    def __post_init__(self) -> None:
        # lists read better in declarations; tuples keep the view hashable and frozen
        object.__setattr__(self, "features", tuple(self.features))
        object.__setattr__(self, "derived", tuple(self.derived))
        object.__setattr__(self, "tags", tuple(self.tags))
        object.__setattr__(self, "reads", tuple(self.reads))
        check_view(self)

    @cached_property  # a frozen view never changes; store lookups ask for it on every call
    def version(self) -> str:
        """Stable hash of everything that changes the values (not owner, tags, TTL, drift
        rules, streaming or prose)."""
        return _stable_hash({
            "entity": asdict(self.entity), "source": asdict(self.source),
            "features": [_semantic(f) for f in self.features],
            "derived": [_semantic(d) for d in self.derived], **_read_versions(self),
        })

    @property
    def sources(self) -> tuple[Source, ...]:
        return (self.source,)

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features] + [d.name for d in self.derived]

    @property
    def max_window(self) -> int | None:
        """The longest window in whole days, rounded up (None when a feature looks at all
        history)."""
        windows = [f.window_ns for f in self.features]
        return None if None in windows else -(-max(windows) // DAY_NS)  # type: ignore[type-var]

    @property
    def longest_window_ns(self) -> int:
        """The longest bounded window (0 when every feature looks at all history)."""
        return max((f.window_ns for f in self.features if f.window is not None), default=0)


def _semantic(item: Feature | Derived) -> dict[str, Any]:
    body = asdict(item)
    body.pop("description")
    if body.get("gap", ...) is None:
        body.pop("gap")  # not a session feature: hashed as before `gap` existed
    if body.get("agg") in APPROXIMATE:  # its accuracy changes its values
        body["sketch"] = (f"hll:{HLL_PRECISION}:{HLL_SPARSE_PRECISION}"
                          if body["agg"] == "approx_nunique" else f"ddsketch:{DDSKETCH_ALPHA}")
    return body


def _read_versions(view: View) -> dict[str, Any]:
    """The versions of the views `view` reads, for its own version (nothing when it reads
    none, so views without cross-view features keep their versions)."""
    return {"reads": {v.name: v.version for v in view.reads}} if view.reads else {}


@dataclass(frozen=True)
class Input:
    """What a custom view's function reads of one source: these columns (with the entity key
    and event time, which every input has) of its events."""

    source: Source
    columns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", tuple(self.columns))


CUSTOM_PER = ("entity", "partition", "table")
"""How a custom view's function is called: once per spine row with that entity's events
(`f(events, ..., as_of) -> value`), once per entity partition with pandas frames of every
row's events (`f(events, ..., spine) -> DataFrame`), or with Modin frames (`table`)."""


@dataclass(frozen=True)
class CustomView:
    """A view whose features a user's Python function computes from the events of one or
    more sources of an entity. The engine hands the function only the events of each spine
    row's window `[as_of - lookback, as_of)` (all history before `as_of` without a lookback),
    so it cannot see the future.

    `function` is a module-level function or its `module:function`; with `per="entity"` it
    takes one frame per input and the row's as-of time, and returns the value (a mapping of
    feature name to value when the view has several features); with `per="partition"` or
    `per="table"` it takes one frame per input, indexed by spine row (index name `row`), and
    the spine (index `row`; the entity key and `as_of`), and returns a frame with a column
    per feature and a row per spine row. `table` hands it Modin frames on the Ray cluster."""

    name: str
    entity: Entity
    inputs: tuple[Input, ...]
    function: str | Callable[..., Any]
    features: tuple[str, ...]
    owner: str
    lookback: int | str | None = None
    """Days as a number, or a duration such as ``"12h"``; None: all history."""
    per: Literal["entity", "partition", "table"] = "entity"
    description: str = ""
    derived: tuple[Derived, ...] = ()
    reads: tuple[View, ...] = ()
    tags: tuple[str, ...] = field(default_factory=tuple)
    ttl_days: int | None = None
    drift_method: str | None = None
    drift_threshold: float | None = None
    streamable: bool = False
    """Cheap enough for the stream processor to call on every batch, for the entities it
    touched (one input, a lookback it keeps in its buffer, no views read): the same function
    keeps the online values fresh between batch builds."""

    def __post_init__(self) -> None:
        for name in ("inputs", "features", "derived", "reads", "tags"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if callable(self.function):
            object.__setattr__(self, "function", function_reference(self.function, self.name))
        check_custom(self)

    @cached_property
    def callable(self) -> Callable[..., Any]:
        return resolve_function(str(self.function), self.name)

    @cached_property
    def version(self) -> str:
        """Stable hash of the function's source, its inputs, lookback and way of calling, and
        the features and derived expressions (not owner, tags, TTL, drift rules or prose)."""
        return _stable_hash({
            "entity": asdict(self.entity), "inputs": [asdict(i) for i in self.inputs],
            "function": self.function, "code": inspect.getsource(self.callable),
            "lookback": self.lookback, "per": self.per, "features": list(self.features),
            "derived": [_semantic(d) for d in self.derived], **_read_versions(self),
        })

    @property
    def sources(self) -> tuple[Source, ...]:
        return tuple(i.source for i in self.inputs)

    @property
    def feature_names(self) -> list[str]:
        return list(self.features) + [d.name for d in self.derived]

    @property
    def lookback_ns(self) -> int | None:
        return None if self.lookback is None else duration_ns(self.lookback)

    @property
    def longest_window_ns(self) -> int:
        """The lookback (0 for all history), as declared views give their longest window."""
        return self.lookback_ns or 0


View = FeatureView | CustomView
"""Any view the engine computes: declared aggregations or a user's function."""


def function_reference(function: Callable[..., Any], view: str) -> str:
    """`module:function` of a module-level function (what Ray workers import)."""
    reference = f"{function.__module__}:{function.__qualname__}"
    if "<" in function.__qualname__ or not function.__qualname__.isidentifier():
        raise FeatureDefinitionError(
            f"custom view {view!r}: function {reference} is not a module-level function; "
            "define it at the top level of an importable module (Ray workers import it)")
    return reference


def resolve_function(reference: str, view: str) -> Callable[..., Any]:
    """The function `module:function` names."""
    module, _, attribute = reference.partition(":")
    try:
        found = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError, ValueError) as exc:
        raise FeatureDefinitionError(
            f"custom view {view!r}: cannot load function {reference!r}: {exc}; give "
            "`module:function` of an importable module") from exc
    if not callable(found):
        raise FeatureDefinitionError(f"custom view {view!r}: {reference!r} is a "
                                     f"{type(found).__name__}, not a function")
    return found


def check_custom(view: CustomView) -> None:
    """What a custom view can be checked for without data: its names, inputs, lookback, the
    function's arguments and its derived features."""
    where = f"custom view {view.name!r}"
    _check_common(view, where)
    if not view.inputs:
        raise FeatureDefinitionError(f"{where} declares no inputs (the sources it reads)")
    if view.per not in CUSTOM_PER:
        raise FeatureDefinitionError(f"{where}: per must be one of {', '.join(CUSTOM_PER)}, "
                                     f"got {view.per!r}")
    names = [i.source.name for i in view.inputs]
    if len(set(names)) != len(names):
        raise FeatureDefinitionError(f"{where}: a source is read twice ({', '.join(names)}); "
                                     "give each source one input with all its columns")
    for item in view.inputs:
        for column in item.columns:
            if column in (view.entity.key, item.source.timestamp):
                raise FeatureDefinitionError(
                    f"{where}, input {item.source.name!r}: {column!r} is passed always; "
                    "list only the other columns")
    if view.lookback is not None:
        try:
            duration_ns(view.lookback)
        except ValueError:
            raise FeatureDefinitionError(
                f"{where}: lookback must be a positive number of days or a duration such as "
                f"'30m', '1h' or '7d', got {view.lookback!r}") from None
    try:
        inspect.getsource(view.callable)
    except (OSError, TypeError) as exc:
        raise FeatureDefinitionError(
            f"{where}: the source of function {view.function} cannot be read ({exc}); its "
            "version is the hash of its source, so define it in a Python file") from None
    last = "as_of" if view.per == "entity" else "spine"
    try:
        inspect.signature(view.callable).bind(*names, last)
    except TypeError as exc:
        raise FeatureDefinitionError(
            f"{where}: function {view.function} must take {len(names)} frame(s) ("
            f"{', '.join(names)}) and {last}: {exc}") from None
    _check_derived(view, where, set(view.features))
    if view.streamable and (len(view.inputs) != 1 or view.lookback is None or view.reads
                            or view.per == "table"):
        raise FeatureDefinitionError(
            f"{where}: a streamable custom view reads one input over a lookback (the stream "
            "processor's buffer), reads no other view and runs on pandas (per entity or "
            "partition)")


def _check_common(view: View, where: str) -> None:
    """What every kind of view must hold: features, a valid name, owner, TTL, drift
    threshold, identifiers as feature names, and readable views of the same entity."""
    if not view.features:
        raise FeatureDefinitionError(f"{where} declares no features")
    if view.ttl_days is not None and (not isinstance(view.ttl_days, int) or view.ttl_days <= 0):
        raise FeatureDefinitionError(f"{where}: ttl_days must be a positive number of days, "
                                     f"got {view.ttl_days!r}")
    if view.drift_threshold is not None and not (isinstance(view.drift_threshold, int | float)
                                                 and view.drift_threshold > 0):
        raise FeatureDefinitionError(f"{where}: drift_threshold must be a positive number, got "
                                     f"{view.drift_threshold!r}")
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", view.name):
        raise FeatureDefinitionError(f"{where}: a view name is lower-case letters, digits, '_' "
                                     "and '-' (it names lake paths and registry rows)")
    if not valid_address(view.owner):
        raise FeatureDefinitionError(f"{where}: owner must be one bare e-mail address "
                                     f"(local@domain), got {view.owner!r}")
    seen: set[str] = {view.entity.key}
    for name in view.feature_names:
        if not name.isidentifier():
            raise FeatureDefinitionError(f"{where}: feature name {name!r} is not an "
                                         "identifier (letters, digits, _)")
        if name in seen:
            raise FeatureDefinitionError(f"{where}: duplicate feature name {name!r}")
        seen.add(name)
    for other in view.reads:
        if other.entity != view.entity:
            raise FeatureDefinitionError(
                f"{where}: reads view {other.name!r} of entity {other.entity.name!r}; a view "
                f"reads only views of its own entity ({view.entity.name!r})")


def _check_derived(view: View, where: str, known: set[str]) -> None:
    """Derived features name the view's features, the derived ones before them and the
    features of the views it reads."""
    from tideline.features.expressions import names_in

    borrowed = {name: other.name for other in view.reads for name in other.feature_names}
    for derived in view.derived:
        at = f"{where}, derived feature {derived.name!r}"
        if (derived.expression is None) == (not derived.cases):
            raise FeatureDefinitionError(f"{at}: give either an expression or cases")
        texts = [derived.expression] if derived.expression else [c for c, _ in derived.cases]
        for text in texts:
            unknown = names_in(text, at) - known - borrowed.keys()
            if unknown:
                raise FeatureDefinitionError(
                    f"{at}: refers to unknown feature(s) {', '.join(sorted(unknown))}; a derived "
                    "feature may use the view's features, the derived ones before it and the "
                    "features of the views it reads"
                    + (f" ({', '.join(v.name for v in view.reads)})" if view.reads else ""))
        known.add(derived.name)


def with_reads(views: Sequence[View]) -> list[View]:
    """`views` and every view they read (transitively), each once, a read view before the
    views reading it."""
    ordered: dict[str, View] = {}

    def add(view: View) -> None:
        if ordered.get(view.name, view) != view:
            raise FeatureDefinitionError(f"two different views are named {view.name!r} (one "
                                         "is read by another view)")
        if view.name not in ordered:
            for other in view.reads:
                add(other)
            ordered[view.name] = view

    for view in views:
        add(view)
    return list(ordered.values())


def check_view(view: FeatureView) -> None:
    """Everything that can be checked without the data: names, windows, aggregations, filters,
    derived expressions. The source's columns are checked at plan time."""
    from tideline.features.expressions import names_in

    where = f"feature view {view.name!r}"
    _check_common(view, where)
    for feature in view.features:
        at = f"{where}, feature {feature.name!r}"
        if feature.agg not in AGGREGATIONS and feature.agg not in APPROXIMATE:
            raise FeatureDefinitionError(f"{at}: unknown aggregation {feature.agg!r}; one of "
                                         f"{', '.join(sorted(AGGREGATIONS | set(APPROXIMATE)))}")
        exact = APPROXIMATE.get(feature.agg, feature.agg)
        for what in ("window", "gap"):
            value = getattr(feature, what)
            if value is not None:
                try:
                    duration_ns(value)
                except ValueError:
                    raise FeatureDefinitionError(
                        f"{at}: {what} must be a positive number of days or a duration such as "
                        f"'30m', '1h' or '7d', got {value!r}") from None
        if (feature.gap is not None) != (feature.agg in SESSIONS):
            raise FeatureDefinitionError(
                f"{at}: 'sessions' needs a gap (e.g. gap='30m')" if feature.gap is None
                else f"{at}: only 'sessions' takes a gap")
        if feature.agg in COUNTING | SESSIONS and feature.column is not None:
            raise FeatureDefinitionError(f"{at}: {feature.agg!r} counts events and takes no "
                                         "column")
        if (exact in ANY_COLUMN | NUMERIC) and feature.column is None:
            raise FeatureDefinitionError(f"{at}: {feature.agg!r} needs a column")
        if feature.agg == "share" and feature.filter is None:
            raise FeatureDefinitionError(f"{at}: 'share' needs a filter (the events to count)")
        if feature.agg in DAILY and whole_days(feature.window) is None:
            raise FeatureDefinitionError(f"{at}: {feature.agg!r} needs a window of whole days")
        if view.streamable and feature.window is None and feature.agg not in STREAM_UNBOUNDED:
            raise FeatureDefinitionError(
                f"{at}: a streamable view computes {feature.agg!r} only over a window; over all "
                f"history it can keep {', '.join(sorted(STREAM_UNBOUNDED))}")
        if view.streamable and feature.agg in TEMPORAL and feature.column is not None:
            raise FeatureDefinitionError(f"{at}: a streamable view measures recency from event "
                                         "times, not from a column")
        if feature.filter is not None:
            names_in(feature.filter, at)
    _check_derived(view, where, {f.name for f in view.features})


# -- loading ---------------------------------------------------------------------------------

def load_definitions(spec: str) -> list[View]:
    """Views from `module:attribute` (a list of views in Python), from a YAML file, or from a
    project file's `features` section (itself either of those); several of any, separated by
    commas (`tideline.demo.views:DEMO_VIEWS,discovered.yaml`)."""
    if "," in spec:
        return [view for part in spec.split(",") if part.strip()
                for view in load_definitions(part.strip())]
    if is_project_file(spec):
        path = Path(spec)
        body = section(path, "features")
        if body is None:
            raise FeatureDefinitionError(f"{path}: no `features` section")
        if isinstance(body, str):
            return load_definitions(body)
        return views_of(body, f"{path}: features")
    if spec.endswith((".yaml", ".yml")):
        return load_views(spec)
    import importlib

    module, _, attribute = spec.partition(":")
    try:
        views = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError, ValueError) as exc:
        raise FeatureDefinitionError(f"cannot load feature views {spec!r}: {exc}; give "
                                     "`module:attribute` or a .yaml file") from exc
    return list(views)


def load_views(path: str | Path) -> list[View]:
    """Feature views from a YAML file: top-level `entities`, `sources`, `views` and
    `custom_views`."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise FeatureDefinitionError(f"cannot read feature definitions {path}: {exc}") from exc
    return views_of(doc, str(path))


def views_of(doc: Any, where: str) -> list[View]:
    """Feature views from a mapping of `entities`, `sources`, `views` and `custom_views` (names
    refer to each other; a view's `reads` names views declared before it, declared views
    first); `where` names the file and section in errors."""
    if not isinstance(doc, dict):
        raise FeatureDefinitionError(f"{where}: needs a mapping of entities, sources and views")
    unknown = sorted(set(doc) - {"entities", "sources", "views", "custom_views"})
    if unknown:
        raise FeatureDefinitionError(f"{where}: unknown key(s) {', '.join(unknown)}; known: "
                                     "entities, sources, views, custom_views")
    try:
        entities = {e["name"]: Entity(**e) for e in doc.get("entities") or []}
        sources = {s["name"]: Source(**s) for s in doc.get("sources") or []}
        views: dict[str, View] = {}

        def named(table: dict[str, Any], ref: str, value: Any, view: str) -> Any:
            if value not in table:
                raise FeatureDefinitionError(f"{where}: view {view!r} names unknown {ref} "
                                             f"{value!r}")
            return table[value]

        for body in doc.get("views") or []:
            name = body.get("name", "?")
            views[name] = FeatureView(**{
                **body, "entity": named(entities, "entity", body.get("entity"), name),
                "source": named(sources, "source", body.get("source"), name),
                "features": [Feature(**f) for f in body.get("features") or []],
                "derived": [Derived(**d) for d in body.get("derived") or []],
                "reads": [named(views, "view", r, name) for r in body.get("reads") or []]})
        for body in doc.get("custom_views") or []:
            name = body.get("name", "?")
            views[name] = CustomView(**{
                **body, "entity": named(entities, "entity", body.get("entity"), name),
                "inputs": [Input(**{**i, "source": named(sources, "source", i.get("source"),
                                                         name)})
                           for i in body.get("inputs") or []],
                "derived": [Derived(**d) for d in body.get("derived") or []],
                "reads": [named(views, "view", r, name) for r in body.get("reads") or []]})
    except (TypeError, KeyError) as exc:
        raise FeatureDefinitionError(f"{where}: {exc}") from exc
    return list(views.values())


def dump_views(views: Sequence[View]) -> str:
    """YAML that `load_views` reads back into the same views (same versions); a view read by
    another is dumped too, and custom views after the declared ones."""
    views = with_reads(views)
    entities = {view.entity.name: asdict(view.entity) for view in views}
    sources = {source.name: asdict(source) for view in views for source in view.sources}

    def item(value: Feature | Derived) -> dict[str, Any]:
        body = asdict(value)
        defaults = asdict(type(value)(name=value.name))
        return {k: list(map(list, v)) if k == "cases" else v for k, v in body.items()
                if k == "name" or v != defaults[k]}

    def common(view: View) -> dict[str, Any]:
        return {"name": view.name, "entity": view.entity.name, "owner": view.owner,
                "description": view.description, "tags": list(view.tags),
                "derived": [item(d) for d in view.derived],
                **({"reads": [other.name for other in view.reads]} if view.reads else {}),
                **{k: getattr(view, k) for k in ("ttl_days", "drift_method", "drift_threshold")
                   if getattr(view, k) is not None}}

    declared = [{**common(view), "source": view.source.name,
                 "features": [item(f) for f in view.features],
                 **({"streamable": True} if view.streamable else {})}
                for view in views if isinstance(view, FeatureView)]
    custom = [{**common(view), "function": view.function, "per": view.per,
               "lookback": view.lookback, "features": list(view.features),
               "inputs": [{"source": i.source.name, "columns": list(i.columns)}
                          for i in view.inputs]}
              for view in views if isinstance(view, CustomView)]
    return yaml.safe_dump({"entities": list(entities.values()), "sources": list(sources.values()),
                           "views": declared, **({"custom_views": custom} if custom else {})},
                          sort_keys=False, allow_unicode=True)
