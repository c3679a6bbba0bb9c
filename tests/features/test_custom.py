"""Custom views: a user's function over the events of each row's window, point in time by
construction; its errors name the view, the function and a row; derived features across views;
the Modin path on the session's Ray cluster."""
from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tideline.core.errors import CustomFeatureError, FeatureDefinitionError
from tideline.demo.views import ENGAGEMENT, SPENDING
from tideline.features.definitions import (
    CustomView,
    Derived,
    Entity,
    Feature,
    FeatureView,
    Input,
    Source,
    load_views,
    with_reads,
)
from tideline.features.engine import Events, Spine, compute_views, encode_entities
from tideline.features.leakage import future_leaks
from tideline.features.materialize import (
    load_events,
    materialize_partition,
    population,
    record_build,
)
from tideline.features.offline import read_features
from tideline.features.plan import plan_from_lake, plan_views
from tideline.features.retrieval import resolve_features
from tideline.lake.local import LocalLake

from tests.features.conftest import churn_tables, write_clean

CUSTOMER = Entity("customer", "customer_id")
TXN = Source("txn", "transactions", "ts")
CLICKS = Source("clicks", "events", "ts")
T = pd.Timestamp("2026-03-01", tz="UTC")
DAY = pd.Timedelta(days=1)
OWNER = "growth@example.com"


# -- the functions under test (module level: Ray workers import them by reference) ----------

def active_days(events: pd.DataFrame, as_of: pd.Timestamp) -> float:
    """Distinct calendar days with a transaction."""
    return float(events["ts"].dt.floor("D").nunique())


def window_edges(events: pd.DataFrame, as_of: pd.Timestamp) -> dict[str, float]:
    """How far before the as-of time the newest and oldest events seen lie, and how many."""
    if events.empty:
        return {"newest_gap_ns": np.nan, "oldest_gap_ns": np.nan, "seen": 0.0}
    gaps = (as_of - events["ts"]).dt.total_seconds() * 1e9
    return {"newest_gap_ns": float(gaps.min()), "oldest_gap_ns": float(gaps.max()),
            "seen": float(len(events))}


def edges_by_row(events: pd.DataFrame, spine: pd.DataFrame) -> pd.DataFrame:
    """`window_edges`, vectorised over a partition."""
    as_of = spine["as_of"].to_numpy("datetime64[ns]")[events.index]
    gaps = pd.Series((as_of - events["ts"].to_numpy("datetime64[ns]")) / np.timedelta64(1, "ns"),
                     index=events.index, dtype=float)
    grouped = gaps.groupby(level="row")
    return pd.DataFrame({"newest_gap_ns": grouped.min(), "oldest_gap_ns": grouped.max(),
                         "seen": grouped.size().astype(float)}).reindex(spine.index).fillna(
                             {"seen": 0.0})


def days_and_spend(txn: pd.DataFrame, clicks: pd.DataFrame, spine: pd.DataFrame
                   ) -> pd.DataFrame:
    """Active days over two sources, and spend per click: written once, run on pandas
    partitions or on Modin frames (with methods only: `pd.concat` is pandas' own)."""
    def day_counts(frame: pd.DataFrame) -> pd.Series:
        return frame.assign(day=frame["ts"].dt.floor("D")).groupby(["row", "day"]).size()

    both = day_counts(txn).add(day_counts(clicks), fill_value=0)
    out = (both.groupby(level="row").size().rename("days").to_frame()
           .join(txn["amount"].groupby(level="row").sum().rename("spend"), how="outer")
           .join(clicks.groupby(level="row").size().rename("clicked"), how="outer")
           .reindex(spine.index).fillna(0.0))
    return out.assign(days=out["days"].astype(float),
                      spend_per_click=out["spend"] / out["clicked"].where(out["clicked"] > 0)
                      )[["days", "spend_per_click"]]


def by_customer(events: pd.DataFrame, spine: pd.DataFrame) -> pd.DataFrame:
    """Wrong: indexed by the entity key instead of the spine row."""
    return events.groupby("customer_id").size().to_frame("n")


def one_row_short(events: pd.DataFrame, spine: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"n": 1.0}, index=spine.index[:-1])


def a_timestamp(events: pd.DataFrame, spine: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"n": spine["as_of"]})


def a_list(events: pd.DataFrame, as_of: pd.Timestamp) -> object:
    return [1, 2]


