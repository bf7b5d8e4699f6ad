"""What a catalogue's columns are for, found from the columns themselves.

Catalogue feeds name the same things differently (Kaggle's ``articleType`` and
``baseColour``, H&M's ``product_type_name`` and ``colour_group_name``, a shop's own
``category``), so the surfaces that show a product card or offer filters ask here instead of
hard-coding one feed's names. A column is a *facet* when it holds few distinct text values:
something a shopper filters by.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# Known names for each role, best first (compared case-insensitively, ignoring "_" and " ").
ROLE_NAMES: dict[str, tuple[str, ...]] = {
    "name": ("productDisplayName", "prod_name", "name", "title", "product_name", "display_name"),
    "category": ("articleType", "product_type_name", "category", "product_type", "subCategory",
                 "product_group_name", "type"),
    "colour": ("baseColour", "colour_group_name", "colour", "color", "base_colour", "perceived_colour_master_name"),
    "gender": ("gender", "index_group_name", "sex", "department"),
}
MAX_FACET_VALUES = 60  # more distinct values than this: a free-text column, not a filter
MAX_ROLE_VALUES = 1000  # ... unless it is the category, colour or gender (a searchable list)
MAX_FACETS = 8  # facets offered beyond the named roles


def _key(name: str) -> str:
    return name.replace("_", "").replace(" ", "").casefold()


def column_roles(columns: Iterable[str]) -> dict[str, str]:
    """``{role: column}`` for the roles in :data:`ROLE_NAMES` the columns fill (name, category,
    colour, gender); a role no column fills is absent, and no column fills two roles."""
    by_key = {_key(c): c for c in columns}
    roles: dict[str, str] = {}
    for role, names in ROLE_NAMES.items():
        for name in names:
            column = by_key.get(_key(name))
            if column is not None and column not in roles.values():
                roles[role] = column
                break
    return roles


@dataclass(frozen=True)
class Facets:
    """The filters a catalogue offers: text columns with their values (most common first), the
    named roles, and the price range (None where no item has a price)."""

    values: dict[str, list[str]]
    roles: dict[str, str]
    price_range: tuple[float, float] | None

    def to_dict(self) -> dict[str, Any]:
        return {"values": self.values, "roles": self.roles,
                "price_range": list(self.price_range) if self.price_range else None}


def facets(attrs: Iterable[Mapping[str, Any]], price_column: str = "price",
           max_values: int = MAX_FACET_VALUES) -> Facets:
    """The facets of items with these metadata rows. Role columns come first, then the other
    low-cardinality text columns (at most :data:`MAX_FACETS`); the price column is a range."""
    counts: dict[str, Counter[str]] = {}
    prices: list[float] = []
    for row in attrs:
        for column, value in row.items():
            if column == price_column:
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    prices.append(float(value))
            elif isinstance(value, str) and value.strip():
                counts.setdefault(column, Counter())[value] += 1
    roles = column_roles(counts)
    # A facet has 2..max_values values (more for a role), some shared by several items; a
    # product's name is none.
    named = {c for r, c in roles.items() if r != "name"}
    usable = {c: n for c, n in counts.items()
              if 1 < len(n) <= (MAX_ROLE_VALUES if c in named else max_values) and len(n) < sum(n.values())
              and c != roles.get("name")}
    ordered = [c for c in roles.values() if c in usable]
    ordered += sorted((c for c in usable if c not in ordered), key=lambda c: len(usable[c]))[:MAX_FACETS]
    values = {c: [v for v, _ in usable[c].most_common()] for c in ordered}
    return Facets(values, roles, (min(prices), max(prices)) if prices else None)
