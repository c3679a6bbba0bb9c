"""The demo-data generator: the same seed gives the same data, every injected defect is counted
exactly (recounted here from the frames), churn shows in behaviour, drift moves what it should
after `drift_from`, and the writers put back what they were given."""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from tideline.core.errors import ConfigError
from tideline.demo.generator import (
    SUBJECT,
    DemoData,
    DemoSpec,
    generate,
    write_api_fixture,
    write_crm_csv,
    write_event_log,
    write_sql,
)
from tideline.ingestion.connectors.stream import read_event_log

SPEC = DemoSpec(customers=2500, seed=11)
EMAIL = r"[^@\s]+@[^@\s]+\.[a-z]{2,}"  # the demo project's contract for customers.email


@pytest.fixture(scope="module")
def data() -> DemoData:
    return generate(SPEC)


def test_same_seed_same_data_and_another_seed_other_data(data: DemoData) -> None:
    again = generate(SPEC)
    for name in ("customers", "transactions", "tickets", "events"):
        pd.testing.assert_frame_equal(getattr(again, name), getattr(data, name))
    pd.testing.assert_series_equal(again.churned, data.churned)
    assert again.defects == data.defects
    other = generate(replace(SPEC, seed=12))
    assert not other.transactions["amount"].equals(data.transactions["amount"])
    assert not other.events["event_id"].isin(data.events["event_id"]).any()


def test_columns_and_values_as_the_sources_hold_them(data: DemoData) -> None:
    customers, transactions = data.customers, data.transactions
    assert list(customers.columns) == ["customer_id", "email", "country", "plan", "signup_date",
                                       "monthly_fee", "updated_at"]
    assert list(transactions.columns) == ["transaction_id", "customer_id", "ts", "amount",
                                          "category", "channel", "updated_at"]
    assert list(data.tickets.columns) == ["ticket_id", "customer_id", "created_at", "topic",
                                          "priority", "resolution_hours", "updated_at"]
    assert list(data.events.columns) == ["event_id", "customer_id", "ts", "event_type",
                                         "session_id", "duration_s"]
    assert customers["customer_id"].str.fullmatch(r"C\d{7}").all()
    assert customers["customer_id"].iloc[:SPEC.customers].is_unique
    assert set(customers["plan"]) == {"basic", "plus", "premium"}
    signup = pd.to_datetime(customers["signup_date"], format="%Y-%m-%d", errors="coerce")
    assert (signup < pd.Timestamp(SPEC.start)).mean() > 0.7  # most signed up before the period
    assert (signup >= pd.Timestamp(SPEC.start)).any()
    updated = pd.to_datetime(customers["updated_at"], format="%Y-%m-%dT%H:%M:%SZ", utc=True)
    assert updated.max() < pd.Timestamp(SPEC.end + timedelta(days=1), tz="UTC")
    assert str(transactions["ts"].dtype) == "datetime64[ns, UTC]"
    assert transactions["amount"].dtype == object
    clean = ~transactions.duplicated()
    assert (transactions.loc[clean, "ts"] == transactions.loc[clean, "updated_at"]).mean() > 0.98
    # volumes per customer over the ~120 days
    n = SPEC.customers
    assert 16 < len(transactions) / n < 24
    assert 8 < len(data.events) / n < 12
    assert 0.35 < len(data.tickets) / n < 0.7
    assert data.events["event_id"].str.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}").all()
    assert data.tickets["resolution_hours"].isna().any()  # some still unresolved


def test_customer_defects_are_counted_exactly(data: DemoData) -> None:
    customers, k = data.customers, round(SPEC.defect_rate * SPEC.customers)
    email = customers["email"]
    signup = pd.to_datetime(customers["signup_date"], format="%Y-%m-%d", errors="coerce")
    assert data.defects["customers"] == {
        "missing_email": int(email.isna().sum()),
        "bad_email": int((~email.dropna().str.fullmatch(EMAIL)).sum()),
        "bad_signup_date": int(signup.isna().sum()),
        "duplicate": int(customers.duplicated().sum()),
    } == {"missing_email": k, "bad_email": k, "bad_signup_date": k, "duplicate": k}


