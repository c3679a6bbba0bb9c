"""The bundled demo: generate the seeded churn data into local stand-ins of its source systems
(a CRM CSV export, a shop database, a helpdesk API, an app event log) and describe them as a
project. Nothing here needs a network or a running service."""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from tideline.core.project import NoProject, is_project_file, read_document
from tideline.core.settings import Settings
from tideline.ingestion.project import Project, load_project
from tideline.lake.base import MAIN, Lake

PROJECT_FILE = Path(__file__).resolve().parent / "tideline.yaml"
API_TOKEN = "demo-token"  # the demo API's own bearer token; it guards nothing real
DEFECT_RULES = {
    "customers": {"missing_email": "not_null:email", "bad_email": "regex:email",
                  "bad_signup_date": "type:signup_date", "duplicate": "duplicate"},
    "transactions": {"negative_amount": "range:amount", "bad_amount_type": "type:amount",
                     "future_ts": "not_in_future:ts", "orphan_customer": "reference:customer_id",
                     "duplicate": "duplicate"},
    "tickets": {"unknown_topic": "allowed:topic", "negative_resolution": "range:resolution_hours"},
    "events": {"missing_customer_id": "not_null:customer_id",
               "duplicate_event_id": "duplicate_key:event_id"},
}
"""Which rule of the demo project's contracts catches each defect the generator injects."""
DEMO_DRIFT_FROM = date(2026, 9, 2)
"""The demo's customers change after the model's last training date (1 September): spending,
category and channel mix and app sessions shift for the drift monitor to flag when it scores
October."""


