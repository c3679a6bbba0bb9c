"""Access to `tideline serve`: with API keys configured (the environment or a Prefect Secret
block) every route but the health check and the docs needs one, as a bearer token or an
`X-API-Key` header; without keys the service is open, as before."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from tideline.core.errors import ConfigError
from tideline.core.settings import Settings
from tideline.features.store import FeatureStore
from tideline.serving.access import REFUSED, api_keys
from tideline.serving.api import create_app

from tests.services import free_port
from tests.serving import test_api
from tests.waiting import CLI, wait_for

store = test_api.store  # the materialised churn store of the serving tests
KEYS = ("key-sentinel-5d1e0b", "key-sentinel-a73c42")
ASK = {"entities": ["C0000001", "C9999999"], "features": ["spend_30d", "value_segment"]}


@pytest.fixture(scope="module")
def guarded(store: FeatureStore) -> TestClient:
    return TestClient(create_app(store, api_keys=KEYS))


def test_a_request_without_a_right_key_is_refused(guarded: TestClient,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    refused = [
        guarded.post("/features", json=ASK),
        guarded.post("/features", json=ASK, headers={"Authorization": "Bearer not-a-key"}),
        guarded.post("/features", json=ASK, headers={"X-API-Key": KEYS[0][:-1]}),
        guarded.post("/features", json=ASK, headers={"X-API-Key": KEYS[0] + "x"}),
        guarded.post("/features", json=ASK, headers={"Authorization": f"Basic {KEYS[0]}"}),
        guarded.post("/features", json=ASK, headers={"Authorization": KEYS[0]}),
        guarded.post("/predict", json={"entities": ["C0000001"]}),
        guarded.get("/views"),
        guarded.get("/no-such-route"),  # a 401 too: paths are not probed without a key
        # refused before the body is looked at, however bad it is
        guarded.post("/features", content=b"<xml/>", headers={"Content-Type": "text/xml"}),
        guarded.post("/features", content=b"x" * (2 << 20),
                     headers={"Authorization": "Bearer nope"}),
    ]
    for response in refused:
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json() == {"detail": REFUSED}  # missing or wrong: the same answer
    answers = " ".join(r.text + str(r.headers) for r in refused)
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert not [k for k in KEYS if k in answers or k in logged or k[:-1] in answers]


def test_either_header_with_any_configured_key_is_answered(guarded: TestClient) -> None:
    answers = [guarded.post("/features", json=ASK, headers=headers) for headers in (
        {"Authorization": f"Bearer {KEYS[0]}"}, {"Authorization": f"bearer {KEYS[1]}"},
        {"X-API-Key": KEYS[1]}, {"X-API-Key": KEYS[0], "Authorization": "Bearer wrong"})]
    for response in answers:
        assert response.status_code == 200, response.text
        assert list(response.json()["features"]) == ["spend_30d", "value_segment"]
        assert response.json()["features"]["spend_30d"][1] is None  # the unknown customer
        assert not [k for k in KEYS if k in response.text]
    assert answers[0].json() == answers[2].json()
    views = guarded.get("/views", headers={"X-API-Key": KEYS[0]})
    assert views.status_code == 200 and "customer_spending" in views.json()
    # no model in this app: past the key check, to the route's own answer
    predict = guarded.post("/predict", json={"entities": ["C0000001"]},
                           headers={"Authorization": f"Bearer {KEYS[0]}"})
    assert predict.status_code == 404 and "no model" in predict.json()["detail"]


def test_health_and_docs_stay_open_and_declare_the_keys(guarded: TestClient) -> None:
    assert guarded.get("/health").json() == {"status": "ok"}
    assert guarded.get("/docs").status_code == 200
    schema = guarded.get("/openapi.json").json()
    assert set(schema["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    assert schema["components"]["securitySchemes"]["apiKey"]["name"] == "X-API-Key"
    for path in ("/features", "/predict"):
        operation = schema["paths"][path]["post"]
        assert operation["security"] == [{"bearer": []}, {"apiKey": []}]
        assert "401" in operation["responses"]
    assert "security" not in schema["paths"]["/health"]["get"]
    assert guarded.get("/openapi.json").json() == schema  # built once, declared once


def test_without_keys_the_service_is_open(store: FeatureStore) -> None:
    client = TestClient(create_app(store))
    response = client.post("/features", json=ASK)
    assert response.status_code == 200 and response.json()["entities"] == ASK["entities"]
    assert client.get("/views").status_code == 200
    assert "securitySchemes" not in client.get("/openapi.json").json().get("components", {})


def test_answers_hold_features_only_never_a_source_column(guarded: TestClient) -> None:
    key = {"X-API-Key": KEYS[0]}
    whole = guarded.post("/features", headers=key, json={
        "entities": ["C0000001"], "features": ["customer_profile:*"]}).json()
    assert list(whole["features"]) == ["tenure_days", "plan", "monthly_fee"]
    # the customers contract's columns that no feature is named after (email is PII-tagged)
    for column in ("customer_id", "email", "country", "signup_date", "updated_at"):
        response = guarded.post("/features", headers=key, json={
            "entities": ["C0000001"], "features": [column, f"customer_profile:{column}"]})
        assert response.status_code == 404, (column, response.text)


def test_keys_come_from_the_setting_or_a_prefect_secret_block(prefect_server: None) -> None:
    from prefect.blocks.system import Secret

    assert api_keys(Settings()) == ()
    assert api_keys(Settings(api_keys=SecretStr(f" {KEYS[0]}, {KEYS[1]} ,"))) == KEYS
    with pytest.raises(ConfigError, match="holds no API key") as empty:
        api_keys(Settings(api_keys=SecretStr(" , ")))
    assert "," not in str(empty.value).split("holds")[0]  # names the setting, not its value

    Secret(value=",".join(KEYS)).save("tideline-test-api-keys", overwrite=True)
    Secret(value=list(KEYS)).save("tideline-test-api-key-list", overwrite=True)
    assert api_keys(Settings(api_keys_secret="tideline-test-api-keys")) == KEYS
    assert api_keys(Settings(api_keys_secret="tideline-test-api-key-list")) == KEYS
    # the variable wins over the block, as for the SMTP password
    assert api_keys(Settings(api_keys=SecretStr("other"),
                             api_keys_secret="tideline-test-api-keys")) == ("other",)
    with pytest.raises(ConfigError, match="'tideline-test-no-such-block'"):
        api_keys(Settings(api_keys_secret="tideline-test-no-such-block"))



@contextmanager
def _serving(store: FeatureStore, tmp_path: Path, host: str, **env: str
             ) -> Iterator[tuple[str, Path]]:
    """`tideline serve` over `store`'s files on a free port: its URL and its output's file."""
    port = free_port()
    data = store.lake.root.parent
    output = tmp_path / "serve.log"
    command = subprocess.Popen(
        [*CLI, "serve", "--host", host, "--port", str(port)],
        env={**os.environ, "TIDELINE_DATA_DIR": str(data),
             "TIDELINE_REGISTRY_URL": f"sqlite:///{data / 'r.db'}", **env},
        stdout=output.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if command.poll() is not None:
            raise AssertionError(output.read_text()[-3000:])
        try:
            return httpx.get(f"{url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for("tideline serve", up, timeout=60)
        yield url, output
    finally:
        command.send_signal(signal.SIGINT)
        command.wait(timeout=20)


def test_serve_reads_the_keys_and_never_logs_them(store: FeatureStore, tmp_path: Path) -> None:
    with _serving(store, tmp_path, "127.0.0.1", TIDELINE_API_KEYS=",".join(KEYS)) as (url,
                                                                                     output):
        missing = httpx.post(f"{url}/features", json=ASK)
        wrong = httpx.post(f"{url}/features", json=ASK,
                           headers={"Authorization": f"Bearer {KEYS[0][::-1]}"})
        right = httpx.post(f"{url}/features", json=ASK, headers={"X-API-Key": KEYS[1]})
    assert missing.status_code == wrong.status_code == 401 and missing.text == wrong.text
    assert right.status_code == 200, right.text
    assert right.json()["features"]["spend_30d"][0] is not None
    printed = output.read_text()
    assert '"POST /features HTTP/1.1" 401' in printed  # uvicorn's access log, keys left out
    assert "without authentication" not in printed
    assert not [k for k in KEYS if k in printed or k[::-1] in printed]


def test_serve_without_keys_on_every_interface_warns_once(store: FeatureStore,
                                                          tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k.startswith("TIDELINE_API_KEYS")}
    assert not env  # the suite configures no keys: the service is open
    with _serving(store, tmp_path, "0.0.0.0") as (url, output):
        assert httpx.post(f"{url}/features", json=ASK).status_code == 200
    warnings = [line for line in output.read_text().splitlines() if "without authentication"
                in line]
    assert len(warnings) == 1 and "0.0.0.0" in warnings[0]
