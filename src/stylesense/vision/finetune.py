"""Fine-tune EfficientNet-Lite's last stage(s) on a catalogue's labels, from cached activations.

The adapter (vision.adapter) re-weights frozen pooled features: whatever the pooling has thrown
away it cannot get back. Training the last blocks too lets the network re-decide what its final
feature map says. Running the whole network at every step would take hours on two cores, but the
blocks before the cut are frozen, so their output is computed once per photo
(:func:`cache_activations`) and every epoch runs only the tail (for lite0's last stage, block 15
and the 1x1 head: about a tenth of the network's work).

The tail trains with the adapter's loss (a normalised-softmax over one proxy per label value and
per same-product group) through a linear projection that is thrown away afterwards: what is kept
is the tuned tail itself (:class:`TunedStage`), so the embedder runs the fine-tuned network
exported to ONNX like the ImageNet one (fp32 or bf16) and its features feed search, the raw-vector
mix and the adapter exactly as off-the-shelf features do. Batch norms keep their ImageNet
statistics (a few thousand photos in batches of 64 would only add noise to them).
"""

from __future__ import annotations

import hashlib
import json
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stylesense.atomic import DamagedFile, atomic_write
from stylesense.errors import InvalidInput
from stylesense.vision.adapter import label_targets, proxy_loss
from stylesense.vision.embedder import CNN_DIM, EfficientNetLiteEmbedder

FORMAT = "stylesense-tuned-stage"


def stage_starts(net: Any) -> list[int]:
    """Index of the first block of each stage (where the channel count changes)."""
    blocks = net.backbone._blocks
    return [i for i, b in enumerate(blocks) if i == 0 or b._block_args.input_filters != b._block_args.output_filters]


@dataclass
class Activations:
    """What enters block ``cut`` for each photo, grouped by canvas shape (the letterbox gives
    each photo the canvas of its shape class, so a catalogue has one to three shapes).

    ``shapes``: (rows of the photos, their float16 activations (m, C, h, w)) per shape;
    ``failures``: {row: reason} of photos that could not be read (no activations)."""

    cut: int
    n: int
    shapes: list[tuple[np.ndarray, np.ndarray]]
    failures: dict[int, str] = field(default_factory=dict)

    @property
    def rows(self) -> np.ndarray:
        """Every row with activations, in the order :meth:`subset` and :func:`pooled` use."""
        return np.concatenate([r for r, _ in self.shapes]) if self.shapes else np.zeros(0, np.int64)

    def subset(self, mask: np.ndarray) -> Activations:
        """The photos of rows where ``mask`` (length n) is true, renumbered 0..mask.sum()-1."""
        new_row = np.cumsum(mask) - 1
        shapes = [(new_row[r[mask[r]]], a[mask[r]]) for r, a in self.shapes if mask[r].any()]
        return Activations(self.cut, int(mask.sum()), shapes,
                           {int(new_row[i]): why for i, why in self.failures.items() if mask[i]})


def cache_activations(emb: EfficientNetLiteEmbedder, paths: Sequence[Path], stages: int = 1, *,
                      batch_size: int = 32, workers: int = 2) -> Activations:
    """Decode each photo as ``emb`` does (its fit, its canvas, :meth:`Embedder.decoded`) and run
    the frozen blocks once: the activations entering the last ``stages`` stages. Unreadable
    photos are reported in ``failures``, the rest go on."""
    import torch

    from stylesense.vision.network import lite_network

    net = lite_network(emb.variant, emb.pooling)
    starts = stage_starts(net)
    if not 1 <= stages < len(starts):
        raise InvalidInput(f"stages must be 1..{len(starts) - 1}")
    cut = starts[-stages]
    by_shape: dict[tuple[int, ...], tuple[list[int], list[np.ndarray]]] = {}
    failures: dict[int, str] = {}
    with torch.inference_mode():
        for rows, prepared, failed in emb.decoded(paths, batch_size=batch_size, workers=workers):
            failures.update(failed)
            inputs: dict[tuple[int, ...], tuple[list[int], list[np.ndarray]]] = {}
            for row, (image, _) in zip(rows, prepared, strict=True):
                batch_rows, arrays = inputs.setdefault(image.shape, ([], []))
                batch_rows.append(row)
                arrays.append(image)
            for shape, (batch_rows, arrays) in inputs.items():
                acts = net.trunk(torch.from_numpy(np.stack(arrays)), cut).numpy().astype(np.float16)
                kept_rows, kept = by_shape.setdefault(shape, ([], []))
                kept_rows += batch_rows
                kept.append(acts)
    shapes = [(np.asarray(rows, np.int64), np.concatenate(arrays)) for rows, arrays in by_shape.values()]
    return Activations(cut, len(paths), shapes, failures)


