"""The seeded demo-data generator and the writers that put its data where the demo's sources read
it (a CRM CSV export, a shop database table, a helpdesk API fixture, an app event log).

Customers of a subscription shop buy, open support tickets and use the app. Each has a latent
engagement, issue rate and support experience; churn propensity follows plan, tenure, fee,
engagement and support experience. A churner fades over the 45 days before a random churn date
inside the period (fewer purchases, sessions and logins; billing and cancel tickets; failed
payments and cancel-page visits) and all but stops after it. No column carries the label.

Deliberate defects are injected at `DemoSpec.defect_rate` per kind, one defect per row, and
counted exactly in `DemoData.defects`: what validation must catch. Everything is vectorised
numpy, so millions of customers take seconds, and the same seed gives the same frames.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path

import numpy as np
import pandas as pd

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

US_PER_DAY = 86_400_000_000
_DIGITS = np.frombuffer(b"0123456789abcdef", dtype="S1")
_TEXT_CHUNK = 1_000_000


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
    """The generated datasets as their raw sources hold them, with what was injected."""

    customers: pd.DataFrame
    transactions: pd.DataFrame
    tickets: pd.DataFrame
    events: pd.DataFrame
    defects: dict[str, dict[str, int]]
    """Dataset -> defect kind -> number of rows injected."""
    churned: pd.Series
    """Ground truth by customer_id: churned during the period. For tests and benchmarks only."""


# -- generation ----------------------------------------------------------------------------


def generate(spec: DemoSpec = DemoSpec()) -> DemoData:  # noqa: B008 - a frozen dataclass
    """The demo's four datasets for `spec`; the same spec always gives the same data."""
    if spec.customers < 1:
        raise ValueError(f"DemoSpec.customers must be at least 1, not {spec.customers}")
    if spec.end < spec.start:
        raise ValueError(f"DemoSpec.end ({spec.end}) is before DemoSpec.start ({spec.start})")
    if not 0 <= spec.defect_rate <= 0.1:
        raise ValueError(f"DemoSpec.defect_rate must be within [0, 0.1], not {spec.defect_rate}")
    rng = np.random.default_rng(spec.seed)
    days = float((spec.end - spec.start).days + 1)
    drift_day = float((spec.drift_from - spec.start).days) if spec.drift_from else np.inf
    people = _population(rng, spec.customers, days)
    customers = _customers(rng, spec, people, days)
    ids = customers["customer_id"].to_numpy()
    transactions = _transactions(rng, spec, people, ids, days, drift_day)
    tickets = _tickets(rng, spec, people, ids, days)
    events = _events(rng, spec, people, ids, days, drift_day)

    customers, customer_defects = _customer_defects(rng, spec, customers)
    transactions, transaction_defects = _transaction_defects(rng, spec, transactions)
    tickets, ticket_defects = _ticket_defects(rng, spec, tickets)
    events, event_defects = _event_defects(rng, spec, events)
    churned = pd.Series(np.isfinite(people.churn_day), index=pd.Index(ids, name="customer_id"),
                        name="churned")
    log.info("demo data: %d customers (%.1f%% churned), %d transactions, %d tickets, "
             "%d events", spec.customers, 100 * churned.mean(), len(transactions),
             len(tickets), len(events))
    return DemoData(
        customers=customers, transactions=transactions, tickets=tickets, events=events,
        defects={"customers": customer_defects, "transactions": transaction_defects,
                 "tickets": ticket_defects, "events": event_defects},
        churned=churned,
    )


@dataclass
class _People:
    """Latent traits per customer; times are days since the period's start."""

    plan: np.ndarray
    fee_factor: np.ndarray
    signup_day: np.ndarray  # negative: signed up before the period
    begin: np.ndarray  # first day of activity inside the period
    engagement: np.ndarray  # mean 1; scales purchases and sessions
    issues: np.ndarray  # mean 1; scales support tickets
    service: np.ndarray  # mean 1; scales resolution times (the support experience)
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


