"""Catalogue adaptation: a small metric-learning head on frozen CNN features.

Off-the-shelf ImageNet features rank photos by whatever dominates their variance (pose,
background, lighting), not by what a shopper means by "similar" (same kind of garment, same
product in another colour). A catalogue's own metadata says what should be close, so a couple
of minutes of CPU training on it re-weights the frozen features without touching the CNN.

Method (chosen on validation data, see bench/adapter.py):
  1. L2-normalise the raw features, centre them and scale them to unit average variance.
     (Per-dimension standardisation or PCA whitening measured worse: they blow up small,
     noisy feature directions.)
  2. A head = one-hidden-layer MLP (GELU, dropout) PLUS a linear skip path, so the identity-like
     part of the map is easy to keep and the MLP only learns a correction.
  3. Trained with a normalised-softmax (proxy) loss: one learnt proxy per value of every label
     column and one per same-product group (2+ members), cosine logits at a low scale (12), which
     keeps classes from collapsing to points and so generalises to unseen products.
  4. L2-normalise the output, so inner product = cosine in every index.
  5. Optionally several heads ("parts"), each trained on its own labels, and the off-the-shelf
     vector itself, concatenated with weights: a "shape" part that learns to ignore colour
     (product type + same-product groups) and a "colour" part make search steerable ("this cut
     in other colours", Adapter.steer); mixing the raw vector in (Adapter.mixed) lets kinds of
     product the labels never named fall back towards the general features.
Training runs on CPU with torch; inference is plain numpy, so a home needs no torch to search.
"""

from __future__ import annotations

import json
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any
from pathlib import Path

import numpy as np

from stylesense.atomic import DamagedFile, atomic_write
from stylesense.errors import InvalidInput

FORMAT = "stylesense-adapter"
VERSION = 2  # 2: several parts (heads, the raw vector), arrays named part.weight
_EPS = 1e-12


def normalize(features: np.ndarray) -> np.ndarray:
    """L2-normalise rows as float32: the off-the-shelf search vectors (cosine on raw features)."""
    x = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, _EPS)


