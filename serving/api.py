"""Online features and churn predictions over HTTP (`tideline serve`): a small FastAPI app in
front of the feature store's online lookup and the champion model, with request validation and
errors a client can act on (404 for an unknown feature or no champion, 400 for a request the
store cannot answer, 409 when the champion needs feature versions the store does not serve,
503 when the online store is down). Hostile requests get a 4xx too: a body over
`MAX_BODY_BYTES` is refused (413) before it is read in full, a body that is not JSON (415) or not
well-formed, strict UTF-8 JSON (422, with the position) never reaches validation, and validation
names the field at fault (422). With API keys configured, a request without one gets a 401
before any of that (`serving.access`).

Answers hold feature values only: features resolved against the views' declared feature names
(never a source column, so a PII-tagged column can reach a client only through a feature over
it, which is the views' plan and build to allow or refuse), the entity ids the client sent, view
metadata, and the champion's scores with reasons naming its features."""
from __future__ import annotations

import math
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from tideline.core.errors import ModelError, OnlineStoreUnavailable, RetrievalError, UnknownFeature
from tideline.features.store import FeatureStore
from tideline.models.registry import ModelRegistry
from tideline.models.scoring import OnlineScorer
from tideline.serving.access import RequireKey, secured_openapi

MAX_ENTITIES = 10_000
MAX_FEATURES = 200
MAX_BODY_BYTES = 1 << 20
"""1 MiB: the most entities one request may name, with ids like `C0000001`, take about 120 kB."""

EntityId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
FeatureName = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class FeatureRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    entities: list[EntityId] = Field(min_length=1, max_length=MAX_ENTITIES,
                                     description="Entity ids (customer ids), answered in order.",
                                     examples=[["C0000001", "C0000002"]])
    features: list[FeatureName] = Field(min_length=1, max_length=MAX_FEATURES,
                                        description="`feature`, `view:feature` or `view:*`.",
                                        examples=[["spend_30d", "customer_profile:*"]])


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
    model_config = ConfigDict(extra="forbid")

    entities: list[EntityId] = Field(min_length=1, max_length=MAX_ENTITIES,
                                     examples=[["C0000001", "C0000002"]])


class Prediction(BaseModel):
    entity: str
    probability: float | None
    """Null for an entity the online store does not know."""
    risk: str | None
    reasons: list[str]
    """The features that pushed the score up most: `feature=value (+contribution)`."""
    model: str
    """The model version whose score this is: the champion, or in an experiment's split the
    challenger for the customers in its arm."""


class PredictResponse(BaseModel):
    model: str
    """The champion."""
    experiment: str | None = None
    """The experiment running, if any (`tideline models experiment`)."""
    predictions: list[Prediction]
    views: dict[str, dict[str, Any]]


class Problem(BaseModel):
    detail: str
    """What was wrong with the request, or what is missing on the server, and what to do."""


_ERRORS = {400: "The store cannot answer this request.",
           404: "An unknown feature or view, or no champion model.",
           409: "The champion needs feature versions the store does not serve.",
           413: "The body is larger than the server accepts (`MAX_BODY_BYTES` by default).",
           415: "The body is not sent as `application/json`.",
           503: "The online store is unreachable."}


def _problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The error answers of a route, for its OpenAPI description."""
    return {code: {"model": Problem, "description": _ERRORS[code]} for code in codes}


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` gets a 413 before the app sees any of
    it, by its Content-Length when it declares one, else by counting the bytes as they stream
    in; at most `max_bytes` plus one chunk are ever held."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and not declared.isdigit():
            await _problem(400, f"Content-Length {declared!r} is not a number of bytes"
                           )(scope, receive, send)
            return
        if declared is not None and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            more = message.get("more_body", False)
        await self.app(scope, _replay(bytes(body), receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _problem(413, f"the request body is over {self.max_bytes:,} bytes; ask for at "
                            f"most {MAX_ENTITIES:,} entities per request")(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """`receive` for an app downstream of a middleware that has read the whole body."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed


def _problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": detail})