def fails_on_refunds(events: pd.DataFrame, as_of: pd.Timestamp) -> float:
    if (events["category"] == "refund").any():
        raise ValueError("no refunds here")
    return 1.0


def segment(events: pd.DataFrame, as_of: pd.Timestamp) -> str:
    return "big" if events["amount"].sum() > 100 else "small"


def custom(function: object, *features: str, per: str = "entity", lookback: int | str = 30,
           columns: tuple[str, ...] = ("amount",), **more: object) -> CustomView:
    return CustomView(name="custom", entity=CUSTOMER, inputs=[Input(TXN, columns)],
                      function=function, features=features, per=per, lookback=lookback,
                      owner=OWNER, **more)


def events_of(frame: pd.DataFrame) -> Events:
    return Events.from_table(pa.Table.from_pandas(frame, preserve_index=False), "customer_id",
                             "ts")


def transactions(stamps: list[pd.Timestamp], who: list[str] | None = None) -> pd.DataFrame:
    return pd.DataFrame({"customer_id": who or ["a"] * len(stamps), "ts": stamps,
                         "amount": np.arange(1.0, len(stamps) + 1),
                         "category": ["grocery"] * len(stamps)})


# -- point in time ---------------------------------------------------------------------------

def test_the_function_gets_only_the_window_before_the_as_of_instant() -> None:
    ns = pd.Timedelta(1, "ns")
    frame = transactions([T - 30 * DAY - ns, T - 30 * DAY, T - 2 * DAY, T - ns, T, T + DAY])
    spine = Spine.of(["a", "a", "nobody"], [T, T + 2 * DAY, T])
    out = compute_views([custom(active_days, "active_days")], {"txn": events_of(frame)}, spine)
    # T-30d is in, T-30d-1ns out, T itself out; at T+2d: T-2d..T+1d; nobody: no events
    assert out["active_days"].tolist() == [3.0, 4.0, 0.0]


hours = st.integers(-24 * 40, 24 * 5)
events_strategy = st.lists(st.tuples(st.sampled_from("abc"), hours), min_size=0, max_size=40)
queries_strategy = st.lists(st.tuples(st.sampled_from("abcd"), st.integers(-24 * 10, 24 * 5)),
                            min_size=1, max_size=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=events_strategy, queries=queries_strategy,
       lookback=st.sampled_from([1, 7, "36h", None]), per=st.sampled_from(["entity",
                                                                            "partition"]))
def test_a_function_never_sees_an_event_at_or_after_its_rows_as_of_time(
        rows: list[tuple[str, int]], queries: list[tuple[str, int]], lookback: int | str | None,
        per: str) -> None:
    frame = transactions([T + pd.Timedelta(hours=h) for _, h in rows] or [T],
                         [who for who, _ in rows] or ["zz"])
    spine = Spine.of([who for who, _ in queries], [T + pd.Timedelta(hours=h) for _, h in queries])
    view = custom(window_edges if per == "entity" else edges_by_row, "newest_gap_ns",
                  "oldest_gap_ns", "seen", per=per, lookback=lookback)
    out = compute_views([view], {"txn": events_of(frame)}, spine)
    assert (out["newest_gap_ns"].dropna() > 0).all()  # strictly before t: never at or after
    if lookback is not None:
        assert (out["oldest_gap_ns"].dropna() <= view.lookback_ns).all()
    for k, (who, h) in enumerate(queries):  # and every event of the window, exactly
        t = T + pd.Timedelta(hours=h)
        low = t - pd.Timedelta(view.lookback_ns or 10**18, "ns")
        expected = ((frame["customer_id"] == who) & (frame["ts"] < t) & (frame["ts"] >= low))
        assert out["seen"][k] == expected.sum()


# -- versions and declarations ---------------------------------------------------------------

def same_as_active_days(events: pd.DataFrame, as_of: pd.Timestamp) -> float:
    """Distinct calendar days with a transaction."""
    return float(events["ts"].dt.floor("D").nunique() + 0)


def test_the_version_follows_the_function_source_and_inputs_not_the_prose() -> None:
    base = custom(active_days, "active_days")
    assert base.function == f"{__name__}:active_days"
    assert custom(active_days, "active_days", description="prose", tags=("x",)).version == (
        base.version)
    changed = [custom(same_as_active_days, "active_days"),
               custom(active_days, "active_days", lookback=31),
               custom(active_days, "active_days", columns=("amount", "category")),
               custom(active_days, "other_name")]
    assert len({base.version, *(v.version for v in changed)}) == 1 + len(changed)


