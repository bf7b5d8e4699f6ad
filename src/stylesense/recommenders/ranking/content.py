"""What the catalogue says about each item of a model's universe: its image vector, its product
group (the same cut in other colours), its attribute values (category, colour, ...) and price.

None of it is learned, which is why a product imported after training can be ranked at once:
:meth:`Content.extended` appends it with its vector and attributes, and every content-based
candidate source and feature reads it from there. Items the catalogue does not describe (most
purchased H&M articles have no row) have no vector (``row == -1``), group ``-1`` and attribute
codes ``-1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from stylesense.errors import InvalidInput

MAX_AUTO_COLUMNS = 12  # attribute columns picked when none are named: one affinity feature each
MAX_LEVELS = 500  # a column with more distinct values is a name or a description, not a category
# Image vectors wider than this are projected onto their top principal directions: a shopper's
# look-alikes read every vector once per request, and 4,116 x 1,280 floats (21 MB, the H&M
# sample) took 5 ms a request where 256 dimensions (4 MB) take about 1 ms; the top 100
# look-alikes of an item stay 94 % the same (128 dimensions: 90 %).
MAX_DIM = 256
BASIS_SAMPLE = 20_000  # vectors the projection is computed from


@dataclass(frozen=True)
class Catalogue:
    """The catalogue as handed to the ranker (``Ranker.with_catalogue``): ids, image vectors
    (rows of ``vectors`` for ``vector_ids``; None: no photos), an attributes table indexed by
    item id (None: none), which of its columns holds the product group and which the price,
    and ``version``, any number that grows when items are added (the home's largest item key),
    so that a served model knows which products it has not seen yet."""

    vector_ids: Sequence[str] = ()
    vectors: np.ndarray | None = None
    attributes: pd.DataFrame | None = None
    group_column: str | None = None
    price_column: str | None = None
    version: int = 0

    def __post_init__(self) -> None:
        if self.vectors is not None:
            v = np.asarray(self.vectors, dtype=np.float32)
            if v.ndim != 2 or v.shape[0] != len(self.vector_ids):
                raise InvalidInput(f"ranker: expected a ({len(self.vector_ids)}, d) vector array, got shape {v.shape}")
            if not np.isfinite(v).all():
                raise InvalidInput("ranker: vectors hold NaN or inf")
            if len(set(map(str, self.vector_ids))) != len(self.vector_ids):
                raise InvalidInput("ranker: duplicate item ids in the vectors")
        if self.attributes is not None and not self.attributes.index.is_unique:
            raise InvalidInput("ranker: duplicate item ids in the catalogue attributes")


@dataclass
class Content:
    """Per item of the universe (index = the model's item index): vector row, group code,
    attribute codes and price. ``columns`` name the attribute columns, ``levels[c]`` their values
    by code; ``segment`` is the column whose value is a shopper's "main category"."""

    n_items: int
    vector_items: np.ndarray  # int64: the items that have a vector, in row order
    vectors: np.ndarray  # (len(vector_items), d) float32, unit length
    group: np.ndarray  # int64 per item, -1: unknown
    group_levels: np.ndarray  # str: group code -> value
    columns: list[str]
    codes: np.ndarray  # (n_items, len(columns)) int32, -1: unknown
    levels: list[np.ndarray]  # per column, str: code -> value
    price: np.ndarray  # float32 per item, NaN: unknown
    segment: int = -1  # index into columns, -1: none
    group_column: str = ""  # the attribute column the groups come from ("": none)
    projection: np.ndarray | None = None  # (input dimensions, MAX_DIM) basis, None: vectors kept as given
    row: np.ndarray = field(init=False)
    group_order: np.ndarray = field(init=False)
    group_starts: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.row = np.full(self.n_items, -1, dtype=np.int64)
        self.row[self.vector_items] = np.arange(len(self.vector_items))
        known = np.flatnonzero(self.group >= 0)
        self.group_order = known[np.argsort(self.group[known], kind="stable")]
        self.group_starts = np.searchsorted(self.group[self.group_order], np.arange(len(self.group_levels) + 1))

    @property
    def has_vector(self) -> np.ndarray:
        return self.row >= 0

    def members(self, groups: np.ndarray) -> np.ndarray:
        """The items of each group code in ``groups`` (concatenated, in group order)."""
        groups = np.asarray(groups, dtype=np.int64)
        groups = groups[groups >= 0]
        if len(groups) == 0:
            return np.zeros(0, np.int64)
        return np.concatenate([self.group_order[self.group_starts[g] : self.group_starts[g + 1]] for g in groups])

    def unit(self, items: np.ndarray) -> np.ndarray:
        """Unit vectors of ``items`` (which must all have one)."""
        return self.vectors[self.row[np.asarray(items, dtype=np.int64)]]

    # -- building ---------------------------------------------------------------------------
    @classmethod
    def empty(cls, n_items: int) -> "Content":
        return cls(n_items, np.zeros(0, np.int64), np.zeros((0, 1), np.float32), np.full(n_items, -1, np.int64),
                   np.zeros(0, dtype=str), [], np.zeros((n_items, 0), np.int32), [],
                   np.full(n_items, np.nan, np.float32))

    @classmethod
    def build(cls, item_ids: np.ndarray, catalogue: Catalogue | None, columns: Sequence[str] | None = None,
              group_column: str | None = None) -> "Content":
        """Content of the universe ``item_ids`` from ``catalogue``. ``columns``: the attribute
        columns (None: the text columns with 2 to MAX_LEVELS values, at most MAX_AUTO_COLUMNS);
        ``group_column`` overrides the catalogue's."""
        content = cls.empty(len(item_ids))
        if catalogue is None:
            return content
        attrs = catalogue.attributes
        group_column = group_column or catalogue.group_column or ""
        content.group_column = group_column
        if attrs is not None and group_column and group_column not in attrs.columns:
            raise InvalidInput(f"ranker: the catalogue has no product-group column {group_column!r}")
        if columns is None:
            columns = [] if attrs is None else _category_columns(attrs, {group_column, catalogue.price_column})
        missing = [c for c in columns if attrs is None or c not in attrs.columns]
        if missing:
            raise InvalidInput(f"ranker: the catalogue has no column(s) {', '.join(missing)}")
        content.columns = list(columns)
        if catalogue.vectors is not None and np.asarray(catalogue.vectors).shape[1] > MAX_DIM:
            content.projection = _basis(np.asarray(catalogue.vectors, np.float32))
        content.levels = [np.zeros(0, dtype=str) for _ in columns]
        content.codes = np.full((len(item_ids), len(columns)), -1, np.int32)
        if attrs is not None and len(columns):
            # the category segment: the coarsest column (fewest values) that still splits the catalogue
            sizes = [attrs[c].nunique() for c in columns]
            ok = [i for i, s in enumerate(sizes) if s >= 2]
            content.segment = min(ok, key=lambda i: sizes[i]) if ok else -1
        return content.extended(np.arange(len(item_ids)), np.asarray(item_ids, dtype=str), catalogue)

    def extended(self, at: np.ndarray, ids: np.ndarray, catalogue: Catalogue) -> "Content":
        """This content with the catalogue's facts about the items ``ids`` (at indices ``at``,
        which may run past ``n_items``: new items) filled in, the groups read from the same
        column as before. Values never seen before get new codes; items' earlier facts are kept
        where the catalogue says nothing."""
        group_column = self.group_column
        at = np.asarray(at, dtype=np.int64)
        n = max(self.n_items, int(at.max()) + 1 if len(at) else 0)
        grow = n - self.n_items
        group = np.concatenate([self.group, np.full(grow, -1, np.int64)])
        codes = np.concatenate([self.codes, np.full((grow, len(self.columns)), -1, np.int32)])
        price = np.concatenate([self.price, np.full(grow, np.nan, np.float32)])
        levels = list(self.levels)
        group_levels = self.group_levels
        attrs = catalogue.attributes
        if attrs is not None and len(at):
            pos = attrs.index.astype(str).get_indexer(ids)
            found = pos >= 0
            rows = attrs.iloc[pos[found]]
            if group_column and group_column in rows.columns:
                group_levels, group[at[found]] = _encode(group_levels, rows[group_column], group[at[found]])
            for c, name in enumerate(self.columns):
                if name not in rows.columns:
                    continue
                levels[c], codes[at[found], c] = _encode(levels[c], rows[name], codes[at[found], c])
            if catalogue.price_column and catalogue.price_column in attrs.columns:
                given = pd.to_numeric(rows[catalogue.price_column], errors="coerce").to_numpy(np.float32)
                price[at[found]] = np.where(np.isfinite(given), given, price[at[found]])
        vector_items, vectors = self.vector_items, self.vectors
        if catalogue.vectors is not None and len(at):
            where = pd.Index(np.asarray(catalogue.vector_ids, dtype=str)).get_indexer(ids)
            v = np.asarray(catalogue.vectors, dtype=np.float32)[where[where >= 0]]
            if self.projection is not None:
                if v.shape[1] != self.projection.shape[0]:
                    raise InvalidInput(f"ranker: vectors of {v.shape[1]} dimensions for a model of "
                                       f"{self.projection.shape[0]}: retrain it")
                v = _unit(v) @ self.projection
            norms = np.linalg.norm(v, axis=1)
            ok = norms > 1e-12  # an all-zero vector is no vector
            new_items, new_vectors = at[where >= 0][ok], v[ok] / norms[ok, None]
            if len(new_items):
                keep = ~np.isin(vector_items, new_items)  # a new photo replaces the old vector
                if len(vectors) and vectors.shape[1] != new_vectors.shape[1] and keep.any():
                    raise InvalidInput(f"ranker: vectors of {new_vectors.shape[1]} dimensions for a model of "
                                       f"{vectors.shape[1]}: retrain it")
                vector_items = np.concatenate([vector_items[keep], new_items])
                vectors = np.concatenate([vectors[keep], new_vectors]) if keep.any() else new_vectors
        return Content(n, vector_items, np.ascontiguousarray(vectors, np.float32), group, group_levels,
                       list(self.columns), codes, levels, price, self.segment, group_column, self.projection)

    # -- persistence ------------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            "vector_items": self.vector_items, "vectors": self.vectors, "group": self.group,
            "group_levels": self.group_levels, "columns": np.asarray(self.columns, dtype=str),
            "codes": self.codes, "price": self.price, "segment": np.asarray(self.segment, np.int64),
            "group_column": np.asarray(self.group_column),
            "projection": np.zeros((0, 0), np.float32) if self.projection is None else self.projection,
            "level_lens": np.asarray([len(x) for x in self.levels], np.int64),
            "levels": (np.concatenate([np.asarray(x, dtype=str) for x in self.levels]) if self.levels
                       else np.zeros(0, str)),
        }

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> "Content":
        splits = np.cumsum(a["level_lens"])[:-1]
        levels = np.split(a["levels"], splits) if len(a["level_lens"]) else []
        return cls(len(a["group"]), np.asarray(a["vector_items"], np.int64), np.asarray(a["vectors"], np.float32),
                   np.asarray(a["group"], np.int64), np.asarray(a["group_levels"], dtype=str),
                   a["columns"].tolist(), np.asarray(a["codes"], np.int32), [np.asarray(x, dtype=str) for x in levels],
                   np.asarray(a["price"], np.float32), int(a["segment"]), str(a["group_column"]),
                   np.asarray(a["projection"], np.float32) if a["projection"].size else None)


def _unit(v: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return np.divide(v, norms, out=np.zeros_like(v), where=norms > 1e-12)


def _basis(vectors: np.ndarray) -> np.ndarray:
    """The top MAX_DIM right singular vectors of the unit vectors (a seeded sample of
    BASIS_SAMPLE of them where there are more), as a (d, MAX_DIM) projection."""
    unit = _unit(vectors)
    if len(unit) > BASIS_SAMPLE:
        unit = unit[np.sort(np.random.default_rng(0).choice(len(unit), BASIS_SAMPLE, replace=False))]
    _, _, vt = np.linalg.svd(unit, full_matrices=False)
    return np.ascontiguousarray(vt[:MAX_DIM].T, dtype=np.float32)


def _encode(levels: np.ndarray, values: pd.Series, old: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes of ``values`` in ``levels`` (extended by values not in it); missing values keep ``old``."""
    text = values.astype(object).where(values.notna(), None)
    text = np.array([None if v is None else _text(v) for v in text], dtype=object)
    present = np.array([v is not None and v != "" for v in text], dtype=bool)
    index = pd.Index(levels.astype(object))
    new = pd.unique(pd.Index(text[present]).difference(index, sort=False)) if present.any() else []
    levels = np.concatenate([levels.astype(str), np.asarray(list(new), dtype=str)]) if len(new) else levels
    codes = old.copy()
    if present.any():
        codes[present] = pd.Index(levels.astype(object)).get_indexer(text[present])
    return levels, codes


def _text(value: object) -> str:
    """A cell as text; whole floats without their ".0" (a group code read as 111565.0 is 111565)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _category_columns(attrs: pd.DataFrame, skip: set) -> list[str]:
    """Text columns with 2 to MAX_LEVELS distinct values and no more than half as many values as
    rows (names and descriptions are nearly unique), in the table's order."""
    out = []
    for name in attrs.columns:
        if name in skip or len(out) == MAX_AUTO_COLUMNS:
            continue
        col = attrs[name].dropna()
        if col.empty or pd.api.types.is_numeric_dtype(col) or not all(isinstance(v, str) for v in col.head(100)):
            continue
        n = col.nunique()
        if 2 <= n <= min(MAX_LEVELS, max(2, len(attrs) // 2)):
            out.append(str(name))
    return out
