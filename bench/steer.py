"""Steered search benchmark: "same cut, other colours" on H&M, "same colour, other types" on Kaggle.

A steerable adapter (vision.adapter.steerable_parts: a shape part trained on the type columns
and same-product groups, a colour part on the colour column) trains on one half of each
catalogue (adapt_split, seed 0) and the other half is searched alone, exactly, so every query
and result is a product the adapter never saw.

- H&M, "same cut, other colours" (--same shape --vary colour): R@10 of the query product's
  other colour variants (same product_code, another colour_group_name; variants of the query's
  own colour are neither relevant nor counted), over test items that have such variants.
- Kaggle, "same colour, other types" (--same colour --vary type): share of the top 10 with the
  query's baseColour and another articleType (target >= 0.80).

Each is compared with plain search over the same adapter's full vectors and over off-the-shelf
features, with and without dropping results that share the varied value (what --vary does:
the query's colour, or type). How much --vary should also push the varied part's cosine down
(vision.adapter.STEER_PUSH) is chosen on a validation part of the training half (adapt_split
seed 1), never on the test half; the table shows every strength on the test half too.

    python bench/steer.py [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))

from adapter import DATASETS, RECIPES, embedder, load  # noqa: E402  (bench/adapter.py: cached features)
from common import RESULTS, write_json  # noqa: E402

from stylesense.evaluation.retrieval import adapt_split  # noqa: E402
from stylesense.vision.adapter import STEER_PUSH, Adapter, normalize, steerable_parts  # noqa: E402

K = 10
PUSHES = (0.0, 0.25, 0.5, 1.0)
# name -> (shape label columns, colour column, task)
SETUPS = {
    "hm": (["product_type_name", "product_group_name", "groups"], "colour_group_name", "same cut, other colours"),
    "kaggle": (["articleType", "subCategory", "masterCategory"], "baseColour", "same colour, other types"),
}


def top_k(queries: np.ndarray, vectors: np.ndarray, k: int, banned: np.ndarray | None = None) -> np.ndarray:
    """Rows of the k best results per query, the query itself (same row) and ``banned`` pairs
    (True = may not be returned) left out."""
    scores = queries @ vectors.T
    np.fill_diagonal(scores, -np.inf)
    if banned is not None:
        scores[banned] = -np.inf
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


def other_colour_recall(top: np.ndarray, product: np.ndarray, colour: np.ndarray) -> float:
    """Mean R@k of each query's other-colour variants, over queries that have any."""
    same_product = product[:, None] == product[None, :]
    relevant = same_product & (colour[:, None] != colour[None, :])
    counts = relevant.sum(axis=1)
    rows = np.flatnonzero(counts > 0)
    found = np.take_along_axis(relevant[rows], top[rows], axis=1).sum(axis=1)
    return float(np.mean(found / np.minimum(counts[rows], top.shape[1])))


def same_colour_other_type(top: np.ndarray, colour: np.ndarray, kind: np.ndarray) -> float:
    """Share of the top k with the query's colour and another type, over queries with a colour."""
    rows = np.flatnonzero(colour != "")
    hit = (colour[top[rows]] == colour[rows, None]) & (kind[top[rows]] != kind[rows, None])
    return float(hit.mean())


def varied_column(name: str) -> str:
    """What --vary changes in each task: the colour (H&M) or the type (Kaggle)."""
    return "colour_group_name" if name == "hm" else "articleType"


def score(name: str, vectors: np.ndarray, meta: pd.DataFrame, queries: np.ndarray | None = None,
          vary: bool = False) -> float:
    """The task's metric for a search with these (steered) queries; ``vary``: results sharing
    the query's varied value are dropped, as `--vary` does."""
    values = meta[varied_column(name)].to_numpy(str)
    banned = (values[:, None] == values[None, :]) & (values[:, None] != "") if vary else None
    top = top_k(vectors if queries is None else queries, vectors, K, banned)
    if name == "hm":
        return other_colour_recall(top, meta["product_code"].to_numpy(str), meta["colour_group_name"].to_numpy(str))
    return same_colour_other_type(top, meta["baseColour"].to_numpy(str), meta["articleType"].to_numpy(str))


