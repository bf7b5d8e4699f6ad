"""EfficientNet-Lite embedder: shapes, determinism, ONNX == torch, bfloat16 close to fp32,
failure reporting, sanity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageEnhance

from stylesense.vision import embedder as embedder_mod
from stylesense.vision.embedder import EfficientNetLiteEmbedder, make_embedder

THREADS = 2
torch.set_num_threads(THREADS)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _scene(seed: int, size: tuple[int, int] = (300, 240)) -> Image.Image:
    """A product-like synthetic photo: coloured shapes on white."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x0, y0 = rng.integers(0, size[0] * 3 // 4), rng.integers(0, size[1] * 3 // 4)
        w, h = rng.integers(size[0] // 8, size[0] // 2), rng.integers(size[1] // 8, size[1] // 2)
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x0, y0, x0 + w, y0 + h), fill=colour)
    return img


def _stripes(size: tuple[int, int] = (300, 240)) -> Image.Image:
    arr = np.zeros((size[1], size[0], 3), np.uint8)
    arr[(np.arange(size[1]) // 12) % 2 == 0] = (20, 120, 30)
    return Image.fromarray(arr)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def onnx_lite0(cache_dir: Path) -> EfficientNetLiteEmbedder:
    """The exported model in fp32 (onnxruntime): what the exact comparisons below need."""
    emb = make_embedder("lite0", cache_dir=cache_dir, threads=THREADS, precision="fp32")
    assert isinstance(emb, EfficientNetLiteEmbedder) and (emb.backend, emb.precision) == ("onnx", "fp32")
    return emb


@pytest.fixture(scope="session")
def bf16_lite0(cache_dir: Path, onnx_lite0: EfficientNetLiteEmbedder) -> EfficientNetLiteEmbedder:
    emb = make_embedder("lite0", cache_dir=cache_dir, threads=THREADS, precision="bf16")
    if emb.precision != "bf16":
        pytest.skip("this CPU has no native bfloat16 (or openvino is missing)")
    return emb


@pytest.fixture(scope="session")
def torch_lite0() -> EfficientNetLiteEmbedder:
    return EfficientNetLiteEmbedder("lite0", backend="torch", threads=THREADS)


def test_shapes_and_attributes(onnx_lite0: EfficientNetLiteEmbedder) -> None:
    assert (onnx_lite0.name, onnx_lite0.dim, onnx_lite0.image_size) == ("efficientnet-lite0", 1280, 224)
    feats = onnx_lite0.embed_batch([_scene(0), _scene(1, (50, 400)), _stripes()])
    assert feats.shape == (3, 1280) and feats.dtype == np.float32
    assert np.all(np.isfinite(feats)) and np.all(np.linalg.norm(feats, axis=1) > 0)
    assert feats.min() >= 0.0  # mean of ReLU6 activations: raw, not normalised
    assert onnx_lite0.embed_batch([]).shape == (0, 1280)


def test_lite2_shapes() -> None:
    emb = EfficientNetLiteEmbedder("lite2", backend="torch", threads=THREADS)
    assert (emb.dim, emb.image_size) == (1280, 260)
    # each photo gets the canvas of its shape: landscape, portrait, square (rows, columns)
    assert emb.preprocess(_scene(0)).shape == (260, 372, 3)
    assert emb.preprocess(_scene(0, (240, 360))).shape == (372, 260, 3)
    assert emb.preprocess(_scene(0, (250, 260))).shape == (260, 260, 3)
    assert emb.embed_batch([_scene(0)]).shape == (1, 1280)


def test_canvas_follows_the_photo_and_leaves_little_padding(onnx_lite0: EfficientNetLiteEmbedder) -> None:
    """A 2:3 fashion shot goes onto a 224 x 320 portrait canvas, not a square one."""
    assert onnx_lite0.canvas(360, 540) == (224, 320)
    assert onnx_lite0.canvas(540, 360) == (320, 224)
    assert onnx_lite0.canvas(224, 224) == onnx_lite0.canvas(230, 250) == (224, 224)
    boxed = onnx_lite0.preprocess(Image.new("RGB", (360, 540), (200, 30, 30)))
    assert boxed.shape == (320, 224, 3)
    assert (boxed == 255).all(axis=2).mean() < 0.05  # a square canvas would be a third padding
    square = EfficientNetLiteEmbedder("lite0", backend="torch", threads=THREADS, fit="square")
    assert square.preprocess(_scene(2, (360, 540))).shape == (224, 224, 3)


def test_pooling_recipes(onnx_lite0: EfficientNetLiteEmbedder) -> None:
    """GeM (default) weighs the strongest activations: per channel it is at least the mean."""
    mean = EfficientNetLiteEmbedder("lite0", backend="torch", threads=THREADS, pooling="mean")
    images = [_scene(4), _stripes()]
    gem_f, mean_f = onnx_lite0.embed_batch(images), mean.embed_batch(images)
    active = mean_f > 0.01
    assert (gem_f >= mean_f - 1e-4).all()  # power mean >= arithmetic mean
    assert (gem_f[active] > mean_f[active] * 1.05).mean() > 0.9


def test_deterministic_and_batch_independent(onnx_lite0: EfficientNetLiteEmbedder) -> None:
    images = [_scene(s) for s in range(3)] + [_scene(3, (200, 300))]  # two canvas shapes in one batch
    first = onnx_lite0.embed_batch(images)
    assert np.array_equal(first, onnx_lite0.embed_batch(images))
    one_by_one = np.vstack([onnx_lite0.embed_batch([img]) for img in images])
    np.testing.assert_allclose(one_by_one, first, rtol=1e-4, atol=1e-5)


def test_onnx_matches_torch(onnx_lite0: EfficientNetLiteEmbedder, torch_lite0: EfficientNetLiteEmbedder) -> None:
    images = [_scene(s) for s in range(3)] + [_stripes()]
    a, b = onnx_lite0.embed_batch(images), torch_lite0.embed_batch(images)
    assert min(_cos(x, y) for x, y in zip(a, b, strict=True)) > 0.999
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


def test_onnx_model_cached_atomically(onnx_lite0: EfficientNetLiteEmbedder, cache_dir: Path, monkeypatch) -> None:
    files = sorted(p.name for p in cache_dir.iterdir())
    assert len(files) == 1 and files[0].startswith("efficientnet-lite0-") and files[0].endswith(".onnx")

    def no_export(*args, **kwargs):  # pragma: no cover - reached only on failure
        raise AssertionError("cached model was exported again")

    monkeypatch.setattr(embedder_mod, "_export_onnx", no_export)
    again = make_embedder("lite0", cache_dir=cache_dir, threads=THREADS, precision="fp32")
    assert again.backend == "onnx"
    np.testing.assert_array_equal(again.embed_batch([_scene(5)]), onnx_lite0.embed_batch([_scene(5)]))


def test_bf16_is_close_to_fp32_and_deterministic(
    bf16_lite0: EfficientNetLiteEmbedder, onnx_lite0: EfficientNetLiteEmbedder
) -> None:
    """bfloat16 features point where fp32 ones do (retrieval compares directions), are the
    same on every call, and barely depend on which photos share the batch."""
    images = [_scene(s) for s in range(4)] + [_stripes(), _scene(5, (200, 300))]
    half, full = bf16_lite0.embed_batch(images), onnx_lite0.embed_batch(images)
    assert min(_cos(x, y) for x, y in zip(half, full, strict=True)) > 0.99
    assert np.array_equal(half, bf16_lite0.embed_batch(images))
    alone = np.vstack([bf16_lite0.embed_batch([img]) for img in images])
    assert min(_cos(x, y) for x, y in zip(alone, half, strict=True)) > 0.995
    # the nearest other photo is the same in both precisions
    def nearest(f: np.ndarray) -> np.ndarray:
        f = f / np.linalg.norm(f, axis=1, keepdims=True)
        sims = f @ f.T
        np.fill_diagonal(sims, -1)
        return sims.argmax(1)

    assert np.array_equal(nearest(half), nearest(full))


def test_precision_auto_follows_the_cpu(cache_dir: Path, onnx_lite0: EfficientNetLiteEmbedder) -> None:
    import openvino as ov

    native = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    assert make_embedder("lite0", cache_dir=cache_dir, threads=THREADS).precision == ("bf16" if native else "fp32")
    assert EfficientNetLiteEmbedder("lite0", backend="torch", threads=THREADS).precision == "fp32"


def test_bf16_unavailable_falls_back_to_fp32(
    cache_dir: Path, onnx_lite0: EfficientNetLiteEmbedder, monkeypatch, caplog
) -> None:
    def no_openvino(*args, **kwargs):
        raise ImportError("No module named 'openvino'")

    monkeypatch.setattr(embedder_mod, "_openvino_bf16", no_openvino)
    emb = make_embedder("lite0", cache_dir=cache_dir, threads=THREADS, precision="bf16")
    assert (emb.backend, emb.precision) == ("onnx", "fp32") and "openvino" in caplog.text
    np.testing.assert_array_equal(emb.embed_batch([_scene(5)]), onnx_lite0.embed_batch([_scene(5)]))


def test_falls_back_to_torch_when_export_fails(tmp_path: Path, monkeypatch, caplog) -> None:
    def broken_export(*args, **kwargs):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(embedder_mod, "_export_onnx", broken_export)
    emb = make_embedder("lite0", cache_dir=tmp_path, threads=THREADS)
    assert emb.backend == "torch"
    assert "exporter exploded" in caplog.text
    assert emb.embed_batch([_scene(0)]).shape == (1, 1280)
    assert list(tmp_path.iterdir()) == []


def test_embed_files_reports_failures_and_embeds_the_rest(onnx_lite0: EfficientNetLiteEmbedder, tmp_path: Path) -> None:
    good = []
    for seed in range(4):
        path = tmp_path / f"good{seed}.jpg"
        _scene(seed).save(path, quality=95)
        good.append(path)
    text = tmp_path / "page.jpg"
    text.write_text("<html>404</html>")
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good[0].read_bytes()[:400])
    paths = [good[0], tmp_path / "missing.jpg", good[1], text, good[2], cut, good[3]]
    seen: list[int] = []

    feats, failures = onnx_lite0.embed_files(paths, batch_size=2, workers=2, progress=seen.append)

    assert feats.shape == (7, 1280) and feats.dtype == np.float32
    assert failures == {1: "file not found", 3: "not an image (unrecognised format)", 5: "truncated image"}
    assert np.all(feats[[1, 3, 5]] == 0)
    assert sum(seen) == 7
    expected = onnx_lite0.embed_batch([Image.open(p).convert("RGB") for p in good])
    np.testing.assert_allclose(feats[[0, 2, 4, 6]], expected, rtol=1e-4, atol=1e-5)


def test_embed_files_decodes_with_draft(onnx_lite0: EfficientNetLiteEmbedder, tmp_path: Path, monkeypatch) -> None:
    calls: list[int | None] = []
    real = embedder_mod.load_image

    def spy(path, **kwargs):
        calls.append(kwargs.get("draft"))
        return real(path, **kwargs)

    monkeypatch.setattr(embedder_mod, "load_image", spy)
    path = tmp_path / "big.jpg"
    _scene(0, (1600, 1200)).save(path, quality=90)
    feats, failures = onnx_lite0.embed_files([path], workers=1)
    assert calls == [224] and not failures
    # Draft decoding (1/4 scale here) changes pixels only marginally.
    full = onnx_lite0.embed_batch([Image.open(path).convert("RGB")])[0]
    assert _cos(feats[0], full) > 0.98


def test_embed_files_empty(onnx_lite0: EfficientNetLiteEmbedder) -> None:
    feats, failures = onnx_lite0.embed_files([])
    assert feats.shape == (0, 1280) and failures == {}


def test_semantic_sanity(onnx_lite0: EfficientNetLiteEmbedder) -> None:
    """Crops and recolourings of one picture stay closer to it than another picture."""
    base = _scene(7)
    w, h = base.size
    crop = base.crop((15, 12, w - 15, h - 12))
    darker = ImageEnhance.Brightness(base).enhance(0.8)
    hue = Image.fromarray(np.asarray(base)[:, :, [1, 2, 0]])  # channel swap on the shapes
    other, stripes = _scene(99), _stripes()
    f = onnx_lite0.embed_batch([base, crop, darker, hue, other, stripes])
    for variant in (1, 2, 3):
        assert _cos(f[0], f[variant]) > max(_cos(f[0], f[4]), _cos(f[0], f[5]))


def test_letterbox_differs_from_stretch_only_for_non_square(cache_dir: Path) -> None:
    boxed = EfficientNetLiteEmbedder("lite0", cache_dir=cache_dir, threads=THREADS)
    stretched = EfficientNetLiteEmbedder("lite0", cache_dir=cache_dir, threads=THREADS, fit="stretch")
    tall, square = _scene(3, (120, 360)), _scene(3, (240, 240))
    assert _cos(boxed.embed_batch([tall])[0], stretched.embed_batch([tall])[0]) < 0.97
    np.testing.assert_array_equal(boxed.embed_batch([square]), stretched.embed_batch([square]))
    padded = boxed.preprocess(tall)
    assert (padded[:, :30] == 255).all() and (padded[:, -30:] == 255).all()


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="unknown embedder"):
        make_embedder("resnet50")
    with pytest.raises(ValueError, match="unknown backend"):
        EfficientNetLiteEmbedder("lite0", backend="tensorflow")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown fit"):
        EfficientNetLiteEmbedder("lite0", backend="torch", fit="zoom")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown pooling"):
        EfficientNetLiteEmbedder("lite0", backend="torch", pooling="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown precision"):
        EfficientNetLiteEmbedder("lite0", backend="torch", precision="int4")  # type: ignore[arg-type]

