"""Which embedder configuration retrieves best, and at what cost?

    python bench/embedder_quality.py [--threads 2] [--skip-lite2] [--skip-pooling]

Leave-one-out retrieval with exact cosine search (numpy) on the shared data:
  * Kaggle (9,583 photos, all 224x224 squares): P@10 on articleType and on
    articleType+baseColour. Square photos make letterbox/stretch/crop identical, so the
    fit is compared on H&M only.
  * H&M (4,116 photos, 360x540 portrait): P@10 on product_type_name, and same-product
    hit@10 (for the 2,323 articles whose product_code has other colour variants: is at
    least one variant among the 10 nearest?).
Configurations: lite0 vs lite2; the image fit (letterbox onto the photo's own canvas shape =
the default, letterbox onto a square = the recipe before v2, stretch, centre crop); pooling of
the last feature map (GeM p=3 = the default, mean; lite2 and --skip-pooling: GeM only).
Throughput (img/s of the full embed_files pipeline) is measured in the same run so quality can
be weighed against indexing time. Writes bench/results/embedder_quality.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

THREADS_DEFAULT = 2
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS_DEFAULT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from stylesense.vision.embedder import FITS, POOLINGS, EfficientNetLiteEmbedder  # noqa: E402

from common import RESULTS, write_json

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"
K = 10


def neighbours(features: np.ndarray, k: int = K, chunk: int = 2048) -> np.ndarray:
    """Indices of the k nearest other items by cosine (exact, leave-one-out)."""
    x = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    out = np.empty((len(x), k), np.int64)
    for start in range(0, len(x), chunk):
        sims = x[start : start + chunk] @ x.T
        sims[np.arange(len(sims)), np.arange(start, start + len(sims))] = -np.inf
        top = np.argpartition(-sims, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1)
        out[start : start + chunk] = np.take_along_axis(top, order, axis=1)
    return out


def precision_at_k(nn: np.ndarray, labels: np.ndarray) -> float:
    return float((labels[nn] == labels[:, None]).mean())


def hit_at_k(nn: np.ndarray, groups: np.ndarray, mask: np.ndarray) -> float:
    return float((groups[nn[mask]] == groups[mask][:, None]).any(axis=1).mean())


def kaggle() -> tuple[list[Path], dict[str, np.ndarray]]:
    styles = pd.read_csv(DATA / "fashion-product-images" / "styles.csv", dtype={"id": str})
    paths = [DATA / "fashion-product-images" / "images" / f"{i}.jpg" for i in styles["id"]]
    labels = {
        "P@10 articleType": pd.factorize(styles["articleType"])[0],
        "P@10 articleType+colour": pd.factorize(styles["articleType"] + "|" + styles["baseColour"].fillna(""))[0],
    }
    return paths, labels


def hm() -> tuple[list[Path], dict[str, np.ndarray], np.ndarray]:
    articles = pd.read_csv(DATA / "hm" / "articles.csv", dtype={"article_id": str})
    ids = articles["article_id"]
    paths = [DATA / "hm" / "images" / i[:3] / f"{i}.jpg" for i in ids]
    codes = articles["product_code"].to_numpy()
    has_variant = articles["product_code"].map(articles["product_code"].value_counts()).to_numpy() >= 2
    labels = {"P@10 product_type": pd.factorize(articles["product_type_name"])[0], "same-product hit@10": codes}
    return paths, labels, has_variant


def score(features: np.ndarray, labels: dict[str, np.ndarray], variant_mask: np.ndarray | None = None) -> dict[str, float]:
    nn = neighbours(features)
    return {
        name: round(hit_at_k(nn, lab, variant_mask) if name.startswith("same-product") else precision_at_k(nn, lab), 4)
        for name, lab in labels.items()
    }


def timed_embed(emb: EfficientNetLiteEmbedder, paths: list[Path]) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    features, failures = emb.embed_files(paths, batch_size=32, workers=2)
    rate = len(paths) / (time.perf_counter() - start)
    if failures:
        print(f"  {len(failures)} images failed, e.g. {next(iter(failures.items()))}")
    return features, rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=THREADS_DEFAULT)
    parser.add_argument("--skip-lite2", action="store_true", help="lite0 only (saves most of the time)")
    parser.add_argument("--skip-pooling", action="store_true", help="GeM pooling only (no mean rows)")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"skipped: {DATA} not found (needs ../shared/data)")
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    rows: list[dict[str, object]] = []
    kaggle_paths, kaggle_labels = kaggle()
    hm_paths, hm_labels, hm_variants = hm()
    variants = ["lite0"] + ([] if args.skip_lite2 else ["lite2"])

    def add(dataset: str, config: str, metrics: dict[str, float], rate: float | None) -> None:
        row: dict[str, object] = {"dataset": dataset, "config": config, **metrics}
        if rate is not None:
            row["img_per_s"] = round(rate, 1)
        rows.append(row)
        print(f"{dataset:<7} {config:<34} " + "  ".join(f"{k}={v}" for k, v in row.items() if k not in ("dataset", "config")), flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        for variant in variants:
            poolings = POOLINGS if variant == "lite0" and not args.skip_pooling else ("gem",)
            for pooling in poolings:  # square photos: every fit gives the same input
                emb = EfficientNetLiteEmbedder(variant, "onnx", cache, args.threads, pooling=pooling)  # type: ignore[arg-type]
                feats, rate = timed_embed(emb, kaggle_paths)
                add("kaggle", f"{variant} {pooling}", score(feats, kaggle_labels), rate)
            for fit in FITS:
                for pooling in poolings:
                    emb = EfficientNetLiteEmbedder(variant, "onnx", cache, args.threads, fit=fit, pooling=pooling)  # type: ignore[arg-type]
                    feats, rate = timed_embed(emb, hm_paths)
                    add("hm", f"{variant} {pooling} {fit}", score(feats, hm_labels, hm_variants), rate)
    load_after = os.getloadavg()[0]
    print(f"1-min load average {load_before:.2f} before, {load_after:.2f} after on {os.cpu_count()} CPUs "
          "(img/s are noisy when other jobs share the CPUs)")
    result = {"k": K, "threads": args.threads, "rows": rows, "load_avg_before_after": [round(load_before, 2), round(load_after, 2)],
              "reference": {"kaggle lite0 mean P@10 articleType": 0.789}}
    write_json(RESULTS / "embedder_quality.json", result)


if __name__ == "__main__":
    main()
