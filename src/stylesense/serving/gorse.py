"""The Gorse-compatible API under ``/api``: Gorse's routes and JSON shapes over the library.

A shop's Gorse client (pygorse, gorse-go, gorse-js, ...) pointed at stylesense works
unchanged: the same paths and methods, the same PascalCase JSON (``FeedbackType``,
``RowAffected``, cursor pages ``{"Cursor": ..., "Items": [...]}``), the same ``X-API-Key``
header, here with stylesense's key roles (reads need a read key unless reads are public,
writes a write key; an empty key counts as none). Each route parses Gorse's request, calls
:class:`stylesense.gorse.Gorse` (which says how Gorse's items, users and feedback map onto the
catalogue, profiles and events) and writes Gorse's answer. Errors are problem responses like
every route's: a Gorse client only checks for 200, and shows the text.

Served: users, items and feedback (insert, overwrite, read, list with cursors, modify,
delete), an item's categories, recommendations (``/api/recommend/{user}[/{category}]``,
scores with ``X-API-Version: 2``, write-back, several ``category`` parameters: items in all of
them), the popular and latest items, item and user neighbours and session recommendations,
with Gorse 0.4's paths and 0.5's ``category`` parameters both (checked against
gorse-io/gorse ``server/rest.go``, v0.4.16 and master). Not served: item search (``q``),
Gorse 0.5's named recommenders (``/api/non-personalized/{name}``, ``/api/item-to-item/...``,
``/api/user-to-user/...``, ``/api/collaborative-filtering/...``) and the dashboard's routes.
Ids in paths hold no ``/``, as in Gorse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from pydantic import BaseModel, Field

from stylesense.events.store import MAX_COMMENT
from stylesense.events.users import User
from stylesense.gorse import Feedback, Gorse, GorseItem, parse_duration, parse_time, user_json
from stylesense.serving.app import READ, WRITE, KeyInfo, require, server_of
from stylesense.serving.native import IdStr

if TYPE_CHECKING:
    from stylesense.recommenders import Recommendation

router = APIRouter(prefix="/api", tags=["gorse"])

N = Annotated[int, Query(ge=1, le=1000, description="number of items returned")]
Offset = Annotated[int, Query(ge=0, le=10_000, description="items skipped before the first returned")]
PageN = Annotated[int, Query(ge=1, le=10_000, description="most entries on a page")]
Cursor = Annotated[str, Query(max_length=1024, description='from the previous page; "" for the first')]
# Documented as one value, read as every value given (``_queried_categories``): as an array,
# its schema would call ``category=false`` invalid data, which it is not.
Category = Annotated[str | None, Query(max_length=255, description="items in this category; "
                                       "repeat the parameter for items in every one of several")]
MOST_CATEGORIES = 32
ReadBy = Annotated[str | None, Query(alias="user-id", max_length=255, description="leave out the items this user has")]
MoreDetails = Annotated[bool, Query(alias="more-details", description="each item's Gorse fields beside its score")]


class FeedbackIn(BaseModel):
    """A Gorse feedback. ``Timestamp``: ISO 8601 or epoch seconds ("": now)."""

    FeedbackType: str = Field(min_length=1, max_length=255)
    UserId: IdStr
    ItemId: IdStr
    Timestamp: str | None = Field("", max_length=64)
    Value: float = Field(0.0, allow_inf_nan=False)
    Comment: str | None = Field(None, max_length=MAX_COMMENT)
    Labels: Any = None

    def feedback(self) -> Feedback:
        return Feedback(self.FeedbackType, self.UserId, self.ItemId, parse_time(self.Timestamp), self.Value,
                        self.Comment or "", self.Labels)


class SessionFeedbackIn(FeedbackIn):
    """A feedback of an anonymous session: its ``UserId`` may be empty, and is not used."""

    UserId: str = Field("", max_length=255)  # type: ignore[assignment]


class ItemIn(BaseModel):
    """A Gorse item."""

    ItemId: IdStr
    IsHidden: bool = False
    Categories: list[str] | None = None
    Timestamp: str | None = Field("", max_length=64)
    Labels: Any = None
    Comment: str | None = ""

    def item(self) -> GorseItem:
        return GorseItem(self.ItemId, self.IsHidden, self.Categories or [], parse_time(self.Timestamp),
                         self.Labels, self.Comment or "")


class ItemPatchIn(BaseModel):
    """Changes to a Gorse item; a field left out (or null) stays as it is."""

    IsHidden: bool | None = None
    Categories: list[str] | None = None
    Timestamp: str | None = Field(None, max_length=64)
    Labels: Any = None
    Comment: str | None = None


class UserIn(BaseModel):
    """A Gorse user (``Subscribe``: older Gorse versions' followed categories)."""

    UserId: IdStr
    Labels: Any = None
    Comment: str | None = ""
    Subscribe: list[str] | None = None

    def user(self) -> User:
        return User(self.UserId, self.Labels, self.Comment or "", self.Subscribe or [])


class UserPatchIn(BaseModel):
    """Changes to a Gorse user; a field left out (or null) stays as it is."""

    Labels: Any = None
    Comment: str | None = None
    Subscribe: list[str] | None = None


def gorse_of(request: Request) -> Gorse:
    """The app's :class:`Gorse`, made on first use (two made at once are alike)."""
    state = request.app.state
    if not hasattr(state, "gorse"):
        state.gorse = Gorse(server_of(request).ss)
    return state.gorse


def _batch(request: Request, entries: list[Any]) -> None:
    limit = server_of(request).settings.max_batch
    if len(entries) > limit:
        raise HTTPException(413, f"{len(entries)} entries in one request; the most is {limit}: send smaller batches")


def _done(rows: int) -> dict[str, int]:
    """Gorse's answer to a write."""
    return {"RowAffected": rows}


def _scores(recs: list[Recommendation]) -> list[dict[str, Any]]:
    """Gorse's scored list."""
    return [{"Id": r.item_id, "Score": round(r.score, 6)} for r in recs]


def _queried_categories(request: Request) -> list[str]:
    """The categories a route without one in its path is asked for, as Gorse reads them:
    every non-empty ``category`` query parameter (an item must be in all of them)."""
    found = [c for c in request.query_params.getlist("category") if c]
    if len(found) > MOST_CATEGORIES or any(len(c) > 255 for c in found):
        raise HTTPException(422, f"at most {MOST_CATEGORIES} category parameters of up to 255 characters each")
    return found


def _detailed(gorse: Gorse, recs: list[Recommendation], more_details: bool) -> list[dict[str, Any]]:
    """Gorse's scored list, or with ``more-details`` each item's Gorse fields and its score."""
    if not more_details:
        return _scores(recs)
    items = gorse.items_by_id([r.item_id for r in recs])  # one known from events alone: no fields, as Gorse's
    return [{**items.get(r.item_id, GorseItem(r.item_id)).to_dict(), "Score": round(r.score, 6)} for r in recs]


# -- users ---------------------------------------------------------------------------------
@router.post("/user", dependencies=[WRITE])
def insert_user(request: Request, body: UserIn) -> dict[str, int]:
    """Insert a user, or replace the one with that id."""
    return _done(gorse_of(request).users.upsert([body.user()]))


@router.post("/users", dependencies=[WRITE])
def insert_users(request: Request, body: list[UserIn]) -> dict[str, int]:
    """Insert users, all or none."""
    _batch(request, body)
    return _done(gorse_of(request).users.upsert([u.user() for u in body]))


@router.patch("/user/{user_id}", dependencies=[WRITE])
def modify_user(request: Request, user_id: str, body: UserPatchIn) -> dict[str, int]:
    """Change a user's labels, comment or subscriptions."""
    gorse_of(request).users.patch(user_id, labels=body.Labels, comment=body.Comment, subscribe=body.Subscribe)
    return _done(1)


@router.get("/user/{user_id}", dependencies=[READ])
def get_user(request: Request, user_id: str) -> dict[str, Any]:
    """A user; 404 when there is none."""
    return user_json(gorse_of(request).users.get(user_id))


@router.get("/users", dependencies=[READ])
def get_users(request: Request, n: PageN = 10, cursor: Cursor = "") -> dict[str, Any]:
    """Users in id order, a page at a time."""
    users, next_cursor = gorse_of(request).users_page(cursor, n)
    return {"Cursor": next_cursor, "Users": [user_json(u) for u in users]}


@router.delete("/user/{user_id}", dependencies=[WRITE])
def delete_user(request: Request, user_id: str) -> dict[str, int]:
    """Delete a user and the user's feedback."""
    return _done(gorse_of(request).delete_user(user_id))


# -- items ---------------------------------------------------------------------------------
@router.post("/item", dependencies=[WRITE])
def insert_item(request: Request, body: ItemIn) -> dict[str, int]:
    """Insert an item, or replace the Gorse fields of the one with that id."""
    return _done(gorse_of(request).insert_items([body.item()]))


@router.post("/items", dependencies=[WRITE])
def insert_items(request: Request, body: list[ItemIn]) -> dict[str, int]:
    """Insert items (all are checked before any is written)."""
    _batch(request, body)
    return _done(gorse_of(request).insert_items([i.item() for i in body]))


@router.patch("/item/{item_id}", dependencies=[WRITE])
def modify_item(request: Request, item_id: str, body: ItemPatchIn) -> dict[str, int]:
    """Change an item's hidden flag, categories, time, labels or comment."""
    gorse_of(request).patch_item(item_id, is_hidden=body.IsHidden, categories=body.Categories,
                                 timestamp=parse_time(body.Timestamp), labels=body.Labels, comment=body.Comment)
    return _done(1)


@router.get("/item/{item_id}", dependencies=[READ])
def get_item(request: Request, item_id: str) -> dict[str, Any]:
    """An item (hidden ones too); 404 when there is none."""
    return gorse_of(request).item(item_id).to_dict()


@router.get("/items", dependencies=[READ])
def get_items(request: Request, n: PageN = 10, cursor: Cursor = "",
              q: Annotated[str | None, Query(max_length=255, description="not supported")] = None) -> dict[str, Any]:
    """Items in catalogue order, a page at a time (hidden ones too)."""
    if q:
        raise HTTPException(422, "item search (q) is not supported here: POST /v1/search finds items by photo")
    items, next_cursor = gorse_of(request).items(cursor, n)
    return {"Cursor": next_cursor, "Items": [i.to_dict() for i in items]}


@router.delete("/item/{item_id}", dependencies=[WRITE])
def delete_item(request: Request, item_id: str) -> dict[str, int]:
    """Remove an item from the catalogue (its feedback stays, never recommended again)."""
    return _done(gorse_of(request).delete_item(item_id))


@router.put("/item/{item_id}/category/{category}", dependencies=[WRITE])
def insert_item_category(request: Request, item_id: str, category: str) -> dict[str, int]:
    """Put an item in a category."""
    gorse_of(request).set_category(item_id, category, True)
    return _done(1)


@router.delete("/item/{item_id}/category/{category}", dependencies=[WRITE])
def delete_item_category(request: Request, item_id: str, category: str) -> dict[str, int]:
    """Take an item out of a category."""
    gorse_of(request).set_category(item_id, category, False)
    return _done(1)


# -- feedback ------------------------------------------------------------------------------
@router.post("/feedback", dependencies=[WRITE])
def insert_feedback(request: Request, body: list[FeedbackIn]) -> dict[str, int]:
    """Insert feedback, all or none; the same feedback sent again is stored once."""
    _batch(request, body)
    return _done(gorse_of(request).insert_feedback([f.feedback() for f in body]))


@router.put("/feedback", dependencies=[WRITE])
def overwrite_feedback(request: Request, body: list[FeedbackIn]) -> dict[str, int]:
    """Insert feedback, all or none, each in place of the user's feedback of its type on its
    item (its value, time, comment and labels overwritten)."""
    _batch(request, body)
    return _done(gorse_of(request).insert_feedback([f.feedback() for f in body], overwrite=True))


@router.get("/feedback", dependencies=[READ])
def get_feedback(request: Request, n: PageN = 10, cursor: Cursor = "") -> dict[str, Any]:
    """All feedback, oldest first, a page at a time."""
    found, next_cursor = gorse_of(request).feedback(cursor=cursor, n=n)
    return {"Cursor": next_cursor, "Feedback": [f.to_dict() for f in found]}


@router.get("/feedback/{feedback_type}", dependencies=[READ])
def get_typed_feedback(request: Request, feedback_type: str, n: PageN = 10, cursor: Cursor = "") -> dict[str, Any]:
    """Feedback of one type, oldest first, a page at a time."""
    found, next_cursor = gorse_of(request).feedback(feedback_type=feedback_type, cursor=cursor, n=n)
    return {"Cursor": next_cursor, "Feedback": [f.to_dict() for f in found]}


@router.get("/feedback/{user_id}/{item_id}", dependencies=[READ])
def get_user_item_feedback(request: Request, user_id: str, item_id: str) -> list[dict[str, Any]]:
    """A user's feedback on an item."""
    return [f.to_dict() for f in gorse_of(request).feedback(user_id=user_id, item_id=item_id)[0]]


@router.delete("/feedback/{user_id}/{item_id}", dependencies=[WRITE])
def delete_user_item_feedback(request: Request, user_id: str, item_id: str) -> dict[str, int]:
    """Delete a user's feedback on an item, of every type."""
    return _done(gorse_of(request).delete_feedback(user_id, item_id))


@router.get("/feedback/{feedback_type}/{user_id}/{item_id}", dependencies=[READ])
def get_typed_user_item_feedback(request: Request, feedback_type: str, user_id: str, item_id: str) -> dict[str, Any]:
    """A user's latest feedback of one type on an item; ``{}`` when none, as Gorse answers."""
    found = gorse_of(request).feedback(feedback_type=feedback_type, user_id=user_id, item_id=item_id)[0]
    return found[-1].to_dict() if found else {}


@router.delete("/feedback/{feedback_type}/{user_id}/{item_id}", dependencies=[WRITE])
def delete_typed_user_item_feedback(request: Request, feedback_type: str, user_id: str, item_id: str) -> dict[str, int]:
    """Delete a user's feedback of one type on an item."""
    return _done(gorse_of(request).delete_feedback(user_id, item_id, feedback_type))


@router.get("/user/{user_id}/feedback", dependencies=[READ])
def get_user_feedback(request: Request, user_id: str) -> list[dict[str, Any]]:
    """A user's feedback, oldest first."""
    return [f.to_dict() for f in gorse_of(request).feedback(user_id=user_id)[0]]


@router.get("/user/{user_id}/feedback/{feedback_type}", dependencies=[READ])
def get_typed_user_feedback(request: Request, user_id: str, feedback_type: str) -> list[dict[str, Any]]:
    """A user's feedback of one type, oldest first."""
    return [f.to_dict() for f in gorse_of(request).feedback(feedback_type=feedback_type, user_id=user_id)[0]]


@router.get("/item/{item_id}/feedback", dependencies=[READ])
def get_item_feedback(request: Request, item_id: str) -> list[dict[str, Any]]:
    """An item's feedback, oldest first."""
    return [f.to_dict() for f in gorse_of(request).feedback(item_id=item_id)[0]]


@router.get("/item/{item_id}/feedback/{feedback_type}", dependencies=[READ])
def get_typed_item_feedback(request: Request, item_id: str, feedback_type: str) -> list[dict[str, Any]]:
    """An item's feedback of one type, oldest first."""
    return [f.to_dict() for f in gorse_of(request).feedback(feedback_type=feedback_type, item_id=item_id)[0]]


# -- recommendations -----------------------------------------------------------------------
_READ_KEY, _WRITE_KEY = require("read"), require("write")


async def _recommend_access(request: Request,
                            x_api_key: str | None = Header(None, description="API key")) -> KeyInfo | None:
    """A read key, or a write key when the request writes its items back as feedback."""
    return await (_WRITE_KEY if request.query_params.get("write-back-type") else _READ_KEY)(request, x_api_key)


RECOMMEND = Depends(_recommend_access)


@dataclass
class RecommendQuery:
    """The query of ``/api/recommend``."""

    n: N = 10
    offset: Offset = 0
    write_back_type: Annotated[str | None, Query(alias="write-back-type", max_length=255,
                                                 description="record the items returned as feedback of this type")] = None
    write_back_delay: Annotated[str | None, Query(alias="write-back-delay", max_length=64,
                                                  description="the write-back's time from now (a Go duration: 10m)")] = None


ApiVersion = Annotated[str | None, Header(description='"2": items with their scores')]


def _recommend(request: Request, user_id: str, categories: list[str], q: RecommendQuery,
               x_api_version: str | None) -> list[Any]:
    recs = gorse_of(request).recommend(user_id, q.n, q.offset, categories=categories, write_back_type=q.write_back_type,
                                       write_back_delay=parse_duration(q.write_back_delay))
    return _scores(recs) if (x_api_version or "").strip() == "2" else [r.item_id for r in recs]


# A category is the path's last part or, on the routes without one, the ``category`` query
# parameters (Gorse 0.5), as in Gorse; pygorse asks for /recommend/{user}/ when it names none.
@router.get("/recommend/{user_id}", dependencies=[RECOMMEND])
@router.get("/recommend/{user_id}/", dependencies=[RECOMMEND], include_in_schema=False)
def recommend(request: Request, user_id: str, q: Annotated[RecommendQuery, Depends()], category: Category = None,
              x_api_version: ApiVersion = None) -> list[Any]:
    """A user's recommendations: item ids, or ``{"Id", "Score"}`` with ``X-API-Version: 2``.
    While no model is trained, the most popular items."""
    return _recommend(request, user_id, _queried_categories(request), q, x_api_version)


@router.get("/recommend/{user_id}/{category}", dependencies=[RECOMMEND])
def recommend_in_category(request: Request, user_id: str, category: str, q: Annotated[RecommendQuery, Depends()],
                          x_api_version: ApiVersion = None) -> list[Any]:
    """A user's recommendations in one category."""
    return _recommend(request, user_id, [category], q, x_api_version)


@router.get("/popular", dependencies=[READ])
@router.get("/popular/", dependencies=[READ], include_in_schema=False)
def popular(request: Request, n: N = 10, offset: Offset = 0, category: Category = None, user_id: ReadBy = None,
            more_details: MoreDetails = False) -> list[dict[str, Any]]:
    """The items most shoppers interacted with (no model needed), with their scores."""
    gorse = gorse_of(request)
    recs = gorse.popular(n, offset, categories=_queried_categories(request), user_id=user_id)
    return _detailed(gorse, recs, more_details)


@router.get("/popular/{category}", dependencies=[READ])
def popular_in_category(request: Request, category: str, n: N = 10, offset: Offset = 0, user_id: ReadBy = None,
                        more_details: MoreDetails = False) -> list[dict[str, Any]]:
    """The most popular items in one category."""
    gorse = gorse_of(request)
    return _detailed(gorse, gorse.popular(n, offset, categories=[category], user_id=user_id), more_details)


@router.get("/latest", dependencies=[READ])
@router.get("/latest/", dependencies=[READ], include_in_schema=False)
def latest(request: Request, n: N = 10, offset: Offset = 0, category: Category = None, user_id: ReadBy = None,
           more_details: MoreDetails = False) -> list[dict[str, Any]]:
    """The items with the newest ``Timestamp``, each scored by it (seconds since 1970)."""
    gorse = gorse_of(request)
    recs = gorse.latest(n, offset, categories=_queried_categories(request), user_id=user_id)
    return _detailed(gorse, recs, more_details)


@router.get("/latest/{category}", dependencies=[READ])
def latest_in_category(request: Request, category: str, n: N = 10, offset: Offset = 0, user_id: ReadBy = None,
                       more_details: MoreDetails = False) -> list[dict[str, Any]]:
    """The latest items in one category."""
    gorse = gorse_of(request)
    return _detailed(gorse, gorse.latest(n, offset, categories=[category], user_id=user_id), more_details)


@router.post("/session/recommend", dependencies=[READ])
@router.post("/session/recommend/", dependencies=[READ], include_in_schema=False)
def session_recommend(request: Request, body: list[SessionFeedbackIn], n: N = 10, offset: Offset = 0,
                      category: Category = None) -> list[dict[str, Any]]:
    """Recommendations for an anonymous session's feedback (nothing is stored)."""
    return _session(request, body, n, offset, _queried_categories(request))


@router.post("/session/recommend/{category}", dependencies=[READ])
def session_recommend_in_category(request: Request, body: list[SessionFeedbackIn], category: str, n: N = 10,
                                  offset: Offset = 0) -> list[dict[str, Any]]:
    """Recommendations in one category for an anonymous session's feedback."""
    return _session(request, body, n, offset, [category])


def _session(request: Request, body: list[SessionFeedbackIn], n: int, offset: int,
             categories: list[str]) -> list[dict[str, Any]]:
    _batch(request, body)
    return _scores(gorse_of(request).session_recommend([f.feedback() for f in body], n, offset, categories=categories))


@router.get("/item/{item_id}/neighbors", dependencies=[READ])
@router.get("/item/{item_id}/neighbors/", dependencies=[READ], include_in_schema=False)
def neighbors(request: Request, item_id: str, n: N = 10, offset: Offset = 0,
              category: Category = None) -> list[dict[str, Any]]:
    """Items like an item, with their scores."""
    return _scores(gorse_of(request).neighbors(item_id, n, offset, categories=_queried_categories(request)))


@router.get("/item/{item_id}/neighbors/{category}", dependencies=[READ])
def neighbors_in_category(request: Request, item_id: str, category: str, n: N = 10,
                          offset: Offset = 0) -> list[dict[str, Any]]:
    """Items like an item in one category, with their scores."""
    return _scores(gorse_of(request).neighbors(item_id, n, offset, categories=[category]))


@router.get("/user/{user_id}/neighbors", dependencies=[READ])
@router.get("/user/{user_id}/neighbors/", dependencies=[READ], include_in_schema=False)
def user_neighbors(request: Request, user_id: str, n: N = 10, offset: Offset = 0) -> list[dict[str, Any]]:
    """Users whose feedback is most like a user's, with their scores."""
    return [u.to_dict() for u in gorse_of(request).user_neighbors(user_id, n, offset)]
