"""``/v1`` routes of shopper behaviour: events, recommendations, sessions, models.

Writes (events) need a write key; training needs an admin key, since one request starts
minutes of CPU work that a storefront's write key has no business starting; the rest are reads.
``POST /v1/sessions/recommend`` takes a JSON body or, with a photo, a multipart upload, read
the way ``POST /v1/search`` reads its (the helpers of :mod:`.catalog_routes`).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import (BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, TypeAdapter,
                      ValidationError)

from stylesense.behaviour import MAX_SESSION_EVENTS
from stylesense.events import NewEvent
from stylesense.events.store import MAX_PAGE
from stylesense.serving.app import ADMIN, READ, WRITE, read, server_of
from stylesense.serving.native import PHOTO, FilterSpec, IdStr, media_type, query_filters, read_form, request_bodies, validated

router = APIRouter(prefix="/v1", tags=["recommendations"])

UserId = Annotated[str, Path(min_length=1, max_length=255, pattern=r"^\S(.*\S)?$",
                             description="user id (percent-encoded; it may contain /)")]
Where = Annotated[list[str] | None, Query(description="COL=VALUE; repeat for more (any of a column's values)")]
K = Annotated[int, Query(ge=1, le=1000, description="number of results")]
EventType = Annotated[str, Field(min_length=1, max_length=32, description="an event type of the home's weight table")]


class EventIn(BaseModel):
    """One live event. ``ts``: ISO 8601 text or epoch seconds (default: now); ``event_id``: the
    sender's own id, which makes sending the event again harmless."""

    model_config = ConfigDict(extra="forbid")
    user_id: IdStr
    item_id: IdStr
    type: EventType = "view"
    # Strict: JSON true is no time, "9.5" no price (lax parsing would store them as 1 s and 9.5).
    ts: StrictStr | StrictInt | StrictFloat | None = Field(
        None, description="ISO 8601 (e.g. 2024-03-01T12:00:00Z) or epoch seconds")
    price: float | None = Field(None, strict=True)
    value: float | None = Field(None, strict=True, description="e.g. a rating")
    session_id: IdStr | None = None
    event_id: IdStr | None = Field(None, description="idempotency key: an event with a stored one's id is not stored again")
    impression_id: IdStr | None = Field(None, description="the impression_id of the recommendations this event answers "
                                        "(an experiment credits the event to it)")

    def new_event(self) -> NewEvent:
        return NewEvent(self.user_id, self.item_id, self.type, self.ts, self.price, self.value, self.session_id,
                        self.event_id, impression_id=self.impression_id)


class SessionEvent(BaseModel):
    """An anonymous shopper's event: nothing but the item and what they did."""

    model_config = ConfigDict(extra="forbid")
    item_id: IdStr
    type: EventType = "view"


class SessionQuery(FilterSpec):
    """``POST /v1/sessions/recommend`` as JSON: a session's recent events, oldest first."""

    model_config = ConfigDict(extra="forbid")
    events: list[SessionEvent] = Field(default_factory=list, max_length=MAX_SESSION_EVENTS)
    k: int = Field(10, ge=1, le=1000)
    model: str | None = Field(None, max_length=64, description="default: the served model")
    exclude_seen: bool | None = Field(None, description="hide the session's own items (default: the home's setting)")
    explain: bool = True
    diversity: float = Field(0.0, ge=0, le=1, description="0 (off) to 1: re-rank so the products look less alike")


class SessionForm(BaseModel):
    """``POST /v1/sessions/recommend`` as multipart: the fields beside the ``photo`` file."""

    model_config = ConfigDict(extra="forbid")
    events: str = Field("[]", description='the session\'s events as a JSON array: [{"item_id": ..., "type": ...}]')
    k: int = Field(10, ge=1, le=1000)
    model: str | None = Field(None, max_length=64)
    exclude_seen: bool | None = None
    explain: bool = True
    diversity: float = Field(0.0, ge=0, le=1, description="0 (off) to 1: re-rank so the products look less alike")
    where: list[str] = Field(default_factory=list, description="COL=VALUE; repeat the field for more")
    min_price: float | None = None
    max_price: float | None = None
    in_stock: bool = False


