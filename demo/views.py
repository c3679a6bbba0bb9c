"""The churn demo's feature set: 57 features over transactions, app activity, support tickets
and the customer record, mirroring a real churn model's inputs (30-day transaction aggregates,
7-day behaviour counts, statistics, trends, recency, RFM and segments), and the real-time
signals the stream processor keeps fresh between batch runs."""
from __future__ import annotations

import numpy as np
import pandas as pd
from tideline.features.definitions import (
    CustomView,
    Derived,
    Entity,
    Feature,
    FeatureView,
    Input,
    Source,
)

CUSTOMER = Entity("customer", key="customer_id")

TRANSACTIONS = Source("transactions", dataset="transactions", timestamp="ts")
EVENTS = Source("events", dataset="events", timestamp="ts")
TICKETS = Source("tickets", dataset="tickets", timestamp="created_at")
CUSTOMERS = Source("customers", dataset="customers", timestamp="signup_date")
"""The CRM record counts as known from the signup date: the CRM export holds current values
only (plan and fee changes are not versioned), so this view assumes they did not change."""


def _amount(name: str, agg: str, window: int) -> Feature:
    return Feature(name, "amount", agg, window=window)


SPENDING = FeatureView(
    name="customer_spending",
    entity=CUSTOMER,
    source=TRANSACTIONS,
    owner="growth-analytics@example.com",
    description="What customers buy and how their spending moves: counts, totals, amount "
                "statistics, mix, recency, trends and RFM.",
    tags=("churn", "transactions"),
    features=[
        Feature("txn_count_7d", agg="count", window=7),
        Feature("txn_count_30d", agg="count", window=30),
        Feature("txn_count_90d", agg="count", window=90),
        _amount("spend_7d", "sum", 7),
        _amount("spend_30d", "sum", 30),
        _amount("spend_90d", "sum", 90),
        _amount("avg_amount_30d", "mean", 30),
        _amount("max_amount_30d", "max", 30),
        _amount("min_amount_30d", "min", 30),
        _amount("std_amount_30d", "std", 30),
        _amount("median_amount_30d", "p50", 30),
        _amount("range_amount_30d", "range", 30),
        _amount("p25_amount_90d", "p25", 90),
        _amount("p75_amount_90d", "p75", 90),
        _amount("p95_amount_90d", "p95", 90),
        _amount("skew_amount_90d", "skew", 90),
        _amount("kurt_amount_90d", "kurtosis", 90),
        _amount("cv_amount_90d", "cv", 90),
        Feature("categories_30d", "category", "nunique", window=30),
        Feature("refund_share_90d", agg="share", window=90, filter="category == 'refund'"),
        Feature("app_share_30d", agg="share", window=30, filter="channel == 'app'"),
        Feature("weekend_share_90d", agg="share", window=90, filter="weekday >= 5"),
        Feature("days_since_last_txn", agg="days_since_last"),
        Feature("last_category", "category", "last"),
        _amount("daily_spend_ma_30d", "daily_mean", 30),
        _amount("spend_trend_90d", "trend_slope", 90),
        _amount("spend_trend_r2_90d", "trend_r2", 90),
        _amount("spend_ema_30d", "ema_7d", 30),
    ],
    derived=[
        Derived("spend_ratio_30_90", "ratio(spend_30d, spend_90d)",
                description="Share of the last 90 days' spend made in the last 30"),
        Derived("txn_pace_7_30", "ratio(txn_count_7d * 30, txn_count_30d * 7)",
                description="Last week's purchase rate against the month's (1 = steady)"),
        Derived("rfm_recency", "where(days_since_last_txn <= 7, 3, "
                               "where(days_since_last_txn <= 30, 2, 1))"),
        Derived("rfm_frequency", "where(txn_count_90d >= 20, 3, where(txn_count_90d >= 8, 2, 1))"),
        Derived("rfm_monetary", "where(spend_90d >= 1000, 3, where(spend_90d >= 300, 2, 1))"),
        Derived("rfm_score", "rfm_recency + rfm_frequency + rfm_monetary"),
        Derived("value_segment",
                cases=[("rfm_score >= 8", "champion"), ("rfm_recency == 1", "lapsing"),
                       ("rfm_score >= 6", "loyal")],
                default="occasional"),
    ],
)

ACTIVITY = FeatureView(
    name="customer_activity",
    entity=CUSTOMER,
    source=EVENTS,
    owner="product-analytics@example.com",
    description="How customers use the app and web site, and the signals of leaving.",
    tags=("churn", "behaviour"),
    streamable=True,
    features=[
        Feature("events_7d", agg="count", window=7),
        Feature("events_30d", agg="count", window=30),
        Feature("logins_7d", agg="count", window=7, filter="event_type == 'login'"),
        Feature("logins_30d", agg="count", window=30, filter="event_type == 'login'"),
        Feature("sessions_30d", "session_id", "nunique", window=30),
        Feature("avg_duration_30d", "duration_s", "mean", window=30),
        Feature("payment_failures_30d", agg="count", window=30,
                filter="event_type == 'payment_failed'"),
        Feature("cancel_page_views_30d", agg="count", window=30,
                filter="event_type == 'cancel_page'"),
        Feature("days_since_last_event", agg="days_since_last"),
        Feature("activity_trend_30d", agg="trend_slope", window=30),
        Feature("activity_ema_30d", agg="ema_7d", window=30),
    ],
    derived=[
        Derived("login_ratio_7_30", "ratio(logins_7d, logins_30d)"),
        Derived("exit_risk_score",
                "0.4 * (payment_failures_30d > 0) + 0.4 * (cancel_page_views_30d > 0)"
                " + 0.2 * (logins_7d == 0)",
                description="Rule-based propensity to leave, 0 (none of the signals) to 1"),
    ],
)

