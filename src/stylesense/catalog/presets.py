"""Column layouts of the public catalogues, for ``stylesense catalog import --preset NAME``.

A layout has two kinds of facts. The id column and the photo template are how this one file is
read: options of the import, which the caller's own options override. The price and
product-group columns are what the home reads products by afterwards (filters, dashboards,
``evaluate retrieval``, the ranker): settings of the home (:class:`~stylesense.home.Config`),
which an import with a preset records only where the CSV has the column and the home has
made no choice of its own (the setting is still at its default), so that a re-import never
undoes ``stylesense config``.

Nothing here loads pandas: the CLI reads the table on start-up.
"""

from __future__ import annotations

from dataclasses import dataclass

from stylesense.errors import InvalidInput


@dataclass(frozen=True)
class CatalogPreset:
    """One public catalogue's layout (see the module docstring for which facts go where)."""

    id_column: str
    images: str  # str.format template over the row's raw text cells, relative to the CSV
    price_column: str | None = None
    group_column: str | None = None  # variants of one product: same cut, other colours

    def settings(self) -> dict[str, str]:
        """The home settings this layout names (Config field -> column)."""
        named = {"price_column": self.price_column, "group_column": self.group_column}
        return {key: value for key, value in named.items() if value is not None}


PRESETS: dict[str, CatalogPreset] = {
    # H&M Personalized Fashion Recommendations, articles.csv: ids are 10 digits with a leading
    # zero, kept as text, so "{article_id:.3}" is the photo folder (the competition's layout).
    # product_code is shared by the colour variants of one product.
    "hm": CatalogPreset("article_id", "images/{article_id:.3}/{article_id}.jpg", price_column="price",
                        group_column="product_code"),
    # Kaggle "Fashion Product Images" (Myntra), styles.csv beside images/<id>.jpg.
    "kaggle": CatalogPreset("id", "images/{id}.jpg"),
}


def catalog_preset(name: str) -> CatalogPreset:
    """The layout called ``name``; InvalidInput naming the known ones otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise InvalidInput(f"unknown catalogue preset {name!r}; choose from {', '.join(PRESETS)}") from None
