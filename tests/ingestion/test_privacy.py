"""PII-tagged columns: their values never reach a reason, a report or a quarantine sample
shown to people, only a stable digest; the lake's quarantine keeps them as received."""
from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest
from tideline.ingestion.contracts import Contract
from tideline.ingestion.privacy import mask_frame, mask_value
from tideline.ingestion.report import render_csv, render_html
from tideline.ingestion.validation import validate

NOW = datetime(2026, 7, 2, tzinfo=UTC)
EMAIL = {"type": "string", "regex": r"[^@\s]+@[^@\s]+\.[a-z]{2,}", "unique": True}
PEOPLE = {
    "dataset": "people", "key": ["person_id"],
    "columns": {"person_id": {"type": "string"}, "email": {**EMAIL, "pii": "email"},
                "name": {"type": "string", "allowed": ["x"], "pii": True},
                "age": {"type": "int", "min": 0}},
}
SECRET = ["ann.lee@mail.example", "bob@", "ann.lee@mail.example", "jo(at)example.com"]
NAMES = ["Ann Lee", "Bob Ray", "Ann Lee", "Jo Park"]


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"person_id": ["p1", "p2", "p3", "p4"], "email": SECRET,
                         "name": NAMES, "age": ["30", "-1", "41", "x"]})


def test_the_digest_is_short_stable_and_labelled_with_the_kind() -> None:
    shown = mask_value("ann.lee@mail.example", "email")
    assert shown == mask_value("ann.lee@mail.example", "email") == "‹email:1fc89a8f›"
    assert mask_value("ann.lee@mail.example ", "email") != shown
    assert mask_value(None, "email") == "" and mask_value(float("nan"), "name") == ""


def test_reasons_report_and_sample_show_digests_never_the_values() -> None:
    contract = Contract.from_dict(PEOPLE)
    result = validate(_frame(), contract, now=NOW)
    assert result.quarantined_rows == 4 and result.pii == {"email": "email", "name": "pii"}
    reasons = " ".join(result.quarantine["_reason"])
    assert "email: ‹email:" in reasons and "name: ‹pii:" in reasons and "age: '-1'" in reasons
    assert f"email: {mask_value('ann.lee@mail.example', 'email')} repeats row 0" in reasons
    # the quarantine (the data, kept in the lake) holds the values as received
    assert list(result.quarantine["email"]) == SECRET
    html = render_html({"people": result}, title="t", run_id="r1")
    csv = render_csv({"people": result})
    for text in (reasons, html, csv):
        for value in [*SECRET, *NAMES, "jo(at)"]:
            assert value not in text, value
    assert html.count(mask_value("ann.lee@mail.example", "email")) >= 2  # sample and reasons
    assert mask_value("Jo Park", "pii") in html


def test_a_tagged_column_renamed_upstream_is_masked_under_its_new_name() -> None:
    valid = ["ann@m.example", "bo@m.example", "cy@m.example", "di@m.example"]
    frame = _frame().assign(email=valid).rename(columns={"email": "e_mail"})
    result = validate(frame, Contract.from_dict(PEOPLE), now=NOW)
    assert any(i.kind == "renamed" and i.renamed_to == "e_mail" for i in result.schema_issues)
    assert result.pii["e_mail"] == "email"
    html = render_html({"people": result}, title="t", run_id="r1")
    assert "e_mail" in html and not [v for v in valid if v in html]


def test_a_tagged_key_and_reference_show_digests() -> None:
    contract = Contract.from_dict({
        "dataset": "logins", "key": ["email"],
        "columns": {"email": {"type": "string", "pii": "email"}, "at": {"type": "string"}},
        "references": [{"column": "email", "dataset": "people", "ref_column": "email"}]})
    frame = pd.DataFrame({"email": ["a@b.example", "a@b.example", "c@d.example"],
                          "at": ["1", "2", "3"]})
    result = validate(frame, contract, references={"people": {"a@b.example"}}, now=NOW)
    reasons = " ".join(result.quarantine["_reason"])
    assert "repeats row 0" in reasons and "not found in people.email" in reasons
    assert "a@b.example" not in reasons and "c@d.example" not in reasons


def test_tagging_keeps_the_contract_version_and_rejects_an_unknown_kind() -> None:
    untagged = {**PEOPLE, "columns": {name: {k: v for k, v in spec.items() if k != "pii"}
                                      for name, spec in PEOPLE["columns"].items()}}
    assert Contract.from_dict(PEOPLE).version == Contract.from_dict(untagged).version
    assert Contract.from_dict(PEOPLE).pii == {"email": "email", "name": "pii"}
    with pytest.raises(Exception, match="pii"):
        Contract.from_dict({**PEOPLE, "columns": {"email": {"type": "string",
                                                            "pii": "passport"}}})


def test_mask_frame_masks_only_the_tagged_columns() -> None:
    masked = mask_frame(_frame(), {"email": "email"})
    assert masked["email"].iloc[0] == mask_value(SECRET[0], "email")
    assert list(masked["name"]) == NAMES