SUPPORT = FeatureView(
    name="customer_support",
    entity=CUSTOMER,
    source=TICKETS,
    owner="customer-care@example.com",
    description="Support contacts and how they went.",
    tags=("churn", "support"),
    features=[
        Feature("tickets_90d", agg="count", window=90),
        Feature("billing_tickets_90d", agg="count", window=90, filter="topic == 'billing'"),
        Feature("cancel_tickets_90d", agg="count", window=90, filter="topic == 'cancel'"),
        Feature("urgent_tickets_90d", agg="count", window=90, filter="priority == 'high'"),
        Feature("avg_resolution_hours_90d", "resolution_hours", "mean", window=90),
        Feature("days_since_last_ticket", agg="days_since_last"),
    ],
)

PROFILE = FeatureView(
    name="customer_profile",
    entity=CUSTOMER,
    source=CUSTOMERS,
    owner="crm-team@example.com",
    description="The customer record: tenure, plan and fee.",
    tags=("churn", "profile"),
    features=[
        Feature("tenure_days", agg="days_since_first"),
        Feature("plan", "plan", "last"),
        Feature("monthly_fee", "monthly_fee", "last"),
    ],
)

_FAILED_PAYMENT = "event_type == 'payment_failed'"
_CANCEL_PAGE = "event_type == 'cancel_page'"

SIGNALS = FeatureView(
    name="customer_signals",
    entity=CUSTOMER,
    source=EVENTS,
    owner="retention-ops@example.com",
    description="Minute-fresh signals of leaving from the app event stream: failed payments, "
                "cancel-page visits, sessions and the last hour's activity.",
    tags=("churn", "realtime"),
    streamable=True,
    features=[
        Feature("events_1h", agg="count", window="1h"),
        Feature("events_24h", agg="count", window=1),
        Feature("payment_failures_24h", agg="count", window=1, filter=_FAILED_PAYMENT),
        Feature("payment_failures_7d", agg="count", window=7, filter=_FAILED_PAYMENT),
        Feature("cancel_page_views_24h", agg="count", window=1, filter=_CANCEL_PAGE),
        Feature("cancel_page_views_7d", agg="count", window=7, filter=_CANCEL_PAGE),
        Feature("sessions_24h", agg="sessions", window=1, gap="30m",
                description="Sessions in the last day (a pause of 30 minutes ends one)"),
        Feature("sessions_7d", agg="sessions", window=7, gap="30m"),
        Feature("events_ema_7d", agg="ema_7d", window=7),
        Feature("days_since_last_login", agg="days_since_last", filter="event_type == 'login'"),
        Feature("lifetime_events", agg="count"),
        Feature("lifetime_payment_failures", agg="count", filter=_FAILED_PAYMENT),
        Feature("avg_duration_all", "duration_s", "mean",
                description="Mean event duration over all history (Welford's running mean "
                            "in the stream)"),
        Feature("std_duration_all", "duration_s", "std"),
        Feature("first_event_type", "event_type", "first"),
    ],
    derived=[
        Derived("alarm_24h", "where(payment_failures_24h + cancel_page_views_24h > 0, 1, 0)",
                description="1 when the last day had a failed payment or a cancel-page visit"),
        Derived("session_pace_1_7", "ratio(sessions_24h * 7, sessions_7d)",
                description="Today's sessions against the week's daily average (1 = steady)"),
    ],
)

WEEK = np.timedelta64(7, "D")


def engagement(transactions: pd.DataFrame, events: pd.DataFrame,
               spine: pd.DataFrame) -> pd.DataFrame:
    """Per spine row, from its last 30 days of purchases and app events (the engine passes no
    other): the distinct days with either, and the last week's mean basket times its
    cancel-page visits. Frames are indexed by spine row."""
    as_of = spine["as_of"].to_numpy("datetime64[ns]")

    def last_week(frame: pd.DataFrame) -> np.ndarray:
        return frame["ts"].to_numpy("datetime64[ns]") >= as_of[frame.index] - WEEK

    active = pd.concat([transactions["ts"], events["ts"]]).dt.floor("D").groupby(
        level="row").nunique()
    week = transactions[last_week(transactions)]
    cancels = events[(events["event_type"] == "cancel_page").to_numpy() & last_week(events)]
    basket = week["amount"].groupby(level="row").mean().reindex(spine.index, fill_value=0.0)
    visits = cancels.groupby(level="row").size().reindex(spine.index, fill_value=0)
    return pd.DataFrame({"active_days_30d": active.reindex(spine.index, fill_value=0),
                         "basket_x_cancel_7d": basket * visits})


ENGAGEMENT = CustomView(
    name="customer_engagement",
    entity=CUSTOMER,
    inputs=[Input(TRANSACTIONS, columns=["amount"]), Input(EVENTS, columns=["event_type"])],
    function=engagement,
    per="partition",
    lookback=30,
    features=["active_days_30d", "basket_x_cancel_7d"],
    owner="growth-analytics@example.com",
    description="Engagement across purchases and app use, computed by a pandas function: "
                "active days over both sources, and basket value times cancel-page visits.",
    tags=("engagement", "custom"),
    reads=[SPENDING],
    derived=[Derived("spend_per_active_day", "ratio(spend_30d, active_days_30d)",
                     description="30-day spend over the days with any activity")],
)

CHURN_VIEWS = (SPENDING, ACTIVITY, SUPPORT, PROFILE)
"""What the churn model learns from."""
DEMO_VIEWS = (*CHURN_VIEWS, SIGNALS, ENGAGEMENT)
"""What the demo builds and serves: the model's views, the real-time signals and the
engagement a custom function computes."""
