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
Training runs on CPU with torch; inference is plain numpy, so a home needs no torch to search.
"""

from __future__ import annotations

import json
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from stylesense.atomic import DamagedFile, atomic_write
from stylesense.errors import InvalidInput

FORMAT = "stylesense-adapter"
VERSION = 1
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


def _targets(
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


_WEIGHTS = ("mean", "w1", "b1", "w2", "b2", "skip")


class Adapter:
    """Maps raw CNN features to adapted, L2-normalised search vectors (see module docstring).

    out = normalize(gelu(xc @ w1 + b1) @ w2 + b2 + xc @ skip), xc = normalize(raw) - mean,
    with the input scaling folded into w1 and skip.
    """

    def __init__(self, weights: dict[str, np.ndarray], info: dict) -> None:
        missing = set(_WEIGHTS) - set(weights)
        if missing:
            raise InvalidInput(f"adapter weights lack {sorted(missing)}")
        self.weights = {k: np.ascontiguousarray(weights[k], dtype=np.float32) for k in _WEIGHTS}
        w = self.weights
        d, h = w["w1"].shape
        o = w["w2"].shape[1]
        expected = {"mean": (d,), "b1": (h,), "w2": (h, o), "b2": (o,), "skip": (d, o)}
        if any(w[k].shape != shape for k, shape in expected.items()):
            raise InvalidInput("inconsistent adapter weight shapes")
        self.info = info

    @property
    def in_dim(self) -> int:
        return self.weights["w1"].shape[0]

    @property
    def out_dim(self) -> int:
        return self.weights["w2"].shape[1]

    def transform(self, features: np.ndarray) -> np.ndarray:
        """Adapted search vectors: float32, shape (n, out_dim), unit L2 norm."""
        x = normalize(features)
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise InvalidInput(f"expected features of shape (n, {self.in_dim}), got {x.shape}")
        w = self.weights
        xc = x - w["mean"]
        return normalize(_gelu(xc @ w["w1"] + w["b1"]) @ w["w2"] + w["b2"] + xc @ w["skip"])

    # -- training ---------------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        features: np.ndarray,
        labels: Sequence[np.ndarray],
        groups: np.ndarray | None = None,
        *,
        label_names: Sequence[str] | None = None,
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
        """Fit the head on one catalogue.

        labels: one array per label column (values str; ""/None = unknown, ignored for that column).
        groups: same-product ids ("" = none); only groups with 2+ members teach anything.
        epochs: passes over the catalogue, capped at max_steps optimiser steps in all, so a big
            catalogue trains in bounded time (it needs fewer passes anyway).
        progress(epoch, epochs, mean_loss) is called after every epoch.
        scale: inverse temperature of the cosine softmax; low values keep classes spread out,
            which is what lets the head generalise to unseen products. 10 was chosen on
            validation parts of the training halves (bench/adapter.py protocol) with the v2
            image recipe: H&M product-type P@10 0.674 at 12 -> 0.680 at 10, same-product
            recall 0.678 -> 0.681; Kaggle articleType 0.8005 -> 0.8015.
        """
        import torch
        import torch.nn.functional as F

        start = time.perf_counter()
        x = normalize(features)
        if x.ndim != 2:
            raise InvalidInput(f"features must be 2-d, got shape {x.shape}")
        n, d = x.shape
        targets = _targets(labels, groups, label_names, n)

        mean = x.mean(axis=0)
        xc = x - mean
        # One global factor (not per dimension): unit average variance per input dimension.
        in_scale = float(np.sqrt((xc.astype(np.float64) ** 2).sum(axis=1).mean() / d)) or 1.0
        n_batches = max(1, -(-n // batch_size))
        epochs = max(1, min(epochs, max_steps // n_batches))

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
                z = torch.from_numpy(xc / np.float32(in_scale))
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
                        emb = F.normalize(embed(z[idx]), dim=1)
                        loss = torch.zeros(())
                        for c, prox in zip(codes, proxies, strict=True):
                            y = c[idx]
                            m = y >= 0
                            if m.any():
                                logits = scale * emb[m] @ F.normalize(prox, dim=1).T
                                loss = loss + F.cross_entropy(logits, y[m])
                        opt.zero_grad()
                        loss.backward()
                        opt.step()
                        sched.step()
                        total += float(loss.detach())
                    history.append(total / n_batches)
                    if progress is not None:
                        progress(epoch + 1, epochs, history[-1])
                weights = {
                    "mean": mean,
                    "w1": fc1.weight.detach().numpy().T / in_scale,
                    "b1": fc1.bias.detach().numpy(),
                    "w2": fc2.weight.detach().numpy().T,
                    "b2": fc2.bias.detach().numpy(),
                    "skip": skip.weight.detach().numpy().T / in_scale,
                }
        finally:
            torch.set_num_threads(previous_threads)

        info = {
            "format": FORMAT,
            "version": VERSION,
            "in_dim": d,
            "out_dim": out_dim,
            "hidden": hidden,
            "labels": [{"name": name, "classes": k, "items": int((c >= 0).sum())} for c, k, name in targets],
            "train_items": n,
            "epochs": epochs,
            "steps": total_steps,
            "hyper_parameters": {
                "seed": seed,
                "scale": scale,
                "lr": lr,
                "weight_decay": weight_decay,
                "input_dropout": input_dropout,
                "dropout": dropout,
                "batch_size": batch_size,
            },
            "final_loss": round(history[-1], 4),
            "train_seconds": round(time.perf_counter() - start, 2),
        }
        return cls(weights, info)

    # -- persistence ------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write an .npz of plain arrays (no pickle) with the JSON header inside; atomically."""
        path = Path(path)
        header = np.frombuffer(json.dumps(self.info, sort_keys=True).encode("utf-8"), dtype=np.uint8)
        atomic_write(path, lambda f: np.savez(f, header=header, **self.weights))

    @classmethod
    def load(cls, path: str | Path) -> Adapter:
        """Read an adapter written by :meth:`save`, refusing anything else (pickles included):
        DamagedFile for a file that is not one, or not readable (missing included)."""
        try:
            with np.load(path, allow_pickle=False) as data:
                if set(data.files) != {"header", *_WEIGHTS}:
                    raise DamagedFile(path, f"not a stylesense adapter (arrays {sorted(data.files)})")
                info = json.loads(data["header"].tobytes().decode("utf-8"))
                weights = {k: data[k] for k in _WEIGHTS}
        except DamagedFile:
            raise
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as err:  # ValueError: JSON, pickle
            raise DamagedFile(path, f"not a readable stylesense adapter ({err})") from err
        if not isinstance(info, dict) or info.get("format") != FORMAT or info.get("version") != VERSION:
            raise DamagedFile(path, "unsupported adapter format")
        return cls(weights, info)
