"""Name -> class tables whose classes are imported on first use.

The recommenders and the index kinds live one per module, and some of those modules import
torch, FAISS or scikit-learn, which cost seconds to load. Listing the names, checking one
(``"als" in MODELS``) or saying "choose from ..." must not pay that: a `stylesense --help` or
`events add` never builds a model or an index. So the table holds "module:Class" paths and
imports a module the first time its class is asked for.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

T = TypeVar("T")


class LazyRegistry(Mapping[str, T], Generic[T]):
    """A read-only mapping name -> class, each class imported when first looked up."""

    def __init__(self, paths: Mapping[str, str]) -> None:
        self._paths = dict(paths)  # name -> "package.module:Class"
        self._loaded: dict[str, T] = {}

    def __getitem__(self, name: str) -> T:
        if name not in self._loaded:
            module, _, attr = self._paths[name].partition(":")
            self._loaded[name] = getattr(importlib.import_module(module), attr)
        return self._loaded[name]

    def __contains__(self, name: object) -> bool:
        return name in self._paths  # Mapping's default would import the class to answer

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)

    def __repr__(self) -> str:
        return f"LazyRegistry({self._paths!r})"
