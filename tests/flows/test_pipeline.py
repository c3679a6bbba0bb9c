"""The pipeline flow on the bundled demo, on a real (test) Prefect server, with the retrain
deployment served from prefect.yaml by `tideline worker` beside it: the demo's drift must reach
the owners' outbox and, through the server's automation, start one retrain run."""
from __future__ import annotations

import email
import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from email import policy
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from tideline.demo.project import DEFECT_RULES, injected_defects
from tideline.demo.views import ACTIVITY, CHURN_VIEWS, DEMO_VIEWS, SIGNALS
from tideline.features.definitions import load_definitions
from tideline.features.offline import read_features
from tideline.features.online.sqlite import SQLiteOnlineStore
from tideline.features.plan import plan_from_lake
from tideline.features.registry import Registry
from tideline.features.store import FeatureStore
from tideline.flows.pipeline import pipeline
from tideline.lake.local import LocalLake
from tideline.lake.publish import find_published
from tideline.lake.tables import read_frame
from tideline.models.lineage import lineage
from tideline.models.registry import ModelRegistry

from tests.waiting import CLI, ROOT, wait_for


@contextmanager
def retrain_worker(data_dir: Path) -> Iterator[Any]:
    """`tideline worker retrain` in a subprocess against the test server: prefect.yaml's
    retrain deployment and its drift automation, registered and served."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(),
           "TIDELINE_DATA_DIR": str(data_dir), "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    log = (data_dir.parent / "worker.log").open("w")
    worker = subprocess.Popen([*CLI, "worker", "retrain"],
                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        with get_client(sync_client=True) as client:
            wait_for("the retrain automation", lambda: worker.poll() is None
                      and client.read_automations_by_name("retrain-on-drift"))
            yield client
    finally:
        worker.terminate()
        worker.wait(30)
        log.close()


def _retrain_runs(client: Any) -> list[Any]:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    return client.read_flow_runs(
        deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["retrain"])),
        sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=20)


@pytest.mark.slow
def test_demo_pipeline_catches_every_defect_builds_features_and_reruns_idempotently(
    ray_cluster: str, prefect_server: None, data_dir: Path, monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str]
) -> None:
    for name, value in SECRETS.items():  # configured, so every stage loads them
        monkeypatch.setenv(name, value)
    with retrain_worker(data_dir) as client:
        run = pipeline(run_id="t1")
        drift_loop(client, run, data_dir)
    audit = run.audit
    injected = injected_defects(data_dir / "demo")
    for outcome in audit.outcomes:
        expected = {DEFECT_RULES[outcome.dataset][kind]: count
                    for kind, count in injected[outcome.dataset].items()}
        assert outcome.failures == expected, outcome.dataset
        assert outcome.quarantined == sum(expected.values())
        assert outcome.clean + outcome.quarantined == outcome.rows
        assert outcome.gate_passed
    lake = LocalLake(data_dir / "lake")
    head = lake.get_commit("main")
    ingested, built = find_published(lake, "t1"), find_published(lake, "t1-features")
    assert ingested.metadata["stage"] == "ingest" and built.parents[0] == ingested.id
    assert lake.list("main", "clean/transactions/dt=")
    assert lake.exists("main", "reports/quality/t1.html")
    assert "run-t1" not in lake.branches()

    features = run.features
    assert built.metadata["stage"] == "features"
    assert built.metadata["source_commit"] == features.source_commit == ingested.id
    merges = [head]  # main's own history, newest first: training's and scoring's on top
    while len(merges) < 8:
        merges.append(lake.get_commit(merges[-1].parents[0]))
    assert [c.metadata["stage"] for c in merges] == [
        "discovery", "alerts", "monitor", "scores", "model", "training-set", "features",
        "features"]
    assert merges[7].id == built.id
    assert (features.features, features.entities, features.as_of) == (
        sum(len(view.feature_names) for view in DEMO_VIEWS), 3000, ("2026-10-01",))
    assert features.features == 57 + 17 + 3  # churn, real-time signals, the custom view
    assert len({p.node for p in features.partitions}) == 2  # both nodes of the Ray cluster
    spending = read_features(lake, "main", CHURN_VIEWS[0], date(2026, 10, 1))
    stamps = pd.concat([read_frame(lake, "main", o.path, columns=["ts"])["ts"]
                        for o in lake.list("main", "clean/transactions/dt=")])
    in_window = ((stamps >= pd.Timestamp("2026-07-03", tz="UTC"))
                 & (stamps < pd.Timestamp("2026-10-01", tz="UTC"))).sum()
    assert spending["txn_count_90d"].sum() == in_window > 0

    registry = Registry(f"sqlite:///{data_dir / 'registry.db'}")
    built_commit = find_published(lake, "t1-features").id
    [built, *_] = registry.materializations(CHURN_VIEWS[0].name)
    assert (built.run_id, built.published_commit, built.rows) == ("t1", built_commit, 3000)
    stats = {s.feature: s for s in registry.stats(CHURN_VIEWS[0].name, CHURN_VIEWS[0].version)}
    assert stats["txn_count_90d"].mean_value == pytest.approx(in_window / 3000)
    assert {w.mode for w in run.online} == {"full"}
    assert sum(w.written for w in run.online) == len(DEMO_VIEWS) * 3000
    store = FeatureStore(lake, registry, DEMO_VIEWS, SQLiteOnlineStore(data_dir / "online.db"))
    some = list(spending["customer_id"][:50])
    served = store.get_online_features(some, ["txn_count_90d", "value_segment"]).frame
    pd.testing.assert_frame_equal(served, spending.loc[:49, ["customer_id", "txn_count_90d",
                                                             "value_segment"]])

    model, decision = run.training.model, run.training.decision
    assert (model.ref, model.stage, decision.promoted) == ("churn:v1", "champion", True)
    assert model.roc_auc > max(0.8, model.baseline_metrics["roc_auc"])
    assert lake.exists("main", "models/churn/v1/model.txt")
    chain = lineage(ModelRegistry(f"sqlite:///{data_dir / 'registry.db'}").get("churn"),
                    registry, lake)
    builds = {b["run_id"] for view in chain["feature_views"] for b in view["builds"]}
    assert builds == {"t1-train"}
    assert {b["ingestion_run"] for view in chain["feature_views"] for b in view["builds"]} == {
        "t1"}

    live = run.realtime  # the day after, live: the stream processor and the champion
    assert live.applied > 300 and live.duplicates == 1 and live.clock.startswith("2026-10-01")
    assert sorted(why.split(":")[0].split(" '")[0] for why in live.dead_letters) == [
        "late", "malformed JSON", "unknown event_type"]
    assert live.alerts and all(a["probability"] >= model.threshold for a in live.alerts)
    alerted = [a["customer_id"] for a in live.alerts]
    fresh = store.get_online_features(alerted, ["payment_failures_24h", "exit_risk_score"])
    assert (fresh.frame["payment_failures_24h"] == 1).all()  # values as of the live day
    assert (fresh.frame["exit_risk_score"] >= 0.8).all()

    scores = run.scores
    assert (scores.model, scores.as_of) == ("churn:v1", date(2026, 10, 1))
    assert 2000 < scores.customers <= 3000 and 0 < scores.high_risk < scores.customers / 2
    assert len(read_frame(lake, "main", scores.path)) == scores.customers

    discovery = run.discovery  # candidates from the tables, the best kept and registered
    assert discovery.commit == head.id and discovery.out_of_time == discovery.over_budget == 0
    assert discovery.computed == discovery.generated > 400 and 10 <= len(discovery.kept) <= 30
    decisions = pd.read_csv(data_dir / "discovery" / "t1" / "decisions.csv")
    assert len(decisions) == discovery.computed and decisions["reason"].notna().all()
    assert set(decisions["step"]) >= {"kept", "redundant", "(near-)constant"}
    assert lake.get("main", discovery.paths["decisions"]) == (
        data_dir / "discovery" / "t1" / "decisions.csv").read_bytes()
    found = load_definitions(f"tideline.demo.views:DEMO_VIEWS,{discovery.local}/views.yaml")
    plan = plan_from_lake(found, lake, "main")  # loads beside the declared views, valid
    assert [v.name for v in found[len(DEMO_VIEWS):]] == discovery.views
    assert set(discovery.kept) <= {n for v in plan.views for n in v.feature_names}
    assert {v.name: v.version for v in found[len(DEMO_VIEWS):]} == {
        name: registry.view(name).version for name in discovery.views}
    assert lake.exists("main", discovery.paths["report"])
    assert not lake.list("main", "discovery/t1/candidates/")  # scratch values are not kept

    again = pipeline(run_id="t1")  # the same run again: nothing new, nobody told twice
    assert (again.audit, again.features, again.scores) == (run.audit, run.features, run.scores)
    assert (again.monitoring.drifted, again.monitoring.report) == (run.monitoring.drifted,
                                                                   run.monitoring.report)
    assert again.monitoring.emails == [] and again.monitoring.event is None
    assert again.training.model == model and again.training.decision == decision
    assert {w.view: w.mode for w in again.online} == {  # the live stream's values are newer
        **{v.name: "unchanged" for v in DEMO_VIEWS}, ACTIVITY.name: "stream",
        SIGNALS.name: "stream"}
    assert lake.resolve("main") == head.id

    printed = capfd.readouterr()
    texts = run_texts(data_dir, printed.out + printed.err)
    no_secret_anywhere(data_dir, texts)
    no_pii_in_what_people_see(data_dir, texts)

    incremental = pipeline(run_id="t2")  # a new run: every checkpoint says nothing is new
    assert {o.rows for o in incremental.audit.outcomes} == {0}
    assert find_published(lake, "t2-features") is not None
    assert incremental.training.model == model  # same training data: the same model
    assert incremental.discovery == again.discovery == discovery  # same tables: it stands


SECRETS = {"TIDELINE_SMTP_PASSWORD": "smtp-sentinel-3f9a1c",
           "TIDELINE_REDIS_URL": "redis://:redis-sentinel-8b2e7d@127.0.0.1:6379/0"}
"""Secrets a run is configured with (unused by the demo's outbox and SQLite online store)."""


def run_texts(data_dir: Path, printed: str) -> list[str]:
    """What people see of a run besides its files: the flow runs' logs and the artifacts in
    the Prefect server (read through its API: `logs/filter`, `artifacts/filter`), and what
    was printed."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        logs, offset = [], 0
        while batch := client.read_logs(limit=200, offset=offset):
            logs += [log.message for log in batch]
            offset += len(batch)
        artifacts = [str(a.data) + str(a.description) for a in client.read_artifacts()]
    assert len(logs) > 100 and len(artifacts) > 10
    return [*logs, *artifacts, printed]


def no_secret_anywhere(data_dir: Path, texts: list[str]) -> None:
    """Nothing a run produced holds a secret: every file under the data directory and beside
    it (lake objects, reports, e-mails, the worker's log), the flow runs' logs and artifacts
    in the Prefect server, and what was printed."""
    needles = ["smtp-sentinel-3f9a1c", "redis-sentinel-8b2e7d"]
    files = [p for p in data_dir.parent.rglob("*") if p.is_file()]
    assert len(files) > 100
    for path in files:
        body = path.read_bytes()
        assert not [n for n in needles if n.encode() in body], path
    for text in texts:
        assert not [n for n in needles if n in text]


ADDRESS = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def _readable(path: Path) -> str:
    """A file's text as people read it: an e-mail's parts decoded (base64, quoted-printable)."""
    if path.suffix != ".eml":
        return path.read_text(errors="replace")
    message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    return "\n".join(str(message[h]) for h in ("Subject", "To")) + "\n".join(
        part.get_payload(decode=True).decode(errors="replace") for part in message.walk()
        if not part.is_multipart())


def no_pii_in_what_people_see(data_dir: Path, texts: list[str]) -> None:
    """None of the demo's e-mail addresses (its `pii: email` column, as generated) is in what
    the run shows people: the reports, the outbox, discovery's output, the quality reports in
    the lake, the logs and artifacts, what was printed; the quality report shows digests."""
    from tideline.demo.generator import BAD_EMAILS

    emails = pd.concat([pd.read_csv(path, usecols=["email"], dtype=str)["email"]
                        for path in (data_dir / "demo" / "crm").glob("customers-*.csv")])
    values = set(emails.dropna())
    assert len(values) > 2900
    odd = [v for v in BAD_EMAILS if v in values and "@example.com" not in v]  # owners' domain
    assert "jane.doe(at)example.com" in odd and "not-an-email" in odd
    lake = LocalLake(data_dir / "lake")
    shown = [(str(p), _readable(p)) for folder in ("reports", "outbox", "discovery")
             for p in (data_dir / folder).rglob("*") if p.is_file()]
    shown += [(o.path, lake.get("main", o.path).decode(errors="replace"))
              for o in lake.list("main", "reports/")]
    shown += [(f"text {i}", text) for i, text in enumerate(texts)]
    assert sum(name.endswith(".eml") for name, _ in shown) >= 2
    for name, text in shown:
        found = set(ADDRESS.findall(text)) & values
        assert not found and not [v for v in odd if v in text], (name, sorted(found)[:3])
    (quality,) = (data_dir / "reports").glob("quality-t1.html")
    assert "‹email:" in quality.read_text()  # the quarantined addresses, as digests


@pytest.mark.slow
def test_backfill_replaces_its_days_without_duplicates(prefect_server: None, data_dir: Path
                                                       ) -> None:
    from datetime import date

    from tideline.flows.ingest import ingest

    ingest(run_id="b0")
    lake = LocalLake(data_dir / "lake")
    day = "clean/transactions/dt=2026-07-15/"

    def rows_on_day() -> int:
        return sum(len(read_frame(lake, "main", o.path)) for o in lake.list("main", day))

    before, checkpoints = rows_on_day(), lake.get("main", "checkpoints/shop-transactions.json")
    audit = ingest(run_id="b1", since=date(2026, 7, 15), until=date(2026, 7, 16))
    assert {o.dataset: o.rows > 0 for o in audit.outcomes}["transactions"]
    assert rows_on_day() == before > 0
    assert [o.path.rsplit("/", 1)[1] for o in lake.list("main", day)] == ["part-b1.parquet"]
    assert lake.get("main", "checkpoints/shop-transactions.json") == checkpoints


SPENDING_DRIFT = {"spend_30d", "avg_amount_30d", "median_amount_30d", "app_share_30d"}
"""Features the demo's September shift moves (amounts x1.3, more app purchases)."""


def drift_loop(client: Any, run: Any, data_dir: Path) -> None:
    """The demo's drift: found, reported in the lake, e-mailed per owner, sent as an event
    the server logged, and answered by exactly one retrain run, which completes."""
    from prefect.events import Event
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
    from tideline.monitoring.events import DRIFT_EVENT, emit

    monitoring = run.monitoring
    assert set(monitoring.drifted) >= SPENDING_DRIFT
    assert monitoring.retrain and "features drifted" in monitoring.reasons[0]
    lake = LocalLake(data_dir / "lake")
    assert lake.exists("main", monitoring.report["html"])
    assert lake.exists("main", monitoring.report["summary"])
    assert monitoring.event is not None and monitoring.event.delivered
    sent = {tuple(m.to): Path(m.detail) for m in monitoring.emails}
    assert all(m.sent for m in monitoring.emails)
    assert ("growth-analytics@example.com",) in sent and ("retention-ds@example.com",) in sent
    spending = email.message_from_bytes(sent[("growth-analytics@example.com",)].read_bytes(),
                                        policy=policy.default)
    text = spending.get_body(("plain",)).get_content()
    assert "spend_30d (customer_spending)" in text and "activity" not in text
    assert [a.get_filename() for a in spending.iter_attachments()] == ["drift-report.html"]

    def logged() -> list[Any]:  # this model's: other tests send drift events of their own
        return client.read_events(EventFilter(
            event=EventNameFilter(name=[DRIFT_EVENT]),
            resource=EventResourceFilter(id=["tideline.model.churn"])), limit=50).events

    (event,) = wait_for("the drift event in the server's log", logged)
    assert str(event.id) == monitoring.event.id
    assert event.resource.id == "tideline.model.churn"
    assert {r.id for r in event.related} >= {"tideline.feature.customer_spending.spend_30d"}
    (first,) = wait_for("the retrain run", lambda: _retrain_runs(client))
    assert first.parameters["report"] == monitoring.report["summary"]
    # more drift about the same model within the debounce window: no second retrain
    for _ in range(2):
        assert emit(Event(event=DRIFT_EVENT, resource=event.resource.root,
                          payload={"report": "again", "reasons": []})).delivered
    done = wait_for("the retrain run to finish", lambda: [
        r for r in _retrain_runs(client) if r.state and r.state.is_final()], timeout=180)
    assert [r.state.name for r in done] == ["Completed"]
    time.sleep(3)
    assert len(_retrain_runs(client)) == 1
