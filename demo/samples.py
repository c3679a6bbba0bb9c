"""Sample files for the own-data examples (docs/examples/), seeded: a retail payments export
(one row per payment, customers who buy at their own pace until they quietly stop, as in a
buy-till-you-die model) and a subscription event log (sign-ups, monthly payments, failed
payments, cancellations) with no customer table beside it. Timestamps carry microseconds, as
exports from real systems do.

    python -m tideline.demo.samples docs/examples
"""
from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

DAY_US = 86_400 * 10**6


def _stamps(rng: np.random.Generator, days: np.ndarray) -> pd.Series:
    """Moments at the given days since the epoch (fractional), with random microseconds."""
    micros = (days * DAY_US).astype(np.int64) + rng.integers(0, 10**6, len(days))
    return pd.Series(pd.to_datetime(micros, unit="us", utc=True))


def retail_payments(customers: int, start: date, days: int, seed: int = 0,
                    mean_gap_days: float = 20.0, dropout: tuple[float, float] = (1.0, 9.0)
                    ) -> pd.DataFrame:
    """Payments of `customers` who join over the first quarter of `days`, buy at a rate of
    their own (gamma-distributed around one in `mean_gap_days`: a few frequent buyers, many
    rare ones) and, after each purchase, stop for good with a probability of their own
    (beta-distributed with parameters `dropout`). Columns: payment_id, client, paid_at, value."""
    rng = np.random.default_rng(seed)
    origin = (pd.Timestamp(start) - pd.Timestamp(0)).days
    rate = rng.gamma(0.9, 1 / 0.9 / mean_gap_days, customers)  # purchases a day
    stop = rng.beta(*dropout, customers)
    level = rng.lognormal(3.2, 0.6, customers)  # a customer's usual basket
    t = rng.uniform(0, days / 4, customers)
    alive = np.ones(customers, dtype=bool)
    who, when = [], []
    while alive.any():
        ids = np.flatnonzero(alive)
        who.append(ids)
        when.append(t[ids])
        stops = rng.random(len(ids)) < stop[ids]
        t[ids] += rng.exponential(1 / rate[ids])
        alive[ids[stops]] = False
        alive &= t < days
    client = np.concatenate(who)
    day = np.concatenate(when)
    order = np.argsort(day, kind="stable")
    client, day = client[order], day[order]
    value = np.round(level[client] * rng.lognormal(0, 0.35, len(client)), 2)
    return pd.DataFrame({
        "payment_id": [f"P{k:07d}" for k in range(1, len(client) + 1)],
        "client": [f"CL{c:05d}" for c in client],
        "paid_at": _stamps(rng, origin + day),
        "value": value,
    })


PLANS = {"basic": 9.0, "plus": 19.0, "pro": 49.0}


def subscription_events(accounts: int, start: date, days: int, seed: int = 0) -> pd.DataFrame:
    """One event log of `accounts` subscriptions: a `signup`, then a `payment` every month
    (the plan's price), sometimes a `payment_failed` retried a few days later; an account
    cancels (a `cancel`, then no more payments) with a monthly hazard of its own, higher on
    the basic plan, that rises after failed payments and falls with tenure. Columns:
    event_id, account, ts, event, plan, amount."""
    rng = np.random.default_rng(seed)
    origin = (pd.Timestamp(start) - pd.Timestamp(0)).days
    plan = rng.choice(list(PLANS), accounts, p=[0.55, 0.3, 0.15])
    price = np.array([PLANS[p] for p in plan])
    risk = rng.lognormal(-3.4, 0.6, accounts) * np.array(  # an account's monthly cancel hazard
        [{"basic": 1.8, "plus": 1.0, "pro": 0.6}[p] for p in plan])
    signup = rng.uniform(0, days * 0.6, accounts)
    rows: list[tuple[int, float, str, float]] = [
        (a, signup[a], "signup", np.nan) for a in range(accounts)]
    rows += [(a, signup[a], "payment", price[a]) for a in range(accounts)]
    last = signup.copy()
    due = signup + rng.normal(30.4, 0.6, accounts)
    failures = np.zeros(accounts)
    months = np.ones(accounts)
    alive = np.ones(accounts, dtype=bool)
    while True:
        ids = np.flatnonzero(alive & (due < days))
        if not len(ids):
            break
        hazard = np.clip(risk[ids] * (1 + 8 * failures[ids]) / np.sqrt(1 + months[ids] / 3),
                         0, 0.9)
        cancels = rng.random(len(ids)) < hazard
        gone = ids[cancels]
        rows += [(a, t, "cancel", np.nan) for a, t in zip(
            gone, last[gone] + rng.uniform(0.3, 0.95, len(gone)) * (due[gone] - last[gone]),
            strict=True)]
        alive[gone] = False
        ids = ids[~cancels]
        failed = rng.random(len(ids)) < 0.02 + 2.0 * risk[ids]
        rows += [(a, t, "payment_failed", np.nan)
                 for a, t in zip(ids[failed], due[ids[failed]], strict=True)]
        failures[ids] = failures[ids] * 0.5 + failed
        last[ids] = due[ids] + np.where(failed, rng.uniform(2, 6, len(ids)), 0)
        rows += [(a, t, "payment", p) for a, t, p in zip(ids, last[ids], price[ids], strict=True)]
        months[ids] += 1
        due[ids] = last[ids] + rng.normal(30.4, 0.6, len(ids))
    frame = pd.DataFrame(rows, columns=["account", "day", "event", "amount"])
    frame = frame[frame["day"] < days].sort_values("day", kind="stable", ignore_index=True)
    return pd.DataFrame({
        "event_id": [f"E{k:08d}" for k in range(1, len(frame) + 1)],
        "account": [f"AC{a:05d}" for a in frame["account"]],
        "ts": _stamps(rng, origin + frame["day"].to_numpy()),
        "event": frame["event"].to_numpy(),
        "plan": plan[frame["account"].to_numpy()],
        "amount": frame["amount"].to_numpy(),
    })


def write_samples(root: Path) -> dict[str, Path]:
    """The examples' sample files under `root` (docs/examples), as they are committed."""
    files = {
        "own-transactions": (root / "own-transactions" / "payments" / "export-2026-09.csv",
                             retail_payments(1_000, date(2025, 10, 1), 365, seed=5,
                                             mean_gap_days=7, dropout=(1.0, 25.0))),
        "own-subscriptions": (root / "own-subscriptions" / "events" / "events-2026-09.csv",
                              subscription_events(1_200, date(2025, 10, 1), 365, seed=7)),
    }
    for path, frame in files.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ")
    return {name: path for name, (path, _) in files.items()}


if __name__ == "__main__":
    for name, path in write_samples(Path(sys.argv[1])).items():
        print(f"{name}: {path}")