@pytest.mark.parametrize(("make", "message"), [
    (lambda: custom(lambda e, t: 1.0, "x"), "not a module-level function"),
    (lambda: custom("no.such.module:f", "x"), "cannot load function 'no.such.module:f'"),
    (lambda: custom("math:floor", "x"), "the source of function math:floor cannot be read"),
    (lambda: custom(days_and_spend, "x"), "must take 1 frame(s) (txn) and as_of"),
    (lambda: custom(active_days, "x", per="rows"), "per must be one of entity, partition"),
    (lambda: custom(active_days, "x", lookback=0), "lookback must be a positive number"),
    (lambda: custom(active_days, "x", columns=("ts",)), "'ts' is passed always"),
    (lambda: custom(active_days), "declares no features"),
    (lambda: custom(active_days, "x", derived=[Derived("y", "x * spend_30d")]),
     "unknown feature(s) spend_30d"),
    (lambda: custom(active_days, "x", reads=[FeatureView(
        name="other", entity=Entity("shop", "shop_id"), source=TXN, owner=OWNER,
        features=[Feature("n", agg="count")])]), "reads only views of its own entity"),
])
def test_a_wrong_declaration_fails_naming_the_view(make, message: str) -> None:  # noqa: ANN001
    with pytest.raises(FeatureDefinitionError, match="custom view 'custom'") as caught:
        make()
    assert message in str(caught.value)


def test_views_load_from_yaml_with_a_module_function_reference(tmp_path: Path) -> None:
    path = tmp_path / "views.yaml"
    path.write_text(f"""
entities: [{{name: customer, key: customer_id}}]
sources:
  - {{name: txn, dataset: transactions, timestamp: ts}}
  - {{name: clicks, dataset: events, timestamp: ts}}
views:
  - name: spending
    entity: customer
    source: txn
    owner: {OWNER}
    features: [{{name: spend_30d, column: amount, agg: sum, window: 30}}]
custom_views:
  - name: engaged
    entity: customer
    function: {__name__}:days_and_spend
    per: partition
    lookback: 30
    inputs: [{{source: txn, columns: [amount]}}, {{source: clicks}}]
    features: [days, spend_per_click]
    owner: {OWNER}
    reads: [spending]
    derived: [{{name: spend_per_day, expression: "ratio(spend_30d, days)"}}]
""")
    spending, engaged = load_views(path)
    assert isinstance(engaged, CustomView) and engaged.reads == (spending,)
    assert engaged.function == f"{__name__}:days_and_spend"
    assert engaged.feature_names == ["days", "spend_per_click", "spend_per_day"]
    assert [s.name for s in engaged.sources] == ["txn", "clicks"]


# -- errors at build time ----------------------------------------------------------------

@pytest.mark.parametrize(("function", "per", "message"), [
    (by_customer, "partition", "returned a row for 'a', which is no spine row (an unknown "
                               "entity)"),
    (one_row_short, "partition", "returned 2 rows for 3 spine rows: none for customer_id 'c' "
                                 "as of 2026-03-01 00:00:00"),
    (a_timestamp, "partition", "returned datetime64[ns, UTC] for feature 'n' (e.g. "
                               "Timestamp('2026-03-01 00:00:00+0000', tz='UTC') at "
                               "customer_id 'a'"),
    (a_list, "entity", "returned [1, 2] (list) for feature 'n' at customer_id 'a' as of "
                       "2026-03-01 00:00:00; a feature is a number or text"),
    (fails_on_refunds, "entity", "raised ValueError: no refunds here for customer_id 'b' as "
                                 "of 2026-03-01"),
])
def test_a_function_that_misbehaves_fails_naming_view_function_and_a_row(
        function: object, per: str, message: str) -> None:
    frame = transactions([T - DAY, T - DAY, T - 2 * DAY], ["a", "b", "c"])
    frame.loc[1, "category"] = "refund"
    view = custom(function, "n", per=per, columns=("amount", "category"))
    with pytest.raises(CustomFeatureError) as caught:
        compute_views([view], {"txn": events_of(frame)}, Spine.of(["a", "b", "c"], [T] * 3))
    text = str(caught.value)
    assert text.startswith(f"custom view 'custom': function {__name__}:{function.__name__}")
    assert message in text


