"""The seeded demo-data generator and the writers that put its data where the demo's sources read
it (a CRM CSV export, a shop database table, a helpdesk API fixture, an app event log).

Customers of a subscription shop buy, open support tickets and use the app. Each has a latent
engagement, issue rate and support experience; churn propensity follows plan, tenure, fee,
engagement and support experience. A churner fades over the 45 days before a random churn date
inside the period (fewer purchases, sessions and logins; billing and cancel tickets; failed
payments and cancel-page visits) and all but stops after it. No column carries the label.

Deliberate defects are injected at `DemoSpec.defect_rate` per kind, one defect per row, and
counted exactly in `DemoData.defects`: what validation must catch. Everything is vectorised
(numpy, and Arrow to make strings), so a million customers take well under a minute, and the
same seed gives the same frames.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from tideline.core.errors import ConfigError

log = logging.getLogger(__name__)

SUBJECT = "app-events"
"""The event log's subject (its directory under the log's root)."""

PRECURSOR_DAYS = 45.0
"""How long before the churn date a churner's behaviour starts to change."""

PLANS = np.array(["basic", "plus", "premium"], dtype=object)
PLAN_P = np.array([0.5, 0.3, 0.2])
PLAN_FEE = np.array([9.99, 19.99, 39.99])
PLAN_SPEND = np.array([1.0, 1.15, 1.35])
PLAN_CHURN = np.array([0.45, 0.0, -0.45])  # logit shift: basic customers leave more easily
COUNTRIES = np.array(["GB", "DE", "FR", "NL", "ES", "IT", "SE", "PL"], dtype=object)
COUNTRY_P = np.array([0.22, 0.2, 0.16, 0.1, 0.1, 0.1, 0.06, 0.06])
FIRST_NAMES = np.array(["anna", "ben", "chloe", "david", "emma", "felix", "greta", "hugo",
                        "ines", "jonas", "klara", "luca", "mia", "noah", "olga", "piet"])
LAST_NAMES = np.array(["smith", "muller", "martin", "jansen", "garcia", "rossi", "berg",
                       "nowak", "brown", "schmidt", "dubois", "visser"])
DOMAINS = np.array(["example.com", "mail.example.org", "post.example.net"])
DOMAIN_P = np.array([0.6, 0.25, 0.15])

CATEGORIES = np.array(["grocery", "electronics", "fashion", "home", "travel", "refund"],
                      dtype=object)
CATEGORY_P = np.array([0.42, 0.1, 0.2, 0.15, 0.09, 0.04])
CATEGORY_P_DRIFT = np.array([0.24, 0.22, 0.2, 0.12, 0.18, 0.04])
CATEGORY_MEDIAN = np.array([32.0, 140.0, 55.0, 70.0, 210.0, 35.0])
CHANNELS = np.array(["web", "app", "store"], dtype=object)
CHANNEL_P = np.array([0.45, 0.35, 0.2])
CHANNEL_P_DRIFT = np.array([0.22, 0.65, 0.13])

TOPICS = np.array(["billing", "bug", "cancel", "delivery", "other"], dtype=object)
TOPIC_P = np.array([0.22, 0.3, 0.03, 0.3, 0.15])
TOPIC_P_CHURNING = np.array([0.5, 0.05, 0.35, 0.05, 0.05])
PRIORITIES = np.array(["low", "medium", "high"], dtype=object)
PRIORITY_P = np.array([0.5, 0.35, 0.15])
PRIORITY_P_CHURNING = np.array([0.2, 0.4, 0.4])

EVENT_TYPES = np.array(["login", "view", "search", "add_to_cart", "payment_failed",
                        "cancel_page"], dtype=object)
EVENT_P = np.array([0.3, 0.36, 0.15, 0.17, 0.015, 0.005])
EVENT_P_CHURNING = np.array([0.14, 0.26, 0.08, 0.05, 0.25, 0.22])

# Volumes per customer of average engagement over a 120-day period.
TRANSACTIONS_PER_CUSTOMER = 22.0
SESSIONS_PER_CUSTOMER = 4.4
EVENTS_PER_SESSION = 2.5
EVENTS_PER_SESSION_DRIFT = 4.0
TICKETS_PER_CUSTOMER = 0.38
CHURN_TICKETS_PER_CHURNER = 1.0

BAD_EMAILS = np.array(["not-an-email", "jane.doe(at)example.com", "bob@", "@example.com",
                       "mary@localhost"], dtype=object)