class TrainBody(BaseModel):
    """``POST /v1/models/{name}/train``: parameters overriding the model's tuned ones."""

    model_config = ConfigDict(extra="forbid")
    params: dict[str, Any] = Field(default_factory=dict, description='e.g. {"factors": 64}')


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """A model's JSON schema with its ``$defs`` written in place: an OpenAPI document resolves
    ``#/$defs/...`` against its own root, where they are not."""
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(defs[node["$ref"].rsplit("/", 1)[1]])
            return {k: resolve(v) for k, v in node.items()}
        return [resolve(v) for v in node] if isinstance(node, list) else node

    return resolve(schema)


def _items(recs: list, explain: bool) -> list[dict[str, Any]]:
    return [r.to_dict() if explain else {**r.to_dict(), "reason": None} for r in recs]


# -- events --------------------------------------------------------------------------------
_BATCH = TypeAdapter(list[EventIn])


@router.post("/events", dependencies=[WRITE], tags=["events"], openapi_extra={"requestBody": {
    "required": True, "content": {"application/json": {"schema": {
        "anyOf": [_inline(EventIn.model_json_schema()), _inline(_BATCH.json_schema())],
        "description": "one event, or a batch (a list)"}}}}})
async def post_events(request: Request) -> dict[str, int]:
    """Record one event or a batch, all or nothing, answered once they are committed: how many
    were new and how many were already stored (a retry: same ``event_id``, or identical)."""
    server = server_of(request)
    try:
        data = json.loads(await request.body())
    except (ValueError, RecursionError):  # JSONDecodeError, bad UTF-8, absurd nesting
        raise RequestValidationError([{"loc": ("body",), "msg": "not valid JSON"}]) from None
    limit = server.settings.max_batch
    if isinstance(data, list) and len(data) > limit:
        raise RequestValidationError([{"loc": ("body",), "msg": f"at most {limit} events per request, got {len(data)}"}])
    try:  # one event is a batch of one; a batch's errors name the event by its index
        batch = [EventIn.model_validate(data)] if isinstance(data, dict) else _BATCH.validate_python(data)
    except ValidationError as e:
        raise RequestValidationError([{**err, "loc": ("body", *err["loc"])} for err in e.errors()]) from None
    counts = await run_in_threadpool(server.ss.behaviour.add_events, [e.new_event() for e in batch])
    return counts.to_dict()


@router.get("/users/{user_id:path}/events", dependencies=[READ], tags=["events"])
async def user_events(
    request: Request,
    user_id: UserId,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    before: Annotated[str | None, Query(max_length=64, description="a time (ISO 8601 or epoch seconds), "
                                        "or the next_before of the previous page")] = None,
) -> dict[str, Any]:
    """A shopper's events, newest first; ``next_before`` is null on the last page."""
    events = server_of(request).ss.behaviour.events
    return (await read(request, events.latest, user_id, limit=limit, before=before)).to_dict()


# -- recommendations -------------------------------------------------------------------------
@router.get("/users/{user_id:path}/recommendations", dependencies=[READ])
async def recommendations(
    request: Request,
    user_id: UserId,
    k: K = 10,
    model: Annotated[str | None, Query(max_length=64)] = None,
    exclude_seen: bool | None = None,
    where: Where = None,
    min_price: float | None = None,
    max_price: float | None = None,
    in_stock: bool = False,
    explain: bool = True,
    diversity: Annotated[float, Query(ge=0, le=1, description="0 (off) to 1: re-rank the model's best candidates "
                                      "so the products look less alike (MMR on their photos)")] = 0.0,
) -> dict[str, Any]:
    """Top-k for a shopper, with reasons (``explain``); an unknown shopper gets the cold-start list.
    Products the shopper disliked never appear; their look-alikes come last. While an experiment
    runs (and no ``model`` is named), the shopper's arm answers: ``experiment``, ``arm`` and
    ``impression_id`` say so (null otherwise); send the impression id back with the events."""
    ss = server_of(request).ss
    filters = query_filters(ss, where, min_price, max_price, in_stock)
    served = await read(request, ss.experiments.recommend_for, user_id, k, model=model, exclude_seen=exclude_seen,
                        filters=filters, diversity=diversity)
    return served.to_dict(explain)