def _codes(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Integer class codes for one label column; -1 where the value is missing (None/NaN/"")."""
    v = np.asarray(values, dtype=object)
    missing = np.array([x is None or (isinstance(x, float) and x != x) or str(x) == "" for x in v], dtype=bool)
    codes = np.full(len(v), -1, dtype=np.int64)
    n_classes = 0
    if (~missing).any():
        uniq, inverse = np.unique(v[~missing].astype(str), return_inverse=True)
        codes[~missing] = inverse
        n_classes = len(uniq)
    return codes, n_classes


def label_targets(
    labels: Sequence[np.ndarray], groups: np.ndarray | None, label_names: Sequence[str] | None, n: int
) -> list[tuple[np.ndarray, int, str]]:
    """(codes, classes, name) for every column that can teach something: 2+ classes.

    Groups become one more column whose classes are the groups with 2+ members (a singleton
    "product" has nothing to be pulled towards).
    """
    columns = [_codes(col) for col in labels]
    if any(len(c) != n for c, _ in columns):
        raise InvalidInput("every label column must have one value per feature row")
    names = list(label_names) if label_names is not None else [f"label{i}" for i in range(len(columns))]
    if len(names) != len(columns):
        raise InvalidInput("label_names must name every label column")
    if groups is not None:
        gcodes, n_groups = _codes(groups)
        if len(gcodes) != n:
            raise InvalidInput("groups must have one value per feature row")
        sizes = np.bincount(gcodes[gcodes >= 0], minlength=n_groups)
        keep = (gcodes >= 0) & (sizes[np.maximum(gcodes, 0)] > 1)
        _, inverse = np.unique(gcodes[keep], return_inverse=True)
        gcodes = np.full(n, -1, dtype=np.int64)
        gcodes[keep] = inverse
        columns.append((gcodes, int(inverse.max()) + 1 if keep.any() else 0))
        names.append("groups")
    targets = [(c, k, name) for (c, k), name in zip(columns, names, strict=True) if k > 1]
    if not targets:
        raise InvalidInput("nothing to learn from: no label column with 2+ values, no 2+ groups with 2+ members")
    return targets


def _gelu(x: np.ndarray) -> np.ndarray:
    """tanh-approximated GELU, the exact variant the head is trained with (numpy has no erf)."""
    return 0.5 * x * (1.0 + np.tanh(np.float32(0.7978845608028654) * (x + np.float32(0.044715) * x**3)))


def proxy_loss(emb: Any, idx: Any, codes: Sequence[Any], proxies: Sequence[Any], scale: float) -> Any:
    """The normalised-softmax loss of unit embeddings ``emb`` of rows ``idx``: per target column
    (its class codes, -1 = unknown, and its proxies) the cross-entropy of the scaled cosines to
    the proxies, summed over columns. Torch tensors; the adapter's heads and the fine-tune
    (vision.finetune) train with it."""
    import torch
    import torch.nn.functional as F

    loss = torch.zeros(())
    for c, prox in zip(codes, proxies, strict=True):
        y = c[idx]
        m = y >= 0
        if m.any():
            loss = loss + F.cross_entropy(scale * emb[m] @ F.normalize(prox, dim=1).T, y[m])
    return loss


def _fit_head(
    z: np.ndarray,
    targets: list[tuple[np.ndarray, int, str]],
    out_dim: int,
    hidden: int,
    epochs: int,
    n_batches: int,
    threads: int | None,
    progress: Callable[[int, int, float], None],
    *,
    seed: int,
    scale: float,
    lr: float,
    weight_decay: float,
    input_dropout: float,
    dropout: float,
    batch_size: int,
) -> tuple[dict[str, np.ndarray], list[float]]:
    """Train one head (MLP + linear skip, proxy loss over ``targets``) on scaled, centred
    features ``z``; its weights as numpy (w1/skip still in ``z``'s scale) and the epoch losses."""
    import torch
    import torch.nn.functional as F

    n, d = z.shape
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        with torch.random.fork_rng(devices=[]):  # seeds dropout, leaves the caller's RNG alone
            torch.manual_seed(seed)
            gen = torch.Generator().manual_seed(seed)
            fc1, fc2 = torch.nn.Linear(d, hidden), torch.nn.Linear(hidden, out_dim)
            skip = torch.nn.Linear(d, out_dim, bias=False)
            drop_in, drop = torch.nn.Dropout(input_dropout), torch.nn.Dropout(dropout)
            proxies = [torch.nn.Parameter(torch.randn(k, out_dim, generator=gen)) for _, k, _ in targets]
            params = [*fc1.parameters(), *fc2.parameters(), *skip.parameters(), *proxies]
            opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
            total_steps = epochs * n_batches
            # 10% warm-up; tiny runs get 30% (torch's OneCycleLR divides by zero at exactly 10 steps)
            sched = torch.optim.lr_scheduler.OneCycleLR(
                opt, max_lr=lr, total_steps=total_steps, pct_start=0.1 if total_steps > 20 else 0.3
            )
            zt = torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32))
            codes = [torch.from_numpy(c) for c, _, _ in targets]

            def embed(batch: torch.Tensor) -> torch.Tensor:
                batch = drop_in(batch)
                return fc2(drop(F.gelu(fc1(batch), approximate="tanh"))) + skip(batch)

            history: list[float] = []
            for epoch in range(epochs):
                perm = torch.randperm(n, generator=gen)
                total = 0.0
                for b in range(n_batches):
                    idx = perm[b * batch_size : (b + 1) * batch_size]
                    loss = proxy_loss(F.normalize(embed(zt[idx]), dim=1), idx, codes, proxies, scale)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    sched.step()
                    total += float(loss.detach())
                history.append(total / n_batches)
                progress(epoch + 1, epochs, history[-1])
            head = {
                "w1": fc1.weight.detach().numpy().T.copy(),
                "b1": fc1.bias.detach().numpy(),
                "w2": fc2.weight.detach().numpy().T.copy(),
                "b2": fc2.bias.detach().numpy(),
                "skip": skip.weight.detach().numpy().T.copy(),
            }
    finally:
        torch.set_num_threads(previous_threads)
    return head, history


_HEAD = ("w1", "b1", "w2", "b2", "skip")
_WEIGHTS = ("mean", *_HEAD)  # the arrays of a version-1 file: one head, no prefixes
RAW = "raw"
"""The part that is the off-the-shelf vector itself: mixing it in keeps what the CNN knows about
kinds of product the labels never named."""
RAW_DIM = 256
"""Width of the raw part that :meth:`Adapter.train` and :func:`validated_mix` mix in: the unit
CNN features projected on their first 256 principal directions (``raw.proj``). All 1280 columns
retrieve about as well at three times the width (docs/adapter.md)."""