def test_transaction_defects_are_counted_exactly_one_per_row(data: DemoData) -> None:
    tx = data.transactions
    amount = pd.to_numeric(tx["amount"], errors="coerce")
    flags = pd.DataFrame({
        "negative_amount": amount < 0,
        "bad_amount_type": amount.isna(),
        "future_ts": tx["ts"] > pd.Timestamp(SPEC.end + timedelta(days=31), tz="UTC"),
        "orphan_customer": ~tx["customer_id"].isin(data.customers["customer_id"]),
        "duplicate": tx.duplicated(),
    })
    k = round(SPEC.defect_rate * (len(tx) - flags["duplicate"].sum()))
    assert data.defects["transactions"] == flags.sum().astype(int).to_dict() == dict.fromkeys(
        flags.columns, k)
    assert (flags.sum(axis=1) <= 1).all()
    # text amounts that parse are no defect, and there are some
    text = tx["amount"].map(lambda value: isinstance(value, str))
    assert (text & amount.notna()).sum() > 0.03 * len(tx)
    assert (text & amount.isna()).sum() == k


def test_ticket_and_event_defects_are_counted_exactly(data: DemoData) -> None:
    tickets, events = data.tickets, data.events
    topics = ["billing", "bug", "cancel", "delivery", "other"]
    assert data.defects["tickets"] == {
        "unknown_topic": int((~tickets["topic"].isin(topics)).sum()),
        "negative_resolution": int((tickets["resolution_hours"] < 0).sum()),
    }
    assert min(data.defects["tickets"].values()) > 0
    k = round(SPEC.defect_rate * len(events))
    assert data.defects["events"] == {
        "missing_customer_id": int(events["customer_id"].isna().sum()),
        "duplicate_event_id": int(events["event_id"].duplicated().sum()),
    } == {"missing_customer_id": k, "duplicate_event_id": k}


def test_churn_rate_is_in_range_and_shows_in_behaviour(data: DemoData) -> None:
    churned = data.churned
    assert churned.index.equals(pd.Index(data.customers["customer_id"].iloc[:SPEC.customers]))
    assert 0.15 <= churned.mean() <= 0.25
    last_month = pd.Timestamp(SPEC.end - timedelta(days=29), tz="UTC")

    def per_customer(frame: pd.DataFrame, column: str) -> pd.Series:
        recent = frame[frame[column] >= last_month]
        counts = recent.groupby("customer_id").size().reindex(churned.index, fill_value=0)
        return counts.groupby(churned).mean()

    purchases, sessions = per_customer(data.transactions, "ts"), per_customer(data.events, "ts")
    assert purchases[True] < 0.5 * purchases[False]
    assert sessions[True] < 0.5 * sessions[False]
    # precursors: failed payments and cancel-page visits, billing and cancel tickets
    events = data.events.assign(churner=data.events["customer_id"].map(churned))
    warning = events["event_type"].isin(["payment_failed", "cancel_page"])
    share = warning.groupby(events["churner"]).mean()
    assert share[True] > 3 * share[False]
    tickets = data.tickets.assign(churner=data.tickets["customer_id"].map(churned))
    leaving = tickets["topic"].isin(["billing", "cancel"]).groupby(tickets["churner"]).mean()
    assert leaving[True] > 1.5 * leaving[False]