def test_text_results_are_categories() -> None:
    frame = transactions([T - DAY, T - DAY], ["a", "b"])
    frame["amount"] = [500.0, 5.0]
    out = compute_views([custom(segment, "size")], {"txn": events_of(frame)},
                        Spine.of(["a", "b"], [T, T]))
    assert out["size"].tolist() == ["big", "small"]


def test_a_failing_function_publishes_nothing(tmp_path: Path) -> None:
    lake = LocalLake(tmp_path / "lake")
    ref = write_clean(lake, churn_tables())
    view = CustomView(name="custom", entity=CUSTOMER, inputs=[Input(
        Source("transactions", "transactions", "ts"), ["amount", "category"])],
        function=fails_on_refunds, features=["ok"], lookback=30, owner=OWNER)
    plan = plan_from_lake([SPENDING, view], lake, ref)
    lake.create_branch("build", "main")
    with pytest.raises(CustomFeatureError, match="custom view 'custom'"):
        materialize_partition(lake, ref, "build", plan, [date(2026, 9, 1)])
    assert not lake.list("build", "features/")  # not even the views computed before it


# -- derived features across views -----------------------------------------------------------

TXN_VIEW = FeatureView(name="txn", entity=CUSTOMER, source=TXN, owner=OWNER,
                       features=[Feature("txn_mean_30d", "amount", "mean", window=30)])
CLICK_VIEW = FeatureView(name="clicks", entity=CUSTOMER, source=CLICKS, owner=OWNER,
                         features=[Feature("cancel_page_7d", agg="count", window=7,
                                           filter="page == 'cancel'")])


def across(expression: str = "txn_mean_30d * cancel_page_7d") -> FeatureView:
    return FeatureView(name="risk", entity=CUSTOMER, source=CLICKS, owner=OWNER,
                       features=[Feature("clicks_7d", agg="count", window=7)],
                       reads=[TXN_VIEW, CLICK_VIEW],
                       derived=[Derived("basket_risk", expression)])


def test_a_derived_feature_reads_features_of_other_views_of_the_entity() -> None:
    txn = transactions([T - DAY, T - 2 * DAY, T - 40 * DAY, T - DAY], ["a", "a", "a", "b"])
    clicks = pd.DataFrame({"customer_id": ["a", "a", "a", "b"],
                           "ts": [T - DAY, T - 2 * DAY, T - 9 * DAY, T - DAY],
                           "page": ["cancel", "cancel", "cancel", "home"]})
    keys, (t_codes, c_codes) = encode_entities([pa.array(txn["customer_id"]),
                                                pa.array(clicks["customer_id"])])
    table = {name: Events.from_table(pa.Table.from_pandas(frame, preserve_index=False),
                                     "customer_id", "ts", (keys, codes))
             for name, frame, codes in (("txn", txn, t_codes), ("clicks", clicks, c_codes))}
    out = compute_views([across()], table, Spine.of(["a", "b"], [T, T]))
    assert list(out.columns) == ["clicks_7d", "basket_risk"]  # the read views stay out
    assert out["basket_risk"].tolist() == [1.5 * 2, 4.0 * 0]


def test_cross_view_features_are_checked_at_plan_time_and_versioned_with_their_reads() -> None:
    schemas = {"txn": pa.schema([("customer_id", pa.string()), ("ts", pa.timestamp("us")),
                                 ("amount", pa.float64())]),
               "clicks": pa.schema([("customer_id", pa.string()), ("ts", pa.timestamp("us")),
                                    ("page", pa.string())])}
    plan = plan_views([across()], schemas)
    assert [v.name for v in plan.views] == ["txn", "clicks", "risk"]  # reads first
    assert plan.columns["clicks"] == ("customer_id", "page", "ts")
    renamed = FeatureView(name="txn", entity=CUSTOMER, source=Source("txn", "orders", "ts"),
                          owner=OWNER, features=[Feature("cancel_page_7d", agg="count")])
    with pytest.raises(FeatureDefinitionError, match="view 'clicks', feature 'cancel_page_7d': "
                                                     "the name is used by view 'txn' too"):
        plan_views([FeatureView(name="risk", entity=CUSTOMER, source=CLICKS, owner=OWNER,
                                features=[Feature("n", agg="count")],
                                reads=[renamed, CLICK_VIEW])], schemas)
    with pytest.raises(FeatureDefinitionError, match=r"refers to unknown feature\(s\) nope"):
        across("txn_mean_30d * nope")
    wider = FeatureView(name="txn", entity=CUSTOMER, source=TXN, owner=OWNER,
                        features=[Feature("txn_mean_30d", "amount", "mean", window=31)])
    moved = FeatureView(**{**{f: getattr(across(), f) for f in ("name", "entity", "source",
                                                                 "owner", "features",
                                                                 "derived")},
                           "reads": [wider, CLICK_VIEW]})
    assert moved.version != across().version  # a read view's new version is the reader's too
    assert TXN_VIEW.version == FeatureView(name="txn", entity=CUSTOMER, source=TXN,
                                           owner="x@example.com",
                                           features=TXN_VIEW.features).version


