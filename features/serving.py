"""Online features over HTTP (`tideline serve`): a small FastAPI app in front of the feature
store's online lookup, with request validation and errors a client can act on (404 for an
unknown feature, 400 for a request the store cannot answer, 503 when the online store is down).
"""
from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from features.store import FeatureStore
from tideline.errors import OnlineStoreUnavailable, RetrievalError, UnknownFeature


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


def create_app(store: FeatureStore) -> FastAPI:
    app = FastAPI(title="tideline online features",
                  description="The latest feature values, as the models were trained on them.")

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
        try:
            result = store.get_online_features(request.entities, request.features)
        except UnknownFeature as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from exc
        except RetrievalError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from exc
        except OnlineStoreUnavailable as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from exc
        frame = result.frame.astype(object).where(result.frame.notna(), None)
        return FeatureResponse(
            entities=request.entities,
            features={c: [_json_value(v) for v in frame[c]] for c in frame.columns[1:]},
            views=result.views)

    return app