def test_drift_shifts_amounts_channels_and_sessions_after_drift_from() -> None:
    clean = replace(SPEC, defect_rate=0.0)
    cut = date(2026, 8, 16)
    base, drifted = generate(clean), generate(replace(clean, drift_from=cut))
    when = pd.Timestamp(cut, tz="UTC")

    def split(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        return frame[frame["ts"] < when], frame[frame["ts"] >= when]

    before, after = split(drifted.transactions)
    assert after["amount"].astype(float).mean() > 1.2 * before["amount"].astype(float).mean()
    assert (after["channel"] == "app").mean() > (before["channel"] == "app").mean() + 0.15
    assert (after["category"] == "electronics").mean() > 1.5 * (
        before["category"] == "electronics").mean()
    base_after = split(base.transactions)[1]["amount"].astype(float).mean()
    assert after["amount"].astype(float).mean() > 1.2 * base_after
    # nothing changes before drift_from
    pd.testing.assert_frame_equal(before, split(base.transactions)[0])
    ev_before, ev_after = split(drifted.events)
    per_session = [part.groupby("session_id").size().mean() for part in (ev_before, ev_after)]
    assert per_session[1] > 1.3 * per_session[0]
    assert ev_after["duration_s"].mean() > 1.25 * ev_before["duration_s"].mean()


def test_a_bad_spec_is_refused_with_the_field_named() -> None:
    with pytest.raises(ConfigError, match="customers"):
        generate(DemoSpec(customers=0))
    with pytest.raises(ConfigError, match="end"):
        generate(DemoSpec(start=date(2026, 9, 1), end=date(2026, 8, 1)))


def test_crm_csv_reads_back_equal(data: DemoData, tmp_path: Path) -> None:
    path = write_crm_csv(data, tmp_path / "crm" / "customers.csv")
    back = pd.read_csv(path, dtype={"customer_id": str, "email": str, "country": str,
                                    "plan": str, "signup_date": str, "updated_at": str})
    pd.testing.assert_frame_equal(back.fillna({"email": ""}),
                                  data.customers.fillna({"email": ""}))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.service("postgres"))])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shop.db'}"
        return
    url = request.getfixturevalue("postgres_database")
    yield url
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS transactions"))
    engine.dispose()


def test_sql_table_holds_every_transaction_and_is_replaced(database_url: str) -> None:
    data = generate(replace(SPEC, customers=300))
    write_sql(replace(data, transactions=data.transactions.iloc[:100]), database_url)
    write_sql(data, database_url, chunk_rows=1000)
    engine = sa.create_engine(database_url)
    try:
        back = pd.read_sql("SELECT * FROM transactions", engine)
    finally:
        engine.dispose()
    tx = data.transactions
    assert len(back) == len(tx) > 5000
    assert list(back.columns) == list(tx.columns)
    assert back["transaction_id"].tolist() == tx["transaction_id"].tolist()
    assert back["amount"].tolist() == tx["amount"].astype(str).tolist()
    assert pd.to_datetime(back["ts"], utc=True).equals(tx["ts"])
    assert back["updated_at"].str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ").all()


def test_api_fixture_has_one_json_record_per_ticket(data: DemoData, tmp_path: Path) -> None:
    path = write_api_fixture(data, tmp_path / "api" / "tickets.jsonl")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == len(data.tickets)
    back = pd.DataFrame.from_records(records)
    assert list(back.columns) == list(data.tickets.columns)
    assert back["ticket_id"].tolist() == data.tickets["ticket_id"].tolist()
    assert pd.to_datetime(back["created_at"], utc=True).equals(data.tickets["created_at"])
    assert back["resolution_hours"].isna().sum() == data.tickets["resolution_hours"].isna().sum()


def test_event_log_segments_have_contiguous_seqs_in_time_order(tmp_path: Path) -> None:
    data = generate(replace(SPEC, customers=500))
    write_event_log(data, tmp_path / "events", segment_rows=len(data.events) // 3 + 7)
    files = write_event_log(data, tmp_path / "events", segment_rows=1000)  # replaces the first
    folder = tmp_path / "events" / SUBJECT
    assert sorted(folder.glob("*.jsonl")) == files
    lines = [json.loads(line) for path in files for line in path.read_text().splitlines()]
    seqs = [line["seq"] for line in lines]
    assert seqs == list(range(1, len(data.events) + 1))
    assert [int(path.stem) for path in files] == list(range(1, len(data.events) + 1, 1000))
    back = pd.DataFrame([line["data"] for line in lines])
    stamps = pd.to_datetime(back["ts"], utc=True)
    assert stamps.is_monotonic_increasing
    expected = data.events.sort_values("ts", kind="stable").reset_index(drop=True)
    assert stamps.equals(expected["ts"])
    assert back["event_id"].tolist() == expected["event_id"].tolist()
    assert back["customer_id"].isna().sum() == data.defects["events"]["missing_customer_id"]
    # the stream connector reads it as written
    read = list(read_event_log(folder))
    assert [seq for seq, *_ in read] == seqs
    assert all(problem is None for *_, problem in read)
