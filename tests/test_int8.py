"""int8 inference: the exported model quantised with calibration photos (vision.quantize). The
real embedder on drawn product photos: its features agree with fp32's and find the same
neighbours; a home set to int8 calibrates on its first import (or at once, when the setting
changes on a filled home) and keeps the quantised model, run by whichever of OpenVINO and
onnxruntime is faster on this CPU; bad input is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import write_catalog
from stylesense.cli import app
from stylesense.engine import StyleSense
from stylesense.errors import InvalidInput
from stylesense.vision.embedder import EfficientNetLiteEmbedder, cpu_features
from stylesense.vision.quantize import MIN_CALIBRATION_PHOTOS

N_PER_CLASS = 5  # 4 classes: 20 photos, above MIN_CALIBRATION_PHOTOS


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    return write_catalog(tmp_path_factory.mktemp("int8-shop"), n_per_class=N_PER_CLASS)


@pytest.fixture
def models(tmp_path, model_cache) -> Path:
    """A models folder of its own (int8 models are calibrated per folder) holding a copy of the
    shared fp32 export, so no test exports again."""
    EfficientNetLiteEmbedder(cache_dir=model_cache, precision="fp32")  # exported once per session
    folder = tmp_path / "models"
    folder.mkdir()
    for exported in model_cache.glob("*.onnx"):
        if not exported.name.endswith("-int8.onnx"):
            shutil.copyfile(exported, folder / exported.name)
    return folder


def photos(shop: Path) -> list[Path]:
    return sorted((shop.parent / "images").glob("*.jpg"), key=lambda p: int(p.stem))


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def nearest(feats: np.ndarray) -> np.ndarray:
    sims = unit(feats) @ unit(feats).T
    np.fill_diagonal(sims, -np.inf)
    return sims.argmax(axis=1)


def test_int8_features_agree_with_fp32_and_the_model_is_kept(shop, models):
    files = photos(shop)
    int8 = EfficientNetLiteEmbedder(cache_dir=models, threads=1, precision="int8")
    assert int8.calibration_needed and int8.precision in ("fp32", "bf16")  # "auto" until calibrated
    int8.calibrate(files)
    assert (int8.precision, int8.calibration_needed) == ("int8", False)
    fp32 = EfficientNetLiteEmbedder(cache_dir=models, threads=1, precision="fp32")
    got, failed = int8.embed_files(files)
    want, _ = fp32.embed_files(files)
    assert not failed
    cosine = (unit(got) * unit(want)).sum(axis=1)
    # drawn flat shapes are far from photos (on real photos the lowest is ~0.985, docs/vision.md)
    assert cosine.min() > 0.9 and cosine.mean() > 0.97, cosine
    kinds = np.repeat(np.arange(4), N_PER_CLASS)
    assert np.array_equal(kinds[nearest(got)], kinds[nearest(want)])  # same class as fp32's nearest
    assert (kinds[nearest(got)] == kinds).mean() >= 0.9
    # a new embedder on the same folder runs the kept model: same features, no calibration
    again = EfficientNetLiteEmbedder(cache_dir=models, threads=1, precision="int8")
    assert (again.precision, again.calibration_needed) == ("int8", False)
    np.testing.assert_allclose(again.embed_files(files[:4])[0], got[:4], rtol=1e-4, atol=1e-4)


def test_calibration_skips_broken_photos_and_refuses_too_few(shop, models, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    emb = EfficientNetLiteEmbedder(cache_dir=models, threads=1, precision="int8")
    few = photos(shop)[: MIN_CALIBRATION_PHOTOS - 1] + [broken]
    with pytest.raises(InvalidInput, match=f"at least {MIN_CALIBRATION_PHOTOS} readable photos"):
        emb.calibrate(few)
    assert emb.calibration_needed and not list(models.glob("*-int8.onnx"))
    emb.calibrate(photos(shop) + [broken])
    assert emb.precision == "int8"
    with pytest.raises(InvalidInput, match="has none yet"):
        emb.calibrate(photos(shop))
    with pytest.raises(InvalidInput, match="unknown precision"):
        EfficientNetLiteEmbedder(cache_dir=models, precision="int4")  # type: ignore[arg-type]


def test_a_damaged_int8_model_is_calibrated_again(shop, models):
    emb = EfficientNetLiteEmbedder(cache_dir=models, threads=1, precision="int8")
    emb.calibrate(photos(shop))
    (kept,) = models.glob("*-int8.onnx")
    kept.write_bytes(kept.read_bytes()[:1000])
    damaged = EfficientNetLiteEmbedder(cache_dir=models, threads=1, precision="int8")
    assert damaged.calibration_needed and damaged.precision != "int8"
    damaged.calibrate(photos(shop))
    assert damaged.precision == "int8" and kept.stat().st_size > 1_000_000


def test_an_int8_home_calibrates_on_its_first_large_enough_import(shop, models, tmp_path):
    root = tmp_path / "home"
    root.mkdir()
    shutil.move(models, root / "models")
    cli = CliRunner()
    made = cli.invoke(app, ["--home", str(root), "init", "--precision", "int8"])
    assert made.exit_code == 0, made.output
    small = tmp_path / "small"
    write_catalog(small, n_per_class=2, start=101)  # 8 photos: too few to calibrate on
    ss = StyleSense(root, threads=1)
    assert ss.import_catalog(small / "styles.csv", "images/{id}.jpg").ok
    assert not list((root / "models").glob("*-int8.onnx"))
    assert ss.embedder.calibration_needed
    report = ss.import_catalog(shop, "images/{id}.jpg")
    assert report.ok and report.embedded == 4 * N_PER_CLASS
    assert len(list((root / "models").glob("*-int8.onnx"))) == 1
    fresh = StyleSense(root, threads=1)
    assert fresh.embedder.precision == "int8"
    query = photos(shop)[0]  # a T-shirt
    hits = fresh.search(image=query, k=3)
    assert [h.attrs["articleType"] for h in hits] == ["Tshirts"] * 3


def test_setting_int8_on_a_filled_home_calibrates_at_once(shop, models, tmp_path):
    root = tmp_path / "home"
    root.mkdir()
    shutil.move(models, root / "models")
    ss = StyleSense(root, threads=1)
    assert ss.import_catalog(shop, "images/{id}.jpg").ok
    assert not list((root / "models").glob("*-int8.onnx"))
    out = CliRunner().invoke(app, ["--home", str(root), "config", "precision=int8"])
    assert out.exit_code == 0, out.output
    assert '"precision": "int8"' in out.output
    assert len(list((root / "models").glob("*-int8.onnx"))) == 1
    assert StyleSense(root, threads=1).embedder.precision == "int8"
    bad = CliRunner().invoke(app, ["--home", str(root), "config", "precision=int4"])
    assert bad.exit_code != 0 and "precision must be one of" in bad.output
    assert ss.config.precision == "int8"


def test_the_faster_int8_runtime_is_timed_once_per_cpu_and_both_agree(shop, models):
    files = photos(shop)[:8]
    emb = EfficientNetLiteEmbedder(cache_dir=models, threads=1, precision="int8")
    emb.calibrate(photos(shop))
    (record,) = models.glob("*-int8.json")
    kept = json.loads(record.read_text())
    assert kept["cpu"] == cpu_features() and set(kept["img_per_s"]) == {"openvino", "onnxruntime"}
    assert kept["runtime"] == emb.runtime == max(kept["img_per_s"], key=kept["img_per_s"].get)
    assert min(kept["img_per_s"].values()) > 0
    first, _ = emb.embed_files(files)
    # the kept choice is obeyed without timing again: told the other runtime, a new embedder runs it
    other = ({"openvino", "onnxruntime"} - {kept["runtime"]}).pop()
    record.write_text(json.dumps({**kept, "runtime": other}))
    switched = EfficientNetLiteEmbedder(cache_dir=models, threads=1, precision="int8")
    assert (switched.runtime, switched.precision) == (other, "int8")
    assert ((unit(switched.embed_files(files)[0]) * unit(first)).sum(axis=1) > 0.99).all()
    # a record of another CPU, or one that is not JSON, is timed again and rewritten for this one
    for stale in (json.dumps({**kept, "cpu": {"model": "another CPU", "flags": ["avx2"]}}), "{not json"):
        record.write_text(stale)
        again = EfficientNetLiteEmbedder(cache_dir=models, threads=1, precision="int8")
        assert again.precision == "int8" and again.runtime in ("openvino", "onnxruntime")
        assert json.loads(record.read_text())["cpu"] == cpu_features()
