"""The demo's churn model: 30 days without a transaction or app event, predicted from every
churn feature view."""
from __future__ import annotations

from tideline.demo.views import CHURN_VIEWS, EVENTS, TRANSACTIONS
from tideline.models.labels import ChurnLabel
from tideline.models.spec import ModelSpec

CHURN_LABEL = ChurnLabel(activity=(TRANSACTIONS, EVENTS), horizon_days=30, active_days=30)

CHURN_MODEL = ModelSpec(
    name="churn",
    label=CHURN_LABEL,
    features=tuple(f"{view.name}:*" for view in CHURN_VIEWS),
    owner="retention-ds@example.com",
)
