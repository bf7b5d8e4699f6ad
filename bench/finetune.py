"""The last-stage fine-tune lever (vision.finetune) on the transfer protocols of bench/adapter.py.

    python bench/finetune.py [--threads 2] [--stages 1] [--epochs 6] [--protocol all|labels|cross]

For each shared catalogue the activations entering the last ``--stages`` stages of lite0 are
computed once (torch fp32, stored float16, cached under bench/results/features). Then, on the
labels-held-out split (label_split seed 0; P@10 / mAP@10 all, seen, unseen, and same-product
R@10 on H&M) and cross-catalogue (all of one set -> all of the other), side by side on the same
items and the same fp32 features:
  - off-the-shelf: the ImageNet network's pooled features;
  - adapter: the default label set's head on them, alone and + the label-validated mix (the
    best lever of bench/adapter.py, as a reference inside this run);
  - fine-tuned: the tail trained on the training side's default labels, its pooled features
    alone, + the mix of the ImageNet vector (validated like the adapter's), and with the default
    adapter head trained on the tuned features (+ mix).
Prints a table, writes bench/results/finetune.json.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

import adapter as ab
from common import RESULTS, write_json
from stylesense.evaluation.retrieval import label_split
from stylesense.vision.adapter import MIX_GRID, Adapter, normalize, raw_directions, validated_mix
from stylesense.vision.finetune import Activations, cache_activations, finetune, pooled
from stylesense.vision.network import lite_network


def activations(name: str, stages: int) -> tuple[np.ndarray, Activations, pd.DataFrame]:
    """(ids, activations, metadata rows in the same order) of one catalogue, cached."""
    from stylesense.datasets import hm_articles, kaggle_fashion
    from stylesense.vision.embedder import make_embedder

    path = ab.FEATURES / f"{ab.DATASETS[name][0]}-acts{stages}.npz"
    source = (kaggle_fashion if name == "kaggle" else hm_articles)(ab.DATASETS[name][1].parent)
    meta = pd.read_csv(source.csv, dtype=str, keep_default_na=False)
    ids = meta[source.id_column].to_numpy(str)
    if not path.exists():
        print(f"caching {name} activations ({len(ids)} photos) into {path}", flush=True)
        emb = make_embedder("lite0", backend="torch", threads=2)
        acts = cache_activations(emb, [source.image_path(r) for r in meta.to_dict("records")], stages)
        arrays = {f"rows{i}": r for i, (r, _) in enumerate(acts.shapes)} | {f"acts{i}": a for i, (_, a) in enumerate(acts.shapes)}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, cut=acts.cut, failed=np.array(sorted(acts.failures), np.int64), **arrays)
        os.replace(tmp, path)
    with np.load(path) as data:
        k = sum(1 for f in data.files if f.startswith("rows"))
        acts = Activations(int(data["cut"]), len(ids), [(data[f"rows{i}"], data[f"acts{i}"]) for i in range(k)],
                           {int(i): "unreadable" for i in data["failed"]})
    keep = np.zeros(len(ids), bool)
    keep[acts.rows] = True
    return ids[keep], acts.subset(keep), meta[keep].set_index(source.id_column)


def fit(name: str, acts: Activations, meta: pd.DataFrame, epochs: int, threads: int):
    columns = ab.lever_columns(name, "default")
    labels, groups, names = ab.train_args(meta, columns, ab.DATASETS[name][4])
    start = time.perf_counter()
    tuned = finetune(acts, labels, groups, label_names=names, epochs=epochs, threads=threads,
                     progress=lambda e, n, loss: print(f"  fine-tune epoch {e}/{n} loss {loss:.3f}", flush=True))
    print(f"  fine-tuned {len(meta)} items in {time.perf_counter() - start:.0f} s", flush=True)
    return tuned


def mix(a: np.ndarray, b: np.ndarray, w: float) -> np.ndarray:
    """Unit vectors whose cosine is (1 - w) cos_a + w cos_b (b = the ImageNet vector)."""
    return np.concatenate([normalize(a) * np.float32(np.sqrt(1 - w)), normalize(b) * np.float32(np.sqrt(w))], axis=1)


def tuned_mix_weight(name: str, acts: Activations, meta: pd.DataFrame, base: np.ndarray, epochs: int,
                     threads: int) -> tuple[float, dict]:
    """The ImageNet-vector weight for fine-tuned features, chosen as validated_mix chooses the
    adapter's: a fine-tune on the training side minus held-out label values (label_split seed 1),
    each weight scored on those by mean P@10 over the label columns (+ same-group R@10)."""
    label, group = ab.DATASETS[name][3], ab.DATASETS[name][4]
    ids = meta.index.to_numpy()
    fit_mask, val, _ = label_split(ids, meta[label].to_numpy(), meta[group].to_numpy() if group else None, seed=1)
    tuned = fit(name, acts.subset(fit_mask), meta[fit_mask], epochs, threads)
    feats = pooled(tuned.network(), acts.subset(val))
    columns = [c for c in ab.lever_columns(name, "default") if c != "groups"]
    scores = {}
    for w in MIX_GRID:
        found = []
        for c in columns:
            res = ab.evaluate(mix(feats, base[val], w), ids[val], meta[val], c, group)
            found.append(res["precision_at_k"])
        if group:
            found.append(res["group_recall_at_k"])
        scores[str(w)] = round(float(np.mean(found)), 4)
    best = max(MIX_GRID, key=lambda w: (scores[str(w)], -w))
    return best, scores


def adapters(name: str, feats: np.ndarray, meta: pd.DataFrame, threads: int) -> dict[str, Adapter]:
    """The default label set's adapter on ``feats``, alone and with the raw vector mixed in at
    the weight validated on held-out label values (the best lever of bench/adapter.py)."""
    columns, group = ab.lever_columns(name, "default"), ab.DATASETS[name][4]
    adapter = ab.train(feats, meta, columns, group, threads)
    labels, groups, names = ab.train_args(meta, columns, group)
    w, _ = validated_mix(feats, labels, groups, label_names=names, threads=threads, holdout="labels")
    return {"": adapter, " + mix (labels val.)": adapter.mixed(w, raw_directions(feats)) if w else adapter}


def compare(name: str, train: tuple, test: tuple, epochs: int, threads: int, unseen: np.ndarray | None) -> dict:
    """Every row of the module docstring for one train side and one test side."""
    (tr_acts, tr_meta, tr_base), (te_ids, te_acts, te_meta, te_base) = train, test
    target = te_meta.attrs["dataset"]
    label, group = ab.DATASETS[target][3], ab.DATASETS[target][4]

    def score(vectors: np.ndarray) -> dict:
        if unseen is None:
            return {"all": ab.scores(ab.evaluate(vectors, te_ids, te_meta, label, group))}
        return ab.seen_unseen(vectors, te_ids, te_meta, label, group, unseen)

    rows: dict[str, dict] = {"off-the-shelf": score(normalize(te_base))}
    for lever, adapter in adapters(name, tr_base, tr_meta, threads).items():
        rows[f"adapter{lever}"] = {**score(adapter.transform(te_base)), "raw_weight": adapter.info.get("raw_weight", 0)}
    tuned = fit(name, tr_acts, tr_meta, epochs, threads)
    tr_tuned, te_tuned = pooled(tuned.network(), tr_acts), pooled(tuned.network(), te_acts)
    rows["fine-tuned"] = {**score(normalize(te_tuned)), "train_seconds": tuned.info["train_seconds"]}
    w, validation = tuned_mix_weight(name, tr_acts, tr_meta, tr_base, epochs, threads)
    rows["fine-tuned + mix (labels val.)"] = {**score(mix(te_tuned, te_base, w)), "raw_weight": w, "mix_validation": validation}
    for lever, adapter in adapters(name, tr_tuned, tr_meta, threads).items():
        rows[f"fine-tuned + adapter{lever}"] = {**score(adapter.transform(te_tuned)),
                                                "raw_weight": adapter.info.get("raw_weight", 0)}
    for lever, res in rows.items():
        ab.print_transfer(f"{name}->{target}" if unseen is None else name, "cross" if unseen is None else "labels",
                          lever, res, 0.0)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--stages", type=int, default=1, help="how many of the last stages to fine-tune")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--protocol", choices=("all", "labels", "cross"), default="all")
    parser.add_argument("--only", choices=tuple(ab.DATASETS), help="labels protocol: this data set only")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    data = {}
    for name in ab.DATASETS:
        if not ab.DATASETS[name][1].exists():
            print(f"skip {name}: {ab.DATASETS[name][1]} is absent")
            continue
        ids, acts, meta = activations(name, args.stages)
        meta.attrs["dataset"] = name
        data[name] = (ids, acts, meta, pooled(lite_network("lite0"), acts))
    out: dict = {"stages": args.stages, "cut": next(iter(data.values()))[1].cut if data else None,
                 "epochs": args.epochs, "threads": args.threads}
    with threadpool_limits(args.threads):
        if args.protocol in ("all", "labels"):
            for name, (ids, acts, meta, base) in data.items():
                if args.only and name != args.only:
                    continue
                label, group = ab.DATASETS[name][3], ab.DATASETS[name][4]
                tr, te, unseen = label_split(ids, meta[label].to_numpy(), meta[group].to_numpy() if group else None, seed=0)
                te_meta = meta[te]
                te_meta.attrs["dataset"] = name
                out.setdefault("labels", {})[name] = compare(
                    name, (acts.subset(tr), meta[tr], base[tr]), (ids[te], acts.subset(te), te_meta, base[te]),
                    args.epochs, args.threads, unseen[te])
        if args.protocol in ("all", "cross") and len(data) == 2:
            for source, target in (("kaggle", "hm"), ("hm", "kaggle")):
                _, s_acts, s_meta, s_base = data[source]
                out.setdefault("cross", {})[f"{source}->{target}"] = compare(
                    source, (s_acts, s_meta, s_base), data[target], args.epochs, args.threads, None)
    write_json(RESULTS / f"finetune-stages{args.stages}{f'-{args.protocol}-{args.only}' if args.only else ''}.json", out)


if __name__ == "__main__":
    main()
