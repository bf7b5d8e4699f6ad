"""The native API under ``/v1``, and what its route modules share.

Routes live by concern, each module with its router under ``/v1``: :mod:`.catalog_routes`
(search and the catalogue) and :mod:`.behaviour_routes` (events, recommendations, models). Each route parses its request,
calls the library, and answers with the library's own result shapes (``to_dict``); library
errors become problem responses in :mod:`.app`, so no route catches them. Routes are plain
``def`` functions: FastAPI runs them on its thread pool, and the library is safe to share
between those threads.
"""

from __future__ import annotations

from typing import Any, Annotated

from pydantic import BaseModel, Field

from stylesense.catalog.filters import Filters
from stylesense.engine import Hit, StyleSense

IdStr = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^\S(.*\S)?$")]
"""An id as the library stores it: 1-255 characters, no surrounding whitespace."""


class FilterSpec(BaseModel):
    """Catalogue filters, as the CLI's ``--where`` / ``--min-price`` / ``--max-price``."""

    where: dict[str, str | list[str]] = Field(default_factory=dict,
                                              description="column -> value, or any of several values")
    min_price: float | None = None
    max_price: float | None = None

    def filters(self, ss: StyleSense) -> Filters:
        pairs = [f"{col}={v}" for col, values in self.where.items()
                 for v in ([values] if isinstance(values, str) else values)]
        return Filters.parse(pairs, self.min_price, self.max_price, ss.config.price_column)


def hit_json(hit: Hit) -> dict[str, Any]:
    """A search hit with the link its photo is served from (never a server path)."""
    return {**hit.to_dict(), "image_url": f"/v1/items/{hit.item_id}/image"}


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
