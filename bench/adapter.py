"""Catalogue adaptation benchmark: off-the-shelf vs adapted search vectors on real features.

Honest protocol: adapt_split (seed 0, whole products on one side) cuts each catalogue in two;
the adapter trains on one half and the other half is searched ALONE (exact cosine), so every
test query and every result is an item (and a product) the adapter never saw.
`--tune` instead cuts the training half again (seed 1) and compares hyper-parameters on that
validation part only; the test half is not touched, so the defaults are not fitted to it.

Features are EfficientNet-Lite0 vectors of the shared photos, made once per image recipe
(`--recipe`: the embedder's default `letterbox-gem`, or `square-mean`, the recipe before v2)
and inference precision (`--precision`: the embedder's default `auto`, i.e. bf16 where the CPU
has it natively, else fp32) and cached under bench/results/features; skips with a reason where
the data is absent.

    python bench/adapter.py [--threads 2] [--tune] [--recipe letterbox-gem|square-mean] [--precision auto|fp32|bf16]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from stylesense.evaluation.retrieval import adapt_split, retrieval_metrics
from stylesense.vision.adapter import Adapter, normalize
from stylesense.vision.embedder import PRECISIONS, Embedder

from common import write_json

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"
FEATURES = Path(os.environ.get("STYLESENSE_FEATURES", ROOT / "bench" / "results" / "features"))
RESULTS = ROOT / "bench" / "results" / "adapter.json"
K = 10

# name -> (features file, metadata csv, id column, evaluated label, group column, label sets to train with)
DATASETS = {
    "kaggle": (
        "kaggle_lite0",
        DATA / "fashion-product-images" / "styles.csv",
        "id",
        "articleType",
        None,
        {
            "articleType": ["articleType"],
            "articleType+subCategory": ["articleType", "subCategory"],
            "articleType+subCategory+gender": ["articleType", "subCategory", "gender"],
            "articleType+baseColour": ["articleType", "baseColour"],
        },
    ),
    "hm": (
        "hm_lite0",
        DATA / "hm" / "articles.csv",
        "article_id",
        "product_type_name",
        "product_code",
        {
            "product_type_name": ["product_type_name"],
            "product_type_name+groups": ["product_type_name", "groups"],
            "product_type_name+product_group_name+groups": ["product_type_name", "product_group_name", "groups"],
            "product_type_name+colour_group_name+groups": ["product_type_name", "colour_group_name", "groups"],
        },
    ),
}
# (dataset, metric key, target for the adapted default): the project's acceptance targets
TARGETS = [("kaggle", "precision_at_k", 0.80), ("hm", "precision_at_k", 0.72), ("hm", "group_recall_at_k", 0.60)]
DEFAULT_SET = {"kaggle": "articleType+subCategory", "hm": "product_type_name+product_group_name+groups"}

TUNE_GRID = [
    {},
    {"scale": 8.0},
    {"scale": 12.0},
    {"scale": 16.0},
    {"epochs": 50},
    {"epochs": 200},
    {"hidden": 512},
    {"input_dropout": 0.0},
    {"dropout": 0.3},
    {"lr": 1e-3},
]


RECIPES = ("letterbox-gem", "square-mean")  # image fit - pooling; the first is the default


def load(name: str, recipe: str, emb: Embedder) -> tuple[np.ndarray, np.ndarray, pd.DataFrame] | None:
    """Features and the metadata rows in the same order, or None (with a message) if absent.
    ``emb`` (from :func:`embedder`) makes them if they are not cached yet."""
    stem, csv, id_col, *_ = DATASETS[name]
    path = FEATURES / f"{stem}-{recipe}-{emb.precision}.npz"
    if not csv.exists():
        print(f"skip {name}: {csv} is absent")
        return None
    if not path.exists():
        extract(name, path, emb)
    with np.load(path, allow_pickle=False) as data:
        ids, feats = data["ids"].astype(str), data["features"].astype(np.float32)
    meta = pd.read_csv(csv, dtype=str, keep_default_na=False).set_index(id_col)
    known = np.isin(ids, meta.index)
    ids, feats = ids[known], feats[known]
    return ids, feats, meta.loc[ids]


def embedder(recipe: str, precision: str) -> Embedder:
    """The lite0 embedder of that recipe and precision; its ``precision`` attribute says
    which one "auto" became here. Asking for bf16 on a CPU without it stops the run."""
    from stylesense.vision.embedder import make_embedder

    fit, pooling = recipe.split("-")
    emb = make_embedder("lite0", cache_dir=FEATURES, threads=2, fit=fit, pooling=pooling, precision=precision)
    if precision != "auto" and emb.precision != precision:
        sys.exit(f"{precision} inference is not available on this machine")
    return emb


def extract(name: str, path: Path, emb: Embedder) -> None:
    """Embed the data set's photos once (raw lite0 features) and cache them."""
    from stylesense.datasets import hm_articles, kaggle_fashion

    source = (kaggle_fashion if name == "kaggle" else hm_articles)(DATASETS[name][1].parent)
    meta = pd.read_csv(source.csv, dtype=str, keep_default_na=False)
    print(f"embedding {len(meta)} {name} photos into {path} (once)")
    feats, failed = emb.embed_files([source.image_path(row) for row in meta.to_dict("records")])
    keep = np.array([i not in failed for i in range(len(meta))])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, ids=meta[source.id_column].to_numpy(str)[keep], features=feats[keep])
    os.replace(tmp, path)


