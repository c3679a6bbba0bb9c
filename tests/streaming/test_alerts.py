"""Real-time scoring: a failed payment on the stream scores the customer with the champion at
once, from the values the stream just wrote, and a high risk is published as an alert."""
from __future__ import annotations

import asyncio
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tideline.demo.views import ACTIVITY, CHURN_VIEWS
from tideline.features.online.sqlite import SQLiteOnlineStore
from tideline.features.store import FeatureStore
from tideline.lake.local import LocalLake
from tideline.models.scoring import OnlineScorer
from tideline.streaming.processor import StreamConfig, StreamProcessor
from tideline.streaming.records import EventShape
from tideline.streaming.state import event_schema

from tests.champion import OCTOBER, Monitored
from tests.streaming.broker import publish, read_subject

pytestmark = pytest.mark.service("nats")


def test_failed_payments_score_the_customer_at_once_and_high_risk_is_alerted(
        monitored: Monitored, tmp_path: Path, subject: str, nats_url: str) -> None:
    shutil.copytree(monitored.store.lake.root, tmp_path / "lake")
    lake = LocalLake(tmp_path / "lake")
    online = SQLiteOnlineStore(tmp_path / "online.db")
    store = FeatureStore(lake, monitored.store.registry, CHURN_VIEWS, online)
    store.materialize_online(as_of=OCTOBER)
    scorer = OnlineScorer(store, monitored.registry, "churn")
    champion = scorer.champion()
    # the customers the champion already fears most, and some it does not
    everyone = store.get_online_features(
        [f"C{i:07d}" for i in range(1, 3001)], champion.record.features).frame
    _, before = scorer.score(champion, list(everyone.iloc[:, 0]))
    ranked = before.sort_values("probability", ascending=False)
    risky, calm = list(ranked.iloc[:15, 0]), list(ranked.iloc[-15:, 0])

    shape = EventShape(schema=event_schema((ACTIVITY,), _source_schema(lake), "event_id"),
                       key="customer_id", timestamp="ts", id_column="event_id")
    processor = StreamProcessor(
        StreamConfig(name=subject, url=nats_url, subject=subject, start="all", max_wait_seconds=0.5,
                     score_on=("payment_failed", "cancel_page")),
        (ACTIVITY,), shape, lake, online, scorer=scorer)
    processor.load()
    at = pd.Timestamp(OCTOBER, tz="UTC") + pd.Timedelta(minutes=5)
    events = [{"event_id": f"rt-{k}", "customer_id": who, "ts": f"{at.isoformat()}",
               "event_type": kind, "session_id": "rt", "duration_s": 3.0}
              for k, (who, kind) in enumerate([*((c, "payment_failed") for c in risky),
                                               *((c, "view") for c in calm)])]
    since = datetime.now(UTC)
    publish(nats_url, subject, [json.dumps(e).encode() for e in events])
    asyncio.run(processor.run(idle_exit=True))

    alerts = [json.loads(data)
              for _, data in read_subject(nats_url, "tideline.alerts.churn", since)]
    # what the champion says now, from what the online store serves after the stream
    _, now = scorer.score(champion, risky)
    high = now[now["risk"] == "high"]
    assert len(high) > 0, "some of the riskiest customers stay high risk"
    assert sorted(a["customer_id"] for a in alerts) == sorted(high["customer_id"])
    assert all(a["entity"] == a["customer_id"] for a in alerts)  # named alike for any key
    by_customer = {a["customer_id"]: a for a in alerts}
    for customer, probability in zip(high["customer_id"], high["probability"], strict=True):
        alert = by_customer[customer]
        assert alert["probability"] == pytest.approx(probability, abs=1e-12)
        assert alert["trigger"] == ["payment_failed"] and alert["model"] == champion.record.ref
    assert not set(calm) & set(by_customer), "a page view scores nobody"
    served = store.get_online_features(risky, ["customer_activity:payment_failures_30d"]).frame
    assert np.all(served["payment_failures_30d"] >= 1)  # the stream's values were scored
    assert processor.metrics.value("tideline_stream_alerts_total") == len(high)


def _source_schema(lake: LocalLake):  # noqa: ANN202 - pyarrow Schema
    from tideline.features.offline import source_schema

    return source_schema(lake, "main", ACTIVITY.source, ACTIVITY.name)
