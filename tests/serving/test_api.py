"""`tideline serve`'s HTTP API, through FastAPI's test client, on a materialised store."""
from __future__ import annotations

import math
from datetime import date

import pytest
from fastapi.testclient import TestClient
from tideline.demo.views import CHURN_VIEWS, SPENDING
from tideline.features.offline import read_features
from tideline.features.online.redis import RedisOnlineStore
from tideline.features.online.sqlite import SQLiteOnlineStore
from tideline.features.registry import Registry
from tideline.features.store import FeatureStore
from tideline.serving.api import create_app

from tests.features.built import built_lake, doc_queries


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> FeatureStore:
    path = tmp_path_factory.mktemp("serving")
    store = FeatureStore(built_lake(path / "lake"), Registry(f"sqlite:///{path / 'r.db'}"),
                         CHURN_VIEWS, SQLiteOnlineStore(path / "online.db"))
    store.materialize_online()
    return store


def test_features_come_back_per_entity_in_order(store: FeatureStore) -> None:
    client = TestClient(create_app(store))
    ids = ["C0000002", "C9999999", "C0000001"]
    response = client.post("/features", json={"entities": ids,
                                              "features": ["spend_30d", "value_segment"]})
    assert response.status_code == 200, response.text
    body = response.json()
    expected = store.get_online_features(ids, ["spend_30d", "value_segment"]).frame
    assert body["entities"] == ids
    assert body["features"]["value_segment"] == [
        None if v is None else v for v in expected["value_segment"]]
    spend = body["features"]["spend_30d"]
    assert spend[1] is None  # unknown customer: null, not an error
    assert [spend[0], spend[2]] == [expected["spend_30d"][0], expected["spend_30d"][2]]
    assert not any(isinstance(v, float) and math.isnan(v) for v in spend)
    assert body["views"]["customer_spending"]["as_of"] == "2026-09-01"
    assert client.get("/views").json()["customer_profile"]["features"] == [
        "tenure_days", "plan", "monthly_fee"]


def test_bad_requests_get_a_clear_4xx(store: FeatureStore) -> None:
    client = TestClient(create_app(store))
    unmodelled = client.post("/predict", json={"entities": ["C0000001"]})
    assert unmodelled.status_code == 404 and "declares none" in unmodelled.json()["detail"]
    unknown = client.post("/features", json={"entities": ["C0000001"],
                                             "features": ["spend_31d"]})
    assert unknown.status_code == 404 and "unknown feature 'spend_31d'" in unknown.json()[
        "detail"]
    missing = client.post("/features", json={"features": ["spend_30d"]})
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == [
        "body", "entities"]
    empty = client.post("/features", json={"entities": [], "features": ["spend_30d"]})
    assert empty.status_code == 422


def test_the_online_store_down_is_a_503(store: FeatureStore) -> None:
    down = FeatureStore(store.lake, store.registry, CHURN_VIEWS,
                        RedisOnlineStore("redis://127.0.0.1:1/0", socket_timeout=1))
    response = TestClient(create_app(down)).post(
        "/features", json={"entities": ["C0000001"], "features": ["spend_30d"]})
    assert response.status_code == 503 and "unreachable" in response.json()["detail"]


def test_the_documented_online_query_counts_customers_by_segment(store: FeatureStore) -> None:
    [query] = doc_queries("online")
    rows = store.online._connect().execute(query).fetchall()
    frame = read_features(store.lake, "main", SPENDING, date(2026, 9, 1))
    expected = frame["value_segment"].value_counts()
    assert {segment: count for segment, count, _ in rows} == expected.to_dict()
    assert sum(count for _, count, _ in rows) == len(frame)