def _customers(rng: np.random.Generator, spec: DemoSpec, people: _People,
               days: float) -> pd.DataFrame:
    n = len(people.plan)
    number = np.arange(1, n + 1)
    start = np.datetime64(spec.start, "D")
    names = np.char.add(np.char.add(FIRST_NAMES[rng.integers(0, len(FIRST_NAMES), n)], "."),
                        LAST_NAMES[rng.integers(0, len(LAST_NAMES), n)])
    email = np.char.add(np.char.add(np.char.add(names, number.astype(str)), "@"),
                        DOMAINS[_draw(rng, np.array([0.6, 0.25, 0.15]), n)])
    signup = start + people.signup_day.astype(np.int64).astype("timedelta64[D]")
    # the CRM record last changed some time in the last 30 days, never before the signup
    touched = np.maximum(days - rng.uniform(0, 30, n), people.signup_day + rng.random(n))
    updated = _stamps(spec.start, touched, "s")
    return pd.DataFrame({
        "customer_id": _numbered("C", number, _id_width(n)),
        "email": email.astype(object),
        "country": COUNTRIES[_draw(rng, COUNTRY_P, n)],
        "plan": PLANS[people.plan],
        "signup_date": np.datetime_as_string(signup, unit="D").astype(object),
        "monthly_fee": np.round(PLAN_FEE[people.plan] * people.fee_factor, 2),
        "updated_at": np.datetime_as_string(updated, unit="s", timezone="UTC").astype(object),
    })


def _transactions(rng: np.random.Generator, spec: DemoSpec, people: _People, ids: np.ndarray,
                  days: float, drift_day: float) -> pd.DataFrame:
    rate = people.engagement * TRANSACTIONS_PER_CUSTOMER / 120.0
    who, t = _arrivals(rng, rate, people.begin, days)
    keep = rng.random(len(t)) < _fade(people.churn_day[who] - t, floor=0.04)
    who, t = _in_time_order(who[keep], t[keep])
    m = len(t)
    drifted = t >= drift_day
    category = np.where(drifted, _draw(rng, CATEGORY_P_DRIFT, m), _draw(rng, CATEGORY_P, m))
    median = CATEGORY_MEDIAN[category] * PLAN_SPEND[people.plan[who]]
    amount = rng.lognormal(np.log(median), 0.55) * np.where(drifted, 1.3, 1.0)
    amount = np.maximum(np.round(amount, 2), 0.5)
    channel = np.where(drifted, _draw(rng, CHANNEL_P_DRIFT, m), _draw(rng, CHANNEL_P, m))
    stamps = _utc(_stamps(spec.start, t, "s"))
    values = amount.astype(object)
    # exports often hold numbers as text; parseable text is not a defect
    as_text = np.flatnonzero(rng.random(m) < 0.05)
    values[as_text] = np.char.mod("%.2f", amount[as_text]).astype(object)
    return pd.DataFrame({
        "transaction_id": np.arange(1, m + 1, dtype=np.int64),
        "customer_id": ids[who],
        "ts": stamps,
        "amount": values,
        "category": CATEGORIES[category],
        "channel": CHANNELS[channel],
        "updated_at": stamps.copy(),
    })