class _StrictJSONRequest(Request):
    """A request whose body orjson parses: strict UTF-8 (no lone surrogates), no NaN, at most
    1024 levels deep. Its errors are `JSONDecodeError`s, which FastAPI answers with a 422 giving
    the position and the reason; `json.loads` would let some through (a lone surrogate, which
    then fails when the answer is encoded) or fail with errors FastAPI reports as a bare 400."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = orjson.loads(await self.body())
        return self._json


class _JSONRoute(APIRoute):
    """A route whose body, if it takes one, must be JSON, parsed strictly."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            request = _StrictJSONRequest(request.scope, request.receive)
            kind = request.headers.get("content-type", "")
            if (self.body_field is not None and await request.body()
                    and kind.partition(";")[0].strip().lower() != "application/json"):
                return _problem(415, "send the body as JSON, with Content-Type: "
                                     f"application/json (this one's: {kind or 'none'})")
            return await handler(request)

        return strict


async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422 naming each field at fault, without the input that it echoes by default:
    that could be a megabyte of ids, or JSON nested too deep to encode again."""
    return JSONResponse(status_code=422, content={"detail": jsonable_encoder(
        [{k: v for k, v in error.items() if k != "input"} for error in exc.errors()])})


def create_app(store: FeatureStore, models: ModelRegistry | None = None,
               model: str | None = None, max_body_bytes: int = MAX_BODY_BYTES,
               api_keys: Sequence[str] = ()) -> FastAPI:
    """The app; `/predict` scores with `model`'s champion from `models` (the project's model),
    loaded once per version; request bodies over `max_body_bytes` are refused. With `api_keys`
    (`serving.access.api_keys` reads them from the settings), every path but `/health` and
    the docs needs one of them, checked before the body is read; without, the app is open."""
    app = FastAPI(title="tideline online features",
                  description="The latest feature values, as the models were trained on them, "
                              "and churn predictions from the champion model.")
    app.router.route_class = _JSONRoute
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    if api_keys:
        # outermost, so a caller without a key is refused before anything else is done
        open_paths = {"/health", app.docs_url, app.openapi_url, app.redoc_url,
                      app.swagger_ui_oauth2_redirect_url} - {None}
        app.add_middleware(RequireKey, keys=api_keys, open_paths=open_paths)
        app.openapi = secured_openapi(app.openapi, open_paths)  # type: ignore[method-assign]
    app.exception_handler(RequestValidationError)(_invalid)
    scorer = OnlineScorer(store, models, model) if models is not None and model else None

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/views")
    def views() -> dict[str, dict[str, Any]]:
        """The feature views served, with their versions and feature names."""
        return {v.name: {"version": v.version, "entity": v.entity.key, "owner": v.owner,
                         "features": v.feature_names} for v in store.views}

    @app.post("/features", response_model=FeatureResponse,
              responses=_problems(400, 404, 413, 415, 503))
    def features(request: FeatureRequest) -> FeatureResponse:
        with _answerable():
            result = store.get_online_features(request.entities, request.features)
        frame = result.frame.astype(object).where(result.frame.notna(), None)
        return FeatureResponse(
            entities=request.entities,
            features={c: [_json_value(v) for v in frame[c]] for c in frame.columns[1:]},
            views=result.views)

    @app.post("/predict", response_model=PredictResponse,
              responses=_problems(400, 404, 409, 413, 415, 503))
    def predict(request: PredictRequest) -> PredictResponse:
        try:
            champion = scorer.champion() if scorer is not None else None
        except ModelError as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from exc
        if model is None:
            raise HTTPException(status_code=404, detail="no model to predict with: the project "
                                                        "declares none (`model:` in its file)")
        if champion is None:
            raise HTTPException(status_code=404, detail=f"model {model!r} has no champion; "
                                                        "train one (`tideline train`)")
        with _answerable():
            result, scored = scorer.score(champion, request.entities)  # type: ignore[union-attr]
            experiment = scorer.experiment()  # type: ignore[union-attr]
            if experiment is not None:
                try:
                    scored = scorer.challenge(  # type: ignore[union-attr]
                        experiment, result, scored, request.entities)
                except ModelError as exc:
                    raise HTTPException(status_code=409, detail=str(exc)) from exc
        models = scored["model"] if "model" in scored else [champion.record.ref] * len(scored)
        return PredictResponse(
            model=champion.record.ref, views=result.views,
            experiment=None if experiment is None else experiment.name, predictions=[
                Prediction(entity=entity, probability=p if known else None,
                           risk=risk if known else None,
                           reasons=reasons.split("; ") if known and reasons else [],
                           model=ref)
                for entity, p, risk, reasons, ref, known in zip(
                    request.entities, scored["probability"], scored["risk"],
                    scored["reasons"], models, result.found, strict=True)])

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
