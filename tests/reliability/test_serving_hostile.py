"""`tideline serve` under hostile requests: oversized, malformed, mistyped, mis-declared and
fuzzed bodies all get a 4xx that names what is wrong, never a 500, and the server holds a
bounded amount of memory whatever it is sent."""
from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import Iterator
from itertools import islice, permutations
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.config import SchemathesisConfig
from tideline.demo.views import CHURN_VIEWS
from tideline.features.store import FeatureStore
from tideline.serving.api import MAX_BODY_BYTES, MAX_ENTITIES, MAX_FEATURES, create_app

from tests.reliability.conftest import Ledger, http_error
from tests.serving import test_api

store = test_api.store  # the materialised churn store of the serving tests
CHUNK = 64 * 1024
EXAMPLES = 150
"""Generated requests per schemathesis mode (positive, negative): about 10 s in all."""
FEATURES = ["spend_30d", "value_segment"]
REFUSALS = [400, 404, 409, 413, 415, 422]
"""The app's documented refusals."""


@pytest.fixture(scope="module")
def app(store: FeatureStore) -> FastAPI:
    return create_app(store)


@pytest.fixture(scope="module")
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


def _asgi_post(app: FastAPI, headers: dict[str, str], chunks: Iterator[bytes]
               ) -> tuple[int, bytes, int]:
    """POST /features straight through ASGI, the body streamed from `chunks`: the status, the
    answer, and how many bytes of the body the server pulled."""
    pulled = 0
    answer: dict[str, Any] = {"body": b""}

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        chunk = next(chunks, None)
        if chunk is None:
            return {"type": "http.disconnect"}
        pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        else:
            answer["body"] += message.get("body", b"")

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/features", "raw_path": b"/features",
             "query_string": b"", "root_path": "", "client": ("127.0.0.1", 50000),
             "server": ("127.0.0.1", 8000),
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
    asyncio.run(app(scope, receive, send))
    return answer["status"], answer["body"], pulled


