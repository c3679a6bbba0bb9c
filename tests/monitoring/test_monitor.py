"""The monitor on the drifting demo lake: October's spending and app activity drift, the
customer record and support tickets do not; before the drift nothing asks for a retrain; the
e-mails group by owner and escape what they show; the event names the model and features and
is recorded as undelivered when the API is down."""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import date

import numpy as np
import pandas as pd
import pytest
from tideline.demo.model import CHURN_MODEL
from tideline.features.stats import FeatureStats
from tideline.models.boosting import lightgbm_params
from tideline.models.registry import load_model
from tideline.monitoring.alerts import owner_mails
from tideline.monitoring.checks import MonitorRules, importance_check, null_check, performance_check
from tideline.monitoring.events import DRIFT_EVENT, drift_event, emit
from tideline.monitoring.monitor import MonitorResult, run_checks

from tests.champion import OCTOBER, Monitored

SPENDING = {"spend_30d", "avg_amount_30d", "median_amount_30d", "p75_amount_90d",
            "app_share_30d", "spend_ema_30d", "last_category"}
ACTIVITY = {"events_30d", "avg_duration_30d"}
STEADY = {"tenure_days", "monthly_fee", "tickets_90d", "plan"}


@pytest.fixture(scope="module")
def october(monitored: Monitored) -> MonitorResult:
    result, _ = run_checks(monitored.store, monitored.champion, CHURN_MODEL, OCTOBER,
                           MonitorRules())
    return result


def test_october_drift_is_found_where_the_demo_put_it(october: MonitorResult,
                                                      monitored: Monitored) -> None:
    drifted = {f.column for f in october.drifted}
    assert drifted >= SPENDING | ACTIVITY
    assert not drifted & STEADY
    assert october.as_of == OCTOBER and october.model == "churn:v1"
    assert october.reference["as_of"] == ["2026-08-25", "2026-09-01"]
    assert october.reasons[0].endswith(f"features drifted ({october.share:.0%} >= 25%)")
    views = {f.view for f in october.drifted}
    assert {"customer_spending", "customer_activity"} <= views
    by_column = {f.column: f for f in october.features}
    assert by_column["spend_30d"].drift.method == "wasserstein"
    assert by_column["spend_30d"].owner == "growth-analytics@example.com"
    assert october.performance is None and october.importance is None
    assert "no labelled period after the training set's last date (2026-09-01)" in \
        october.notes[0]
    summary = json.loads(json.dumps(october.summary()))
    assert summary["retrain"] and len(summary["features"]) == len(monitored.champion.features)


def test_before_the_drift_nothing_asks_for_a_retrain(monitored: Monitored) -> None:
    result, _ = run_checks(monitored.store, monitored.champion, CHURN_MODEL, date(2026, 8, 18),
                           MonitorRules())
    assert result.share < 0.25 and not result.prediction.drifted
    assert result.reasons == []
    assert not {f.column for f in result.drifted} & (SPENDING | ACTIVITY)


def test_missing_values_are_judged_against_the_materialised_statistics() -> None:
    reference = pd.Series(np.arange(100.0))
    current = reference.where(np.arange(100) >= 30)  # 30% missing now
    rules = MonitorRules()
    stats = FeatureStats("x", 100, null_rate=0.05)
    check = null_check("x", reference, current, stats, rules)
    assert (check.expected, check.reference, check.current, check.shifted) == (0.05, 0.0, 0.3,
                                                                               True)
    assert not null_check("x", reference, current, FeatureStats("x", 100, 0.25), rules).shifted
    all_null = null_check("x", reference, pd.Series([np.nan] * 10), None, rules)
    assert all_null.current == 1.0 and all_null.shifted


def test_performance_and_importance_on_a_labelled_period(monitored: Monitored) -> None:
    model = load_model(monitored.store.lake, monitored.champion)
    frame = monitored.store.load_training_set(monitored.champion.training_set).frame
    test = frame[frame["as_of"] >= pd.Timestamp("2026-08-25", tz="UTC")]
    rules = MonitorRules()
    same = performance_check(model, test, "churned", rules)
    assert same.roc_auc == pytest.approx(monitored.champion.roc_auc, abs=1e-9)
    assert not same.decayed and same.as_of == ("2026-08-25", "2026-09-01")
    scrambled = test.assign(churned=np.random.default_rng(0).permutation(test["churned"]))
    worse = performance_check(model, scrambled, "churned", rules)
    assert worse.roc_auc < 0.6 and worse.decayed

    params = lightgbm_params(CHURN_MODEL)
    kept = importance_check(model, frame, "churned", params, rules)
    assert kept.correlation > 0.6 and not kept.drifted
    lost = importance_check(model, scrambled, "churned", params, rules)
    assert lost.correlation < kept.correlation and len(lost.top) == 10


def test_each_owner_gets_one_message_about_their_own_features(october: MonitorResult) -> None:
    mails = owner_mails(october, "file:///reports/r.html", b"<html>report</html>")
    owners = [m.to for m in mails]
    assert owners == sorted(owners[:-1]) + [("retention-ds@example.com",)]
    assert len(set(owners)) == len(owners)
    for mail in mails[:-1]:
        (owner,) = mail.to
        mine = {f.column for f in october.features if f.alert and f.owner == owner}
        listed = {line[2:].split(" (")[0] for line in mail.text.splitlines()
                  if line.startswith("- ")}
        assert listed == mine
        assert [a.filename for a in mail.attachments] == ["drift-report.html"]
    assert "needs retraining" in mails[-1].subject
    assert october.reasons[0] in mails[-1].text


def test_what_the_mail_shows_is_escaped(october: MonitorResult) -> None:
    check = october.drifted[0]
    hostile = replace(october, features=(replace(check, column="<script>x</script>"),))
    (mail, *_) = owner_mails(hostile, "file:///r.html?a=1&b=<2>", None)
    assert "<script>" not in mail.html and "&lt;script&gt;x&lt;/script&gt;" in mail.html
    assert "a=1&amp;b=&lt;2&gt;" in mail.html and mail.attachments == ()


def test_the_event_names_the_model_and_its_drifted_features(october: MonitorResult) -> None:
    event = drift_event(october, {"summary": "reports/s.json", "html": "reports/r.html",
                                  "commit": "c0ffee"})
    assert event.event == DRIFT_EVENT and event.resource.id == "tideline.model.churn"
    assert {r.id for r in event.related} == {f"tideline.feature.{f.view}.{f.column}"
                                             for f in october.drifted}
    assert {r.role for r in event.related} == {"feature"}
    assert event.payload["report"] == "reports/s.json"
    assert event.payload["scores"]["spend_30d"] == pytest.approx(
        next(f.drift.score for f in october.drifted if f.column == "spend_30d"), abs=1e-6)


def test_an_unreachable_prefect_api_is_recorded_as_undelivered(october: MonitorResult) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    event = drift_event(october, {"summary": "s", "html": "h", "commit": "c"})
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        emitted = emit(event, attempts=2, backoff=0)
    assert not emitted.delivered and emitted.attempts == 2
    assert emitted.id == str(event.id) and "Error" in emitted.detail
