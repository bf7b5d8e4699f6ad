"""Catalogue adaptation benchmark: off-the-shelf vs adapted search vectors on real features.

Three protocols (`--protocol`, default all; each run updates its keys of the JSON):
- half: adapt_split halves (below), the label sets of DATASETS;
- labels: label_split (seed 0) holds out a third of the evaluated label's values (and every
  product with one): P@10 / mAP@10 on the test side for seen and unseen labels, off-the-shelf
  and each lever on the same items;
- cross: an adapter trained on all of one catalogue, tested on all of the other (Kaggle ->
  H&M product_type_name and same-product R@10; H&M -> Kaggle articleType).
Levers: the default label set, the richer hierarchy (+ colour), the raw vector mixed in at a
weight chosen on a validation part of the training side (vision.adapter.validated_mix), and
(labels protocol) training on both catalogues together.

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

    python bench/adapter.py [--threads 2] [--tune] [--protocol all|half|labels|cross] [--levers all|default]
                            [--recipe letterbox-gem|square-mean] [--precision auto|fp32|bf16]
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

from stylesense.evaluation.retrieval import adapt_split, exact_search, label_split, retrieval_metrics
from stylesense.vision.adapter import Adapter, normalize, raw_directions, validated_mix
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
# the richer supervision lever: the whole hierarchy and the colour
RICH_SET = {"kaggle": ["masterCategory", "subCategory", "articleType", "baseColour"],
            "hm": ["product_group_name", "product_type_name", "colour_group_name", "groups"]}
# the label sets of the levers; each is also measured with the raw vector mixed in ("+mix")
LABEL_SETS = ("default", "rich")

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


def evaluate(vectors: np.ndarray, ids: np.ndarray, meta: pd.DataFrame, label: str, group: str | None,
             queries: np.ndarray | None = None) -> dict:
    groups = meta[group].to_numpy() if group else None
    return retrieval_metrics(exact_search(vectors, ids), ids, vectors, meta[label].to_numpy(), groups, k=K,
                             queries=queries)


def train_args(meta: pd.DataFrame, columns: list[str], group: str | None) -> tuple[list[np.ndarray], np.ndarray | None, list[str]]:
    """Label arrays, groups and label names of ``columns`` ("groups" = the group column)."""
    names = [c for c in columns if c != "groups"]
    groups = meta[group].to_numpy() if group and "groups" in columns else None
    return [meta[c].to_numpy() for c in names], groups, names


def train(feats: np.ndarray, meta: pd.DataFrame, columns: list[str], group: str | None, threads: int, **hp) -> Adapter:
    labels, groups, names = train_args(meta, columns, group)
    return Adapter.train(feats, labels, groups, label_names=names, threads=threads, **hp)


LEVER_SETS = {"all": LABEL_SETS, "default": ("default",)}  # --levers: what a run trains


def levers(feats: np.ndarray, meta: pd.DataFrame, name: str, threads: int, sets: tuple[str, ...],
           label_holdout: bool = False) -> dict[str, Adapter]:
    """The lever adapters trained on these (training) items: each label set, alone and with the
    raw vector mixed in at the weight validated_mix chooses on a validation part of them (the
    same heads: mixing needs no retraining, only the validation run); ``label_holdout``: also
    the weight chosen on held-out label values of the training side."""
    group = DATASETS[name][4]
    out = {}
    for label_set in sets:
        columns = lever_columns(name, label_set)
        adapter = train(feats, meta, columns, group, threads)
        labels, groups, names = train_args(meta, columns, group)
        out[label_set] = adapter
        for holdout, suffix in (("products", "+mix"), ("labels", "+mix(label-held-out validation)")):
            if holdout == "labels" and not label_holdout:
                continue
            weight, validation = validated_mix(feats, labels, groups, label_names=names, threads=threads,
                                               holdout=holdout)
            mixed = adapter.mixed(weight, raw_directions(feats)) if weight else adapter
            mixed.info = {**mixed.info, "mix_validation": validation, "raw_weight": weight}
            out[f"{label_set}{suffix}"] = mixed
    return out


def lever_row(res: dict, adapter: Adapter) -> dict:
    return {**res, "raw_weight": adapter.info.get("raw_weight", 0.0), "mix_validation": adapter.info.get("mix_validation"),
            "train_seconds": adapter.info["train_seconds"]}


def lever_columns(name: str, label_set: str) -> list[str]:
    _, _, _, _, _, sets = DATASETS[name]
    return sets[DEFAULT_SET[name]] if label_set == "default" else RICH_SET[name]


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


def scores(res: dict) -> dict:
    return {k: res[k] for k in ("items", "precision_at_k", "map_at_k", "group_recall_at_k")}


def seen_unseen(vectors: np.ndarray, ids: np.ndarray, meta: pd.DataFrame, label: str, group: str | None,
                unseen: np.ndarray) -> dict:
    """All / seen / unseen scores of one set of test vectors (one search over the whole test side)."""
    return {part: scores(evaluate(vectors, ids, meta, label, group, queries=mask))
            for part, mask in (("all", None), ("seen", ~unseen), ("unseen", unseen))}


def both_catalogues(name: str, feats: np.ndarray, meta: pd.DataFrame, other: tuple, threads: int) -> Adapter:
    """The "both catalogues" lever: this catalogue's training side plus ALL of the other one,
    each with its own rich label columns (empty for the other's items), groups where it has them."""
    other_name = next(n for n in DATASETS if n != name)
    _, o_feats, o_meta = other
    columns = [(n, c) for n in (name, other_name) for c in RICH_SET[n] if c != "groups"]
    labels, names = [], []
    n_own = len(feats)
    for n, c in columns:
        own = meta[c].to_numpy() if n == name else np.full(n_own, "", dtype=object)
        oth = o_meta[c].to_numpy() if n == other_name else np.full(len(o_feats), "", dtype=object)
        labels.append(np.concatenate([own.astype(object), oth.astype(object)]))
        names.append(f"{n}:{c}")
    groups = None
    for n, m, size, first in ((name, meta, n_own, True), (other_name, o_meta, len(o_feats), False)):
        g = DATASETS[n][4]
        col = m[g].to_numpy().astype(object) if g else np.full(size, "", dtype=object)
        groups = col if first else np.concatenate([groups, col])
    return Adapter.train(np.concatenate([feats, o_feats]), labels, groups, label_names=names, threads=threads)


def run_labels(threads: int, recipe: str, emb: Embedder, sets: tuple[str, ...] = LABEL_SETS,
               only: tuple[str, ...] = tuple(DATASETS), mix_holdout: bool = False) -> dict:
    """The labels-held-out protocol: seen vs unseen labels, off-the-shelf vs each lever."""
    out = {}
    loaded = {name: load(name, recipe, emb) for name in DATASETS}
    for name, (_, _, _, label, group, _) in DATASETS.items():
        if loaded[name] is None or name not in only:
            continue
        ids, feats, meta = loaded[name]
        train_mask, test_mask, unseen = label_split(ids, meta[label].to_numpy(), meta[group].to_numpy() if group else None,
                                                    seed=0)
        t_ids, t_meta, unseen = ids[test_mask], meta[test_mask], unseen[test_mask]
        entry = {"label": label, "group": group, "train_items": int(train_mask.sum()), "test_items": int(test_mask.sum()),
                 "unseen_items": int(unseen.sum()), "unseen_labels": sorted(set(t_meta[label][unseen])),
                 "off_the_shelf": seen_unseen(normalize(feats[test_mask]), t_ids, t_meta, label, group, unseen),
                 "levers": {}}
        print_transfer(name, "labels", "off-the-shelf", entry["off_the_shelf"], 0.0)
        for lever, adapter in levers(feats[train_mask], meta[train_mask], name, threads, sets,
                                     label_holdout=mix_holdout).items():
            res = seen_unseen(adapter.transform(feats[test_mask]), t_ids, t_meta, label, group, unseen)
            entry["levers"][lever] = lever_row(res, adapter)
            print_transfer(name, "labels", lever, res, adapter.info["train_seconds"])
        other = loaded[next(n for n in DATASETS if n != name)]
        if other is not None and "rich" in sets:
            adapter = both_catalogues(name, feats[train_mask], meta[train_mask], other, threads)
            res = seen_unseen(adapter.transform(feats[test_mask]), t_ids, t_meta, label, group, unseen)
            entry["levers"]["both catalogues (rich)"] = {**res, "train_seconds": adapter.info["train_seconds"]}
            print_transfer(name, "labels", "both catalogues (rich)", res, adapter.info["train_seconds"])
        out[name] = entry
    return out


def run_cross(threads: int, recipe: str, emb: Embedder, sets: tuple[str, ...] = LABEL_SETS,
              mix_holdout: bool = False) -> dict:
    """Adapters trained on all of one catalogue, measured on all of the other."""
    out = {}
    loaded = {name: load(name, recipe, emb) for name in DATASETS}
    if any(v is None for v in loaded.values()):
        return out
    for source, target in (("kaggle", "hm"), ("hm", "kaggle")):
        s_ids, s_feats, s_meta = loaded[source]
        ids, feats, meta = loaded[target]
        label, group = DATASETS[target][3], DATASETS[target][4]
        key = f"{source}->{target}"
        entry = {"label": label, "group": group, "train_items": len(s_ids), "test_items": len(ids),
                 "off_the_shelf": scores(evaluate(normalize(feats), ids, meta, label, group)), "levers": {}}
        print_transfer(key, "cross", "off-the-shelf", {"all": entry["off_the_shelf"]}, 0.0)
        for lever, adapter in levers(s_feats, s_meta, source, threads, sets, label_holdout=mix_holdout).items():
            res = scores(evaluate(adapter.transform(feats), ids, meta, label, group))
            entry["levers"][lever] = lever_row(res, adapter)
            print_transfer(key, "cross", lever, {"all": res}, adapter.info["train_seconds"])
        out[key] = entry
    return out


def print_transfer(dataset: str, protocol: str, lever: str, res: dict, seconds: float) -> None:
    cells = []
    for part in ("all", "seen", "unseen"):
        if part in res:
            r = res[part]
            grec = r["group_recall_at_k"]
            cells.append(f"{part} P@10 {r['precision_at_k']:.3f} mAP {r['map_at_k']:.3f}"
                         + ("" if grec is None else f" R@10 {grec:.3f}"))
    print(f"{dataset:12s} {protocol:6s} {lever:24s} " + " | ".join(cells) + f"  train {seconds:5.1f}s", flush=True)


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
    parser.add_argument("--protocol", choices=("all", "half", "labels", "cross"), default="all")
    parser.add_argument("--only", choices=tuple(DATASETS), help="labels protocol: this data set only")
    parser.add_argument("--mix-holdout", action="store_true",
                        help="also the mix weight validated on held-out label values of the training side")
    parser.add_argument("--levers", choices=tuple(LEVER_SETS), default="all",
                        help="all: default and rich label sets (+mix each) and both catalogues; default: the default set (+mix)")
    parser.add_argument("--recipe", choices=RECIPES, default=RECIPES[0], help="image fit and pooling of the features")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help="inference precision of the features")
    args = parser.parse_args()
    emb = embedder(args.recipe, args.precision)
    precision = emb.precision
    print(f"features: {args.recipe}, {precision}")
    suffix = ("" if args.recipe == RECIPES[0] else f"-{args.recipe}") + ("" if args.precision == "auto" else f"-{precision}")
    path = RESULTS.with_name(("adapter_tune" if args.tune else "adapter") + suffix + ".json")
    if args.tune:
        with threadpool_limits(args.threads):
            results = run_tune(args.threads, args.recipe, emb)
        if results:
            write_json(path, {"k": K, "threads": args.threads, "recipe": args.recipe, "precision": precision,
                              "summary": [], "results": results})
        return
    # each protocol updates its own keys (merged into the file as it is when written), so they
    # can be run, and re-run, one at a time or side by side
    run_info = {"k": K, "threads": args.threads, "recipe": args.recipe, "precision": precision}

    def save(update: dict, transfer: dict | None = None) -> None:
        doc = json.loads(path.read_text()) if path.exists() else {}
        doc.update(run_info, **update)
        if transfer:
            doc.setdefault("transfer", {}).update(transfer)
        write_json(path, doc)

    with threadpool_limits(args.threads):
        if args.protocol in ("all", "half"):
            results = run_bench(args.threads, args.recipe, emb)
            if results:
                save({"summary": summarise(results), "results": results})
        sets = LEVER_SETS[args.levers]
        if args.protocol in ("all", "labels"):
            found = run_labels(args.threads, args.recipe, emb, sets, (args.only,) if args.only else tuple(DATASETS),
                               args.mix_holdout)
            if found:
                doc = json.loads(path.read_text()) if path.exists() else {}
                save({}, {"labels": {**doc.get("transfer", {}).get("labels", {}), **found, "levers_run": args.levers}})
        if args.protocol in ("all", "cross"):
            found = run_cross(args.threads, args.recipe, emb, sets, args.mix_holdout)
            if found:
                save({}, {"cross": {**found, "levers_run": args.levers}})


if __name__ == "__main__":
    main()
