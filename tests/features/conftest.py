"""Small typed churn tables, built by hand, and a lake holding them as clean tables."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tideline.lake.buckets import clean_path, write_bucketed
from tideline.lake.local import LocalLake

START = pd.Timestamp("2026-06-01", tz="UTC")
AS_OF = pd.Timestamp("2026-09-01", tz="UTC")
DAYS = 92


def _stamps(rng: np.random.Generator, n: int) -> pd.Series:
    """Random times over the period; one in ten sits exactly on a midnight (window edges)."""
    seconds = rng.integers(0, DAYS * 86_400, n)
    midnight = rng.random(n) < 0.1
    seconds[midnight] = (seconds[midnight] // 86_400) * 86_400
    return pd.Series(START + pd.to_timedelta(seconds, unit="s"))


def churn_tables(customers: int = 120, seed: int = 3) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ids = np.array([f"C{i:07d}" for i in range(1, customers + 1)], dtype=object)

    def who(n: int) -> np.ndarray:  # skewed activity; the last customers have none at all
        return ids[np.minimum(rng.zipf(1.6, n) - 1, customers - 6)]

    n = customers * 25
    transactions = pd.DataFrame({
        "transaction_id": np.arange(n), "customer_id": who(n), "ts": _stamps(rng, n),
        "amount": rng.gamma(2.0, 30.0, n).round(2),
        "category": rng.choice(["grocery", "fashion", "home", "refund"], n, p=[.5, .2, .2, .1]),
        "channel": rng.choice(["web", "app", "store"], n)})
    n = customers * 12
    events = pd.DataFrame({
        "event_id": [f"e{i}" for i in range(n)], "customer_id": who(n), "ts": _stamps(rng, n),
        "event_type": rng.choice(["login", "view", "payment_failed", "cancel_page"], n,
                                 p=[.4, .5, .05, .05]),
        "session_id": rng.choice([f"s{i}" for i in range(customers * 3)], n),
        "duration_s": np.where(rng.random(n) < 0.2, np.nan, rng.exponential(60, n))})
    n = customers
    tickets = pd.DataFrame({
        "ticket_id": np.arange(n), "customer_id": who(n), "created_at": _stamps(rng, n),
        "topic": rng.choice(["billing", "bug", "cancel"], n),
        "priority": rng.choice(["low", "high"], n),
        "resolution_hours": np.where(rng.random(n) < 0.3, np.nan, rng.exponential(20, n))})
    signup = START - pd.to_timedelta(rng.integers(-40, 700, customers), unit="D")
    signup.values[-3:] = np.datetime64("2026-08-20")  # three sign up late in the period
    profile = pd.DataFrame({
        "customer_id": ids, "plan": rng.choice(["basic", "plus"], customers),
        "monthly_fee": rng.choice([9.99, 19.99], customers),
        "signup_date": signup.tz_localize(None).normalize().date})
    return {"transactions": transactions, "events": events, "tickets": tickets,
            "customers": profile}


def write_clean(lake: LocalLake, tables: dict[str, pd.DataFrame], buckets: int = 4) -> str:
    """The tables as ingestion publishes them: clean/<dataset>/dt=<day>/, in `buckets` hash
    buckets of the customer id, committed on main."""
    times = {"transactions": "ts", "events": "ts", "tickets": "created_at",
             "customers": "signup_date"}
    for dataset, frame in tables.items():
        days = pd.to_datetime(frame[times[dataset]]).dt.strftime("%Y-%m-%d")
        for day, rows in frame.groupby(days):
            write_bucketed(lake, "main", clean_path(dataset, day, "t"),
                           rows.reset_index(drop=True), "customer_id", buckets)
    return lake.commit("main", "clean churn tables").id


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    return churn_tables()


@pytest.fixture
def churn_lake(tmp_path: Path, tables: dict[str, pd.DataFrame]) -> tuple[LocalLake, str]:
    lake = LocalLake(tmp_path / "lake")
    return lake, write_clean(lake, tables)


@pytest.fixture(scope="session")
def lake_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The churn tables with features at three as-of dates (`tests/features/built.py`), built
    once; tests that write copy it (`copied_store`)."""
    from tests.features.built import built_lake

    path = tmp_path_factory.mktemp("built") / "lake"
    built_lake(path)
    return path