def search_over(vectors: np.ndarray, ids: np.ndarray):
    """Exact cosine search over one catalogue half (vectors are unit norm)."""

    def search(queries: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
        scores = queries @ vectors.T
        top = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        return np.take_along_axis(scores, top, axis=1), ids[top]

    return search


def evaluate(vectors: np.ndarray, ids: np.ndarray, meta: pd.DataFrame, label: str, group: str | None) -> dict:
    groups = meta[group].to_numpy() if group else None
    return retrieval_metrics(search_over(vectors, ids), ids, vectors, meta[label].to_numpy(), groups, k=K)


def train(feats: np.ndarray, meta: pd.DataFrame, columns: list[str], group: str | None, threads: int, **hp) -> Adapter:
    labels = [meta[c].to_numpy() for c in columns if c != "groups"]
    names = [c for c in columns if c != "groups"]
    groups = meta[group].to_numpy() if group and "groups" in columns else None
    return Adapter.train(feats, labels, groups, label_names=names, threads=threads, **hp)


def run_tune(threads: int, recipe: str, emb: Embedder) -> dict:
    """Compare hyper-parameters on a validation part of each training half (never the test half)."""
    out = {}
    for name, (_, _, _, label, group, sets) in DATASETS.items():
        loaded = load(name, recipe, emb)
        if loaded is None:
            continue
        ids, feats, meta = loaded
        groups = meta[group].to_numpy() if group else None
        train_mask, _ = adapt_split(ids, groups, seed=0)
        t_ids, t_feats, t_meta = ids[train_mask], feats[train_mask], meta[train_mask]
        fit, val = adapt_split(t_ids, t_meta[group].to_numpy() if group else None, seed=1)
        base = evaluate(normalize(t_feats[val]), t_ids[val], t_meta[val], label, group)
        rows = [("off-the-shelf", "-", base, 0.0)]
        print_row(name, *rows[0])
        for hp in TUNE_GRID:
            adapter = train(t_feats[fit], t_meta[fit], sets[DEFAULT_SET[name]], group, threads, **hp)
            res = evaluate(adapter.transform(t_feats[val]), t_ids[val], t_meta[val], label, group)
            rows.append((json.dumps(hp), DEFAULT_SET[name], res, adapter.info["train_seconds"]))
            print_row(name, *rows[-1])
        out[name] = [{"hyper_parameters": r[0], "labels": r[1], **r[2], "train_seconds": r[3]} for r in rows]
    return out


def print_row(dataset: str, method: str, labels: str, res: dict, seconds: float) -> None:
    grec = res["group_recall_at_k"]
    print(
        f"{dataset:7s} {method:24s} {labels:45s} P@10 {res['precision_at_k']:.3f}  mAP@10 {res['map_at_k']:.3f}  "
        f"group R@10 {'   -  ' if grec is None else f'{grec:.3f}'}  train {seconds:5.1f}s",
        flush=True,
    )


def run_bench(threads: int, recipe: str, emb: Embedder) -> dict:
    out: dict = {}
    for name, (_, _, _, label, group, sets) in DATASETS.items():
        loaded = load(name, recipe, emb)
        if loaded is None:
            continue
        ids, feats, meta = loaded
        groups = meta[group].to_numpy() if group else None
        train_mask, test_mask = adapt_split(ids, groups, seed=0)
        whole = evaluate(normalize(feats), ids, meta, label, group)
        print_row(name, "off-the-shelf, whole set", "-", whole, 0.0)
        test_ids, test_meta = ids[test_mask], meta[test_mask]
        base = evaluate(normalize(feats[test_mask]), test_ids, test_meta, label, group)
        print_row(name, "off-the-shelf, test half", "-", base, 0.0)
        entry = {
            "label": label,
            "group": group,
            "train_items": int(train_mask.sum()),
            "test_items": int(test_mask.sum()),
            "off_the_shelf_whole": whole,
            "off_the_shelf": base,
            "adapted": {},
        }
        for set_name, columns in sets.items():
            start = time.perf_counter()
            adapter = train(feats[train_mask], meta[train_mask], columns, group, threads)
            seconds = time.perf_counter() - start
            res = evaluate(adapter.transform(feats[test_mask]), test_ids, test_meta, label, group)
            tag = "adapted (default)" if set_name == DEFAULT_SET[name] else "adapted"
            print_row(name, tag, set_name, res, seconds)
            entry["adapted"][set_name] = {**res, "train_seconds": round(seconds, 2), "info": adapter.info}
        entry["default_labels"] = DEFAULT_SET[name]
        out[name] = entry
    return out


def summarise(results: dict) -> list[dict]:
    """Off-the-shelf vs adapted (default label set) against each target, on the test halves."""
    rows = []
    for name, metric, target in TARGETS:
        if name not in results:
            continue
        entry = results[name]
        adapted = entry["adapted"][entry["default_labels"]]
        rows.append(
            {
                "dataset": name,
                "metric": f"{metric} ({entry['group'] if metric.startswith('group') else entry['label']})",
                "off_the_shelf": entry["off_the_shelf"][metric],
                "adapted": adapted[metric],
                "target": target,
                "met": adapted[metric] >= target,
                "train_seconds": adapted["train_seconds"],
            }
        )
        r = rows[-1]
        print(
            f"{name:7s} {r['metric']:40s} off-the-shelf {r['off_the_shelf']:.3f}  adapted {r['adapted']:.3f}  "
            f"target {target:.2f} {'met' if r['met'] else 'MISSED'}  (train {r['train_seconds']:.0f}s)"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tune", action="store_true", help="compare hyper-parameters on validation data only")
    parser.add_argument("--recipe", choices=RECIPES, default=RECIPES[0], help="image fit and pooling of the features")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help="inference precision of the features")
    args = parser.parse_args()
    emb = embedder(args.recipe, args.precision)
    precision = emb.precision
    print(f"features: {args.recipe}, {precision}")
    with threadpool_limits(args.threads):
        results = (run_tune if args.tune else run_bench)(args.threads, args.recipe, emb)
    if not results:
        sys.exit(0)
    summary = [] if args.tune else summarise(results)
    suffix = ("" if args.recipe == RECIPES[0] else f"-{args.recipe}") + ("" if args.precision == "auto" else f"-{precision}")
    path = RESULTS.with_name(("adapter_tune" if args.tune else "adapter") + suffix + ".json")
    write_json(path, {"k": K, "threads": args.threads, "recipe": args.recipe, "precision": precision,
                      "summary": summary, "results": results})


if __name__ == "__main__":
    main()
