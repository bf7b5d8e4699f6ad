"""The native API under ``/v1``, and what its route modules share.

Routes live by concern, each module with its router under ``/v1``: :mod:`.catalog_routes`
(search and the catalogue) and :mod:`.behaviour_routes` (events, recommendations, models). Each route parses its request,
calls the library, and answers with the library's own result shapes (``to_dict``); library
errors become problem responses in :mod:`.app`, so no route catches them.

The library runs on FastAPI's thread pool, and is safe to share between those threads; a read
on a SQLite home runs on the event loop instead (``app.read`` says why). A route
that answers with a dict is ``async def`` and awaits its library call there
(``run_in_threadpool``, or ``read``): of a plain ``def`` route FastAPI runs the function on the pool and then
the check of its return value against the annotation on the pool again, two hops to a thread
and back (~60 us of CPU each, more when 16 connections' threads contend for the GIL) where one
does. A route that answers with a ``Response`` (FastAPI checks nothing of it) stays a plain
``def``: one hop.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar
from urllib.parse import quote

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError
from starlette.datastructures import UploadFile

from stylesense.catalog.filters import Filters
from stylesense.engine import Hit, StyleSense

IdStr = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^\S(.*\S)?$")]
"""An id as the library stores it: 1-255 characters, no surrounding whitespace."""
Model = TypeVar("Model", bound=BaseModel)


class FilterSpec(BaseModel):
    """Catalogue filters, as the CLI's ``--where`` / ``--min-price`` / ``--max-price`` / ``--in-stock``."""

    where: dict[str, str | list[str]] = Field(default_factory=dict,
                                              description="column -> value, or any of several values")
    min_price: float | None = None
    max_price: float | None = None
    in_stock: bool = Field(False, description="only items the stock column says are in stock")

    def filters(self, ss: StyleSense) -> Filters:
        pairs = [f"{col}={v}" for col, values in self.where.items()
                 for v in ([values] if isinstance(values, str) else values)]
        return Filters.parse(pairs, self.min_price, self.max_price, ss.config.price_column,
                             in_stock=self.in_stock, stock_column=ss.config.stock_column)


def hit_json(hit: Hit) -> dict[str, Any]:
    """A search hit with the link its photo is served from (never a server path)."""
    return {**hit.to_dict(), "image_url": image_url(hit.item_id)}


def image_url(item_id: str) -> str:
    """Where an item's photo is served (the id percent-encoded: it may hold any character)."""
    return f"/v1/items/{quote(item_id, safe='')}/image"


def readiness(ss: StyleSense) -> dict[str, str]:
    """Per check, "ok" or what is missing: database, index, default model."""
    checks: dict[str, str] = {}
    try:
        ss.store.count()
        checks["database"] = "ok"
    except Exception as e:  # noqa: BLE001 - readiness reports, it does not raise
        checks["database"] = f"unreachable: {e}"
    for name, probe in (("index", ss.index), ("model", ss.behaviour.model)):
        try:
            probe()
            checks[name] = "ok"
        except Exception as e:  # noqa: BLE001
            checks[name] = str(e)
    return checks


PHOTO = {"type": "string", "format": "binary", "description": "JPEG, PNG, WebP, GIF, BMP, TIFF or AVIF; "
         "the format is read from the bytes"}


def request_bodies(json_schema: dict[str, Any], form_schema: dict[str, Any], required: bool) -> dict[str, Any]:
    """``openapi_extra`` describing a route's two request bodies."""
    return {"requestBody": {"required": required, "content": {
        "application/json": {"schema": json_schema}, "multipart/form-data": {"schema": form_schema}}}}


def validated(model: type[Model], data: Any) -> Model:
    """``data`` as ``model``; invalid input is the app's 422, as for FastAPI's own bodies."""
    try:
        return model.model_validate_json(data) if isinstance(data, bytes) else model.model_validate(data)
    except ValidationError as e:
        raise RequestValidationError([{**err, "loc": ("body", *err["loc"])} for err in e.errors()]) from None


def media_type(request: Request) -> str:
    """The body's media type: JSON or multipart, else 415."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("application/json", "multipart/form-data"):
        raise HTTPException(415, f"send application/json or multipart/form-data, not {kind or 'no Content-Type'}")
    return kind


async def read_form(request: Request, model: type[Model], *, photo_required: bool) -> tuple[Model, bytes | None]:
    """A multipart body: its fields as ``model`` (``where`` repeatable, unknown fields refused)
    and the bytes of its ``photo`` file (None when absent and not required)."""
    async with request.form(max_files=2, max_fields=64) as form:  # spooled files closed at the end
        upload = form.get("photo")
        if upload is None and photo_required or upload is not None and not isinstance(upload, UploadFile):
            raise RequestValidationError([{"loc": ("body", "photo"), "msg": "a photo file is needed"}])
        unknown = sorted(set(form) - set(model.model_fields) - {"photo"})
        if unknown:
            raise RequestValidationError([{"loc": ("body", unknown[0]), "msg": "unknown field"}])
        fields = {name: form.getlist(name) if name == "where" else form.get(name)
                  for name in model.model_fields if name in form}
        fields = {k: await v.read() if isinstance(v, UploadFile) else v for k, v in fields.items()}
        return validated(model, fields), None if upload is None else await upload.read()


def query_filters(ss: StyleSense, where: list[str] | None, min_price: float | None, max_price: float | None,
             in_stock: bool) -> Filters:
    return Filters.parse(where or [], min_price, max_price, ss.config.price_column,
                         in_stock=in_stock, stock_column=ss.config.stock_column)
