"""``/v1`` routes of search and the catalogue: search by photo or item, items and photos.

Two routes take either a JSON body or a multipart upload (``POST /v1/search``, ``PUT
/v1/items/{id}``), so they read the request themselves and describe both bodies in the OpenAPI
schema (``openapi_extra``). An item id may hold ``/`` (any character but a control
character), so the id routes match the rest of the path (``{item_id:path}``), the longer
routes (``/similar``, ``/image``) first. Decoding, embedding and search run on the thread pool
(see :mod:`.native` for which routes are ``async def``).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from stylesense.catalog.store import Item
from stylesense.engine import MAX_PAGE, THUMBNAIL_SIZES
from stylesense.errors import NotFound
from stylesense.serving.app import READ, WRITE, read, server_of
from stylesense.serving.native import (PHOTO, FilterSpec, IdStr, hit_json, image_url, media_type, query_filters,
                                       read_form, request_bodies, validated)
from stylesense.vision.adapter import steering

router = APIRouter(prefix="/v1", tags=["catalogue"])

Where = Annotated[list[str] | None, Query(description="COL=VALUE; repeat for more (any of a column's values)")]
K = Annotated[int, Query(ge=1, le=1000, description="number of results")]
_SAME = "steer: the part to match, shape (or type) or colour (a home made with an adapter from `adapt --colour`)"
_VARY = "steer: the part pushed apart (same=shape, vary=colour: this cut in other colours)"
_STEER = "steer: part weights, e.g. shape=1,colour=-0.5 (override same/vary)"
Same = Annotated[str | None, Query(max_length=16, description=_SAME)]
Vary = Annotated[str | None, Query(max_length=16, description=_VARY)]
SteerQ = Annotated[str | None, Query(max_length=200, description=_STEER)]


class SteerSpec(BaseModel):
    """Steered search fields, as the CLI's ``--same`` / ``--vary`` / ``--steer``."""

    same: str | None = Field(None, max_length=16, description=_SAME)
    vary: str | None = Field(None, max_length=16, description=_VARY)
    steer: dict[str, float] | str | None = Field(None, description=_STEER + "; an object part -> weight in JSON")

    def weights(self) -> dict[str, float]:
        return steering(self.same, self.vary, self.steer)


class SearchByItem(FilterSpec, SteerSpec):
    """``POST /v1/search`` as JSON: products like a catalogue item."""

    model_config = ConfigDict(extra="forbid")
    item_id: IdStr
    k: int = Field(10, ge=1, le=1000)


class SearchForm(SteerSpec):
    """``POST /v1/search`` as multipart: the fields beside the ``photo`` file."""

    model_config = ConfigDict(extra="forbid")
    k: int = Field(10, ge=1, le=1000)
    where: list[str] = Field(default_factory=list, description="COL=VALUE; repeat the field for more")
    min_price: float | None = None
    max_price: float | None = None
    in_stock: bool = Field(False, description="only items the stock column says are in stock")


class ItemForm(BaseModel):
    """``PUT /v1/items/{id}`` as multipart: the metadata beside the optional ``photo`` file."""

    model_config = ConfigDict(extra="forbid")
    metadata: str | bytes = Field("{}", description="a JSON object: column -> value")


class ItemPatch(BaseModel):
    """``PATCH /v1/items/{id}``: metadata changes (merged; null removes a column) and/or hidden."""

    model_config = ConfigDict(extra="forbid")
    attrs: dict[str, Any] = Field(default_factory=dict, description="column -> new value; null removes the column")
    hidden: bool | None = Field(None, description="true: out of search and recommendations; false: back in")


_VALUE = {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}, {"type": "null"},
                    {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]}}]}
METADATA = {"type": "object", "additionalProperties": _VALUE,
            "description": "column -> value; the price column is a number, the stock column sets in-stock"}


def _form_schema() -> dict[str, Any]:
    schema = SearchForm.model_json_schema()
    return {**schema, "properties": {"photo": PHOTO, **schema["properties"]}, "required": ["photo"]}


def item_json(item: Item) -> dict[str, Any]:
    """An item with the link its photo is served from (None without a photo)."""
    return {**item.to_dict(), "image_url": image_url(item.item_id) if item.image_path else None}


@router.post("/search", dependencies=[READ], responses={415: {"description": "not JSON, multipart or an image"}},
             openapi_extra=request_bodies(SearchByItem.model_json_schema(), _form_schema(), required=True))
async def search(request: Request) -> dict[str, Any]:
    """Products that look most like a photo (multipart: a ``photo`` file, and ``k``, ``where``
    (repeatable COL=VALUE), ``min_price``, ``max_price``, ``in_stock``, ``same``, ``vary``,
    ``steer`` fields) or like a catalogue item (JSON: ``item_id``, ``k`` and the same filters,
    ``where`` and ``steer`` as objects), best first."""
    ss = server_of(request).ss
    if media_type(request) == "application/json":
        query = validated(SearchByItem, await request.body())
        hits = await read(request, ss.search, item=query.item_id, k=query.k, filters=query.filters(ss),
                          steer=query.weights())
        return {"items": [hit_json(h) for h in hits]}
    params, photo = await read_form(request, SearchForm, photo_required=True)
    filters = query_filters(ss, params.where, params.min_price, params.max_price, params.in_stock)
    hits = await run_in_threadpool(ss.search, photo, k=params.k, filters=filters, steer=params.weights())
    return {"items": [hit_json(h) for h in hits]}


