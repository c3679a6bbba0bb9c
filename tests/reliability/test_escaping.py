"""HTML and script in names, descriptions and values never reach a report or an e-mail
unescaped, and an owner address cannot add a header or a second recipient to a message."""
from __future__ import annotations

from datetime import UTC, date, datetime
from email.message import EmailMessage
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from markupsafe import escape
from tideline.core.errors import ConfigError
from tideline.discovery.generate import Candidate
from tideline.discovery.report import selection_report
from tideline.discovery.select import Selection
from tideline.ingestion.contracts import Contract
from tideline.ingestion.report import render_html
from tideline.ingestion.validation import validate
from tideline.monitoring.alerts import owner_mails
from tideline.monitoring.checks import MonitorRules, NullCheck
from tideline.monitoring.drift import ColumnDrift
from tideline.monitoring.evidently_report import render_report
from tideline.monitoring.mail import Mail, build_message
from tideline.monitoring.monitor import FeatureCheck, MonitorResult

from tests.reliability.conftest import Ledger

PAYLOADS = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>',
            "<svg/onload=alert(1)>", "</td></table><iframe src=javascript:alert(1)>"]


def assert_escaped(html: str, payload: str) -> None:
    """The payload is shown (escaped) and its markup, from its first `<`, is nowhere as is."""
    markup = payload[payload.index("<"):]
    assert markup not in html, f"{markup!r} reached the HTML unescaped"
    assert str(escape(payload)) in html


def drift(column: str, drifted: bool = True) -> ColumnDrift:
    return ColumnDrift(column=column, kind="numeric", method="wasserstein", score=0.4,
                       threshold=0.1, drifted=drifted, effect=0.4, reference_rows=100,
                       current_rows=100)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_validation_report_escapes_names_values_and_reasons(ledger: Ledger,
                                                            payload: str) -> None:
    contract = Contract.from_dict({
        "dataset": "customers", "description": payload,
        "columns": {"id": {"type": "string"}, payload: {"type": "int"},
                    "email": {"type": "string", "regex": "[^@]+@[^@]+"}},
    })
    frame = pd.DataFrame({"id": ["a", payload], payload: [payload, "1"],
                          "email": [payload, "x@example.com"]}, dtype="string")
    result = validate(frame, contract, now=datetime(2026, 7, 1, tzinfo=UTC))
    assert len(result.quarantine) == 1 and payload in result.quarantine["_reason"].iloc[0]
    html = render_html({payload: result}, title=payload, run_id=payload)
    assert_escaped(html, payload)
    ledger.serve("markup, shown escaped")


@pytest.mark.parametrize("payload", PAYLOADS)
def test_discovery_report_escapes_candidates_descriptions_and_reasons(
    ledger: Ledger, payload: str
) -> None:
    names = [f"{payload}_kept", f"{payload}_dropped"]
    decisions = pd.DataFrame({
        "candidate": names, "status": ["kept", "dropped"], "step": ["kept", payload],
        "reason": ["", payload], "null_share": [0.0, 0.9], "mutual_information": [0.1, 0.0],
        "auc_alone": [0.6, 0.5], "stability": [1.0, 0.2], "cluster": [0, 1],
        "gain": [3.0, 0.0], "permutation": [0.01, 0.0],
    })
    selection = Selection(decisions=decisions, kept=names[:1],
                          dates={"train": [payload], "valid": [], "test": []},
                          train_rows=10, valid_rows=5, clusters={names[0]: [names[1]]})
    candidates = {name: Candidate(name=name, source=payload, family=payload,
                                  description=payload) for name in names}
    report = selection_report(payload, payload * 2, selection, candidates, computed=2,
                              rows=15, over_budget=0, views=[payload], correlations=None)
    assert_escaped(report.html, payload)
    ledger.serve("markup, shown escaped")


def test_drift_report_keeps_a_category_value_inside_its_script_block(
    ledger: Ledger, tmp_path: Path
) -> None:
    """Evidently embeds category values as unescaped JSON in a `<script>` block: a value that
    would close the block is made inert before it gets there."""
    payload = "</script><script>alert(1)</script>"
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"plan": rng.choice([payload, "basic"], 200)})
    current = pd.DataFrame({"plan": rng.choice([payload, "pro"], 200)})
    tested = [ColumnDrift(column="plan", kind="cat", method="jensenshannon", score=0.5,
                          threshold=0.1, drifted=True, effect=0.5, reference_rows=200,
                          current_rows=200)]
    run = render_report(reference, current, tested, {}, tmp_path / "drift.html")
    assert payload not in run.path.read_text()
    ledger.serve("markup, shown escaped")


def monitor_result(payload: str, owner: str = "owner@example.com") -> MonitorResult:
    nulls = NullCheck(expected=0.0, reference=0.0, current=0.5, shifted=True)
    return MonitorResult(
        model=payload, owner=owner, as_of=date(2026, 7, 1),
        reference={"training_set": payload}, current_rows=100,
        features=(FeatureCheck(column=payload, view=payload, owner=owner, drift=drift(payload),
                               nulls=nulls),),
        prediction=drift("score"), performance=None, importance=None, rules=MonitorRules(),
        notes=(payload,),
    )


def html_part(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    return part.get_content()


@pytest.mark.parametrize("payload", PAYLOADS)
def test_owner_mails_escape_feature_view_and_model_names(ledger: Ledger, payload: str) -> None:
    mails = owner_mails(monitor_result(payload), link=payload, report=b"<html></html>")
    assert len(mails) == 2  # the feature owner's, and the retrain notice to the model's owner
    for mail in mails:
        assert_escaped(mail.html, payload)
        message = build_message(mail, "tideline@example.com")
        assert_escaped(html_part(message), payload)
        assert message["To"] == "owner@example.com"
    ledger.serve("markup, shown escaped")


@pytest.mark.parametrize("owner", [
    "owner@example.com\r\nBcc: evil@example.com", "owner@example.com\nBcc: evil@example.com",
    "owner@example.com, evil@example.com", "owner@example.com;evil@example.com",
    "Owner <owner@example.com>", "owner@example.com\r\n\r\n<script>alert(1)</script>",
])
def test_owner_address_header_injection_is_rejected(ledger: Ledger, owner: str) -> None:
    for mail in owner_mails(monitor_result("churn", owner=owner), link="x", report=None):
        with pytest.raises(ConfigError, match="not an e-mail address"):
            build_message(mail, "tideline@example.com")
        ledger.refused("ConfigError")
    mail = Mail(to=("owner@example.com",), subject="s", text="t", html="h")
    with pytest.raises(ConfigError, match="not an e-mail address"):
        build_message(mail, owner)
    ledger.refused("ConfigError")


def test_a_line_break_in_a_subject_adds_no_header(ledger: Ledger) -> None:
    mail = Mail(to=("owner@example.com",), subject="drift in churn\r\nBcc: evil@example.com",
                text="t", html="<p>h</p>")
    message = build_message(mail, "tideline@example.com")
    assert message["Bcc"] is None
    assert message["Subject"] == "drift in churn Bcc: evil@example.com"
    assert b"\nBcc:" not in bytes(message)
    ledger.serve("a subject with a line break, folded")