BAD_DATES = np.array(["31/02/2026x", "2026-02-30", "someday", "2026-13-01"], dtype=object)
"""Unparseable signup dates (never a null token such as `n/a`: those read as missing)."""
BAD_AMOUNTS = np.array(["12,5O", "EUR 19.99", "1O.00", "twelve"], dtype=object)
BAD_TOPICS = np.array(["complaint", "refund?", "feedback", "unknown"], dtype=object)

TICKS_PER_DAY = {"s": 86_400, "ms": 86_400_000}
_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
# byte -> its two hex digits, as one uint16 whose memory holds them in order
_HEX_PAIRS = np.ascontiguousarray(np.stack([_DIGITS[np.arange(256) >> 4],
                                            _DIGITS[np.arange(256) & 0x0F]], axis=1)
                                  ).view(np.uint16).ravel()
_TEXT_CHUNK = 1_000_000  # rows formatted at a time, to bound the temporary arrays


@dataclass(frozen=True)
class DemoSpec:
    """What to generate: how many customers, over which period, from which seed."""

    customers: int = 3000
    start: date = date(2026, 6, 1)
    """First day of the history."""
    end: date = date(2026, 9, 30)
    """Last day of the history (inclusive)."""
    seed: int = 7
    defect_rate: float = 0.01
    """Share of a dataset's rows given each defect kind."""
    drift_from: date | None = None
    """From this day on, amounts, category and channel mix, events per session and session
    durations shift (for the drift monitor to flag)."""


@dataclass
class DemoData:
    """The generated datasets as their raw sources hold them, with what was injected.

    Transactions and events come grouped by customer, in time order within each customer
    (transaction ids follow time across all customers); tickets come in time order. Duplicate
    rows are appended at the end of their dataset."""

    customers: pd.DataFrame
    transactions: pd.DataFrame
    tickets: pd.DataFrame
    events: pd.DataFrame
    defects: dict[str, dict[str, int]]
    """Dataset -> defect kind -> number of rows injected."""
    churned: pd.Series
    """Ground truth by customer_id: churned during the period. For tests and benchmarks only."""


# -- generation ----------------------------------------------------------------------------

Columns = dict[str, np.ndarray]
"""A dataset under construction: column name -> values (naive datetime64[ns] means UTC)."""


def generate(spec: DemoSpec = DemoSpec()) -> DemoData:  # noqa: B008 - a frozen dataclass
    """The demo's four datasets for `spec`; the same spec always gives the same data."""
    if spec.customers < 1:
        raise ConfigError(f"DemoSpec.customers must be at least 1, not {spec.customers}")
    if spec.end < spec.start:
        raise ConfigError(f"DemoSpec.end ({spec.end}) is before DemoSpec.start ({spec.start})")
    if not 0 <= spec.defect_rate <= 0.1:
        raise ConfigError(f"DemoSpec.defect_rate must be within [0, 0.1], not "
                          f"{spec.defect_rate}")
    rng = np.random.default_rng(spec.seed)
    days = float((spec.end - spec.start).days + 1)
    drift_day = float((spec.drift_from - spec.start).days) if spec.drift_from else np.inf
    origin = np.datetime64(datetime.combine(spec.start, time()), "ns")
    people = _population(rng, spec.customers, days)
    customers = _customers(rng, people, origin, days)
    ids = customers["customer_id"]
    churned = pd.Series(np.isfinite(people.churn_day), index=pd.Index(ids.copy(),
                                                                      name="customer_id"),
                        name="churned")
    transactions = _transactions(rng, people, ids, origin, days, drift_day)
    tickets = _tickets(rng, people, ids, origin, days)
    events = _events(rng, people, ids, origin, days, drift_day)
    defects = {
        "customers": _customer_defects(rng, spec, customers),
        "transactions": _transaction_defects(rng, spec, transactions),
        "tickets": _ticket_defects(rng, spec, tickets),
        "events": _event_defects(rng, spec, events),
    }
    data = DemoData(customers=_frame(customers), transactions=_frame(transactions),
                    tickets=_frame(tickets), events=_frame(events), defects=defects,
                    churned=churned)
    log.info("demo data: %d customers (%.1f%% churned), %d transactions, %d tickets, "
             "%d events", spec.customers, 100 * churned.mean(), len(data.transactions),
             len(data.tickets), len(data.events))
    return data


@dataclass
class _People:
    """Latent traits per customer; times are days since the period's start."""

    plan: np.ndarray
    fee_factor: np.ndarray
    signup_day: np.ndarray  # negative: signed up before the period
    begin: np.ndarray  # first day of activity inside the period
    engagement: np.ndarray  # mean about 1; scales purchases and sessions
    issues: np.ndarray  # mean about 1; scales support tickets
    service: np.ndarray  # mean about 1; scales resolution times (the support experience)
    churn_day: np.ndarray  # +inf for customers who stay


