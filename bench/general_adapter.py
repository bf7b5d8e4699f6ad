"""A general fashion adapter from licence-clean data: does Fashion-MNIST beat ImageNet features?

The Kaggle and H&M photos may not be used to train a file shipped in the package (their
licences allow development and evaluation only); Fashion-MNIST (MIT, Debian's
dataset-fashion-mnist) may. So an adapter trained on it alone could be the default for a new
catalogue that has no labels at all -- if it helps on catalogues it never saw. This measures it.

Training data: Fashion-MNIST decoded by stylesense.datasets.fashion_mnist (all 70,000 images by
default, both original splits: nothing of it is evaluated here) into bench/results/fmnist,
embedded with the default lite0 recipe (letterbox + GeM, default precision: bf16 where the CPU
has it, as the shared catalogue features) and cached under bench/results/features. Variants:
the images as decoded (light garment on black), the same images inverted (dark on white, like
studio product shots: the domain the catalogues are in) and one epoch (less specialised to
28x28 grey thumbnails than the default's step budget). One label column (the 10 classes), no groups.

Tests, on catalogues the adapter never saw (exact cosine, k = 10):
- whole catalogue: Kaggle articleType P@10 / mAP@10, H&M product_type_name P@10 / mAP@10 and
  same-product (product_code) R@10; off-the-shelf vs each variant mixed with the raw vector at
  W = 0 (adapter alone) .. 0.9 (Adapter.mixed);
- labels held out (label_split seed 0, the test side of bench/adapter.py --protocol labels), so
  the numbers sit next to docs/adapter.md's tables: all / seen / unseen for the same rows;
- "start from it": each catalogue's own default adapter (training side of that split) trained on
  the raw features vs on [raw, FMNIST-adapted] features, on the same test side.

    python bench/general_adapter.py [--threads 1] [--n 70000]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageOps
from threadpoolctl import threadpool_limits

from stylesense.datasets import fashion_mnist
from stylesense.evaluation.retrieval import label_split
from stylesense.vision.adapter import MIX_GRID, Adapter, normalize
from stylesense.vision.embedder import Embedder, make_embedder

import adapter as ab
from common import RESULTS, write_json

RECIPE = "letterbox-gem"
MIX = (*MIX_GRID, 0.8, 0.9)  # the library's grid stops at 0.7; past it the trend shows where raw takes over
VARIANTS = {"fmnist": ("as-is", {}), "fmnist-inverted": ("inverted", {}), "fmnist-1ep": ("as-is", {"epochs": 1})}


def fmnist_features(emb: Embedder, n: int | None, invert: bool) -> tuple[np.ndarray, np.ndarray]:
    """(features, class names) of the first ``n`` Fashion-MNIST images, embedded once and cached."""
    source = fashion_mnist(RESULTS / "fmnist", n=n)
    meta = pd.read_csv(source.csv, dtype=str, keep_default_na=False)
    tag = f"fmnist{'-inverted' if invert else ''}-{len(meta)}_lite0-{RECIPE}-{emb.precision}"
    path = ab.FEATURES / f"{tag}.npz"
    if not path.exists():
        start = time.perf_counter()
        paths = [source.image_path(r) for r in meta.to_dict("records")]
        if invert:  # in memory: the PNGs on disk stay as the loader wrote them
            feats = np.concatenate([emb.embed_batch([ImageOps.invert(Image.open(p).convert("RGB"))
                                                     for p in paths[i:i + 256]]) for i in range(0, len(paths), 256)])
        else:
            feats, failed = emb.embed_files(paths, workers=1)
            if failed:
                raise SystemExit(f"{len(failed)} Fashion-MNIST images failed, e.g. {next(iter(failed.values()))}")
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, ids=meta["id"].to_numpy(str), features=feats)
        os.replace(tmp, path)
        print(f"embedded {len(meta)} images into {path} in {time.perf_counter() - start:.0f}s", flush=True)
    with np.load(path, allow_pickle=False) as data:
        return data["features"].astype(np.float32), meta["articleType"].to_numpy()


def rows_of(adapters: dict[str, Adapter], feats: np.ndarray, score) -> dict[str, dict]:
    """Off-the-shelf, then every adapter at every raw weight, scored by ``score(vectors)``."""
    out = {"off-the-shelf": score(normalize(feats))}
    for name, adapter in adapters.items():
        for w in MIX:
            out[name if w == 0 else f"{name} +mix {w:.1f}"] = score((adapter.mixed(w) if w else adapter).transform(feats))
    return out


def cell(r: dict) -> str:
    grec = r["group_recall_at_k"]
    return f"P@10 {r['precision_at_k']:.3f} mAP {r['map_at_k']:.3f}" + ("" if grec is None else f" R@10 {grec:.3f}")


def best_mix(rows: dict, name: str, pick) -> str:
    """The row of adapter ``name`` (any W) with the highest ``pick(row)``: an oracle choice on the test data."""
    return max((k for k in rows if k == name or k.startswith(f"{name} +mix")), key=lambda k: pick(rows[k]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n", type=int, default=70000, help="Fashion-MNIST images to train on (first n, 6:1 train/test)")
    args = parser.parse_args()
    t0 = time.perf_counter()
    emb = make_embedder("lite0", cache_dir=ab.FEATURES, threads=args.threads)
    print(f"features: {RECIPE}, {emb.precision}", flush=True)
    doc: dict = {"k": ab.K, "threads": args.threads, "recipe": RECIPE, "precision": emb.precision,
                 "fmnist_images": args.n, "mix_grid": list(MIX)}
    with threadpool_limits(args.threads):
        adapters, info = {}, {}
        for name, (look, hp) in VARIANTS.items():
            feats, labels = fmnist_features(emb, args.n, look == "inverted")
            adapters[name] = Adapter.train(feats, [labels], label_names=["fmnist_class"], threads=args.threads, **hp)
            info[name] = {"images": look, **{k: adapters[name].info[k] for k in ("train_items", "epochs", "steps",
                                                                                  "final_loss", "train_seconds")}}
            print(f"trained {name}: {info[name]}", flush=True)
        doc["adapters"] = info
        catalogues = {name: ab.load(name, RECIPE, emb) for name in ab.DATASETS}
        doc["whole"], doc["labels"], doc["start_from_it"] = {}, {}, {}
        for name, loaded in catalogues.items():
            if loaded is None:
                continue
            ids, feats, meta = loaded
            _, _, _, label, group, _ = ab.DATASETS[name]
            # whole catalogue, never seen by any FMNIST adapter
            rows = rows_of(adapters, feats, lambda v: ab.scores(ab.evaluate(v, ids, meta, label, group)))
            doc["whole"][name] = {"label": label, "group": group, "items": len(ids), "rows": rows}
            print(f"\n{name} whole catalogue ({len(ids)} items, {label}{', ' + group if group else ''})")
            for row, r in rows.items():
                print(f"  {row:28s} {cell(r)}")
            # labels held out: the test side of bench/adapter.py --protocol labels
            train, test, unseen = label_split(ids, meta[label].to_numpy(), meta[group].to_numpy() if group else None, seed=0)
            t_ids, t_meta, t_unseen = ids[test], meta[test], unseen[test]
            split = rows_of(adapters, feats[test],
                            lambda v: ab.seen_unseen(v, t_ids, t_meta, label, group, t_unseen))
            doc["labels"][name] = {"train_items": int(train.sum()), "test_items": int(test.sum()),
                                   "unseen_items": int(t_unseen.sum()), "rows": split}
            print(f"{name} labels held out, test side ({int(test.sum())} items, {int(t_unseen.sum())} unseen)")
            shown = ["off-the-shelf"] + [r for a in adapters for r in (a, best_mix(split, a, lambda s: s["all"]["precision_at_k"]))]
            for row in dict.fromkeys(shown):
                print(f"  {row:28s} " + " | ".join(f"{p} {cell(split[row][p])}" for p in ("all", "seen", "unseen")))
            # start from it: the catalogue's own default adapter on raw vs [raw, FMNIST-adapted] input
            columns = ab.lever_columns(name, "default")
            general = adapters["fmnist"]
            own = {}
            for tag, x in (("own adapter (raw)", feats),
                           ("own adapter (raw+fmnist)", np.hstack([normalize(feats), general.transform(feats)]))):
                own_adapter = ab.train(x[train], meta[train], columns, group, args.threads)
                own[tag] = {**ab.seen_unseen(own_adapter.transform(x[test]), t_ids, t_meta, label, group, t_unseen),
                            "train_seconds": own_adapter.info["train_seconds"]}
                print(f"  {tag:28s} " + " | ".join(f"{p} {cell(own[tag][p])}" for p in ("all", "seen", "unseen")), flush=True)
            doc["start_from_it"][name] = {"labels": columns, "rows": own}
    doc["wall_seconds"] = round(time.perf_counter() - t0, 1)
    print(f"\nwall {doc['wall_seconds']:.0f}s")
    write_json(RESULTS / "general_adapter.json", doc)


if __name__ == "__main__":
    main()
