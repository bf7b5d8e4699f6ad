"""``/v1`` routes of search and the catalogue: search by photo or item, items and photos."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/v1", tags=["catalogue"])