@router.post("/sessions/recommend", dependencies=[READ],
             responses={415: {"description": "not JSON, multipart or an image"}},
             openapi_extra=request_bodies(_inline(SessionQuery.model_json_schema()), {
                 **SessionForm.model_json_schema(),
                 "properties": {"photo": PHOTO, **SessionForm.model_json_schema()["properties"]}}, required=True))
async def session_recommend(request: Request) -> dict[str, Any]:
    """Recommendations for an anonymous shopper, nothing stored: their recent events (JSON
    ``events``, oldest first) through a trained model, and/or a photo (multipart ``photo``
    file, the other fields beside it, ``events`` as JSON text): products that look like it,
    no model needed. With both, each item's model score and photo similarity are standardised
    and added."""
    ss = server_of(request).ss
    photo: bytes | None = None
    if media_type(request) == "application/json":
        query = validated(SessionQuery, await request.body())
        filters = query.filters(ss)
    else:
        given, photo = await read_form(request, SessionForm, photo_required=False)
        try:
            events = json.loads(given.events)
        except (ValueError, RecursionError):
            raise RequestValidationError([{"loc": ("body", "events"), "msg": "not valid JSON"}]) from None
        query = validated(SessionQuery, {"events": events, "k": given.k, "model": given.model,
                                          "exclude_seen": given.exclude_seen, "explain": given.explain,
                                          "diversity": given.diversity})
        filters = query_filters(ss, given.where, given.min_price, given.max_price, given.in_stock)
    recs = await run_in_threadpool(
        ss.behaviour.recommend_session, [(e.item_id, e.type) for e in query.events], query.k, photo=photo,
        model=query.model, exclude_seen=query.exclude_seen, filters=filters, diversity=query.diversity)
    model = (query.model or ss.config.recommender) if query.events else None
    return {"model": model, "items": _items(recs, query.explain)}


@router.get("/popular", dependencies=[READ])
async def popular(request: Request, k: K = 10, where: Where = None, min_price: float | None = None,
            max_price: float | None = None, in_stock: bool = False) -> dict[str, Any]:
    """The items most shoppers interacted with, from the event log (no trained model needed)."""
    ss = server_of(request).ss
    recs = await read(request, ss.behaviour.popular, k,
                      filters=query_filters(ss, where, min_price, max_price, in_stock))
    return {"items": _items(recs, True)}


@router.get("/trending", dependencies=[READ])
async def trending(request: Request, k: K = 10, where: Where = None, min_price: float | None = None,
             max_price: float | None = None, in_stock: bool = False) -> dict[str, Any]:
    """The items hot now (events decayed with a half-life of a week), from the event log."""
    ss = server_of(request).ss
    recs = await read(request, ss.behaviour.trending, k,
                      filters=query_filters(ss, where, min_price, max_price, in_stock))
    return {"items": _items(recs, True)}


# -- models and jobs --------------------------------------------------------------------------
@router.post("/models/{name}/train", dependencies=[ADMIN], status_code=202, tags=["models"],
             responses={202: {"description": "the job, queued; GET its Location for its state"}})
def train(
    request: Request,
    name: Annotated[str, Path(min_length=1, max_length=64)],
    body: TrainBody | None = None,
) -> JSONResponse:
    """Train a model on every event in the background (an admin key: minutes of CPU). The
    parameters are checked before the job starts; requests are answered by the served model
    until the new one replaces it whole, which also becomes the default."""
    server = server_of(request)
    job = server.ss.behaviour.start_training(server.jobs, name, body.params if body else None)
    return JSONResponse(job.to_dict(), status_code=202, headers={"Location": f"/v1/jobs/{job.job_id}"})


@router.get("/jobs/{job_id}", dependencies=[READ], tags=["models"])
async def job_state(request: Request, job_id: Annotated[str, Path(max_length=64)]) -> dict[str, Any]:
    """A background job's state: queued, running, done (with its result) or failed (with why)."""
    return (await run_in_threadpool(server_of(request).jobs.get, job_id)).to_dict()
