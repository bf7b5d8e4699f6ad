"""Which embedder configuration retrieves best, and at what cost?

    python bench/embedder_quality.py [--threads 2] [--skip-lite2] [--skip-pooling]

Leave-one-out retrieval with exact cosine search (numpy) on the shared data:
  * Kaggle (9,583 photos, all 224x224 squares): P@10 on articleType and on
    articleType+baseColour. Square photos make letterbox/stretch/crop identical, so the
    fit is compared on H&M only.
  * H&M (4,116 photos, 360x540 portrait): P@10 on product_type_name, and same-product
    hit@10 (for the 2,323 articles whose product_code has other colour variants: is at
    least one variant among the 10 nearest?).
Configurations: lite0 vs lite2; letterbox vs stretch vs centre crop; pooling of the last
feature map (mean = the shipped default; max; GeM p=3) and sqrt power normalisation of
the mean feature (features are >= 0). Throughput (img/s of the full embed_files pipeline) is measured in the same
run so quality can be weighed against indexing time. Writes bench/results/embedder_quality.json.
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

from stylesense.vision.embedder import EfficientNetLiteEmbedder  # noqa: E402

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


class PooledMaps(EfficientNetLiteEmbedder):
    """lite0 returning [mean | max | GeM-3] poolings of the last feature map in one pass,
    so the pooling study costs one extra sweep over the images, not three."""

    def __init__(self, variant: str, cache: Path, threads: int) -> None:
        super().__init__(variant, "torch", threads=threads)  # type: ignore[arg-type]
        import onnxruntime as ort

        backbone = self._net.backbone

        class FeatureMap(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.backbone = backbone

            def forward(self, images: torch.Tensor) -> torch.Tensor:
                return self.backbone.extract_features(images.permute(0, 3, 1, 2).float().sub(127.0).div(128.0))

        example = torch.zeros((2, self.image_size, self.image_size, 3), dtype=torch.uint8)
        path = cache / f"map-{variant}.onnx"
        program = torch.onnx.export(FeatureMap().eval(), (example,), dynamo=True, verbose=False, report=False,
                                    dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},))
        program.save(str(path), external_data=False)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self._maps = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.dim = 3 * 1280

    def forward(self, batch: np.ndarray) -> np.ndarray:
        maps = self._maps.run(None, {"images": np.ascontiguousarray(batch)})[0].astype(np.float64)
        flat = maps.reshape(len(maps), maps.shape[1], -1)
        gem = np.cbrt(np.mean(np.clip(flat, 0, None) ** 3, axis=2))
        return np.hstack([flat.mean(axis=2), flat.max(axis=2), gem]).astype(np.float32)


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
    parser.add_argument("--skip-pooling", action="store_true", help="no max/GeM pooling study")
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
            emb = EfficientNetLiteEmbedder(variant, "onnx", cache, args.threads)  # type: ignore[arg-type]
            feats, rate = timed_embed(emb, kaggle_paths)
            add("kaggle", f"{variant} mean (fit n/a: square photos)", score(feats, kaggle_labels), rate)
            if variant == "lite0":
                add("kaggle", "lite0 mean + sqrt power-norm", score(np.sqrt(feats), kaggle_labels), None)
            for fit in ("letterbox", "stretch", "crop"):
                emb = EfficientNetLiteEmbedder(variant, "onnx", cache, args.threads, fit=fit)  # type: ignore[arg-type]
                feats, rate = timed_embed(emb, hm_paths)
                add("hm", f"{variant} mean {fit}", score(feats, hm_labels, hm_variants), rate)
                if variant == "lite0" and fit == "letterbox":
                    add("hm", "lite0 mean letterbox + sqrt power-norm", score(np.sqrt(feats), hm_labels, hm_variants), None)
        if not args.skip_pooling:
            pooled = PooledMaps("lite0", cache, args.threads)
            for dataset, paths, labels, mask in (("kaggle", kaggle_paths, kaggle_labels, None),
                                                 ("hm", hm_paths, hm_labels, hm_variants)):
                feats, _ = timed_embed(pooled, paths)
                for i, pooling in enumerate(("mean", "max", "GeM p=3")):
                    part = feats[:, i * 1280 : (i + 1) * 1280]
                    add(dataset, f"lite0 {pooling} letterbox (pooling study)", score(part, labels, mask), None)

    load_after = os.getloadavg()[0]
    print(f"1-min load average {load_before:.2f} before, {load_after:.2f} after on {os.cpu_count()} CPUs "
          "(img/s are noisy when other jobs share the CPUs)")
    result = {"k": K, "threads": args.threads, "rows": rows, "load_avg_before_after": [round(load_before, 2), round(load_after, 2)],
              "reference": {"kaggle lite0 mean P@10 articleType": 0.789}}
    write_json(RESULTS / "embedder_quality.json", result)


if __name__ == "__main__":
    main()