def _population(rng: np.random.Generator, n: int, days: float) -> _People:
    plan = _draw(rng, PLAN_P, n)
    fee_factor = rng.choice([1.0, 1.0, 1.0, 1.1, 1.2, 0.9], size=n)  # price rises, discounts
    new = rng.random(n) < 0.12
    tenure = rng.gamma(2.0, 250.0, size=n)  # days before the period, for earlier signups
    signup_day = np.floor(np.where(new, rng.uniform(0, max(days - 30, 1), n), -1 - tenure))
    begin = np.maximum(signup_day, 0.0)
    engagement = rng.lognormal(-0.18, 0.6, size=n)
    issues = rng.lognormal(-0.18, 0.6, size=n)
    service = rng.lognormal(-0.08, 0.4, size=n)
    logit = (-2.0 + PLAN_CHURN[plan] + 0.9 * (signup_day > -90) + 3.0 * (fee_factor - 1.0)
             - 0.9 * np.log(engagement) + 0.4 * np.log(issues) + 1.2 * np.log(service)
             + rng.normal(0.0, 0.5, size=n))
    churns = rng.random(n) < 1.0 / (1.0 + np.exp(-logit))
    earliest = np.minimum(np.maximum(begin + 21.0, min(PRECURSOR_DAYS, days / 2)), days - 1)
    churn_day = np.where(churns, rng.uniform(earliest, days), np.inf)
    return _People(plan=plan, fee_factor=fee_factor, signup_day=signup_day, begin=begin,
                   engagement=engagement, issues=issues, service=service, churn_day=churn_day)


def _customers(rng: np.random.Generator, people: _People, origin: np.datetime64,
               days: float) -> Columns:
    n = len(people.plan)
    number = np.arange(1, n + 1)
    email = pc.binary_join_element_wise(
        pa.array(FIRST_NAMES).take(rng.integers(0, len(FIRST_NAMES), n)), ".",
        pa.array(LAST_NAMES).take(rng.integers(0, len(LAST_NAMES), n)),
        pa.array(number).cast(pa.string()), "@",
        pa.array(DOMAINS).take(_draw(rng, DOMAIN_P, n)), "",
    ).to_numpy(zero_copy_only=False)
    signup = origin + (people.signup_day * 86_400).astype(np.int64).astype("timedelta64[s]")
    # the CRM record last changed some time in the last 30 days, never before the signup
    touched = np.maximum(days - rng.uniform(0, 30, n), people.signup_day + rng.random(n))
    return {
        "customer_id": _numbered("C", number, _id_width(n)),
        "email": email,
        "country": COUNTRIES[_draw(rng, COUNTRY_P, n)],
        "plan": PLANS[people.plan],
        "signup_date": _iso(signup, "D"),
        "monthly_fee": np.round(PLAN_FEE[people.plan] * people.fee_factor, 2),
        "updated_at": _iso(_stamps(origin, _ticks(touched, "s"), "s"), "s"),
    }


def _transactions(rng: np.random.Generator, people: _People, ids: np.ndarray,
                  origin: np.datetime64, days: float, drift_day: float) -> Columns:
    rate = people.engagement * TRANSACTIONS_PER_CUSTOMER / 120.0
    who, t = _arrivals(rng, rate, people.begin, days)
    keep = rng.random(len(t)) < _fade(people.churn_day[who] - t, floor=0.04)
    who, ticks = who[keep], _ticks(t[keep], "s")
    m = len(ticks)
    drifted = ticks >= drift_day * TICKS_PER_DAY["s"]
    category = _draw(rng, CATEGORY_P, m, CATEGORY_P_DRIFT, drifted)
    median = CATEGORY_MEDIAN[category] * PLAN_SPEND[people.plan[who]]
    amount = rng.lognormal(np.log(median), 0.55) * np.where(drifted, 1.3, 1.0)
    amount = np.maximum(np.round(amount, 2), 0.5)
    channel = _draw(rng, CHANNEL_P, m, CHANNEL_P_DRIFT, drifted)
    values = amount.astype(object)
    # exports often hold numbers as text; parseable text is not a defect
    as_text = np.flatnonzero(rng.random(m) < 0.05)
    values[as_text] = _two_decimals(amount[as_text])
    stamps = _stamps(origin, ticks, "s")
    return {
        "transaction_id": _rank(ticks) + 1,  # the shop numbers orders as they come in
        "customer_id": ids[who],
        "ts": stamps,
        "amount": values,
        "category": CATEGORIES[category],
        "channel": CHANNELS[channel],
        "updated_at": stamps.copy(),
    }