@router.get("/items", dependencies=[READ])
async def list_items(
    request: Request,
    cursor: Annotated[str | None, Query(max_length=64, description="next_cursor of the previous page")] = None,
    n: Annotated[int, Query(ge=1, le=MAX_PAGE, description="items per page")] = 100,
    where: Where = None,
    min_price: float | None = None,
    max_price: float | None = None,
    in_stock: bool = False,
) -> dict[str, Any]:
    """The catalogue page by page (hidden items included), in a stable order; ``next_cursor``
    is null on the last page."""
    ss = server_of(request).ss
    page = await read(request, ss.item_page, cursor, n, query_filters(ss, where, min_price, max_price, in_stock))
    return {"items": [item_json(it) for it in page.items], "next_cursor": page.next_cursor}


@router.get("/items/{item_id:path}/similar", dependencies=[READ])
async def similar(
    request: Request,
    item_id: IdStr,
    k: K = 10,
    where: Where = None,
    min_price: float | None = None,
    max_price: float | None = None,
    in_stock: bool = False,
    same: Same = None,
    vary: Vary = None,
    steer: SteerQ = None,
) -> dict[str, Any]:
    """Products that look most like a catalogue item (never the item itself), best first;
    ``same`` / ``vary`` / ``steer`` steer by the adapter's parts ("same cut, other colours")."""
    ss = server_of(request).ss
    hits = await read(request, ss.search, item=item_id, k=k, steer=steering(same, vary, steer),
                      filters=query_filters(ss, where, min_price, max_price, in_stock))
    return {"items": [hit_json(h) for h in hits]}


@router.get("/items/{item_id:path}/image", dependencies=[READ], response_class=Response,
            responses={200: {"content": {"image/*": {}}, "description": "the photo, or a JPEG thumbnail"},
                       304: {"description": "unchanged since the ETag sent in If-None-Match"}})
def item_image(
    request: Request,
    item_id: IdStr,
    size: Annotated[int | None, Query(ge=THUMBNAIL_SIZES[0], le=THUMBNAIL_SIZES[1],
                                      description="a JPEG thumbnail whose longest side is this many px")] = None,
) -> Response:
    """An item's photo as stored (its type read from the bytes), or a thumbnail of it."""
    photo = server_of(request).ss.photo(item_id, size)
    headers = {"ETag": f'"{photo.etag}"', "X-Content-Type-Options": "nosniff"}
    if request.headers.get("if-none-match") == headers["ETag"]:
        return Response(status_code=304, headers=headers)
    return Response(photo.data, media_type=photo.media_type, headers=headers)


@router.get("/items/{item_id:path}", dependencies=[READ])
async def get_item(request: Request, item_id: IdStr) -> dict[str, Any]:
    """An item's metadata and state (hidden ones too)."""
    return item_json(await read(request, server_of(request).ss.item, item_id))


@router.put("/items/{item_id:path}", dependencies=[WRITE],
            responses={201: {"description": "created"}, 415: {"description": "not JSON, multipart or an image"}},
            openapi_extra=request_bodies(METADATA, {"type": "object", "properties": {
                "metadata": {"type": "string", "description": "a JSON object: column -> value"}, "photo": PHOTO}},
                required=True))
async def put_item(request: Request, item_id: IdStr) -> JSONResponse:
    """Create or replace an item: its metadata (a JSON object as the body, or the ``metadata``
    field of a multipart upload) and, in the multipart ``photo`` field, optionally its photo,
    which is embedded and indexed before the answer (201 new, 200 replaced). Searchable in the
    next request; without a photo an existing item keeps its own."""
    ss = server_of(request).ss
    photo: bytes | None = None
    if media_type(request) == "application/json":
        raw: bytes | str = await request.body()
    else:
        fields, photo = await read_form(request, ItemForm, photo_required=False)
        raw = fields.metadata
    try:
        attrs = json.loads(raw)
    except (ValueError, RecursionError):  # JSONDecodeError, bad UTF-8, absurd nesting
        raise RequestValidationError([{"loc": ("body", "metadata"), "msg": "not valid JSON"}]) from None
    written = await run_in_threadpool(ss.put_item, item_id, attrs, photo)
    body = {**written.to_dict(), "image_url": image_url(item_id) if written.item.image_path else None}
    return JSONResponse(body, status_code=201 if written.created else 200)


@router.patch("/items/{item_id:path}", dependencies=[WRITE])
async def patch_item(request: Request, item_id: IdStr, change: ItemPatch) -> dict[str, Any]:
    """Change some metadata columns (e.g. the stock column) and/or hide or show the item."""
    return item_json(await run_in_threadpool(server_of(request).ss.patch_item, item_id, change.attrs,
                                             hidden=change.hidden))


@router.delete("/items/{item_id:path}", dependencies=[WRITE], status_code=204, response_class=Response)
def delete_item(request: Request, item_id: IdStr) -> Response:
    """Remove an item from the catalogue and the index; events naming it stay."""
    if not server_of(request).ss.remove_items([item_id]):
        raise NotFound(f"no item {item_id!r} in the catalogue")
    return Response(status_code=204)