def _flood(total: int) -> Iterator[bytes]:
    """`total` bytes of a JSON list of ids, in 64 kB chunks, made as they are pulled."""
    yield b'{"features": ["spend_30d"], "entities": ['
    item = b'"C0000001", ' * (CHUNK // 12)
    for _ in range(total // len(item)):
        yield item


def test_an_oversized_body_is_refused_before_it_is_read(app: FastAPI, client: TestClient,
                                                        ledger: Ledger) -> None:
    """A 50 MB body gets a 413 naming the limit; one that declares its size is refused unread,
    one streamed without a size is cut off after the limit (plus one chunk), and the server's
    memory never holds more than that."""
    big = 50 * 1024**2
    status, body, pulled = _asgi_post(app, {"content-type": "application/json",
                                            "content-length": str(big)}, _flood(big))
    assert (status, pulled) == (413, 0)
    assert f"over {MAX_BODY_BYTES:,} bytes" in body.decode()

    tracemalloc.start()
    try:
        status, body, pulled = _asgi_post(app, {"content-type": "application/json"},
                                          _flood(big))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert status == 413 and MAX_BODY_BYTES < pulled <= MAX_BODY_BYTES + CHUNK
    assert peak < 4 * MAX_BODY_BYTES, f"the server held {peak:,} bytes for a refused body"

    ids = ", ".join(['"C0000001"'] * (big // 12))
    response = client.post("/features", content=f'{{"features": ["spend_30d"], '
                                                 f'"entities": [{ids}]}}',
                           headers={"content-type": "application/json"})
    assert response.status_code == 413 and "entities per request" in response.json()["detail"]
    bad_length = _asgi_post(app, {"content-type": "application/json",
                                  "content-length": "lots"}, iter([b"{}"]))
    assert bad_length[0] == 400 and b"not a number of bytes" in bad_length[1]
    ledger.refused("HTTP 413", 3)
    ledger.refused("HTTP 400")


WRONG_TYPES = [
    ({"entities": 7, "features": FEATURES}, ["body", "entities"], "valid list"),
    ({"entities": {"id": "C0000001"}, "features": FEATURES}, ["body", "entities"], "valid list"),
    ({"entities": None, "features": FEATURES}, ["body", "entities"], "valid list"),
    ({"entities": "C0000001", "features": FEATURES}, ["body", "entities"], "valid list"),
    ({"entities": ["C0000001", 2], "features": FEATURES}, ["body", "entities", 1],
     "valid string"),
    ({"entities": [None], "features": FEATURES}, ["body", "entities", 0], "valid string"),
    ({"entities": [["C0000001"]], "features": FEATURES}, ["body", "entities", 0],
     "valid string"),
    ({"entities": [""], "features": FEATURES}, ["body", "entities", 0], "at least 1 character"),
    ({"entities": ["C" * 129], "features": FEATURES}, ["body", "entities", 0],
     "at most 128 characters"),
    ({"entities": ["C0000001"], "features": [True]}, ["body", "features", 0], "valid string"),
    ({"entities": ["C0000001"], "features": {"spend_30d": 1}}, ["body", "features"],
     "valid list"),
    ({"entities": ["C0000001"]}, ["body", "features"], "Field required"),
    ({"features": FEATURES}, ["body", "entities"], "Field required"),
    ({"entities": ["C0000001"], "features": FEATURES, "entity": "C0000002"},
     ["body", "entity"], "Extra inputs are not permitted"),
    (["C0000001"], ["body"], "valid dictionary"),
    (None, ["body"], "Field required"),
    ({"entities": ["C0000001"], "features": ["x"] * (MAX_FEATURES + 1)}, ["body", "features"],
     f"at most {MAX_FEATURES} items"),
]


def _without_features(body: Any) -> Any:
    """The body as `/predict` takes it (it has no `features`)."""
    return {k: v for k, v in body.items() if k != "features"} if isinstance(body, dict) else body


@pytest.mark.parametrize(("route", "body", "loc", "message"), [
    *(("/features", *case) for case in WRONG_TYPES),
    *(("/predict", _without_features(body), loc, message) for body, loc, message in WRONG_TYPES
      if loc[1:2] != ["features"])])
def test_a_wrong_type_is_named(client: TestClient, ledger: Ledger, route: str, body: Any,
                               loc: list[Any], message: str) -> None:
    """Numbers, objects or nulls where strings or lists belong, missing or unexpected fields:
    a 422 that names the field at fault and what it should be."""
    response = client.post(route, json=body)
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == loc and message in error["msg"]
    ledger.refused(http_error(response))


def test_too_many_ids_are_refused_and_the_limit_is_usable(client: TestClient,
                                                          ledger: Ledger) -> None:
    """Thousands of ids beyond the limit: a 422 naming `entities` and the limit; exactly at the
    limit, every id is answered, in order."""
    ids = [f"C{i:07d}" for i in range(1, MAX_ENTITIES + 2)]
    for route, body in [("/features", {"entities": ids, "features": FEATURES}),
                        ("/predict", {"entities": ids})]:
        response = client.post(route, json=body)
        assert response.status_code == 422
        [error] = response.json()["detail"]
        assert error["loc"] == ["body", "entities"]
        assert f"at most {MAX_ENTITIES} items" in error["msg"]
        ledger.refused(http_error(response))
    at_limit = client.post("/features", json={"entities": ids[:-1], "features": FEATURES})
    assert at_limit.status_code == 200
    answered = at_limit.json()
    assert answered["entities"] == ids[:-1] and len(answered["features"]["spend_30d"]) == len(
        ids) - 1
    ledger.serve("/features requests at the id limit")


def test_unknown_features_are_named(client: TestClient, ledger: Ledger) -> None:
    """An unknown feature, view or view feature: a 404 that names it."""
    cases = {"spend_31d": "unknown feature 'spend_31d'",
             "no_such_view:*": "unknown feature view 'no_such_view'",
             "customer_profile:spend_31d": "view 'customer_profile' has no feature 'spend_31d'",
             "'; DROP TABLE online_views; --": "unknown feature \"'; DROP TABLE"}
    for feature, named in cases.items():
        response = client.post("/features", json={"entities": ["C0000001"],
                                                   "features": ["spend_30d", feature]})
        assert response.status_code == 404 and named in response.json()["detail"]
        ledger.refused("HTTP 404")


def test_unknown_and_odd_entities_are_nulls(client: TestClient, store: FeatureStore,
                                            ledger: Ledger) -> None:
    """Ids the store does not know (SQL in them, NUL bytes, emoji, 128 characters) are answered
    with nulls in their place, never an error, and leave the store as it was."""
    odd = ["C9999999", "' OR '1'='1", "C0000001'; DROP TABLE online_views; --", "C\x000000001",
           "🦈", "C" * 128, "C0000001 "]
    response = client.post("/features", json={"entities": ["C0000001", *odd],
                                               "features": FEATURES})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["entities"] == ["C0000001", *odd]
    assert body["features"]["spend_30d"][1:] == [None] * len(odd)
    known = store.get_online_features(["C0000001"], ["spend_30d"]).frame["spend_30d"][0]
    assert body["features"]["spend_30d"][0] == known
    ledger.serve("unknown or odd entity ids, answered null", len(odd))


def _nested(depth: int) -> str:
    return "[" * depth + '"C0000001"' + "]" * depth


@pytest.mark.parametrize(("content", "named"), [
    pytest.param(b'{"entities": ["C\xff\xfe"], "features": ["spend_30d"]}', "not valid UTF-8",
                 id="invalid-utf8"),
    pytest.param(b'{"entities": ["\\ud800"], "features": ["spend_30d"]}', "surrogate",
                 id="lone-surrogate"),
    pytest.param(b'{"entities": ["C0000001"], "features": ["spend_30d"], "x": NaN}',
                 "unexpected character", id="nan"),
    pytest.param(b'{"entities": ["C0000001"], "features": ["spend_30d"], "x": 1' + b"0" * 400
                 + b"}", "infinity", id="huge-number"),
    pytest.param(b'{"entities": ["C0000001"], "features": ["spend_30d"]', "unexpected end",
                 id="truncated"),
    pytest.param(_nested(500_000).encode(), "depth limit", id="nested-500k-deep"),
])
def test_malformed_json_is_refused_with_its_reason(client: TestClient, ledger: Ledger,
                                                   content: bytes, named: str) -> None:
    """Invalid UTF-8, lone surrogates, NaN, huge numbers, truncated or deeply nested JSON: a 422
    giving the reason and the position, before any field is read."""
    response = client.post("/features", content=content,
                           headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["type"] == "json_invalid" and error["loc"][0] == "body"
    assert isinstance(error["loc"][1], int) and named in error["ctx"]["error"]
    ledger.refused(http_error(response))


@pytest.mark.parametrize(("content", "loc"), [
    (f'{{"entities": [{_nested(1000)}], "features": ["spend_30d"]}}', ["body", "entities", 0]),
    (f'{{"entities": ["C0000001"], "features": [{_nested(1000)}]}}', ["body", "features", 0]),
    (f'{{"entities": ["C0000001"], "features": ["spend_30d"], "x": {_nested(1000)}}}',
     ["body", "x"]),
], ids=["entities", "features", "unexpected-field"])
def test_deep_nesting_inside_a_field_is_named(client: TestClient, ledger: Ledger,
                                              content: str, loc: list[Any]) -> None:
    """JSON nested as deep as the parser allows, inside a field: a 422 naming that field."""
    response = client.post("/features", content=content,
                           headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == loc
    ledger.refused(http_error(response))


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/xml"])
def test_a_body_that_is_not_declared_json_is_refused(client: TestClient, ledger: Ledger,
                                                     content_type: str | None) -> None:
    """A body sent as anything but `application/json`: a 415 saying to send JSON, whatever it
    contains."""
    headers = {"content-type": content_type} if content_type else {}
    for route in ("/features", "/predict"):
        response = client.post(route, content=b'{"entities": ["C0000001"], "features": '
                                              b'["spend_30d"]}', headers=headers)
        assert response.status_code == 415, response.text
        assert "Content-Type: application/json" in response.json()["detail"]
        ledger.refused("HTTP 415")
    accepted = client.post("/features", content=b'{"entities": ["C0000001"], "features": '
                                                b'["spend_30d"]}',
                           headers={"content-type": "application/json; charset=utf-8"})
    assert accepted.status_code == 200
    ledger.serve("/features requests declared JSON with a charset")


def _retained(snapshot: tracemalloc.Snapshot) -> int:
    """Bytes still held that the feature store or feature resolution allocated."""
    return sum(stat.size for stat in snapshot.filter_traces([
        tracemalloc.Filter(True, "*/features/store.py"),
        tracemalloc.Filter(True, "*/features/retrieval.py")]).statistics("filename"))


def test_distinct_requests_do_not_grow_memory(client: TestClient, ledger: Ledger) -> None:
    """Memory held between requests does not grow with the number of distinct feature lists a
    client sends (resolved lists are remembered, but only so many)."""
    names = ["spend_30d", "value_segment", "tenure_days", "plan", "monthly_fee"]
    views = {name: view.name for view in CHURN_VIEWS for name in names
             if name in view.feature_names}
    spellings = ([name if bits >> i & 1 else f"{views[name]}:{name}"
                  for i, name in enumerate(order)]
                 for order in permutations(names) for bits in range(2 ** len(names)))

    def ask(requests: int) -> int:
        for features in islice(spellings, requests):
            response = client.post("/features", json={"entities": ["C0000001"],
                                                       "features": features})
            assert response.status_code == 200, response.text
            ledger.serve("/features requests naming distinct feature lists")
        return _retained(tracemalloc.take_snapshot())

    tracemalloc.start()
    try:
        first, second = ask(400), ask(400)
    finally:
        tracemalloc.stop()
    assert second < 1.2 * first, f"held {first:,} bytes after 400 requests, {second:,} after 800"


@pytest.fixture(scope="module")
def api_schema(app: FastAPI) -> schemathesis.BaseSchema:
    """The app's schema; an invalid request counts as refused with any of the app's documented
    4xx answers, 413 included (schemathesis's default list leaves it out, so a negative case with
    more entities than fit in the body limit would count as accepted)."""
    refusals = {"expected-statuses": [str(status) for status in REFUSALS]}
    config = SchemathesisConfig.from_dict({"checks": {"negative_data_rejection": refusals}})
    return schemathesis.openapi.from_asgi("/openapi.json", app, config=config)


def _answerable(api_schema: schemathesis.BaseSchema) -> st.SearchStrategy[schemathesis.Case]:
    """`/features` requests naming features the store serves, for ids it knows and ids it does
    not: positive cases that get past the lookup (the schema's random strings never do)."""
    names = [f for view in CHURN_VIEWS for f in view.feature_names]
    names += [f"{view.name}:*" for view in CHURN_VIEWS] + [f"{view.name}:{view.feature_names[0]}"
                                                          for view in CHURN_VIEWS]
    ids = st.sampled_from([f"C{i:07d}" for i in range(1, 131)]) | st.text(
        st.characters(exclude_categories=["Cs"]), min_size=1, max_size=128)
    operation = api_schema["/features"]["POST"]
    return st.builds(lambda body: operation.Case(body=body, media_type="application/json"),
                     st.fixed_dictionaries({"entities": st.lists(ids, min_size=1, max_size=50),
                                            "features": st.lists(st.sampled_from(names),
                                                                 min_size=1, max_size=8)}))


@pytest.mark.parametrize("mode", list(GenerationMode))
def test_fuzzed_requests_follow_the_schema(api_schema: schemathesis.BaseSchema, ledger: Ledger,
                                           mode: GenerationMode) -> None:
    """Requests generated from the app's own OpenAPI description, valid ones and invalid ones:
    never a 5xx, invalid ones always refused with a documented 4xx and its reason (one that
    schemathesis would let pass as valid after serialising is a failure here too), only
    documented status codes and content types, and every answer matches its documented
    schema."""
    cases = api_schema.as_strategy(mode)
    if mode is GenerationMode.POSITIVE:
        cases |= _answerable(api_schema)

    @given(case=cases)
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def call(case: schemathesis.Case) -> None:
        response = case.call_and_validate(checks=[
            not_a_server_error, status_code_conformance, content_type_conformance,
            response_schema_conformance, negative_data_rejection])
        if mode is GenerationMode.NEGATIVE:
            assert response.status_code in REFUSALS, (case.as_curl_command(), response.text)
            assert response.json()["detail"], response.text
            ledger.refused(http_error(response))
        else:
            ledger.serve(f"schemathesis positive cases answered {response.status_code}")

    call()
