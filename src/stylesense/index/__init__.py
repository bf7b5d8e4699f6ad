"""Vector indexes behind one interface: in memory, exact (flat), KD-tree (the seed paper's),
IVF, HNSW; in a database, pgvector (the home's Postgres) and Milvus (Lite file or server).

``make_index(kind, dim, n_expected)`` builds an in-memory one; ``kind="auto"`` picks by
catalogue size (see ``AUTO_FLAT_MAX_FLOATS``). ``load_index(path)`` reads back any in-memory
kind from its one file. The database kinds (``DATABASE_KINDS``) are opened by
:mod:`stylesense.index.store` from the home's configuration. The interface,
:class:`~stylesense.index.base.VectorIndex`, is in :mod:`stylesense.index.base`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from stylesense.atomic import DamagedFile, load_npz

from stylesense.errors import InvalidInput
from stylesense.lazy import LazyRegistry

if TYPE_CHECKING:
    from stylesense.index.memory import InMemoryIndex

# A kind's module (FAISS, or scikit-learn for kdtree) is imported when that kind is first used.
KINDS: LazyRegistry[type[InMemoryIndex]] = LazyRegistry({
    "flat": "stylesense.index.flat:FlatIndex",
    "kdtree": "stylesense.index.kdtree:KDTreeIndex",
    "ivf": "stylesense.index.ivf:IVFIndex",
    "hnsw": "stylesense.index.hnsw:HNSWIndex",
})
DATABASE_KINDS = ("pgvector", "milvus")
"""Kinds whose vectors live in a database server (or a Milvus Lite file), not an index file."""
AUTO_FLAT_MAX_FLOATS = 32_000_000
"""``auto`` scans exactly while n_expected * dim stays within this (25k items at dim 1280,
125k at dim 256). A flat single query costs time linear in n * dim: bench/search.py measured
21.6 ms for 100k x 1280, so this budget is ~5 ms, below the time to embed the query image;
exact search needs no training or tuning and has recall 1. Past it, HNSW: ~0.2 ms per query at
recall@10 >= 0.95, growing ~log n, and unlike IVF it needs no training that goes stale as the
catalogue grows (IVF's nlist and nprobe are fixed at build time)."""


def make_index(kind: str, dim: int, n_expected: int = 0, **params) -> InMemoryIndex:
    """A new, empty in-memory index of ``kind`` ("flat", "kdtree", "ivf", "hnsw" or "auto").

    ``params`` go to the kind's constructor (e.g. ``ef_search=`` for hnsw, ``codec=`` for ivf).
    """
    if kind == "auto":
        kind = "flat" if n_expected * dim <= AUTO_FLAT_MAX_FLOATS else "hnsw"
    if kind in DATABASE_KINDS:
        raise InvalidInput(f"a {kind} index lives in a database: open it with stylesense.index.store.open_store")
    if kind not in KINDS:
        raise InvalidInput(f"unknown index kind {kind!r}; expected one of {sorted(KINDS)} or 'auto'")
    return KINDS[kind](dim, **params)


def load_index(path: Path) -> InMemoryIndex:
    """Read an index saved by ``VectorIndex.save``; the file says which kind it is.
    DamagedFile when it cannot be read back."""
    from stylesense.index.memory import FORMAT_VERSION

    header, arrays = load_npz(path, FORMAT_VERSION, "index")
    if header.get("kind") not in KINDS:
        raise DamagedFile(path, f"unknown index kind {header.get('kind')!r}")
    return KINDS[header["kind"]]._restore(header, arrays)


__all__ = ["DATABASE_KINDS", "KINDS", "load_index", "make_index"]
