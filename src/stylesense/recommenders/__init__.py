"""Recommenders: one module per model behind :class:`~stylesense.recommenders.base.Recommender`.

``make_recommender("als", factors=64)`` builds one by name; ``load_recommender(path)`` reads
any saved model back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stylesense.atomic import load_npz
from stylesense.recommenders.base import FORMAT_VERSION, Recommendation, Recommender
from stylesense.recommenders.data import DEFAULT_WEIGHTS, Interactions
from stylesense.recommenders.als import ALS
from stylesense.recommenders.blend import Blend
from stylesense.recommenders.bpr import BPR
from stylesense.recommenders.ease import EASE
from stylesense.recommenders.gru4rec import GRU4Rec
from stylesense.recommenders.itemknn import ItemKNN
from stylesense.recommenders.neumf import NeuMF
from stylesense.recommenders.popular import Popular
from stylesense.recommenders.trending import Trending
from stylesense.recommenders.visual import Visual

MODELS: dict[str, type[Recommender]] = {
    m.name: m for m in (Popular, Trending, ItemKNN, ALS, BPR, EASE, Visual, NeuMF, GRU4Rec, Blend)
}


def make_recommender(name: str, **params: Any) -> Recommender:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    return MODELS[name](**params)


def load_recommender(path: str | Path) -> Recommender:
    """Any saved model; the file names its class."""
    header, arrays = load_npz(path, FORMAT_VERSION, "model")
    if header.get("model") not in MODELS:
        raise ValueError(f"{path}: unknown model {header.get('model')!r}")
    model = make_recommender(header["model"], **header["params"])
    return Recommender._load_into(model, header, arrays)


__all__ = [
    "DEFAULT_WEIGHTS", "MODELS", "Interactions", "Recommendation", "Recommender",
    "load_recommender", "make_recommender",
]