def _spec_digest(spec: object) -> str:
    body = json.dumps(asdict(spec), default=str, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


def prepare_demo_sources(root: Path, spec: object | None = None) -> Path:
    """Write the demo's source systems under `root` once per generator spec; return `root`."""
    from tideline.demo.generator import (
        DemoSpec,
        generate,
        write_api_fixture,
        write_crm_csv,
        write_event_log,
        write_sql,
    )

    spec = spec or DemoSpec()
    marker = root / "spec.json"
    digest = _spec_digest(spec)
    if marker.exists() and json.loads(marker.read_text()).get("digest") == digest:
        return root
    data = generate(spec)
    (root / "crm").mkdir(parents=True, exist_ok=True)
    write_crm_csv(data, root / "crm" / f"customers-{spec.end:%Y-%m-%d}.csv")
    write_sql(data, f"sqlite:///{(root / 'shop.db').resolve()}")
    (root / "api").mkdir(exist_ok=True)
    write_api_fixture(data, root / "api" / "tickets.jsonl")
    write_event_log(data, root / "events")
    marker.write_text(json.dumps({"digest": digest, "spec": asdict(spec),
                                  "defects": data.defects}, default=str, indent=1))
    return root


def injected_defects(root: Path) -> dict[str, dict[str, int]]:
    """What the generator injected, per dataset and defect kind (tests compare the audit)."""
    return json.loads((root / "spec.json").read_text())["defects"]


@contextmanager
def demo_project(data_dir: Path, path: Path) -> Iterator[Project]:
    """The demo's sources in the project file `path`, ready to ingest: the data written under
    `data_dir`, the helpdesk API served locally."""
    from tideline.demo.generator import DemoSpec

    spec = DemoSpec(drift_from=DEMO_DRIFT_FROM)
    root = prepare_demo_sources(data_dir / "demo", spec)
    with demo_placeholders(root, spec.end) as placeholders:
        yield load_project(path, **placeholders)


@contextmanager
def demo_placeholders(root: Path, end: date) -> Iterator[dict[str, str]]:
    """The demo's source systems under `root` reachable for the block (the shop database and
    the API token in the environment, the helpdesk API served): the demo project file's
    placeholders, validating as of the day after `end`."""
    from tideline.demo.api import serve_records

    os.environ["TIDELINE_DEMO_SQL_URL"] = f"sqlite:///{(root / 'shop.db').resolve()}"
    os.environ["TIDELINE_DEMO_API_TOKEN"] = API_TOKEN
    as_of = datetime.combine(end + timedelta(days=1), time(), tzinfo=UTC)
    with serve_records(root / "api" / "tickets.jsonl", token=API_TOKEN) as api:
        yield {"demo_dir": str(root.resolve()), "demo_api": api.rstrip("/"),
               "validation_time": as_of.isoformat()}


def is_demo(settings: Settings) -> bool:
    """Whether the configured sources are the bundled demo's (`demo: true` in the project
    file): its source systems are generated and served by tideline itself."""
    path = Path(settings.declared("sources"))
    return is_project_file(path) and bool(read_document(path).get("demo"))


@contextmanager
def open_project(settings: Settings) -> Iterator[Project]:
    """The configured project's sources and contracts, ready to ingest: for the demo, its
    source systems prepared under the data directory and its helpdesk API served."""
    if not is_demo(settings):
        yield load_project(Path(settings.declared("sources")))
        return
    with demo_project(settings.data_dir, Path(settings.declared("sources"))) as project:
        yield project


def declared_project(settings: Settings) -> Project:
    """The configured project's declarations (sources, contracts, references) without
    preparing anything: the demo's source files where a run generates them, its API at no
    address."""
    path = Path(settings.declared("sources"))
    if not is_demo(settings):
        return load_project(path)
    return load_project(path, demo_dir=str((settings.data_dir / "demo").resolve()),
                        demo_api="http://demo.invalid",
                        validation_time=datetime.now(UTC).isoformat())


def declared_pii(settings: Settings) -> dict[str, dict[str, str]]:
    """The PII-tagged columns of the configured project's contracts (dataset -> column ->
    kind), for plans that read the lake; none when no project declares sources."""
    try:
        return declared_project(settings).pii
    except NoProject:
        return {}


LIVE_SUBJECT = "app-events-live"
"""The event log subject of the demo's live events (ingestion reads `app-events` only)."""


def write_live_events(lake: Lake, root: Path, seed: int = 7) -> Path:
    """The demo's 'tomorrow' as a live stream, for the stream processor: the last day's app
    events on main replayed a day later, a failed payment and a cancel-page visit for some
    customers, and a few bad messages (not JSON, an unknown event type, an event older than the
    allowed lateness, a redelivered one). Written as an event log under `root`; returns the
    log's root."""
    import numpy as np
    import pandas as pd
    from tideline.demo.views import EVENTS
    from tideline.features.offline import read_source

    events = read_source(lake, MAIN, EVENTS, "customer_id",
                         ["event_id", "customer_id", "ts", "event_type", "session_id",
                          "duration_s"]).to_pandas()
    events["ts"] = pd.to_datetime(events["ts"], utc=True)
    last_day = events["ts"].max().normalize()
    live = events[events["ts"] >= last_day].assign(
        ts=lambda f: f["ts"] + pd.Timedelta(days=1),
        event_id=lambda f: "live-" + f["event_id"])
    rng = np.random.default_rng(seed)
    worried = rng.choice(np.sort(events["customer_id"].unique()), 40, replace=False)
    signals = pd.DataFrame({
        "event_id": [f"live-signal-{k}" for k in range(2 * len(worried))],
        "customer_id": np.repeat(worried, 2),
        "ts": last_day + pd.Timedelta(days=1, hours=9) + pd.to_timedelta(
            rng.integers(0, 8 * 3600, 2 * len(worried)), unit="s"),
        "event_type": np.tile(["payment_failed", "cancel_page"], len(worried)),
        "session_id": "live-" + np.repeat(worried, 2).astype(object), "duration_s": 5.0})
    live = pd.concat([live, signals]).sort_values("ts", kind="stable")
    records = [json.loads(row) for row in live.assign(
        ts=live["ts"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")).to_json(orient="records",
                                                                     lines=True).splitlines()]
    records.insert(len(records) // 2, {**records[0], "event_type": "teleport",
                                       "event_id": "live-bad-type"})
    records.insert(len(records) // 3, {**records[1], "ts": f"{last_day - pd.Timedelta(days=3)}"
                                                           .replace(" ", "T"),
                                       "event_id": "live-late"})
    records.append(records[5])  # a producer's redelivery: not counted twice
    lines = [json.dumps({"seq": seq, "data": record}) for seq, record in enumerate(records, 1)]
    lines.insert(len(lines) // 4, '{"seq": "oops", this is not JSON')
    directory = root / LIVE_SUBJECT
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "live-0001.jsonl").write_text("\n".join(lines) + "\n")
    return root
