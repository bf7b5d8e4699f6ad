"""Embedding throughput: our embed_files pipeline vs the seed's per-image PyTorch recipe.

    python bench/embedding.py [--n 512] [--images DIR] [--threads 2]

Ours: the exported ONNX model at the default precision (bfloat16 via OpenVINO where the CPU
has it natively, else fp32 via onnxruntime), batch 32, draft JPEG decoding in 2 threads
overlapped with inference; the fp32 onnxruntime pipeline and the opt-in int8 one (calibrated
on CALIBRATION photos that follow the timed ones, as a home calibrates on its first import)
are reported beside it, with the int8 features' cosine to fp32 on the timed photos.
Seed recipe: for each image, PIL full decode + resize, one eager PyTorch forward.
Both run on the same images in the same process, interleaved in chunks of 128 images so
they share the same machine load; also reported (sequentially, so noisier):
the decode-only and inference-only rates (which one bounds the pipeline) and lite2.
The report starts with the CPU (its AVX2 / AVX-512 / VNNI / bf16 / AMX flags and what OpenVINO
says it computes natively) and which inference path the default took on it.
Prints a table and writes bench/results/embedding.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

THREADS_DEFAULT = 2
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS_DEFAULT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from stylesense.vision.embedder import CPU_FLAGS, EfficientNetLiteEmbedder, cpu_features  # noqa: E402
from stylesense.vision.images import load_image  # noqa: E402

from common import RESULTS, write_json

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMAGES = ROOT / ".." / "shared" / "data" / "fashion-product-images" / "images"
CALIBRATION = 128  # photos the int8 model's ranges are read from (vision.quantize.CALIBRATION_PHOTOS)


def _rate(n: int, fn: Callable[[], object]) -> tuple[float, float]:
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    return n / seconds, seconds


def machine() -> dict[str, object]:
    """What decides the inference path: the CPU's vector flags and what OpenVINO says the CPU
    computes natively (bf16 there = the bf16 path runs)."""
    try:
        import openvino as ov

        openvino = list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except Exception as exc:  # noqa: BLE001 - the report says why, the bench goes on
        openvino = [f"unavailable ({type(exc).__name__})"]
    return {**cpu_features(), "cpus": os.cpu_count(), "openvino_capabilities": openvino}


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def seed_recipe(emb: EfficientNetLiteEmbedder, paths: list[Path]) -> np.ndarray:
    """The seed project's loop: full-size PIL decode, stretch resize, batch-of-1 eager forward."""
    size = emb.image_size
    rows = []
    for path in paths:
        img = Image.open(path).convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        rows.append(emb.forward(np.asarray(img)[None]))
    return np.vstack(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=512, help="number of images")
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--threads", type=int, default=THREADS_DEFAULT, help="inference threads")
    parser.add_argument("--workers", type=int, default=2, help="decoder threads")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--chunk", type=int, default=128, help="images per interleaved ours/seed round")
    args = parser.parse_args()
    if not args.images.is_dir():
        sys.exit(f"skipped: image folder {args.images} not found (needs ../shared/data)")
    torch.set_num_threads(args.threads)
    found = sorted(args.images.rglob("*.jpg"))
    paths, calibration = found[: args.n], found[args.n : args.n + CALIBRATION]
    n = len(paths)
    load_before = os.getloadavg()[0]

    with tempfile.TemporaryDirectory() as cache:
        onnx0 = EfficientNetLiteEmbedder("lite0", "onnx", Path(cache), args.threads)
        fp32 = EfficientNetLiteEmbedder("lite0", "onnx", Path(cache), args.threads, precision="fp32")
        torch0 = EfficientNetLiteEmbedder("lite0", "torch", threads=args.threads)
        onnx2 = EfficientNetLiteEmbedder("lite2", "onnx", Path(cache), args.threads)
        int8 = EfficientNetLiteEmbedder("lite0", "onnx", Path(cache), args.threads, precision="int8")
        int8.calibrate(calibration)
        pipeline = dict(batch_size=args.batch_size, workers=args.workers)
        warm = paths[: args.batch_size]
        for emb in (onnx0, fp32, int8, onnx2):  # first-run allocations, thread pools
            emb.embed_files(warm, **pipeline)
        seed_recipe(torch0, paths[:4])

        rows: dict[str, dict[str, float]] = {}

        def record(name: str, rate_seconds: tuple[float, float]) -> None:
            rows[name] = {"img_per_s": round(rate_seconds[0], 1), "seconds": round(rate_seconds[1], 2)}

        # The headline pair runs interleaved, chunk by chunk, so that both see the same
        # load from whatever else shares the CPUs (the ratio is then fair even when the
        # absolute numbers are not).
        seconds = {"ours": 0.0, "seed": 0.0}
        for start in range(0, n, args.chunk):
            chunk = paths[start : start + args.chunk]
            seconds["ours"] += _rate(len(chunk), lambda: onnx0.embed_files(chunk, **pipeline))[1]
            seconds["seed"] += _rate(len(chunk), lambda: seed_recipe(torch0, chunk))[1]
        headline = f"ours lite0 ({onnx0.precision}, batch, draft, threaded decode)"
        record(headline, (n / seconds["ours"], seconds["ours"]))
        record("seed recipe lite0 (per-image eager torch)", (n / seconds["seed"], seconds["seed"]))
        if onnx0.precision != "fp32":
            record("ours lite0, fp32 (onnxruntime)", _rate(n, lambda: fp32.embed_files(paths, **pipeline)))
        features: dict[str, np.ndarray] = {}
        record(f"ours lite0, int8 ({int8.runtime}, the faster here; {len(calibration)} calibration photos)",
               _rate(n, lambda: features.update(int8=int8.embed_files(paths, **pipeline)[0])))
        record("ours lite0, torch backend", _rate(n, lambda: torch0.embed_files(paths, **pipeline)))
        record("ours lite2 (onnx)", _rate(n, lambda: onnx2.embed_files(paths, **pipeline)))
        decoded = [onnx0.preprocess(load_image(p, draft=224)) for p in paths[:64]]
        record("  part: decode+letterbox only, 1 thread", _rate(n, lambda: [onnx0.preprocess(load_image(p, draft=224)) for p in paths]))
        batch = np.stack(decoded[: args.batch_size])
        reps = max(1, n // args.batch_size)
        record(f"  part: lite0 {onnx0.precision} inference only",
               _rate(reps * len(batch), lambda: [onnx0.forward(batch) for _ in range(reps)]))
        if onnx0.precision != "fp32":
            record("  part: lite0 fp32 inference only", _rate(reps * len(batch), lambda: [fp32.forward(batch) for _ in range(reps)]))
        record("  part: lite0 int8 inference only", _rate(reps * len(batch), lambda: [int8.forward(batch) for _ in range(reps)]))
        reference = fp32.embed_files(paths, **pipeline)[0]
        cosine = np.sum(_unit(features["int8"]) * _unit(reference), axis=1)

    ours = rows[headline]["img_per_s"]
    seed = rows["seed recipe lite0 (per-image eager torch)"]["img_per_s"]
    ratio = ours / seed
    load_after = os.getloadavg()[0]

    cpu = machine()
    path = f"{onnx0.runtime} {onnx0.precision}"
    print(f"CPU: {cpu['model']}, {cpu['cpus']} CPUs, flags {' '.join(cpu['flags']) or 'none of ' + ', '.join(CPU_FLAGS)}; "
          f"OpenVINO: {', '.join(cpu['openvino_capabilities'])}")
    print(f"default path that ran: {path}")
    width = max(map(len, rows))
    print(f"{n} images from {args.images.resolve()}, {args.threads} inference threads, "
          f"{args.workers} decoder threads, batch {args.batch_size}")
    print(f"{'pipeline':<{width}}  {'img/s':>8}  {'seconds':>8}")
    for name, row in rows.items():
        print(f"{name:<{width}}  {row['img_per_s']:>8.1f}  {row['seconds']:>8.2f}")
    print(f"speed-up over the seed recipe: {ratio:.2f}x  (targets: >= 100 img/s and >= 3x)")
    print(f"int8 features vs fp32 on the timed photos: cosine mean {cosine.mean():.4f}, min {cosine.min():.4f}")
    print(f"1-min load average: {load_before:.2f} before, {load_after:.2f} after "
          f"({os.cpu_count()} CPUs; a load above the CPU count means other jobs shared them)")

    result = {
        "n_images": n,
        "images": str(args.images.resolve()),
        "threads": args.threads,
        "precision": onnx0.precision,
        "workers": args.workers,
        "batch_size": args.batch_size,
        "interleave_chunk": args.chunk,
        "results": rows,
        "speedup_vs_seed": round(ratio, 2),
        "int8_cosine_to_fp32": {"mean": round(float(cosine.mean()), 4), "min": round(float(cosine.min()), 4),
                                "calibration_photos": len(calibration)},
        "targets_met": {"100_img_per_s": ours >= 100, "3x_seed": ratio >= 3},
        "load_avg_before_after": [round(load_before, 2), round(load_after, 2)],
        "default_path": path,
        "machine": cpu,
    }
    write_json(RESULTS / "embedding.json", result)


if __name__ == "__main__":
    main()
