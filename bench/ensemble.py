"""Ensembles and test-time augmentation: do lite2, a horizontal flip or lite0+lite2 pay for their cost?

    python bench/ensemble.py [--threads 1]

Feature configs (letterbox-gem, the embedder's default precision): lite0 (the default),
lite0+flip (raw features of the photo and of its mirror image, averaged), lite2, lite2+flip,
lite0+lite2 (each L2-normalised, then concatenated: 2560-d). Each network/mirror part is
embedded once over the shared photos and cached under bench/results/features (npz layout of
adapter.extract); the configs are combined from the parts, so nothing is embedded twice.

Quality, with bench/adapter.py's protocols and levers on each config's features: labels held
out (label_split seed 0: all/seen/unseen P@10, mAP@10, H&M same-product R@10) and cross-catalogue
(Kaggle->H&M, H&M->Kaggle); off-the-shelf and the adapted "default" lever (+ its raw-vector
mixes). Cost: end-to-end embed_files throughput of each config on the same Kaggle + H&M photos,
all configs interleaved chunk by chunk so they share the machine's load (as bench/embedding.py);
a flip runs both orientations in one pipeline (one decode, two forwards), lite0+lite2 is the
two pipelines' time summed (each decodes the photo itself). The verdict weighs each config's
P@10 gain over lite0 against its extra embedding time. Writes bench/results/ensemble.json.
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
from stylesense.datasets import hm_articles, kaggle_fashion
from stylesense.evaluation.retrieval import label_split
from stylesense.vision.adapter import normalize
from stylesense.vision.embedder import Embedder, make_embedder

RECIPE = "letterbox-gem"
# config -> (how its parts combine, parts as (variant, mirrored))
CONFIGS: dict[str, tuple[str, tuple[tuple[str, bool], ...]]] = {
    "lite0": ("mean", (("lite0", False),)),
    "lite0+flip": ("mean", (("lite0", False), ("lite0", True))),
    "lite2": ("mean", (("lite2", False),)),
    "lite2+flip": ("mean", (("lite2", False), ("lite2", True))),
    "lite0+lite2": ("concat", (("lite0", False), ("lite2", False))),
}
SHOWN = ("default", "default+mix(label-held-out validation)")  # the levers the table prints


class Flip(Embedder):
    """A network run on the mirror image of each preprocessed photo (``average=False``: the
    mirror's features alone, what the cache stores) or on both orientations, features averaged
    (``average=True``: the TTA pipeline whose throughput is its real cost). The flip is of the
    width axis of the preprocessed batch, so the photo is decoded and letterboxed only once."""

    def __init__(self, base: Embedder, average: bool) -> None:
        self.base, self.average = base, average
        self.name, self.cnn_dim, self.image_size = f"{base.name}-flip", base.cnn_dim, base.image_size
        self.precision = getattr(base, "precision", "fp32")

    def preprocess(self, image):  # noqa: ANN001, ANN201 - the base's signature
        return self.base.preprocess(image)

    def forward(self, batch: np.ndarray) -> np.ndarray:
        mirrored = self.base.forward(np.ascontiguousarray(batch[:, :, ::-1]))
        return (self.base.forward(batch) + mirrored) / 2 if self.average else mirrored


def part(name: str, variant: str, mirror: bool, emb: Embedder, lite0: tuple) -> np.ndarray:
    """One part's raw features in the row order of ``lite0`` (ab.load's cached features and
    metadata); embedded once and cached if absent."""
    ids = lite0[0]
    if (variant, mirror) == ("lite0", False):
        return lite0[1]
    path = ab.FEATURES / f"{name}_{variant}{'-mirror' if mirror else ''}-{RECIPE}-{emb.precision}.npz"
    if not path.exists():
        ab.extract(name, path, Flip(emb, average=False) if mirror else emb)
    with np.load(path, allow_pickle=False) as data:
        rows = pd.Index(data["ids"].astype(str)).get_indexer(ids)
        if (rows < 0).any():
            raise RuntimeError(f"{path} lacks {int((rows < 0).sum())} of the lite0 photos")
        return data["features"][rows].astype(np.float32)


def combine(how: str, parts: list[np.ndarray]) -> np.ndarray:
    if how == "mean":
        return np.mean(parts, axis=0)
    return np.concatenate([normalize(p) for p in parts], axis=1)


def quality(feats: dict[str, np.ndarray], meta: dict[str, pd.DataFrame], ids: dict[str, np.ndarray],
            threads: int) -> dict:
    """Labels-held-out and cross-catalogue results of one config's features."""
    out: dict = {}
    for name, (_, _, _, label, group, _) in ab.DATASETS.items():
        x, m, i = feats[name], meta[name], ids[name]
        train, test, unseen = label_split(i, m[label].to_numpy(), m[group].to_numpy() if group else None, seed=0)
        t_ids, t_meta, unseen = i[test], m[test], unseen[test]
        entry = {"off-the-shelf": ab.seen_unseen(normalize(x[test]), t_ids, t_meta, label, group, unseen)}
        for lever, adapter in ab.levers(x[train], m[train], name, threads, ("default",), label_holdout=True).items():
            res = ab.seen_unseen(adapter.transform(x[test]), t_ids, t_meta, label, group, unseen)
            entry[lever] = ab.lever_row(res, adapter)
        out[f"labels {name}"] = entry
    for source, target in (("kaggle", "hm"), ("hm", "kaggle")):
        label, group = ab.DATASETS[target][3], ab.DATASETS[target][4]
        x, m, i = feats[target], meta[target], ids[target]
        entry = {"off-the-shelf": {"all": ab.scores(ab.evaluate(normalize(x), i, m, label, group))}}
        for lever, adapter in ab.levers(feats[source], meta[source], source, threads, ("default",),
                                        label_holdout=True).items():
            entry[lever] = {"all": ab.scores(ab.evaluate(adapter.transform(x), i, m, label, group)),
                            **ab.lever_row({}, adapter)}
        out[f"cross {source}->{target}"] = entry
    return out


