"""``/v1`` routes of shopper behaviour: events, recommendations, sessions, models."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from stylesense.catalog.filters import Filters
from stylesense.serving.app import READ, server_of

router = APIRouter(prefix="/v1", tags=["recommendations"])


@router.get("/users/{user_id}/recommendations", dependencies=[READ])
def recommendations(
    request: Request,
    user_id: str,
    k: Annotated[int, Query(ge=1, le=1000)] = 10,
    model: str | None = None,
    exclude_seen: bool | None = None,
    where: Annotated[list[str] | None, Query(description="COL=VALUE; repeat for more")] = None,
    min_price: float | None = None,
    max_price: float | None = None,
    explain: bool = True,
) -> dict[str, Any]:
    """Top-k for a shopper, with reasons (``explain``); an unknown shopper gets the cold-start list."""
    ss = server_of(request).ss
    filters = Filters.parse(where or [], min_price, max_price, ss.config.price_column)
    recs = ss.behaviour.recommend(user_id, k, model=model, exclude_seen=exclude_seen, filters=filters)
    items = [r.to_dict() if explain else {**r.to_dict(), "reason": None} for r in recs]
    return {"user_id": user_id, "model": model or ss.config.recommender, "items": items}
