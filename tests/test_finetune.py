"""Last-stage fine-tune: the cached activations give what the full network gives, training moves
only the tail and learns, and the tuned network exports to ONNX (fp32 and bf16) and reloads."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import draw_product
from stylesense.atomic import DamagedFile
from stylesense.errors import InvalidInput
from stylesense.vision.embedder import EfficientNetLiteEmbedder
from stylesense.vision.finetune import TunedStage, cache_activations, finetune, pooled, stage_starts
from stylesense.vision.images import load_image
from stylesense.vision.network import lite_network

THREADS = 2
torch.set_num_threads(THREADS)
KINDS = ("Tshirts", "Shoes", "Bags", "Dresses")


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """24 product shots (4 kinds), every third one on a portrait canvas (a second input shape),
    one broken file; the kind and an arbitrary label ("odd") per photo."""
    folder = tmp_path_factory.mktemp("finetune-photos")
    rng = random.Random(3)
    paths, kinds, odd = [], [], []
    for i in range(24):
        img = draw_product(KINDS[i % 4], rng)
        if i % 3 == 0:
            canvas = Image.new("RGB", (160, 240), "white")
            canvas.paste(img, (0, 40))
            img = canvas
        paths.append(folder / f"{i}.jpg")
        img.save(paths[-1], quality=90)
        kinds.append(KINDS[i % 4])
        odd.append(str(i // 4 % 2))
    broken = folder / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    return [*paths, broken], np.array([*kinds, ""], object), np.array([*odd, ""], object)


@pytest.fixture(scope="module")
def embedder() -> EfficientNetLiteEmbedder:
    return EfficientNetLiteEmbedder("lite0", backend="torch", threads=THREADS)


@pytest.fixture(scope="module")
def acts(photos, embedder):
    return cache_activations(embedder, photos[0], stages=1, batch_size=8)


@pytest.fixture(scope="module")
def tuned(acts, photos) -> TunedStage:
    _, kinds, odd = photos
    return finetune(acts, [kinds, odd], label_names=["kind", "odd"], epochs=12, lr=1e-3, batch_size=8,
                    threads=THREADS)


def test_the_split_network_is_the_network(photos, embedder) -> None:
    net = lite_network("lite0")
    x = torch.from_numpy(np.stack([embedder.preprocess(load_image(p)) for p in (photos[0][1], photos[0][2], photos[0][4])]))
    with torch.inference_mode():
        whole = net(x)
        for cut in stage_starts(net):
            assert torch.equal(net.tail(net.trunk(x, cut), cut), whole)


def test_cached_activations_give_the_full_forward(acts, photos, embedder) -> None:
    """pooled() over the cache = the embedder's features of the same files (up to the cache's
    float16 rounding), for both canvas shapes; the broken file is reported, not fatal."""
    paths = photos[0]
    assert acts.cut == 15 and acts.n == len(paths)
    assert set(acts.failures) == {len(paths) - 1}
    assert sorted(tuple(a.shape[2:]) for _, a in acts.shapes) == [(7, 7), (10, 7)]
    features, failures = embedder.embed_files(paths)
    assert set(failures) == set(acts.failures)
    got = pooled(lite_network("lite0"), acts)
    ok = acts.rows
    assert _cos(got[ok], features[ok]).min() > 0.99999
    np.testing.assert_allclose(got[ok], features[ok], atol=2e-3 * np.abs(features).max())
    assert not got[len(paths) - 1].any()


def test_fine_tune_moves_only_the_tail_and_matches_its_network(tuned, acts, photos) -> None:
    base = lite_network("lite0").state_dict()
    assert tuned.cut == acts.cut and tuned.weights
    assert all(k.startswith(("backbone._blocks.15.", "backbone._conv_head.", "backbone._bn1.")) for k in tuned.weights)
    assert any(not np.allclose(v, base[k].numpy()) for k, v in tuned.weights.items())
    net = tuned.network()
    for k, v in net.state_dict().items():  # the rest is the ImageNet network, untouched
        if k not in tuned.weights:
            assert torch.equal(v, base[k])
    emb = EfficientNetLiteEmbedder("lite0", backend="torch", threads=THREADS, tuned=tuned)
    full, _ = emb.embed_files(photos[0])
    cached = pooled(net, acts)
    ok = acts.rows
    assert _cos(cached[ok], full[ok]).min() > 0.99999


def test_fine_tune_learns_what_imagenet_features_do_not_say(tuned, acts, photos) -> None:
    """An arbitrary label ("odd") that no visual trait carries: the tuned tail pulls its values
    apart on the photos it trained on, the ImageNet features do not."""
    _, _, odd = photos
    ok = acts.rows

    def agreement(features: np.ndarray) -> float:
        x = features[ok] / np.linalg.norm(features[ok], axis=1, keepdims=True)
        sims = x @ x.T
        np.fill_diagonal(sims, -np.inf)
        nearest = np.argsort(-sims, axis=1)[:, :3]
        return float((odd[ok][nearest] == odd[ok][:, None]).mean())

    assert tuned.info["final_loss"] is not None and tuned.info["epochs"] == 12
    assert agreement(pooled(tuned.network(), acts)) > agreement(pooled(lite_network("lite0"), acts)) + 0.1


def test_tuned_network_exports_to_onnx_fp32_and_bf16(tuned, photos, model_cache: Path) -> None:
    images = [load_image(p) for p in photos[0][:6]]
    reference = EfficientNetLiteEmbedder("lite0", backend="torch", threads=THREADS, tuned=tuned).embed_batch(images)
    fp32 = EfficientNetLiteEmbedder("lite0", cache_dir=model_cache, threads=THREADS, precision="fp32", tuned=tuned)
    assert (fp32.backend, fp32.precision) == ("onnx", "fp32")
    assert (model_cache / f"efficientnet-lite0-gem-tuned-{tuned.digest}-u8nhwc-dynhw-v2.onnx").is_file()
    assert _cos(fp32.embed_batch(images), reference).min() > 0.999
    imagenet = EfficientNetLiteEmbedder("lite0", cache_dir=model_cache, threads=THREADS, precision="fp32")
    assert _cos(imagenet.embed_batch(images), reference).min() < 0.999  # another model, another file
    bf16 = EfficientNetLiteEmbedder("lite0", cache_dir=model_cache, threads=THREADS, precision="bf16", tuned=tuned)
    if bf16.precision != "bf16":
        pytest.skip("this CPU computes no bfloat16 natively (the fp32 export was checked above)")
    assert _cos(bf16.embed_batch(images), reference).min() > 0.99


def test_save_load_round_trip_and_refusals(tuned, tmp_path: Path) -> None:
    path = tmp_path / "tuned.npz"
    tuned.save(path)
    again = TunedStage.load(path)
    assert (again.variant, again.pooling, again.cut, again.digest) == (tuned.variant, tuned.pooling, tuned.cut, tuned.digest)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 nonsense")
    with pytest.raises(DamagedFile):
        TunedStage.load(bad)
    with pytest.raises(InvalidInput, match="fine-tune is of lite0"):
        EfficientNetLiteEmbedder("lite2", backend="torch", tuned=tuned)
    with pytest.raises(InvalidInput, match="do not fit efficientnet-lite0"):
        lite_network("lite0", tuned={k: v[..., :1] for k, v in tuned.weights.items()})
    with pytest.raises(InvalidInput, match="stages"):
        cache_activations(EfficientNetLiteEmbedder("lite0", backend="torch"), [], stages=0)
