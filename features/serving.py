"""Online features and churn predictions over HTTP (`tideline serve`): a small FastAPI app in
front of the feature store's online lookup and the champion model, with request validation and
errors a client can act on (404 for an unknown feature or no champion, 400 for a request the
store cannot answer, 409 when the champion needs feature versions the store does not serve,
503 when the online store is down)."""
from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from features.store import FeatureStore
from models.registry import ModelRegistry
from models.scoring import OnlineScorer
from tideline.errors import ModelError, OnlineStoreUnavailable, RetrievalError, UnknownFeature


class FeatureRequest(BaseModel):
    entities: list[str] = Field(min_length=1, max_length=10_000,
                                description="Entity ids (customer ids), answered in order.")
    features: list[str] = Field(min_length=1, description="`feature`, `view:feature` or "
                                                          "`view:*`.")


class FeatureResponse(BaseModel):
    entities: list[str]
    features: dict[str, list[Any]]
    """Feature -> one value per entity (null where unknown or past the view's TTL)."""
    views: dict[str, dict[str, Any]]
    """View -> version, as-of date of the values, whether they are past the TTL."""


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)  # JSON has no NaN or infinity
    return value


class PredictRequest(BaseModel):
    entities: list[str] = Field(min_length=1, max_length=10_000)


class Prediction(BaseModel):
    entity: str
    probability: float | None
    """Null for an entity the online store does not know."""
    risk: str | None
    reasons: list[str]
    """The features that pushed the score up most: `feature=value (+contribution)`."""


class PredictResponse(BaseModel):
    model: str
    predictions: list[Prediction]
    views: dict[str, dict[str, Any]]


def create_app(store: FeatureStore, models: ModelRegistry | None = None,
               model: str = "churn") -> FastAPI:
    """The app; `/predict` scores with `model`'s champion from `models`, loaded once per
    version."""
    app = FastAPI(title="tideline online features",
                  description="The latest feature values, as the models were trained on them, "
                              "and churn predictions from the champion model.")
    scorer = OnlineScorer(store, models, model) if models is not None else None

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/views")
    def views() -> dict[str, dict[str, Any]]:
        """The feature views served, with their versions and feature names."""
        return {v.name: {"version": v.version, "entity": v.entity.key, "owner": v.owner,
                         "features": v.feature_names} for v in store.views}

    @app.post("/features", response_model=FeatureResponse)
    def features(request: FeatureRequest) -> FeatureResponse:
        with _answerable():
            result = store.get_online_features(request.entities, request.features)
        frame = result.frame.astype(object).where(result.frame.notna(), None)
        return FeatureResponse(
            entities=request.entities,
            features={c: [_json_value(v) for v in frame[c]] for c in frame.columns[1:]},
            views=result.views)

    @app.post("/predict", response_model=PredictResponse)
    def predict(request: PredictRequest) -> PredictResponse:
        try:
            champion = scorer.champion() if scorer is not None else None
        except ModelError as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from exc
        if champion is None:
            raise HTTPException(status_code=404, detail=f"model {model!r} has no champion; "
                                                        "train one (`tideline train`)")
        with _answerable():
            result, scored = scorer.score(champion, request.entities)  # type: ignore[union-attr]
        return PredictResponse(model=champion.record.ref, views=result.views, predictions=[
            Prediction(entity=entity, probability=p if known else None,
                       risk=risk if known else None,
                       reasons=reasons.split("; ") if known and reasons else [])
            for entity, p, risk, reasons, known in zip(
                request.entities, scored["probability"], scored["risk"], scored["reasons"],
                result.found, strict=True)])

    return app


@contextmanager
def _answerable() -> Iterator[None]:
    """Online lookup errors as the HTTP errors a client can act on."""
    try:
        yield
    except UnknownFeature as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc
    except RetrievalError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from exc
    except OnlineStoreUnavailable as exc:
        raise HTTPException(status_code=503, detail=str(exc)) from exc