def _tickets(rng: np.random.Generator, people: _People, ids: np.ndarray,
             origin: np.datetime64, days: float) -> Columns:
    rate = people.issues * np.sqrt(people.engagement) * TICKETS_PER_CUSTOMER / 120.0
    who, t = _arrivals(rng, rate, people.begin, days)
    keep = rng.random(len(t)) < np.where(people.churn_day[who] < t, 0.1, 1.0)
    who, t = who[keep], t[keep]
    # churners write in about billing and cancelling in the weeks before they go
    churners = np.flatnonzero(np.isfinite(people.churn_day))
    late_who = np.repeat(churners, rng.poisson(CHURN_TICKETS_PER_CHURNER, len(churners)))
    late_t = people.churn_day[late_who] - rng.random(len(late_who)) * PRECURSOR_DAYS * 0.8
    inside = (late_t >= people.begin[late_who]) & (late_t < days)
    urgent = np.concatenate([np.zeros(len(who), bool), np.ones(int(inside.sum()), bool)])
    who = np.concatenate([who, late_who[inside]])
    ticks = _ticks(np.concatenate([t, late_t[inside]]), "s")
    order = np.argsort(ticks, kind="stable")
    who, ticks, urgent = who[order], ticks[order], urgent[order]
    m = len(ticks)
    topic = _draw(rng, TOPIC_P, m, TOPIC_P_CHURNING, urgent)
    priority = _draw(rng, PRIORITY_P, m, PRIORITY_P_CHURNING, urgent)
    hours = np.round(rng.gamma(2.0, 9.0, m) * people.service[who] ** 1.5
                     * np.where(urgent, 1.6, 1.0), 1) + 0.1
    # unresolved: a few at random, and those whose resolution lies beyond the snapshot
    resolved_at = ticks + np.round(hours * 3600).astype(np.int64)
    open_ = (rng.random(m) < 0.04) | (resolved_at >= days * TICKS_PER_DAY["s"])
    return {
        "ticket_id": np.arange(1, m + 1, dtype=np.int64),
        "customer_id": ids[who],
        "created_at": _stamps(origin, ticks, "s"),
        "topic": TOPICS[topic],
        "priority": PRIORITIES[priority],
        "resolution_hours": np.where(open_, np.nan, hours),
        "updated_at": _stamps(origin, np.where(open_, ticks, resolved_at), "s"),
    }