@dataclass(frozen=True)
class TunedStage:
    """The fine-tuned weights of a network's tail: state-dict entries from block ``cut`` on."""

    variant: str
    pooling: str
    cut: int
    weights: dict[str, np.ndarray]
    info: dict

    @property
    def digest(self) -> str:
        """Names the exported model in the cache: another fine-tune is another file."""
        h = hashlib.sha256(f"{self.variant}/{self.pooling}/{self.cut}".encode())
        for name in sorted(self.weights):
            h.update(name.encode())
            h.update(np.ascontiguousarray(self.weights[name], dtype=np.float32).tobytes())
        return h.hexdigest()[:16]

    def network(self) -> Any:
        from stylesense.vision.network import lite_network

        return lite_network(self.variant, self.pooling, self.weights)

    def save(self, path: str | Path) -> None:
        """An .npz of plain arrays with a JSON header (no pickle), written atomically."""
        info = {**self.info, "format": FORMAT, "variant": self.variant, "pooling": self.pooling, "cut": self.cut}
        header = np.frombuffer(json.dumps(info, sort_keys=True).encode("utf-8"), dtype=np.uint8)
        arrays = {f"w{i}": self.weights[name] for i, name in enumerate(sorted(self.weights))}
        names = np.frombuffer(json.dumps(sorted(self.weights)).encode("utf-8"), dtype=np.uint8)
        atomic_write(Path(path), lambda f: np.savez(f, header=header, names=names, **arrays))

    @classmethod
    def load(cls, path: str | Path) -> TunedStage:
        """Read a file :meth:`save` wrote; DamagedFile for anything else."""
        try:
            with np.load(path, allow_pickle=False) as data:
                info = json.loads(data["header"].tobytes().decode("utf-8"))
                names = json.loads(data["names"].tobytes().decode("utf-8"))
                weights = {name: data[f"w{i}"] for i, name in enumerate(names)}
        except (KeyError, OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise DamagedFile(path, f"not a readable fine-tune ({err})") from err
        if not isinstance(info, dict) or info.get("format") != FORMAT:
            raise DamagedFile(path, "not a stylesense fine-tune")
        return cls(info["variant"], info["pooling"], int(info["cut"]), weights, info)


def pooled(net: Any, acts: Activations, batch_size: int = 256) -> np.ndarray:
    """(n, CNN_DIM) float32 features of every photo: ``net``'s tail over its cached activations
    (zero rows for the failures), equal to the full network on the same photos."""
    import torch

    out = np.zeros((acts.n, CNN_DIM), np.float32)
    with torch.inference_mode():
        for rows, arrays in acts.shapes:
            for s in range(0, len(rows), batch_size):
                x = torch.from_numpy(arrays[s : s + batch_size].astype(np.float32))
                out[rows[s : s + batch_size]] = net.tail(x, acts.cut).numpy()
    return out


def finetune(
    acts: Activations,
    labels: Sequence[np.ndarray],
    groups: np.ndarray | None = None,
    *,
    variant: str = "lite0",
    pooling: str = "gem",
    label_names: Sequence[str] | None = None,
    epochs: int = 6,
    max_steps: int = 400,
    lr: float = 1e-4,
    head_lr: float = 3e-3,
    weight_decay: float = 1e-4,
    scale: float = 10.0,
    out_dim: int = 256,
    batch_size: int = 64,
    seed: int = 0,
    threads: int | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> TunedStage:
    """Train the tail (blocks from ``acts.cut`` on, the 1x1 head) on ``labels`` / ``groups``
    (one value per row of ``acts``; as :meth:`stylesense.vision.adapter.Adapter.train` takes
    them). ``epochs`` passes, capped at ``max_steps`` optimiser steps in all so that a big
    catalogue trains in bounded time. ``progress(epoch, epochs, mean_loss)`` after each epoch."""
    import torch
    import torch.nn.functional as F

    start = time.perf_counter()
    targets = label_targets(labels, groups, label_names, acts.n)
    from stylesense.vision.network import lite_network

    net = lite_network(variant, pooling)
    tail = net.tail_parameters(acts.cut)
    for p in net.parameters():
        p.requires_grad_(False)
    for p in tail.values():
        p.requires_grad_(True)
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            gen = torch.Generator().manual_seed(seed)
            project = torch.nn.Linear(CNN_DIM, out_dim)
            proxies = [torch.nn.Parameter(torch.randn(k, out_dim, generator=gen)) for _, k, _ in targets]
            opt = torch.optim.AdamW([{"params": list(tail.values()), "lr": lr},
                                     {"params": [*project.parameters(), *proxies], "lr": head_lr}],
                                    weight_decay=weight_decay)
            batches = [(shape, s) for shape, (rows, _) in enumerate(acts.shapes) for s in range(0, len(rows), batch_size)]
            epochs = max(1, min(epochs, max_steps // max(1, len(batches))))
            total_steps = max(1, epochs * len(batches))
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[lr, head_lr], total_steps=total_steps,
                                                        pct_start=0.1 if total_steps > 20 else 0.3)
            codes = [torch.from_numpy(c) for c, _, _ in targets]
            history: list[float] = []
            for epoch in range(epochs):
                perms = [torch.randperm(len(rows), generator=gen) for rows, _ in acts.shapes]
                order = torch.randperm(len(batches), generator=gen).tolist()
                total = 0.0
                for b in order:
                    shape, s = batches[b]
                    rows, arrays = acts.shapes[shape]
                    pick = perms[shape][s : s + batch_size].numpy()
                    x = torch.from_numpy(arrays[pick].astype(np.float32))
                    emb = F.normalize(project(F.normalize(net.tail(x, acts.cut), dim=1)), dim=1)
                    loss = proxy_loss(emb, torch.from_numpy(rows[pick]), codes, proxies, scale)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    sched.step()
                    total += float(loss.detach())
                history.append(total / max(1, len(batches)))
                if progress is not None:
                    progress(epoch + 1, epochs, history[-1])
    finally:
        torch.set_num_threads(previous_threads)
    weights = {name: p.detach().numpy().copy() for name, p in tail.items()}
    info = {"labels": [{"name": name, "classes": k, "items": int((c >= 0).sum())} for c, k, name in targets],
            "train_items": int(sum(len(r) for r, _ in acts.shapes)), "epochs": epochs, "steps": total_steps,
            "hyper_parameters": {"lr": lr, "head_lr": head_lr, "weight_decay": weight_decay, "scale": scale,
                                 "out_dim": out_dim, "batch_size": batch_size, "seed": seed},
            "final_loss": round(history[-1], 4) if history else None,
            "train_seconds": round(time.perf_counter() - start, 2)}
    return TunedStage(variant, pooling, acts.cut, weights, info)