def raw_directions(features: np.ndarray, colour_dim: int = 0, dim: int = RAW_DIM) -> np.ndarray | None:
    """(cnn, dim) float32: the first ``dim`` principal directions (uncentred: the cosine the raw
    part approximates is about the unit vectors themselves) of the unit CNN features; None where
    the features have no more than ``dim`` columns (the raw part is then the whole vector)."""
    cnn = normalize(np.asarray(features, dtype=np.float32)[:, : features.shape[1] - colour_dim])
    if cnn.shape[1] <= dim:
        return None
    _, vectors = np.linalg.eigh(cnn.T.astype(np.float64) @ cnn)
    return np.ascontiguousarray(vectors[:, ::-1][:, :dim], dtype=np.float32)
STEER_ALIASES = {"type": "shape", "cut": "shape", "color": "colour"}


@dataclass(frozen=True)
class Part:
    """One head of an adapter: its own sub-space of the output, trained on its own labels.

    labels name label columns passed to :meth:`Adapter.train` ("groups" = the same-product
    groups). A steerable adapter has a "shape" part (product type, product group, groups: colour
    variants of one product pulled together, so it learns to ignore colour) and a "colour" part.
    weight: its share of the cosine of the full vector (normalised over all parts).
    colour_input: the head also reads the photo's colour descriptor (vision.colour), which then
    follows the CNN features in the adapter's input: colour is in the pixels, and the CNN
    features say whose colour it is (the garment's, not the model's jeans; docs/adapter.md)."""

    name: str
    labels: tuple[str, ...]
    dim: int = 256
    weight: float = 1.0
    colour_input: bool = False


def steerable_parts(shape_labels: Sequence[str], colour_labels: Sequence[str], *, pixel_colour: bool = False
                    ) -> list[Part]:
    """The layout that `stylesense search --same/--vary/--steer` works on. The 0.75/0.25 split
    keeps plain search mostly about the kind of product (bench/steer.py). ``pixel_colour``: the
    features carry each photo's colour descriptor, and the colour part reads it."""
    return [Part("shape", tuple(shape_labels), 256, 0.75),
            Part("colour", tuple(colour_labels), 64, 0.25, colour_input=pixel_colour)]


STEER_PUSH = 0.0
"""How much --vary also weighs the varied part's similarity down, beyond excluding results that
share the query's value: 0, chosen on validation data (bench/steer.py: any push lowered the
recall of a product's other colour variants; the exclusion is what works)."""

PROTOTYPED = "colour"
"""The part that keeps a prototype per value of its label column (``colour.prototypes``): the
unit mean of the training items' vectors of that value."""
PROTOTYPE_PULL = 0.75
"""How far a steered query's colour part moves from its own vector to its colour's prototype
(0 = not at all, 1 = the prototype alone). A photo's own colour vector is one shade under one
light, beside a model's other clothes; the prototype is what the catalogue calls that colour, so
"things in this colour" finds that colour rather than that photo. Chosen on a validation part of
the training half (bench/steer.py)."""


@dataclass(frozen=True)
class Steer:
    """A steered search: part weights for the score (sum of weight * the part's cosine; {} =
    the full vector, plain search) and ``vary``, the part whose label value (e.g. the colour
    column) no result may share with the query."""

    weights: dict[str, float]
    vary: str | None = None


def steering(same: str | None = None, vary: str | None = None, weights: str | Mapping[str, float] | None = None
             ) -> Steer | None:
    """A :class:`Steer` from the user's words: ``same`` (the part to match), ``vary`` (the part
    whose value must change: "--same shape --vary colour" = this cut in other colours) and/or
    explicit ``weights`` ("shape=1,colour=-0.5" or a mapping; they override the presets).
    None = plain search."""
    same, vary = (STEER_ALIASES.get(p, p) if p else None for p in (same, vary))
    if same and same == vary:
        raise InvalidInput("--same and --vary name the same part")
    out: dict[str, float] = {}
    if same:
        out[same] = 1.0
    if vary and STEER_PUSH:
        out[vary] = -STEER_PUSH
    if isinstance(weights, str):
        parsed: dict[str, float] = {}
        for pair in filter(None, (p.strip() for p in weights.split(","))):
            name, eq, value = pair.partition("=")
            try:
                parsed[name.strip()] = float(value)
            except ValueError:
                raise InvalidInput(f"steer weights are PART=NUMBER pairs, not {pair!r}") from None
            if not eq:
                raise InvalidInput(f"steer weights are PART=NUMBER pairs, not {pair!r}")
        weights = parsed
    for name, value in (weights or {}).items():
        if not np.isfinite(value):
            raise InvalidInput(f"steer weight of {name!r} must be a finite number")
        out[STEER_ALIASES.get(name, name)] = float(value)
    if out and not any(out.values()):
        raise InvalidInput("steering needs at least one non-zero weight")
    return Steer(out, vary) if out or vary else None


