"""The filter expression a search hands to its index, and the scalar fields written with the
vectors so that a database backend can evaluate it inside its own search.

One way to filter: the engine builds a :class:`Filter` from the shopper's
:class:`~stylesense.catalog.filters.Filters` and gives it to ``VectorIndex.search``. Each
backend translates it: the in-memory (FAISS / scikit-learn) kinds into the set of allowed ids,
resolved from the catalogue (``InMemoryIndex.resolver``); pgvector into SQL predicates of the
same query; Milvus into a boolean expression on scalar fields.

The scalar fields (:class:`ItemScalars`), the minimal set the catalogue's filters need:

* ``terms``: column -> the cell's values normalised the way ``Filters.matches`` compares them
  (casefolded text, ``2011.0`` as ``2011``; a list cell gives each element), for
  ``COL=VALUE`` equals-any on any column;
* ``numbers``: column -> the cell as a float, for finite numeric cells only (a text or NaN price
  is no price, as in ``Filters.matches``; JSON has no infinity), for the price range on
  whichever column is the price;
* ``in_stock``: the catalogue's flag (``catalog.store.stock_value`` of the home's stock column).

Hidden and removed items need no field: the index holds only searchable items (live, shown,
with a photo), so a hidden item is never there to exclude.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from stylesense.catalog.filters import Filters, _norm


@dataclass(frozen=True, eq=False)
class Filter:
    """What a search may return: items passing ``match`` (metadata predicates), and, when
    ``ids`` is given, only those ids. Both None: everything."""

    match: Filters | None = None
    ids: np.ndarray | None = None

    @property
    def predicates(self) -> Filters | None:
        """The metadata predicates, or None when there are none to evaluate."""
        return self.match if self.match is not None and self.match.active else None

    @classmethod
    def of(cls, filters: Filters | None) -> Filter | None:
        """The index filter for a search's ``Filters`` (None when they filter nothing)."""
        return cls(match=filters) if filters is not None and filters.active else None


@dataclass(frozen=True)
class ItemScalars:
    """The fields a database backend stores beside an item's vector (see the module doc)."""

    terms: dict[str, list[str]]
    numbers: dict[str, float]
    in_stock: bool = True

    @classmethod
    def of(cls, attrs: Mapping[str, Any], in_stock: bool = True) -> ItemScalars:
        terms: dict[str, list[str]] = {}
        numbers: dict[str, float] = {}
        for col, value in attrs.items():
            cells = value if isinstance(value, list) else [value]
            terms[col] = sorted({_norm(v) for v in cells if not isinstance(v, (dict, list))})
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                numbers[col] = float(value)
        return cls(terms, numbers, bool(in_stock))

    def to_dict(self) -> dict[str, Any]:
        return {"terms": self.terms, "numbers": self.numbers, "in_stock": self.in_stock}


def accepted(values: tuple[str, ...]) -> list[str]:
    """A ``COL=VALUE`` filter's values as the scalar ``terms`` hold them."""
    return sorted({v.casefold() for v in values})