def train(feats: np.ndarray, meta: pd.DataFrame, name: str, threads: int) -> Adapter:
    shape, colour, _ = SETUPS[name]
    group = DATASETS[name][4]
    columns = [c for c in shape if c != "groups"] + [colour]
    return Adapter.train(feats, [meta[c].to_numpy() for c in columns], meta[group].to_numpy() if group else None,
                         label_names=columns, parts=steerable_parts(shape, [colour]), threads=threads)


def steer_of(name: str, push: float) -> dict[str, float]:
    """The part weights of the task's steered search with --vary pushing at ``push``."""
    same, vary = ("shape", "colour") if name == "hm" else ("colour", "shape")
    return {same: 1.0, **({vary: -push} if push else {})}


def run(threads: int, emb) -> dict:
    out = {}
    for name, (_, _, task) in SETUPS.items():
        loaded = load(name, RECIPES[0], emb)
        if loaded is None:
            continue
        ids, feats, meta = loaded
        group = DATASETS[name][4]
        train_mask, test_mask = adapt_split(ids, meta[group].to_numpy() if group else None, seed=0)
        # the push strength, chosen on a validation part of the training half
        t_ids, t_feats, t_meta = ids[train_mask], feats[train_mask], meta[train_mask]
        fit, val = adapt_split(t_ids, t_meta[group].to_numpy() if group else None, seed=1)
        val_adapter = train(t_feats[fit], t_meta[fit], name, threads)
        vv = val_adapter.transform(t_feats[val])
        validation = {str(p): score(name, vv, t_meta[val], val_adapter.steer(vv, steer_of(name, p)), vary=True)
                      for p in PUSHES}
        chosen = max(PUSHES, key=lambda p: (validation[str(p)], -p))

        adapter = train(feats[train_mask], meta[train_mask], name, threads)
        test_meta = meta[test_mask]
        vectors = adapter.transform(feats[test_mask])
        raw = normalize(feats[test_mask])
        rows = {
            "off-the-shelf, plain": score(name, raw, test_meta),
            "off-the-shelf, plain, varied value dropped": score(name, raw, test_meta, vary=True),
            "steerable adapter, plain": score(name, vectors, test_meta),
            "steerable adapter, plain, varied value dropped": score(name, vectors, test_meta, vary=True),
        }
        for p in PUSHES:
            steered = adapter.steer(vectors, steer_of(name, p))
            rows[f"steered, push {p}"] = score(name, vectors, test_meta, steered)
            rows[f"steered, push {p}, varied value dropped"] = score(name, vectors, test_meta, steered, vary=True)
        for label, value in rows.items():
            print(f"{name:7s} {task:26s} {label:48s} {value:.3f}", flush=True)
        print(f"{name:7s} push chosen on validation: {chosen} (vision.adapter.STEER_PUSH {STEER_PUSH}); "
              f"validation {validation}")
        out[name] = {"task": task, "metric": "R@10 of other-colour variants" if name == "hm" else
                     "share of top 10 with the same baseColour and another articleType",
                     "test_items": int(test_mask.sum()), "results": rows,
                     "library": rows[f"steered, push {STEER_PUSH}, varied value dropped"],
                     "validation": validation, "push_chosen_on_validation": chosen, "default_push": STEER_PUSH,
                     "parts": adapter.info["parts"], "train_seconds": adapter.info["train_seconds"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    emb = embedder(RECIPES[0], "auto")
    with threadpool_limits(args.threads):
        results = run(args.threads, emb)
    if results:
        write_json(RESULTS / "steer.json", {"k": K, "precision": emb.precision, "results": results})


if __name__ == "__main__":
    main()