def _events(rng: np.random.Generator, people: _People, ids: np.ndarray,
            origin: np.datetime64, days: float, drift_day: float) -> Columns:
    rate = people.engagement * SESSIONS_PER_CUSTOMER / 120.0
    session_who, session_t = _arrivals(rng, rate, people.begin, days)
    keep = rng.random(len(session_t)) < _fade(people.churn_day[session_who] - session_t,
                                              floor=0.03)
    session_who, session_ticks = session_who[keep], _ticks(session_t[keep], "ms")
    drifted = session_ticks >= drift_day * TICKS_PER_DAY["ms"]
    size = 1 + rng.poisson(np.where(drifted, EVENTS_PER_SESSION_DRIFT, EVENTS_PER_SESSION) - 1)
    session_ids = _hex(rng.integers(0, 256, (len(session_ticks), 8), dtype=np.uint8), (16,),
                       "s-")
    session = np.repeat(np.arange(len(session_ticks)), size)
    m = len(session)
    # a session's events follow each other by some seconds
    gaps = np.floor(rng.exponential(40_000.0, m)).astype(np.int64)
    ends = np.cumsum(gaps)
    firsts = np.cumsum(size) - size
    offset = ends - np.repeat(ends[firsts] - gaps[firsts], size)
    ticks = np.minimum(session_ticks[session] + offset, int(days * TICKS_PER_DAY["ms"]) - 1)
    who = session_who[session]
    to_churn = people.churn_day[who] - ticks / TICKS_PER_DAY["ms"]
    churning = np.where(to_churn < 0, 1.0, np.clip(1.0 - to_churn / PRECURSOR_DAYS, 0.0, 1.0))
    kind = _draw(rng, EVENT_P, m, EVENT_P_CHURNING, rng.random(m) < 0.85 * churning)
    duration = rng.gamma(2.0, 30.0, m) * np.where(drifted[session], 1.4, 1.0)
    raw = rng.integers(0, 256, (m, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # uuid version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    return {
        "event_id": _hex(raw, (8, 4, 4, 4, 12)),
        "customer_id": ids[who],
        "ts": _stamps(origin, ticks, "ms"),
        "event_type": EVENT_TYPES[kind],
        "session_id": session_ids[session],
        "duration_s": np.round(duration, 1),
    }


def _arrivals(rng: np.random.Generator, rate: np.ndarray, begin: np.ndarray,
              days: float) -> tuple[np.ndarray, np.ndarray]:
    """A Poisson process per customer at `rate` per day over `[begin, days)`: (customer index,
    time in days) of every arrival, sorted by customer, then time. The times of a customer's
    k arrivals are k sorted uniforms, made from the spacings of k + 1 exponentials (no sort)."""
    span = np.maximum(days - begin, 0.0)
    counts = rng.poisson(rate * span)
    who = np.repeat(np.arange(len(rate)), counts)
    ends = np.cumsum(counts + 1) - 1  # each customer's last spacing
    running = np.cumsum(rng.exponential(1.0, int(ends[-1]) + 1 if len(ends) else 0))
    before = np.concatenate([[0.0], running[ends[:-1]]])
    inner = np.ones(len(running), dtype=bool)
    inner[ends] = False
    share = (running[inner] - np.repeat(before, counts)) / np.repeat(running[ends] - before,
                                                                     counts)
    return who, begin[who] + share * span[who]


def _fade(to_churn: np.ndarray, floor: float) -> np.ndarray:
    """Chance an activity survives, by days until the customer's churn (inf: never churns):
    1 until the precursor window, falling to 0.25 at the churn date, `floor` after it."""
    before = np.clip(to_churn / PRECURSOR_DAYS, 0.0, 1.0)
    return np.where(to_churn < 0, floor, 0.25 + 0.75 * before)


def _draw(rng: np.random.Generator, p: np.ndarray, size: int, p_alt: np.ndarray | None = None,
          alt: np.ndarray | None = None) -> np.ndarray:
    """`size` indices drawn with probabilities `p`, or `p_alt` where `alt` is true, from one
    uniform each (so rows outside `alt` come out the same whatever `alt` is)."""
    u = rng.random(size)
    index = _bucket(u, p)
    if p_alt is not None and alt is not None and alt.any():
        index[alt] = _bucket(u[alt], p_alt)
    return index


def _bucket(u: np.ndarray, p: np.ndarray) -> np.ndarray:
    edges = np.cumsum(p) / np.sum(p)
    index = np.zeros(len(u), dtype=np.int8)
    for edge in edges[:-1]:
        index += u >= edge
    return index


def _ticks(t: np.ndarray, unit: str) -> np.ndarray:
    """Days since the start as whole seconds or milliseconds (truncated)."""
    return np.floor(t * TICKS_PER_DAY[unit]).astype(np.int64)


def _stamps(origin: np.datetime64, ticks: np.ndarray, unit: str) -> np.ndarray:
    """Ticks of `unit` since `origin` as datetime64[ns]."""
    per_tick = {"s": 1_000_000_000, "ms": 1_000_000}[unit]
    return (ticks * per_tick + origin.astype("datetime64[ns]").astype(np.int64)).view(
        "datetime64[ns]")


def _rank(ticks: np.ndarray) -> np.ndarray:
    """Each row's position in time order (ties by row), from 0. Packs each time with its row
    number into one uint64 and sorts those, several times faster than an argsort."""
    n = len(ticks)
    bits = max(n - 1, 1).bit_length()
    if n and int(ticks.max()) >= 1 << (64 - bits):
        order = np.argsort(ticks, kind="stable")
    else:
        key = (ticks.astype(np.uint64) << np.uint64(bits)) | np.arange(n, dtype=np.uint64)
        key.sort()
        order = (key & np.uint64((1 << bits) - 1)).astype(np.int64)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    return rank


def _frame(columns: Columns) -> pd.DataFrame:
    """The finished dataset: timestamps UTC-aware, columns not copied."""
    return pd.DataFrame({
        name: pd.Series(values, copy=False).dt.tz_localize("UTC")
        if values.dtype.kind == "M" else values
        for name, values in columns.items()
    }, copy=False)


# -- text, vectorised ----------------------------------------------------------------------


def _id_width(customers: int) -> int:
    """Digits in a customer id: 7, more when there are so many customers that ids (and the
    orphan ids past them) need it."""
    return max(7, len(str(customers + 5000)))


def _numbered(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    """`prefix` + zero-padded decimal numbers, as an object array of str."""
    chars = np.empty((len(numbers), len(prefix) + width), dtype=np.uint8)
    chars[:, : len(prefix)] = np.frombuffer(prefix.encode(), dtype=np.uint8)
    _put_digits(chars, len(prefix), numbers, width)
    return _as_text(chars)


def _two_decimals(values: np.ndarray) -> np.ndarray:
    """Non-negative numbers as text with two decimals ("12.50"), as an object array of str."""
    cents = np.round(values * 100).astype(np.int64)
    return pc.binary_join_element_wise(
        pa.array(cents // 100).cast(pa.string()),
        pc.utf8_lpad(pa.array(cents % 100).cast(pa.string()), 2, "0"), ".",
    ).to_numpy(zero_copy_only=False)


def _hex(raw: np.ndarray, groups: tuple[int, ...], prefix: str = "") -> np.ndarray:
    """Rows of random bytes as lowercase hex in dash-separated groups of so many digits
    (uuid-like for (8, 4, 4, 4, 12)), as an object array of str."""
    width = len(prefix) + sum(groups) + len(groups) - 1
    out = np.empty(len(raw), dtype=object)
    for first in range(0, len(raw), _TEXT_CHUNK):
        block = raw[first:first + _TEXT_CHUNK]
        digits = _HEX_PAIRS[block].view(np.uint8)
        chars = np.full((len(block), width), ord("-"), dtype=np.uint8)
        chars[:, : len(prefix)] = np.frombuffer(prefix.encode(), dtype=np.uint8)
        at, taken = len(prefix), 0
        for size in groups:
            chars[:, at:at + size] = digits[:, taken:taken + size]
            at, taken = at + size + 1, taken + size
        out[first:first + len(block)] = _as_text(chars)
    return out


def _iso(stamps: np.ndarray, unit: str) -> np.ndarray:
    """Naive UTC datetime64 values as ISO-8601 text: "YYYY-MM-DD" for unit "D", else
    "YYYY-MM-DDTHH:MM:SSZ" ("s") or "YYYY-MM-DDTHH:MM:SS.mmmZ" ("ms"); NaT becomes None.
    Built from digits (numpy's own formatting is slow on tens of millions of values)."""
    template = np.frombuffer({"D": b"0000-00-00", "s": b"0000-00-00T00:00:00Z",
                              "ms": b"0000-00-00T00:00:00.000Z"}[unit], dtype=np.uint8)
    out = np.empty(len(stamps), dtype=object)
    for first in range(0, len(stamps), _TEXT_CHUNK):
        block = stamps[first:first + _TEXT_CHUNK]
        missing = np.isnat(block)
        block = np.where(missing, np.datetime64(0, "ms"), block).astype("datetime64[ms]")
        day = block.astype("datetime64[D]")
        month = day.astype("datetime64[M]")
        year = month.astype("datetime64[Y]")
        chars = np.tile(template, (len(block), 1))
        _put_digits(chars, 0, year.astype(np.int64) + 1970, 4)
        _put_digits(chars, 5, (month - year.astype("datetime64[M]")).astype(np.int64) + 1, 2)
        _put_digits(chars, 8, (day - month.astype("datetime64[D]")).astype(np.int64) + 1, 2)
        if unit != "D":
            ms = (block - day.astype("datetime64[ms]")).astype(np.int64)
            _put_digits(chars, 11, ms // 3_600_000, 2)
            _put_digits(chars, 14, ms // 60_000 % 60, 2)
            _put_digits(chars, 17, ms // 1000 % 60, 2)
            if unit == "ms":
                _put_digits(chars, 20, ms % 1000, 3)
        text = _as_text(chars)
        text[missing] = None
        out[first:first + len(block)] = text
    return out


def _put_digits(chars: np.ndarray, at: int, numbers: np.ndarray, width: int) -> None:
    """Write `numbers` zero-padded to `width` decimal digits into columns `at`… of `chars`."""
    for position in range(width):
        chars[:, at + position] = _DIGITS[numbers // 10 ** (width - 1 - position) % 10]


def _as_text(chars: np.ndarray) -> np.ndarray:
    """An (n, width) uint8 array of ASCII as an object array of n str (through Arrow, which
    makes the str objects several times faster than numpy's unicode casts)."""
    n, width = chars.shape
    buffers = [None, pa.py_buffer(np.arange(n + 1, dtype=np.int64) * width),
               pa.py_buffer(np.ascontiguousarray(chars))]
    binary = pa.Array.from_buffers(pa.large_binary(), n, buffers)
    return binary.cast(pa.large_string()).to_numpy(zero_copy_only=False)


# -- defects -------------------------------------------------------------------------------


def _defect_rows(rng: np.random.Generator, length: int, counts: list[int]) -> list[np.ndarray]:
    """Disjoint sets of row positions of the given sizes, so no row gets two defects (the
    sizes fit: at most 5 kinds of at most 10% each)."""
    chosen = rng.choice(length, size=sum(counts), replace=False)
    return [np.sort(part) for part in np.split(chosen, np.cumsum(counts)[:-1])]


def _count(spec: DemoSpec, columns: Columns) -> int:
    return int(round(spec.defect_rate * len(next(iter(columns.values())))))


def _append_copies(columns: Columns, rows: np.ndarray) -> None:
    """Append exact copies of `rows` (the duplicate defect)."""
    for name, values in columns.items():
        columns[name] = np.concatenate([values, values[rows]])


def _pick(rng: np.random.Generator, values: np.ndarray, size: int) -> np.ndarray:
    return values[rng.integers(0, len(values), size)]


def _customer_defects(rng: np.random.Generator, spec: DemoSpec,
                      columns: Columns) -> dict[str, int]:
    k = _count(spec, columns)
    missing, bad, dates, copies = _defect_rows(rng, len(columns["email"]), [k] * 4)
    columns["email"][missing] = None
    columns["email"][bad] = _pick(rng, BAD_EMAILS, len(bad))
    columns["signup_date"][dates] = _pick(rng, BAD_DATES, len(dates))
    _append_copies(columns, copies)
    return {"missing_email": len(missing), "bad_email": len(bad),
            "bad_signup_date": len(dates), "duplicate": len(copies)}


def _transaction_defects(rng: np.random.Generator, spec: DemoSpec,
                         columns: Columns) -> dict[str, int]:
    k = _count(spec, columns)
    negative, bad, future, orphans, copies = _defect_rows(rng, len(columns["ts"]), [k] * 5)
    amount = columns["amount"]
    amount[negative] = -pd.to_numeric(pd.Series(amount[negative])).to_numpy(dtype=float)
    amount[bad] = _pick(rng, BAD_AMOUNTS, len(bad))
    # a skewed clock: `ts` lands 31-90 days after the period; `updated_at`, the sync cursor,
    # stays as the database set it
    after = np.datetime64(spec.end, "D").astype("datetime64[ns]") + np.timedelta64(1, "D")
    skew = rng.integers(31 * 86_400, 90 * 86_400, len(future)).astype("timedelta64[s]")
    columns["ts"][future] = after + skew
    # ids of customers the CRM no longer has (deleted accounts): past the last real id
    width = _id_width(spec.customers)
    unknown = spec.customers + 1 + rng.integers(0, 5000, len(orphans))
    columns["customer_id"][orphans] = _numbered("C", unknown, width)
    _append_copies(columns, copies)
    return {"negative_amount": len(negative), "bad_amount_type": len(bad),
            "future_ts": len(future), "orphan_customer": len(orphans), "duplicate": len(copies)}


def _ticket_defects(rng: np.random.Generator, spec: DemoSpec,
                    columns: Columns) -> dict[str, int]:
    k = _count(spec, columns)
    topics, negative = _defect_rows(rng, len(columns["topic"]), [k] * 2)
    columns["topic"][topics] = _pick(rng, BAD_TOPICS, len(topics))
    hours = columns["resolution_hours"]
    hours[negative] = -np.nan_to_num(hours[negative], nan=1.0)
    return {"unknown_topic": len(topics), "negative_resolution": len(negative)}


def _event_defects(rng: np.random.Generator, spec: DemoSpec,
                   columns: Columns) -> dict[str, int]:
    k = _count(spec, columns)
    missing, pairs = _defect_rows(rng, len(columns["event_id"]), [k, 2 * k])
    pairs = pairs[: len(pairs) // 2 * 2]
    columns["customer_id"][missing] = None
    # the later row of each pair repeats the earlier (clean) row's id: one duplicate per pair
    columns["event_id"][pairs[1::2]] = columns["event_id"][pairs[0::2]]
    return {"missing_customer_id": len(missing), "duplicate_event_id": len(pairs) // 2}


# -- writers -------------------------------------------------------------------------------


def write_crm_csv(data: DemoData, path: str | Path) -> Path:
    """The CRM's nightly export: customers as CSV. Returns the file's path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data.customers.to_csv(path, index=False)
    return path


def write_sql(data: DemoData, url: str, chunk_rows: int = 50_000, append: bool = False) -> None:
    """The shop database's `transactions` table (replaced, or added to with `append`) at a
    SQLAlchemy `url`, such as `sqlite:///shop.db` or `postgresql+psycopg://…`. Like many legacy
    shop schemas it keeps amounts and timestamps as text (ISO-8601 UTC), which is how malformed
    amounts get in."""
    frame = data.transactions
    table = pd.DataFrame({
        "transaction_id": frame["transaction_id"],
        "customer_id": frame["customer_id"],
        "ts": _iso_utc(frame["ts"], "s"),
        "amount": frame["amount"].astype(str),
        "category": frame["category"],
        "channel": frame["channel"],
        "updated_at": _iso_utc(frame["updated_at"], "s"),
    })
    text = sa.types.Text()
    engine = sa.create_engine(url)
    try:
        table.to_sql("transactions", engine, if_exists="append" if append else "replace",
                     index=False,
                     chunksize=chunk_rows, method=_insert_method(engine),
                     dtype={"transaction_id": sa.types.BigInteger(), "customer_id": text,
                            "ts": text, "amount": text, "category": text, "channel": text,
                            "updated_at": text})
    finally:
        engine.dispose()


def _insert_method(engine: sa.Engine) -> Callable[..., int] | None:
    """How `to_sql` inserts: PostgreSQL (psycopg 3) by COPY, SQLite by the driver's own
    executemany, both many times faster than SQLAlchemy's per-row parameter handling for the
    millions of rows of a benchmark; other databases by pandas' default."""
    dialect = engine.dialect
    if dialect.name == "postgresql" and dialect.driver == "psycopg":
        return _copy_rows
    if dialect.name == "sqlite":
        return _executemany_rows
    return None


def _quoted_name(table: Any) -> str:
    return ".".join(f'"{part}"' for part in (table.schema, table.name) if part)


def _copy_rows(table: Any, conn: Any, keys: list[str], rows: Iterator[tuple]) -> int:
    columns = ", ".join(f'"{key}"' for key in keys)
    count = 0
    with conn.connection.cursor() as cursor, cursor.copy(
            f"COPY {_quoted_name(table)} ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


def _executemany_rows(table: Any, conn: Any, keys: list[str], rows: Iterator[tuple]) -> int:
    chunk = list(rows)
    columns = ", ".join(f'"{key}"' for key in keys)
    marks = ", ".join("?" * len(keys))
    cursor = conn.connection.cursor()
    try:
        cursor.executemany(f"INSERT INTO {_quoted_name(table)} ({columns}) VALUES ({marks})",
                           chunk)
    finally:
        cursor.close()
    return len(chunk)


def write_api_fixture(data: DemoData, path: str | Path, append: bool = False) -> Path:
    """Tickets as JSON lines (ISO-8601 UTC timestamps, null while unresolved), the records the
    local helpdesk API serves page by page, written anew or added at the end with `append`.
    Returns the file's path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = data.tickets.assign(created_at=_iso_utc(data.tickets["created_at"], "s"),
                                updated_at=_iso_utc(data.tickets["updated_at"], "s"))
    frame.to_json(path, orient="records", lines=True, force_ascii=False,
                  mode="a" if append else "w")
    return path


def write_event_log(data: DemoData, directory: str | Path, subject: str = SUBJECT,
                    segment_rows: int = 100_000, first_seq: int = 1) -> list[Path]:
    """Events in time order as an append-only log: `<directory>/<subject>/<first seq>.jsonl`
    segments of `segment_rows` lines `{"seq": n, "data": {...}}`, seq counting from `first_seq`.
    From 1, any earlier log under the subject is replaced; from a later seq, the segments are
    added after the log's end (which must be `first_seq - 1`). Returns the new segment files in
    order."""
    folder = Path(directory) / subject
    folder.mkdir(parents=True, exist_ok=True)
    if first_seq == 1:
        for old in folder.glob("*.jsonl"):
            old.unlink()
    events = data.events.iloc[np.argsort(_naive_utc(data.events["ts"]), kind="stable")]
    events = events.assign(ts=_iso_utc(events["ts"], "ms"))
    files: list[Path] = []
    for first in range(0, len(events), segment_rows):
        chunk = events.iloc[first:first + segment_rows]
        records = np.array(chunk.to_json(orient="records", lines=True, force_ascii=False)
                           .splitlines(), dtype=object)
        start = first_seq + first
        seqs = np.arange(start, start + len(chunk)).astype(str).astype(object)
        path = folder / f"{start:012d}.jsonl"
        path.write_text("".join('{"seq": ' + seqs + ', "data": ' + records + "}\n"),
                        encoding="utf-8")
        files.append(path)
    return files


def _iso_utc(values: pd.Series, unit: str) -> np.ndarray:
    """A tz-aware timestamp column as ISO-8601 UTC text."""
    return _iso(_naive_utc(values), unit)


def _naive_utc(values: pd.Series) -> np.ndarray:
    """A tz-aware timestamp column as naive datetime64[ns] in UTC (not Timestamp objects)."""
    return values.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