def sample_photos(n: int) -> list[Path]:
    """The first n/2 Kaggle and n/2 H&M photos (catalogue order) that exist."""
    out = []
    for name, make in (("kaggle", kaggle_fashion), ("hm", hm_articles)):
        source = make(ab.DATASETS[name][1].parent)
        rows = pd.read_csv(source.csv, dtype=str, keep_default_na=False).to_dict("records")
        out += [p for p in (source.image_path(r) for r in rows) if p.exists()][: n // 2]
    return out


def throughput(embedders: dict[str, Embedder], n: int, chunk: int, workers: int) -> dict[str, float]:
    """img/s of each pipeline on the same photos, interleaved chunk by chunk; the concatenated
    config costs the sum of its two pipelines' seconds."""
    paths = sample_photos(n)
    for emb in embedders.values():  # first-run allocations, thread pools
        emb.embed_files(paths[:32], workers=workers)
    seconds = dict.fromkeys(embedders, 0.0)
    for start in range(0, len(paths), chunk):
        for key, emb in embedders.items():
            began = time.perf_counter()
            emb.embed_files(paths[start : start + chunk], workers=workers)
            seconds[key] += time.perf_counter() - began
    seconds["lite0+lite2"] = seconds["lite0"] + seconds["lite2"]
    return {key: len(paths) / s for key, s in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="inference and training threads")
    parser.add_argument("--workers", type=int, default=2, help="decoder threads")
    parser.add_argument("--n", type=int, default=512, help="photos of the throughput run (half from each catalogue)")
    parser.add_argument("--chunk", type=int, default=64, help="photos per interleaved round")
    args = parser.parse_args()
    began = time.perf_counter()
    nets = {v: make_embedder(v, cache_dir=ab.FEATURES, threads=args.threads, fit="letterbox", pooling="gem")
            for v in ("lite0", "lite2")}
    precision = nets["lite0"].precision
    lite0 = {name: ab.load(name, RECIPE, nets["lite0"]) for name in ab.DATASETS}
    if any(v is None for v in lite0.values()):
        return
    ids = {name: v[0] for name, v in lite0.items()}
    meta = {name: v[2] for name, v in lite0.items()}
    results: dict = {}
    with threadpool_limits(args.threads):
        for config, (how, parts) in CONFIGS.items():
            feats = {name: combine(how, [part(name, v, mirror, nets[v], lite0[name]) for v, mirror in parts])
                     for name in ab.DATASETS}
            start = time.perf_counter()
            results[config] = quality(feats, meta, ids, args.threads)
            print(f"{config}: quality measured in {time.perf_counter() - start:.0f}s", flush=True)
        rates = throughput({"lite0": nets["lite0"], "lite0+flip": Flip(nets["lite0"], True), "lite2": nets["lite2"],
                            "lite2+flip": Flip(nets["lite2"], True)}, args.n, args.chunk, args.workers)
    report(results, rates)
    verdict = {c: {p: round(gain(results, c, p), 4) for p in results[c]} for c in CONFIGS}
    write_json(RESULTS / "ensemble.json", {
        "threads": args.threads, "workers": args.workers, "recipe": RECIPE, "precision": precision,
        "k": ab.K, "throughput_photos": args.n, "img_per_s": {c: round(r, 1) for c, r in rates.items()},
        "time_vs_lite0": {c: round(rates["lite0"] / r, 2) for c, r in rates.items()},
        "p10_gain_over_lite0_best_lever": verdict, "results": results,
        "wall_seconds": round(time.perf_counter() - began, 1), "load_avg": os.getloadavg()[0]})


def p10(res: dict, part: str = "all") -> float:
    return res[part]["precision_at_k"] if part in res else float("nan")


def cell(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:.3f}"


def gain(results: dict, config: str, protocol: str) -> float:
    """P@10 (all) gain over lite0 of the config's best adapted lever on that protocol."""
    best = lambda c: max(p10(results[c][protocol][lever]) for lever in SHOWN)  # noqa: E731
    return best(config) - best("lite0")


def report(results: dict, rates: dict[str, float]) -> None:
    print(f"\n{'protocol':22s} {'config':12s} {'method':40s} {'P@10 all':>8s} {'seen':>6s} {'unseen':>6s} "
          f"{'mAP@10':>6s} {'R@10':>6s} {'img/s':>6s} {'time':>5s}")
    for protocol in next(iter(results.values())):
        for config in CONFIGS:
            for method in ("off-the-shelf", *SHOWN):
                res = results[config][protocol][method]
                print(f"{protocol:22s} {config:12s} {method:40s} {cell(p10(res)):>8s} {cell(p10(res, 'seen')):>6s} "
                      f"{cell(p10(res, 'unseen')):>6s} {cell(res['all']['map_at_k']):>6s} "
                      f"{cell(res['all']['group_recall_at_k']):>6s} {rates[config]:6.1f} "
                      f"{rates['lite0'] / rates[config]:4.2f}x")
        print()
    print("P@10 (all) gain over lite0, best of the shown adapted levers, per extra lite0-time of embedding:")
    for config in list(CONFIGS)[1:]:
        extra = rates["lite0"] / rates[config] - 1
        gains = {p: gain(results, config, p) for p in results[config]}
        print(f"  {config:12s} time {extra + 1:.2f}x  " + "  ".join(
            f"{p}: {g:+.3f} ({g / extra if extra > 0 else float('nan'):+.3f}/x)" for p, g in gains.items()))


if __name__ == "__main__":
    main()
