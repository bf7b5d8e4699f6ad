"""Recommenders: one module per model behind :class:`~stylesense.recommenders.base.Recommender`.

``make_recommender("als", factors=64)`` builds one by name; ``load_recommender(path)`` reads
any saved model back.

Importing this package is cheap: a model's module (torch for bpr, neumf and gru4rec) is
imported when that model is first built or loaded, and the interface types (pandas, scipy)
when first asked for, so `stylesense events add` loads none of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from stylesense.atomic import DamagedFile, load_npz
from stylesense.errors import InvalidInput
from stylesense.lazy import LazyRegistry
from stylesense.weights import DEFAULT_WEIGHTS

if TYPE_CHECKING:
    from stylesense.recommenders.base import Recommendation, Recommender
    from stylesense.recommenders.data import Interactions

MODELS: LazyRegistry[type[Recommender]] = LazyRegistry({
    "popular": "stylesense.recommenders.popular:Popular",
    "trending": "stylesense.recommenders.trending:Trending",
    "itemknn": "stylesense.recommenders.itemknn:ItemKNN",
    "als": "stylesense.recommenders.als:ALS",
    "bpr": "stylesense.recommenders.bpr:BPR",
    "ease": "stylesense.recommenders.ease:EASE",
    "visual": "stylesense.recommenders.visual:Visual",
    "neumf": "stylesense.recommenders.neumf:NeuMF",
    "gru4rec": "stylesense.recommenders.gru4rec:GRU4Rec",
    "blend": "stylesense.recommenders.blend:Blend",
    "repurchase": "stylesense.recommenders.repurchase:Repurchase",
    "ranker": "stylesense.recommenders.ranker:Ranker",
})


def __getattr__(name: str) -> Any:
    """``Interactions``, ``Recommendation`` and ``Recommender``, imported on first use."""
    if name == "Interactions":
        from stylesense.recommenders.data import Interactions

        return Interactions
    if name in ("Recommendation", "Recommender"):
        from stylesense.recommenders import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_recommender(name: str, **params: Any) -> Recommender:
    if name not in MODELS:
        raise InvalidInput(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    return MODELS[name](**params)


def load_recommender(path: str | Path) -> Recommender:
    """Any saved model; the file names its class. DamagedFile when it cannot be read back."""
    from stylesense.recommenders.base import FORMAT_VERSION, Recommender

    header, arrays = load_npz(path, FORMAT_VERSION, "model")
    if header.get("model") not in MODELS:
        raise DamagedFile(path, f"unknown model {header.get('model')!r}")
    model = make_recommender(header["model"], **header["params"])
    return Recommender._load_into(model, header, arrays)


__all__ = [
    "DEFAULT_WEIGHTS", "MODELS", "Interactions", "Recommendation", "Recommender",
    "load_recommender", "make_recommender",
]
