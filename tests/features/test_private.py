"""Features over PII-tagged columns: refused at plan time unless they count, or filter through a
declared transformation (a hash bucket, an e-mail's domain, a length), which the engine
evaluates."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from tideline.core.errors import FeatureDefinitionError
from tideline.features.definitions import Entity, Feature, FeatureView, Source
from tideline.features.expressions import evaluate, exposed_names
from tideline.features.plan import plan_views

CUSTOMER = Entity("customer", "customer_id")
LOGINS = Source("logins", dataset="logins", timestamp="ts")
SCHEMA = pa.schema([("customer_id", pa.string()), ("ts", pa.timestamp("ns", "UTC")),
                    ("email", pa.string()), ("device", pa.string())])
PRIVATE = {"logins": {"email": "email"}}


def _view(*features: Feature, key: str = "customer_id") -> FeatureView:
    return FeatureView("logins_30d", Entity("customer", key), LOGINS, features=features,
                       owner="dpo@example.com")


def _plan(view: FeatureView) -> None:
    plan_views([view], {"logins": SCHEMA}, PRIVATE)


@pytest.mark.parametrize(("feature", "named"), [
    (Feature("last_email", "email", "last"), "feature 'last_email': column 'email' of dataset "
                                             "'logins' is tagged pii (email), and 'last'"),
    (Feature("bobs", agg="count", window=30, filter="email == 'bob@x.example'"),
     "feature 'bobs': the filter \"email == 'bob@x.example'\" compares column 'email'"),
    (Feature("mixed", agg="count", filter="bucket(email, 4) == 1 or email in ['a']"),
     "compares column 'email'"),
])
def test_a_feature_showing_a_tagged_columns_values_is_refused(feature: Feature,
                                                              named: str) -> None:
    with pytest.raises(FeatureDefinitionError) as raised:
        _plan(_view(feature))
    message = str(raised.value)
    assert "feature view 'logins_30d'" in message and named in message
    assert "nunique" in message and "domain(email)" in message  # what to do instead
    plan_views([_view(feature)], {"logins": SCHEMA})  # untagged, the same view plans


def test_a_tagged_entity_key_is_refused() -> None:
    with pytest.raises(FeatureDefinitionError, match="entity key 'email' .* pseudonymous id"):
        _plan(_view(Feature("logins", agg="count"), key="email"))


def test_counts_and_declared_transformations_of_a_tagged_column_plan() -> None:
    plan = plan_views([_view(
        Feature("addresses_30d", "email", "nunique", window=30),
        Feature("addresses_approx", "email", "approx_nunique"),
        Feature("free_mail", agg="share", filter="domain(email) in ['gmail.com', 'web.de']"),
        Feature("long_address", agg="count", filter="length(email) > 30 and device == 'app'"),
        Feature("bucket3", agg="count", filter="bucket(email, 8) == 3"),
    )], {"logins": SCHEMA}, PRIVATE)
    assert "email" in plan.columns["logins"]


def test_transformations_evaluate_on_arrow_and_numpy_text() -> None:
    emails = ["Ann@Gmail.COM", None, "bob@", "x@y@web.de", "plain"]
    for column in (pd.Series(emails, dtype="string[pyarrow]"), np.array(emails, dtype=object)):
        got = evaluate("domain(email) in ['gmail.com', 'web.de']", {"email": column})
        assert list(np.asarray(got)) == [True, False, False, True, False]
        got = evaluate("length(email) >= 5", {"email": column})
        assert list(np.asarray(got)) == [True, False, False, True, True]
    assert exposed_names("domain(email) == 'a' and length(name) > 2", "w") == set()
    assert exposed_names("bucket(email, 4) == n", "w") == {"n"}
    with pytest.raises(FeatureDefinitionError, match="takes one column"):
        exposed_names("domain(email, 2) == 'a'", "w")


def test_builds_plan_with_the_configured_projects_tags(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from tideline.core.settings import load_settings
    from tideline.demo.project import declared_pii

    assert declared_pii(load_settings()) == {"customers": {"email": "email"}}  # the demo's
    monkeypatch.delenv("TIDELINE_PROJECT")
    monkeypatch.chdir(tmp_path)
    assert declared_pii(load_settings()) == {}  # no project: no contracts, nothing tagged
