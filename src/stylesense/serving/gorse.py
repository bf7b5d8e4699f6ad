"""The Gorse-compatible API under ``/api`` (Gorse's routes and JSON shapes over the library)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api", tags=["gorse"])