class Adapter:
    """Maps raw CNN features to adapted, L2-normalised search vectors (see module docstring).

    The output is the concatenation of its parts (``info["parts"]``, in order), each one
    unit-normalised and scaled by sqrt(weight), so the full vector's cosine is the weighted sum
    of the parts' cosines (weights sum to 1) and plain search needs nothing special. A head part:
    normalize(gelu(xc @ w1 + b1) @ w2 + b2 + xc @ skip), xc = normalize(cnn) - mean, with the
    input scaling folded into w1 and skip; the "raw" part: normalize(cnn), or normalize(normalize(cnn)
    @ raw.proj) with a projection (:data:`RAW_DIM`). With
    ``info["colour_dim"]`` > 0 the input's last columns are the photo's colour descriptor, and a
    part with ``colour_input`` reads [normalize(cnn), normalize(descriptor)] - mean.
    """

    def __init__(self, weights: dict[str, np.ndarray], info: dict) -> None:
        if "parts" not in info:  # version 1: one head, arrays without a part prefix
            missing = set(_WEIGHTS) - set(weights)
            if missing:
                raise InvalidInput(f"adapter weights lack {sorted(missing)}")
            info = {**info, "parts": [{"name": "adapted", "dim": int(np.shape(weights["w2"])[1]), "weight": 1.0}]}
            weights = {"mean": weights["mean"], **{f"adapted.{k}": weights[k] for k in _HEAD}}
        parts = info["parts"]
        heads = [p["name"] for p in parts if p["name"] != RAW]
        projected = "raw.proj" in weights and any(p["name"] == RAW for p in parts)  # else it is a stray array
        prototyped = [p["name"] for p in parts if p.get("prototypes")]
        expected_keys = {"mean", *(f"{h}.{k}" for h in heads for k in _HEAD), *(["raw.proj"] if projected else []),
                         *(f"{h}.prototypes" for h in prototyped)}
        if set(weights) != expected_keys:
            raise InvalidInput(f"adapter weights {sorted(weights)} do not match its parts {heads}")
        self.weights = {k: np.ascontiguousarray(weights[k], dtype=np.float32) for k in sorted(expected_keys)}
        full = self.weights["mean"].shape[0]
        colour_dim = int(info.get("colour_dim", 0))
        if not 0 <= colour_dim < full:
            raise InvalidInput("the colour descriptor must be a part of the input")
        for p in parts:
            if p["name"] == RAW:
                proj = self.weights.get("raw.proj")
                if (proj is None and p["dim"] != full - colour_dim) or (
                        proj is not None and proj.shape != (full - colour_dim, p["dim"])):
                    raise InvalidInput("the raw part must have the CNN features' dimension or its projection's")
                continue
            if p.get("colour_input") and not colour_dim:
                raise InvalidInput(f"part {p['name']!r} reads a colour descriptor the input lacks")
            d = full if p.get("colour_input") else full - colour_dim
            w = {k: self.weights[f"{p['name']}.{k}"] for k in _HEAD}
            h, o = w["w1"].shape[1], p["dim"]
            expected = {"w1": (d, h), "b1": (h,), "w2": (h, o), "b2": (o,), "skip": (d, o)}
            if p.get("prototypes"):
                expected["prototypes"] = (len(p["prototypes"]), o)
                w["prototypes"] = self.weights[f"{p['name']}.prototypes"]
            if any(w[k].shape != shape for k, shape in expected.items()):
                raise InvalidInput("inconsistent adapter weight shapes")
        if not parts or any(float(p["weight"]) <= 0 for p in parts):
            raise InvalidInput("every adapter part needs a positive weight")
        self.info = info

    @property
    def in_dim(self) -> int:
        return self.weights["mean"].shape[0]

    @property
    def colour_dim(self) -> int:
        """Columns of the input that are the photo's colour descriptor (0: CNN features only)."""
        return int(self.info.get("colour_dim", 0))

    @property
    def out_dim(self) -> int:
        return sum(p["dim"] for p in self.info["parts"])

    def layout(self) -> dict[str, tuple[slice, float]]:
        """Part name -> (its columns in the output, its weight): what steered search reads."""
        out, start = {}, 0
        for p in self.info["parts"]:
            out[p["name"]] = (slice(start, start + p["dim"]), float(p["weight"]))
            start += p["dim"]
        return out

    @property
    def steerable(self) -> bool:
        return {"shape", "colour"} <= set(self.layout())

    def part_column(self, part: str) -> str:
        """The label column a part was trained on first (what --vary compares values of)."""
        part = STEER_ALIASES.get(part, part)
        found = [p for p in self.info["parts"] if p["name"] == part]
        if not found:
            raise InvalidInput(f"no part {part!r} in this adapter (parts: {', '.join(self.layout())})")
        columns = [c for c in found[0].get("labels", []) if c != "groups"]
        if not columns:
            raise InvalidInput(f"the adapter's {part!r} part has no label column to vary")
        return columns[0]

    def transform(self, features: np.ndarray) -> np.ndarray:
        """Adapted search vectors: float32, shape (n, out_dim), unit L2 norm."""
        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 2 or features.shape[1] != self.in_dim:
            raise InvalidInput(f"expected features of shape (n, {self.in_dim}), got {features.shape}")
        x = _inputs(features, self.colour_dim)
        xc = x - self.weights["mean"]
        cnn = self.in_dim - self.colour_dim
        blocks = []
        for p in self.info["parts"]:
            if p["name"] == RAW:
                proj = self.weights.get("raw.proj")
                block = x[:, :cnn] if proj is None else normalize(x[:, :cnn] @ proj)
            else:
                w = {k: self.weights[f"{p['name']}.{k}"] for k in _HEAD}
                xp = xc if p.get("colour_input") else xc[:, :cnn]
                block = normalize(_gelu(xp @ w["w1"] + w["b1"]) @ w["w2"] + w["b2"] + xp @ w["skip"])
            blocks.append(block if len(self.info["parts"]) == 1 else block * np.float32(np.sqrt(p["weight"])))
        return blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=1)

    def mixed(self, raw_weight: float, directions: np.ndarray | None = None) -> Adapter:
        """The same heads with the off-the-shelf vector mixed in at ``raw_weight`` of the cosine
        (0 = none), the heads keeping their relative weights. No retraining: the raw part learns
        nothing, so the mix can be chosen on validation data after training. ``directions``
        (:func:`raw_directions`) projects the raw part onto them; None keeps this adapter's
        projection, if it has one, else all the CNN columns."""
        if not 0 <= raw_weight < 1:
            raise InvalidInput("raw_weight must be in [0, 1)")
        heads = [p for p in self.info["parts"] if p["name"] != RAW]
        total = sum(p["weight"] for p in heads)
        parts = [{**p, "weight": (1 - raw_weight) * p["weight"] / total} for p in heads]
        weights = {k: v for k, v in self.weights.items() if k != "raw.proj"}
        if raw_weight > 0:
            proj = directions if directions is not None else self.weights.get("raw.proj")
            if proj is not None:
                weights["raw.proj"] = proj
            parts.append({"name": RAW, "dim": self.in_dim - self.colour_dim if proj is None else int(proj.shape[1]),
                          "weight": raw_weight})
        return Adapter(weights, {**self.info, "parts": parts, "raw_weight": raw_weight})

    def prototypes(self, part: str) -> tuple[list[str], np.ndarray] | None:
        """(values, unit prototype per value) of a part's label column, or None where the part
        keeps none (other parts; adapters made before prototypes were kept)."""
        found = [p for p in self.info["parts"] if p["name"] == STEER_ALIASES.get(part, part) and p.get("prototypes")]
        if not found:
            return None
        return list(found[0]["prototypes"]), self.weights[f"{found[0]['name']}.prototypes"]

    def read(self, vectors: np.ndarray, part: str) -> list[str] | None:
        """Each vector's value of the part's label column as the part sees it: its nearest
        prototype (a photo query's colour). None where the part keeps no prototypes."""
        kept = self.prototypes(part)
        if kept is None:
            return None
        values, protos = kept
        cols = self.layout()[STEER_ALIASES.get(part, part)][0]
        return [values[i] for i in np.argmax(np.asarray(vectors, dtype=np.float32)[:, cols] @ protos.T, axis=1)]

    def steer(self, vectors: np.ndarray, weights: Mapping[str, float],
              values: Mapping[str, Sequence[str]] | None = None, pull: float = PROTOTYPE_PULL) -> np.ndarray:
        """Queries that score sum(weights[part] * cosine of that part) against stored vectors.

        A stored vector's part is sqrt(w) * unit, so scaling the query's part by weight / w turns
        the plain inner product into that sum: the same index serves steered search. Parts not
        named weigh 0; a negative weight pushes that similarity down ("other colours").
        ``values``: each query's value of a part's label column; a weighed part that keeps a
        prototype of that value is first moved ``pull`` of the way towards it
        (:data:`PROTOTYPE_PULL`; an unknown value leaves the row as it is)."""
        layout = self.layout()
        weights = {STEER_ALIASES.get(k, k): float(v) for k, v in weights.items()}
        unknown = set(weights) - set(layout)
        if unknown:
            raise InvalidInput(f"no part {sorted(unknown)} in this adapter (parts: {', '.join(layout)})")
        if not any(weights.values()):
            raise InvalidInput("steering needs at least one non-zero weight")
        values = {STEER_ALIASES.get(k, k): v for k, v in (values or {}).items()}
        vectors = np.asarray(vectors, dtype=np.float32)
        out = np.zeros_like(vectors)
        for name, (cols, w) in layout.items():
            block = vectors[:, cols]
            kept = self.prototypes(name)
            if weights.get(name) and kept is not None and name in values:
                index = {v: i for i, v in enumerate(kept[0])}
                rows = [(r, index[v]) for r, v in enumerate(values[name]) if v in index]
                if rows:
                    at, which = map(list, zip(*rows, strict=True))
                    block = block.copy()
                    block[at] = np.float32(np.sqrt(w)) * normalize(
                        (1 - pull) * normalize(block[at]) + pull * kept[1][which])
            out[:, cols] = block * np.float32(weights.get(name, 0.0) / w)
        return out

    # -- training ---------------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        features: np.ndarray,
        labels: Sequence[np.ndarray],
        groups: np.ndarray | None = None,
        *,
        label_names: Sequence[str] | None = None,
        parts: Sequence[Part] | None = None,
        raw_weight: float = 0.0,
        colour_dim: int = 0,
        out_dim: int = 256,
        hidden: int = 1024,
        epochs: int = 100,
        max_steps: int = 1500,
        seed: int = 0,
        threads: int | None = None,
        progress: Callable[[int, int, float], None] | None = None,
        scale: float = 10.0,
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        input_dropout: float = 0.2,
        dropout: float = 0.5,
        batch_size: int = 256,
    ) -> Adapter:
        """Fit the head(s) on one catalogue.

        labels: one array per label column (values str; ""/None = unknown, ignored for that column).
        groups: same-product ids ("" = none); only groups with 2+ members teach anything.
        parts: heads trained separately on their own label columns (names from label_names,
            "groups" for the groups), e.g. :func:`steerable_parts`; default: one head of
            ``out_dim`` on every column.
        raw_weight: share of the off-the-shelf vector in the output (see :meth:`mixed`), projected
            on the features' first RAW_DIM principal directions.
        colour_dim: the features' last columns that are the photo's colour descriptor (the
            embedder's ``colour``), read by the parts with ``colour_input`` only.
        epochs: passes over the catalogue, capped at max_steps optimiser steps in all (per
            head), so a big catalogue trains in bounded time (it needs fewer passes anyway).
        progress(epoch, epochs, mean_loss) is called after every epoch (epochs of all heads).
        scale: inverse temperature of the cosine softmax; low values keep classes spread out,
            which is what lets the head generalise to unseen products. 10 was chosen on
            validation parts of the training halves (bench/adapter.py protocol) with the v2
            image recipe: H&M product-type P@10 0.674 at 12 -> 0.680 at 10, same-product
            recall 0.678 -> 0.681; Kaggle articleType 0.8005 -> 0.8015.
        """
        start = time.perf_counter()
        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 2:
            raise InvalidInput(f"features must be 2-d, got shape {features.shape}")
        if not 0 <= colour_dim < features.shape[1]:
            raise InvalidInput(f"colour_dim {colour_dim} must leave CNN features in the input")
        x = _inputs(features, colour_dim)
        n, d = x.shape
        cnn = d - colour_dim
        targets = label_targets(labels, groups, label_names, n)
        if parts is None:
            parts = [Part("adapted", tuple(name for _, _, name in targets), out_dim)]
        known = {name for _, _, name in targets}
        for part in parts:
            if part.name == RAW or not part.labels or part.weight <= 0:
                raise InvalidInput(f"part {part.name!r}: needs a name other than {RAW!r}, labels and a positive weight")
            if part.colour_input and not colour_dim:
                raise InvalidInput(f"part {part.name!r} reads the colour descriptor: embed with colour features")
            if not set(part.labels) & known:
                raise InvalidInput(f"part {part.name!r}: none of {list(part.labels)} can teach anything "
                                   f"(usable columns: {', '.join(sorted(known))})")

        mean = x.mean(axis=0)
        xc = x - mean
        n_batches = max(1, -(-n // batch_size))
        epochs = max(1, min(epochs, max_steps // n_batches))
        hp = {"seed": seed, "scale": scale, "lr": lr, "weight_decay": weight_decay, "input_dropout": input_dropout,
              "dropout": dropout, "batch_size": batch_size}
        weights: dict[str, np.ndarray] = {"mean": mean}
        history: list[float] = []
        total_weight = sum(p.weight for p in parts)
        layout = []
        for i, part in enumerate(parts):
            chosen = [t for t in targets if t[2] in part.labels]
            offset = i * epochs

            def tick(epoch: int, _epochs: int, loss: float, offset: int = offset) -> None:
                if progress is not None:
                    progress(offset + epoch, epochs * len(parts), loss)

            xp = xc if part.colour_input else xc[:, :cnn]
            # One global factor (not per dimension): unit average variance per input dimension.
            in_scale = float(np.sqrt((xp.astype(np.float64) ** 2).sum(axis=1).mean() / xp.shape[1])) or 1.0
            head, losses = _fit_head(xp / np.float32(in_scale), chosen, part.dim, hidden, epochs, n_batches,
                                     threads, tick, **hp)
            head["w1"] /= in_scale
            head["skip"] /= in_scale
            weights.update({f"{part.name}.{k}": v for k, v in head.items()})
            history += losses
            layout.append({**asdict(part), "labels": list(part.labels), "weight": part.weight / total_weight})

        info = {
            "format": FORMAT,
            "version": VERSION,
            "in_dim": d,
            "colour_dim": colour_dim,
            "out_dim": sum(p.dim for p in parts),
            "hidden": hidden,
            "parts": layout,
            "labels": [{"name": name, "classes": k, "items": int((c >= 0).sum())} for c, k, name in targets],
            "train_items": n,
            "epochs": epochs,
            "steps": epochs * n_batches * len(parts),
            "hyper_parameters": hp,
            "final_loss": round(history[-1], 4),
            "train_seconds": round(time.perf_counter() - start, 2),
        }
        names = list(label_names) if label_names is not None else [f"label{i}" for i in range(len(labels))]
        adapter = cls(weights, info)._with_prototypes(features, dict(zip(names, labels, strict=True)))
        return adapter.mixed(raw_weight, raw_directions(features, colour_dim)) if raw_weight else adapter

    def _with_prototypes(self, features: np.ndarray, labels: Mapping[str, np.ndarray]) -> Adapter:
        """This adapter keeping, for its :data:`PROTOTYPED` part, the unit mean of the training
        items' part vectors for each value of the part's label column."""
        found = [p for p in self.info["parts"] if p["name"] == PROTOTYPED]
        column = next((c for c in found[0]["labels"] if c != "groups"), None) if found else None
        if column not in labels:  # the column part_column names
            return self
        values = np.array(["" if v is None or (isinstance(v, float) and v != v) else str(v) for v in labels[column]])
        block = normalize(self.transform(features)[:, self.layout()[PROTOTYPED][0]])
        names = sorted(set(values) - {""})
        if not names:
            return self
        protos = normalize(np.stack([block[values == v].mean(axis=0) for v in names]))
        parts = [{**p, "prototypes": names} if p["name"] == PROTOTYPED else p for p in self.info["parts"]]
        return Adapter({**self.weights, f"{PROTOTYPED}.prototypes": protos}, {**self.info, "parts": parts})

    # -- persistence ------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write an .npz of plain arrays (no pickle) with the JSON header inside; atomically."""
        path = Path(path)
        info = {**self.info, "format": FORMAT, "version": VERSION}
        header = np.frombuffer(json.dumps(info, sort_keys=True).encode("utf-8"), dtype=np.uint8)
        atomic_write(path, lambda f: np.savez(f, header=header, **self.weights))

    @classmethod
    def load(cls, path: str | Path) -> Adapter:
        """Read an adapter written by :meth:`save` (or a version-1 file), refusing anything else
        (pickles included): DamagedFile for a file that is not one, or not readable (missing
        included)."""
        try:
            with np.load(path, allow_pickle=False) as data:
                if "header" not in data.files:
                    raise DamagedFile(path, f"not a stylesense adapter (arrays {sorted(data.files)})")
                info = json.loads(data["header"].tobytes().decode("utf-8"))
                weights = {k: data[k] for k in data.files if k != "header"}
        except DamagedFile:
            raise
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as err:  # ValueError: JSON, pickle
            raise DamagedFile(path, f"not a readable stylesense adapter ({err})") from err
        if not isinstance(info, dict) or info.get("format") != FORMAT or info.get("version") not in (1, VERSION):
            raise DamagedFile(path, "unsupported adapter format")
        if info["version"] == 1:
            info.pop("parts", None)
        try:
            return cls(weights, info)
        except InvalidInput as err:
            raise DamagedFile(path, f"not a stylesense adapter ({err})") from None


def _inputs(features: np.ndarray, colour_dim: int) -> np.ndarray:
    """What the heads read: the unit CNN features, then the unit colour descriptor if any."""
    if not colour_dim:
        return normalize(features)
    cut = features.shape[1] - colour_dim
    return np.concatenate([normalize(features[:, :cut]), normalize(features[:, cut:])], axis=1)


def parse_mix(text: str) -> float | None:
    """`--mix` as the library takes it: a weight in [0, 1), or None for "auto"."""
    if text == "auto":
        return None
    try:
        value = float(text)
    except ValueError:
        raise InvalidInput(f"--mix is a number in [0, 1) or auto, not {text!r}") from None
    if not 0 <= value < 1:
        raise InvalidInput(f"--mix is a number in [0, 1) or auto, not {text!r}")
    return value


MIX_GRID = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


def validated_mix(
    features: np.ndarray,
    labels: Sequence[np.ndarray],
    groups: np.ndarray | None = None,
    *,
    label_names: Sequence[str] | None = None,
    grid: Sequence[float] = MIX_GRID,
    holdout: str = "products",
    **train_args: Any,
) -> tuple[float, dict[str, float]]:
    """The raw-vector weight (see :meth:`Adapter.mixed`) chosen on the training items only: an
    adapter trained on a group-aware part of them (adapt_split, seed 1), each weight of ``grid``
    scored on the rest by the mean of P@10 over the label columns (and same-group R@10).
    ``holdout="labels"`` validates on held-out values of the first label column instead
    (label_split, seed 1): the weight that serves kinds of product the adapter never saw.
    Returns (best weight, {weight: score}); the caller then trains on all its items."""
    from stylesense.evaluation.retrieval import adapt_split, exact_search, label_split, retrieval_metrics

    ids = np.arange(len(features))
    if holdout == "labels":
        fit, val, _ = label_split(ids, labels[0], groups, seed=1)
    elif holdout == "products":
        fit, val = adapt_split(ids, groups, seed=1)
    else:
        raise InvalidInput(f"unknown holdout {holdout!r}: products or labels")
    adapter = Adapter.train(features[fit], [c[fit] for c in labels], None if groups is None else groups[fit],
                            label_names=label_names, **train_args)
    directions = raw_directions(features[fit], int(train_args.get("colour_dim", 0)))
    scores: dict[str, float] = {}
    for w in grid:
        vectors = (adapter.mixed(w, directions) if w else adapter).transform(features[val])
        search = exact_search(vectors, ids[val])
        found = []
        for i, column in enumerate([*labels, *([] if groups is None else [None])]):
            res = retrieval_metrics(search, ids[val], vectors, column[val] if column is not None else
                                    np.full(int(val.sum()), ""), None if column is not None else groups[val])
            found.append(res["precision_at_k"] if column is not None else res["group_recall_at_k"])
        found = [f for f in found if f is not None]
        scores[str(w)] = round(float(np.mean(found)), 4) if found else 0.0
    best = max(grid, key=lambda w: (scores[str(w)], -w))
    return float(best), scores
