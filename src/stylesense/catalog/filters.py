"""Metadata filters for search: ``COL=VALUE`` equality, a price budget, in stock only.

Filters are evaluated over the catalogue's metadata to give the set of allowed items, which the
index then searches *inside* (never post-filtering), so k results come back whenever k match.
Matching is case-insensitive and type-tolerant (``year=2011`` matches the integer 2011) because
shoppers and front ends type filters by hand. A list-valued column matches when any of its
elements does (``categories=Shoes`` for an item in several categories).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from stylesense.errors import InvalidInput


class FilterError(InvalidInput):
    """A filter the catalogue cannot answer (malformed, or an unknown column)."""


@dataclass(frozen=True)
class Filters:
    where: dict[str, tuple[str, ...]] = field(default_factory=dict)  # column -> accepted values
    min_price: float | None = None
    max_price: float | None = None
    price_column: str = "price"
    in_stock: bool = False  # only items whose stock column says they can be sold
    stock_column: str = "in_stock"

    @property
    def active(self) -> bool:
        return bool(self.where) or self.min_price is not None or self.max_price is not None or self.in_stock

    @classmethod
    def parse(
        cls,
        where: Iterable[str] = (),
        min_price: float | None = None,
        max_price: float | None = None,
        price_column: str = "price",
        *,
        in_stock: bool = False,
        stock_column: str = "in_stock",
    ) -> "Filters":
        """Parse ``COL=VALUE`` strings; repeating a column means any of its values (OR).
        ``in_stock``: only items that can be sold, read from ``stock_column`` as the catalogue
        reads it (``catalog.store.stock_value``: a missing cell means in stock)."""
        parsed: dict[str, list[str]] = {}
        for expr in where:
            col, sep, value = expr.partition("=")
            if not sep or not col.strip():
                raise FilterError(f"filter {expr!r} is not COLUMN=VALUE")
            parsed.setdefault(col.strip(), []).append(value.strip())
        for name, bound in (("--min-price", min_price), ("--max-price", max_price)):
            # NaN compares false with every price, so it would quietly filter nothing (or all).
            if bound is not None and not math.isfinite(bound):
                raise FilterError(f"{name} must be a finite number, got {bound}")
        if min_price is not None and max_price is not None and min_price > max_price:
            raise FilterError(f"--min-price {min_price} is above --max-price {max_price}")
        return cls({k: tuple(v) for k, v in parsed.items()}, min_price, max_price, price_column,
                   in_stock, stock_column)

    @property
    def columns(self) -> set[str]:
        """The metadata columns these filters read (the stock flag is the catalogue's own)."""
        needed = set(self.where)
        if self.min_price is not None or self.max_price is not None:
            needed.add(self.price_column)
        return needed

    def check_columns(self, known: set[str]) -> None:
        """Reject filters on columns no item has: an empty result would hide a typo."""
        unknown = sorted(self.columns - known)
        if unknown:
            raise FilterError(
                f"no item has column(s) {', '.join(unknown)}; known columns: {', '.join(sorted(known))}"
            )

    def matches(self, attrs: dict[str, Any]) -> bool:
        for col, values in self.where.items():
            if not _matches(attrs.get(col), {v.casefold() for v in values}):
                return False
        if self.min_price is not None or self.max_price is not None:
            price = attrs.get(self.price_column)
            # A NaN price is no price: it compares false with both bounds, so it would pass any.
            if not isinstance(price, (int, float)) or isinstance(price, bool) or math.isnan(price):
                return False
            if self.min_price is not None and price < self.min_price:
                return False
            if self.max_price is not None and price > self.max_price:
                return False
        if self.in_stock:
            from stylesense.catalog.store import stock_value  # SQLAlchemy: not for the CLI's start-up

            return stock_value(attrs.get(self.stock_column))
        return True


def _matches(value: Any, accepted: set[str]) -> bool:
    """Whether a cell is one of the accepted values; a list cell (e.g. an item's Gorse
    ``categories``) matches when any of its elements is, as "in category Shoes" means."""
    if isinstance(value, list):
        return any(_norm(v) in accepted for v in value)
    return _norm(value) in accepted


def _norm(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).casefold()