def _tickets(rng: np.random.Generator, spec: DemoSpec, people: _People, ids: np.ndarray,
             days: float) -> pd.DataFrame:
    rate = people.issues * np.sqrt(people.engagement) * TICKETS_PER_CUSTOMER / 120.0
    who, t = _arrivals(rng, rate, people.begin, days)
    keep = rng.random(len(t)) < np.where(people.churn_day[who] < t, 0.1, 1.0)
    who, t = who[keep], t[keep]
    # churners write in about billing and cancelling in the weeks before they go
    churners = np.flatnonzero(np.isfinite(people.churn_day))
    extra = rng.poisson(CHURN_TICKETS_PER_CHURNER, len(churners))
    late_who = np.repeat(churners, extra)
    late_t = people.churn_day[late_who] - rng.random(len(late_who)) * PRECURSOR_DAYS * 0.8
    inside = (late_t >= people.begin[late_who]) & (late_t < days)
    urgent = np.concatenate([np.zeros(len(who), bool), np.ones(int(inside.sum()), bool)])
    who = np.concatenate([who, late_who[inside]])
    t = np.concatenate([t, late_t[inside]])
    order = np.argsort(t, kind="stable")
    who, t, urgent = who[order], t[order], urgent[order]
    m = len(t)
    topic = np.where(urgent, _draw(rng, TOPIC_P_CHURNING, m), _draw(rng, TOPIC_P, m))
    priority = np.where(urgent, _draw(rng, PRIORITY_P_CHURNING, m), _draw(rng, PRIORITY_P, m))
    hours = np.round(rng.gamma(2.0, 9.0, m) * people.service[who] ** 1.5
                     * np.where(urgent, 1.6, 1.0), 1) + 0.1
    # unresolved: a few at random, and those whose resolution lies beyond the snapshot
    open_ = (rng.random(m) < 0.04) | (t + hours / 24.0 >= days)
    created = _utc(_stamps(spec.start, t, "s"))
    updated = _utc(_stamps(spec.start, np.where(open_, t, t + hours / 24.0), "s"))
    return pd.DataFrame({
        "ticket_id": np.arange(1, m + 1, dtype=np.int64),
        "customer_id": ids[who],
        "created_at": created,
        "topic": TOPICS[topic],
        "priority": PRIORITIES[priority],
        "resolution_hours": np.where(open_, np.nan, hours),
        "updated_at": updated,
    })