# -- builds, training sets and the audit -----------------------------------------------------

@pytest.fixture(scope="module")
def engaged_lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[LocalLake, str]:
    lake = LocalLake(tmp_path_factory.mktemp("custom") / "lake")
    return lake, write_clean(lake, churn_tables())


def reference_engagement(tables: dict[str, pd.DataFrame], t: pd.Timestamp) -> pd.DataFrame:
    """The demo's engagement features by plain pandas on the whole tables."""
    txn, events = tables["transactions"], tables["events"]
    month = lambda f: f[(f["ts"] < t) & (f["ts"] >= t - 30 * DAY)]  # noqa: E731
    week = lambda f: f[(f["ts"] < t) & (f["ts"] >= t - 7 * DAY)]  # noqa: E731
    days = pd.concat([month(txn), month(events)]).assign(d=lambda f: f["ts"].dt.floor("D"))
    active = days.groupby("customer_id")["d"].nunique()
    basket = week(txn).groupby("customer_id")["amount"].mean()
    cancels = week(events)[lambda f: f["event_type"] == "cancel_page"].groupby(
        "customer_id").size()
    spend = month(txn).groupby("customer_id")["amount"].sum()
    return pd.DataFrame({"active": active, "basket": basket, "cancels": cancels,
                         "spend": spend}).fillna(0.0)


def test_partitions_on_ray_give_the_pandas_reference_and_the_audit_passes(
        engaged_lake: tuple[LocalLake, str], ray_cluster: str) -> None:
    import ray

    lake, ref = engaged_lake
    plan = plan_from_lake([ENGAGEMENT], lake, ref)
    days = [date(2026, 8, 1), date(2026, 9, 1)]
    lake.create_branch("ray", "main")

    @ray.remote
    def partition(k: int) -> object:
        return materialize_partition(lake, ref, "ray", plan, days, k, 3)

    results = ray.get([partition.remote(k) for k in range(3)])
    record_build(lake, "ray", "custom", ref, plan, days, results)
    lake.commit("ray", "features")
    tables = churn_tables()
    for day in days:
        built = read_features(lake, "ray", ENGAGEMENT, day).set_index("customer_id")
        expected = reference_engagement(tables, pd.Timestamp(day, tz="UTC")).reindex(
            built.index).fillna(0.0)
        assert built["active_days_30d"].tolist() == expected["active"].astype(int).tolist()
        np.testing.assert_allclose(built["basket_x_cancel_7d"],
                                   expected["basket"] * expected["cancels"], rtol=1e-12)
        np.testing.assert_allclose(built["spend_per_active_day"], np.where(
            expected["active"] > 0, expected["spend"] / expected["active"].where(
                expected["active"] > 0), np.nan), rtol=1e-12)
        assert built["basket_x_cancel_7d"].gt(0).any()  # the demo data has some
    # a training set read from these tables passes the point-in-time audit
    keys = built.index[:40]
    frame = pd.DataFrame({"customer_id": keys, "as_of": pd.Timestamp("2026-09-03", tz="UTC")})
    for name in ENGAGEMENT.feature_names:
        frame[name] = built.loc[keys, name].to_numpy()
    merged = lake.merge("ray", "main", message="publish").id
    assert future_leaks(lake, merged, [SPENDING, ENGAGEMENT], frame,
                        ENGAGEMENT.feature_names, "as_of") == {}
    frame.loc[0, "active_days_30d"] += 1  # a value no window before t gives
    leaks = future_leaks(lake, merged, [SPENDING, ENGAGEMENT], frame,
                         ENGAGEMENT.feature_names, "as_of")
    assert list(leaks) == ["active_days_30d"]
    assert [r.feature for r in resolve_features([SPENDING, ENGAGEMENT],
                                                ["customer_engagement:*"])] == (
        ENGAGEMENT.feature_names)