def _events(rng: np.random.Generator, spec: DemoSpec, people: _People, ids: np.ndarray,
            days: float, drift_day: float) -> pd.DataFrame:
    rate = people.engagement * SESSIONS_PER_CUSTOMER / 120.0
    session_who, session_t = _arrivals(rng, rate, people.begin, days)
    keep = rng.random(len(session_t)) < _fade(people.churn_day[session_who] - session_t,
                                              floor=0.03)
    session_who, session_t = session_who[keep], session_t[keep]
    sessions = len(session_t)
    drifted = session_t >= drift_day
    mean_extra = np.where(drifted, EVENTS_PER_SESSION_DRIFT, EVENTS_PER_SESSION) - 1.0
    size = 1 + rng.poisson(mean_extra)
    session_ids = _hex(rng.integers(0, 256, (sessions, 8), dtype=np.uint8), (16,), "s-")
    session = np.repeat(np.arange(sessions), size)
    m = len(session)
    # events of a session follow each other by some seconds
    gaps = rng.exponential(40.0, m)
    ends = np.cumsum(gaps)
    firsts = np.cumsum(size) - size
    offset = ends - np.repeat(ends[firsts] - gaps[firsts], size)
    t = np.minimum(session_t[session] + offset / 86_400, days - 1e-6)
    who = session_who[session]
    order = np.argsort(t, kind="stable")
    session, who, t = session[order], who[order], t[order]
    to_churn = people.churn_day[who] - t
    churning = np.where(to_churn < 0, 1.0, np.clip(1.0 - to_churn / PRECURSOR_DAYS, 0.0, 1.0))
    kind = np.where(rng.random(m) < 0.85 * churning, _draw(rng, EVENT_P_CHURNING, m),
                    _draw(rng, EVENT_P, m))
    duration = rng.gamma(2.0, 30.0, m) * np.where(drifted[session], 1.4, 1.0)
    raw = rng.integers(0, 256, (m, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    return pd.DataFrame({
        "event_id": _hex(raw, (8, 4, 4, 4, 12)),
        "customer_id": ids[who],
        "ts": _utc(_stamps(spec.start, t, "ms")),
        "event_type": EVENT_TYPES[kind],
        "session_id": session_ids[session],
        "duration_s": np.round(duration, 1),
    })


def _arrivals(rng: np.random.Generator, rate: np.ndarray, begin: np.ndarray,
              days: float) -> tuple[np.ndarray, np.ndarray]:
    """A Poisson process per customer at `rate` per day over `[begin, days)`: (customer index,
    time in days) of every arrival, grouped by customer."""
    span = np.maximum(days - begin, 0.0)
    who = np.repeat(np.arange(len(rate)), rng.poisson(rate * span))
    return who, begin[who] + rng.random(len(who)) * span[who]


def _fade(to_churn: np.ndarray, floor: float) -> np.ndarray:
    """Chance an activity survives, by days until the customer's churn (inf: never churns):
    1 until the precursor window, falling to 0.25 at the churn date, `floor` after it."""
    before = np.clip(to_churn / PRECURSOR_DAYS, 0.0, 1.0)
    return np.where(to_churn < 0, floor, 0.25 + 0.75 * before)


def _in_time_order(who: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(t, kind="stable")
    return who[order], t[order]


def _draw(rng: np.random.Generator, p: np.ndarray, size: int) -> np.ndarray:
    """`size` indices drawn with probabilities `p`."""
    cdf = np.cumsum(p)
    return np.minimum(np.searchsorted(cdf / cdf[-1], rng.random(size), side="right"), len(p) - 1)


def _stamps(start: date, t: np.ndarray, unit: str) -> np.ndarray:
    """Days since `start` as datetime64 of `unit` (truncated)."""
    origin = np.datetime64(datetime.combine(start, time()), unit)
    per_day = {"s": 86_400, "ms": 86_400_000, "us": US_PER_DAY}[unit]
    return origin + np.floor(t * per_day).astype(np.int64).astype(f"timedelta64[{unit}]")


def _utc(stamps: np.ndarray) -> pd.Series:
    return pd.Series(stamps.astype("datetime64[ns]")).dt.tz_localize("UTC")


def _id_width(customers: int) -> int:
    """Digits in a customer id: 7, more when there are so many customers that ids (and the
    orphan ids past them) need it."""
    return max(7, len(str(customers + 5000)))


def _numbered(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    """`prefix` + zero-padded decimal numbers, as an object array of str."""
    chars = np.empty((len(numbers), len(prefix) + width), dtype="S1")
    chars[:, : len(prefix)] = np.frombuffer(prefix.encode(), dtype="S1")
    for position in range(width):
        chars[:, len(prefix) + position] = _DIGITS[(numbers // 10 ** (width - 1 - position)) % 10]
    return _as_text(chars)


def _hex(raw: np.ndarray, groups: tuple[int, ...], prefix: str = "") -> np.ndarray:
    """Rows of random bytes as lowercase hex in dash-separated groups of so many digits
    (uuid-like for (8, 4, 4, 4, 12)), as an object array of str."""
    out: list[np.ndarray] = []
    for first in range(0, len(raw), _TEXT_CHUNK):
        block = raw[first:first + _TEXT_CHUNK]
        digits = np.empty((len(block), 2 * raw.shape[1]), dtype="S1")
        digits[:, 0::2] = _DIGITS[block >> 4]
        digits[:, 1::2] = _DIGITS[block & 0x0F]
        width = len(prefix) + sum(groups) + len(groups) - 1
        chars = np.full((len(block), width), b"-", dtype="S1")
        chars[:, : len(prefix)] = np.frombuffer(prefix.encode(), dtype="S1")
        at, taken = len(prefix), 0
        for size in groups:
            chars[:, at:at + size] = digits[:, taken:taken + size]
            at, taken = at + size + 1, taken + size
        out.append(_as_text(chars))
    return np.concatenate(out) if out else np.empty(0, dtype=object)


def _as_text(chars: np.ndarray) -> np.ndarray:
    """An (n, width) array of ASCII bytes as an object array of n str."""
    joined = np.ascontiguousarray(chars).view(f"S{chars.shape[1]}").ravel()
    return joined.astype(f"U{chars.shape[1]}").astype(object)


# -- defects -------------------------------------------------------------------------------


class _Rows:
    """Hands out row positions of a frame not yet given a defect, so no row gets two."""

    def __init__(self, rng: np.random.Generator, length: int, rate: float) -> None:
        self.rng, self.free = rng, np.ones(length, bool)
        self.count = int(round(rate * length))

    def take(self, count: int | None = None) -> np.ndarray:
        wanted = self.count if count is None else count
        chosen = self.rng.choice(np.flatnonzero(self.free), size=min(wanted, int(self.free.sum())),
                                 replace=False)
        self.free[chosen] = False
        return np.sort(chosen)


def _pick(rng: np.random.Generator, values: np.ndarray, size: int) -> np.ndarray:
    return values[rng.integers(0, len(values), size)]


def _customer_defects(rng: np.random.Generator, spec: DemoSpec,
                      frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    rows = _Rows(rng, len(frame), spec.defect_rate)
    email = frame.columns.get_loc("email")
    missing = rows.take()
    frame.iloc[missing, email] = None
    bad = rows.take()
    frame.iloc[bad, email] = _pick(rng, BAD_EMAILS, len(bad))
    dates = rows.take()
    frame.iloc[dates, frame.columns.get_loc("signup_date")] = _pick(rng, BAD_DATES, len(dates))
    copies = frame.iloc[rows.take()]
    frame = pd.concat([frame, copies], ignore_index=True)
    return frame, {"missing_email": len(missing), "bad_email": len(bad),
                   "bad_signup_date": len(dates), "duplicate": len(copies)}


def _transaction_defects(rng: np.random.Generator, spec: DemoSpec,
                         frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    rows = _Rows(rng, len(frame), spec.defect_rate)
    amount = frame.columns.get_loc("amount")
    negative = rows.take()
    values = pd.to_numeric(frame["amount"].iloc[negative]).to_numpy(dtype=float)
    frame.iloc[negative, amount] = -values
    bad = rows.take()
    frame.iloc[bad, amount] = _pick(rng, BAD_AMOUNTS, len(bad))
    future = rows.take()
    # a skewed clock: `ts` lands 31-90 days after the period; `updated_at`, the sync cursor,
    # stays as the database set it
    skew = pd.to_timedelta(rng.integers(31 * 86_400, 90 * 86_400, len(future)), unit="s")
    frame.iloc[future, frame.columns.get_loc("ts")] = (
        pd.Timestamp(spec.end, tz="UTC") + pd.Timedelta(days=1) + skew)
    orphans = rows.take()
    # ids of customers the CRM no longer has (deleted accounts): past the last real id
    width = _id_width(spec.customers)
    room = min(5000, 10**width - spec.customers - 1)
    unknown = spec.customers + 1 + rng.integers(0, room, len(orphans))
    frame.iloc[orphans, frame.columns.get_loc("customer_id")] = _numbered("C", unknown, width)
    copies = frame.iloc[rows.take()]
    frame = pd.concat([frame, copies], ignore_index=True)
    return frame, {"negative_amount": len(negative), "bad_amount_type": len(bad),
                   "future_ts": len(future), "orphan_customer": len(orphans),
                   "duplicate": len(copies)}


def _ticket_defects(rng: np.random.Generator, spec: DemoSpec,
                    frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    rows = _Rows(rng, len(frame), spec.defect_rate)
    topics = rows.take()
    frame.iloc[topics, frame.columns.get_loc("topic")] = _pick(rng, BAD_TOPICS, len(topics))
    negative = rows.take()
    hours = frame["resolution_hours"].iloc[negative].fillna(1.0).to_numpy()
    frame.iloc[negative, frame.columns.get_loc("resolution_hours")] = -hours
    return frame, {"unknown_topic": len(topics), "negative_resolution": len(negative)}


def _event_defects(rng: np.random.Generator, spec: DemoSpec,
                   frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    rows = _Rows(rng, len(frame), spec.defect_rate)
    missing = rows.take()
    frame.iloc[missing, frame.columns.get_loc("customer_id")] = None
    pairs = rows.take(2 * rows.count)
    pairs = pairs[: len(pairs) // 2 * 2]
    event_id = frame.columns.get_loc("event_id")
    # the later row of each pair repeats the earlier (clean) row's id: one duplicate per pair
    frame.iloc[pairs[1::2], event_id] = frame["event_id"].to_numpy()[pairs[0::2]]
    return frame, {"missing_customer_id": len(missing), "duplicate_event_id": len(pairs) // 2}


# -- writers -------------------------------------------------------------------------------


def write_crm_csv(data: DemoData, path: str | Path) -> Path:
    """The CRM's nightly export: customers as CSV. Returns the file's path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data.customers.to_csv(path, index=False)
    return path


def write_sql(data: DemoData, url: str, chunk_rows: int = 50_000) -> None:
    """The shop database's `transactions` table (replaced) at a SQLAlchemy `url`, such as
    `sqlite:///shop.db` or `postgresql+psycopg://…`. Like many legacy shop schemas it keeps
    amounts and timestamps as text (ISO-8601 UTC), which is how malformed amounts get in."""
    import sqlalchemy as sa

    frame = data.transactions
    table = pd.DataFrame({
        "transaction_id": frame["transaction_id"],
        "customer_id": frame["customer_id"],
        "ts": _iso(frame["ts"], "s"),
        "amount": frame["amount"].astype(str),
        "category": frame["category"],
        "channel": frame["channel"],
        "updated_at": _iso(frame["updated_at"], "s"),
    })
    text = sa.types.Text()
    engine = sa.create_engine(url)
    try:
        table.to_sql("transactions", engine, if_exists="replace", index=False,
                     chunksize=chunk_rows,
                     dtype={"customer_id": text, "ts": text, "amount": text, "category": text,
                            "channel": text, "updated_at": text})
    finally:
        engine.dispose()


def write_api_fixture(data: DemoData, path: str | Path) -> Path:
    """Tickets as JSON lines (ISO-8601 UTC timestamps, null for unresolved), the records the
    local helpdesk API serves page by page. Returns the file's path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = data.tickets.assign(created_at=_iso(data.tickets["created_at"], "s"),
                                updated_at=_iso(data.tickets["updated_at"], "s"))
    frame.to_json(path, orient="records", lines=True, force_ascii=False)
    return path


def write_event_log(data: DemoData, directory: str | Path, subject: str = SUBJECT,
                    segment_rows: int = 100_000) -> list[Path]:
    """Events in time order as an append-only log: `<directory>/<subject>/<first seq>.jsonl`
    segments of `segment_rows` lines `{"seq": n, "data": {...}}`, seq counting from 1. Any
    earlier log under the subject is replaced. Returns the segment files in order."""
    folder = Path(directory) / subject
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.jsonl"):
        old.unlink()
    events = data.events.iloc[np.argsort(data.events["ts"].to_numpy(), kind="stable")]
    events = events.assign(ts=_iso(events["ts"], "ms"))
    files: list[Path] = []
    for first in range(0, len(events), segment_rows):
        chunk = events.iloc[first:first + segment_rows]
        body = chunk.to_json(orient="records", lines=True, force_ascii=False)
        records = np.array(body.splitlines(), dtype=object)
        seqs = np.arange(first + 1, first + 1 + len(chunk)).astype(str).astype(object)
        lines = '{"seq": ' + seqs + ', "data": ' + records + "}\n"
        path = folder / f"{first + 1:012d}.jsonl"
        path.write_text("".join(lines), encoding="utf-8")
        files.append(path)
    return files


def _iso(values: pd.Series, unit: str) -> np.ndarray:
    """UTC timestamps as ISO-8601 text ending in Z (null stays null)."""
    naive = values.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
    text = np.datetime_as_string(naive, unit=unit, timezone="UTC").astype(object)
    text[pd.isna(naive)] = None
    return text