def test_whole_table_functions_get_modin_frames_on_the_sessions_ray(
        engaged_lake: tuple[LocalLake, str], ray_cluster: str) -> None:
    import modin.config
    import ray

    lake, ref = engaged_lake
    nodes = len(ray.nodes())
    sources = (Source("transactions", "transactions", "ts"), Source("events", "events", "ts"))
    pandas_view, modin_view = (CustomView(
        name=f"days-{per}", entity=CUSTOMER, inputs=[Input(sources[0], ["amount"]),
                                                       Input(sources[1])],
        function=days_and_spend, per=per, lookback=30, features=["days", "spend_per_click"],
        owner=OWNER) for per in ("partition", "table"))
    events = load_events(lake, ref, plan_from_lake([pandas_view], lake, ref))
    t = pd.Timestamp("2026-09-01", tz="UTC")
    keys = population(events, t)
    spine = Spine.of(np.concatenate([keys, keys]), [t] * len(keys) + [t - 20 * DAY] * len(keys))
    on_pandas = compute_views([pandas_view], events, spine)
    on_modin = compute_views([modin_view], events, spine)
    pd.testing.assert_frame_equal(on_modin, on_pandas, check_exact=True)
    assert on_pandas["days"].between(1, 30).mean() > 0.5
    assert modin.config.Engine.get() == "Ray"
    assert ray.is_initialized() and len(ray.nodes()) == nodes  # the session's, not a new one
    assert ray.get_runtime_context().gcs_address == ray_cluster
    # in a build, each partition's Ray task hands its rows to Modin on the same cluster
    plan = plan_from_lake([modin_view], lake, ref)
    lake.create_branch("modin", "main")

    @ray.remote
    def partition(k: int) -> object:
        return materialize_partition(lake, ref, "modin", plan, [date(2026, 9, 1)], k, 2)

    ray.get([partition.remote(k) for k in range(2)])
    built = read_features(lake, "modin", modin_view, date(2026, 9, 1))
    assert built["customer_id"].tolist() == list(keys)
    pd.testing.assert_frame_equal(built[["days", "spend_per_click"]],
                                  on_pandas.iloc[:len(keys)], check_exact=True)


# -- the documented example ------------------------------------------------------------------

EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "custom-views"


def test_the_examples_functions_compute_from_its_project_file(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from tideline.features.definitions import load_definitions

    monkeypatch.syspath_prepend(str(EXAMPLE))  # as `PYTHONPATH=.` in its directory
    billing, streaks, payments = load_definitions(str(EXAMPLE / "tideline.yaml"))
    frame = pd.read_csv(EXAMPLE.parent / "own-subscriptions" / "events" / "events-2026-09.csv",
                        parse_dates=["ts"])
    t = pd.Timestamp("2026-06-01", tz="UTC")
    accounts = sorted(frame.loc[frame["ts"] < t, "account"].unique())[:60]
    events = Events.from_table(pa.Table.from_pandas(frame, preserve_index=False), "account", "ts")
    out = compute_views([streaks, payments], {"events": events}, Spine.of(accounts, [t] * 60))
    for k, account in enumerate(accounts):  # the streak, month by month back from May 2026
        paid = frame[(frame["account"] == account) & (frame["event"] == "payment")
                     & (frame["ts"] < t)]["ts"].dt.strftime("%Y-%m").unique()
        months = pd.period_range(end="2026-05", periods=14, freq="M").strftime("%Y-%m")[::-1]
        expected = next((i for i, m in enumerate(months) if m not in paid), len(months))
        assert out["paid_streak_months"][k] == expected, account
        history = frame[(frame["account"] == account) & (frame["ts"] < t)
                        & (frame["ts"] >= t - pd.Timedelta(days=180))].sort_values("ts")
        assert out["latest_plan"][k] == history["plan"].iloc[-1]
        waits = history.loc[history["event"] == "payment", "ts"].diff().dt.total_seconds()
        np.testing.assert_allclose(out["longest_payment_gap_days"][k],
                                   waits.max() / 86_400, rtol=1e-12)
    assert out["paid_streak_months"].max() > 1
    assert out["longest_payment_gap_days"].between(25, 35).mean() > 0.5  # monthly payers
    assert {billing.name, streaks.name} == {v.name for v in with_reads([streaks])}
