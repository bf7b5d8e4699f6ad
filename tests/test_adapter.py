"""Catalogue adapter: it must find a label signal that raw cosine misses, and persist exactly."""

import json

import numpy as np
import pytest

from stylesense.errors import Damaged

from stylesense.evaluation.retrieval import retrieval_metrics
from stylesense.errors import InvalidInput
from stylesense.vision.adapter import FORMAT, Adapter, Part, normalize, parse_mix, raw_directions, validated_mix


def synthetic(seed: int = 0, n: int = 1600, d: int = 96, classes: int = 8, colours: int = 5):
    """Non-negative CNN-like features whose class signal lives in a low-variance subspace.

    The class centres span 6 directions, while 86 other directions carry up to 6x their
    variance as nuisance (pose, background): raw cosine mostly ranks nuisance.
    A second, weaker label (colour) lives in 4 further directions.
    """
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, classes, n)
    colour = rng.integers(0, colours, n)
    kind_centres = rng.normal(size=(classes, 6)) * 0.8
    colour_centres = rng.normal(size=(colours, 4)) * 0.5
    parts = [
        kind_centres[kind] + 0.15 * rng.normal(size=(n, 6)),
        colour_centres[colour] + 0.15 * rng.normal(size=(n, 4)),
        rng.normal(size=(n, d - 10)) * rng.uniform(1.0, 2.0, size=d - 10),
    ]
    rotation = np.linalg.qr(rng.normal(size=(d, d)))[0]
    x = np.abs(np.concatenate(parts, axis=1) @ rotation + 4.0)
    return x.astype(np.float32), kind.astype(str), colour.astype(str)


def precision_at_10(vectors: np.ndarray, labels: np.ndarray) -> float:
    ids = np.arange(len(vectors))

    def search(q, kk):
        top = np.argsort(-(q @ vectors.T), axis=1)[:, :kk]
        return np.take_along_axis(q @ vectors.T, top, axis=1), ids[top]

    return retrieval_metrics(search, ids, vectors, labels, None, k=10)["precision_at_k"]


@pytest.fixture(scope="module")
def data():
    x, kind, colour = synthetic()
    train = np.arange(len(x)) % 2 == 0
    return x, kind, colour, train


@pytest.fixture(scope="module")
def adapter(data):
    x, kind, colour, train = data
    colour = colour.astype(object)
    colour[::7] = ""  # unknown values are skipped for that column only
    return Adapter.train(x[train], [kind[train], colour[train]], label_names=["kind", "colour"], out_dim=32, threads=1)


def test_adapter_lifts_held_out_precision_well_above_off_the_shelf(data, adapter):
    x, kind, _, train = data
    off = precision_at_10(normalize(x[~train]), kind[~train])
    adapted = precision_at_10(adapter.transform(x[~train]), kind[~train])
    assert off < 0.3  # the nuisance really drowns the signal for raw cosine (chance: 1/8)
    assert adapted > off + 0.4


def test_transform_shape_dtype_and_unit_norm(data, adapter):
    x = data[0]
    out = adapter.transform(x[:5])
    assert out.shape == (5, 32) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError):
        adapter.transform(x[:5, :10])
    assert [c["name"] for c in adapter.info["labels"]] == ["kind", "colour"]
    assert adapter.info["labels"][1]["items"] < adapter.info["labels"][0]["items"]


def test_normalize_is_unit_norm_and_safe_on_zero_rows():
    out = normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])
    assert out.dtype == np.float32


def test_save_load_round_trip_is_identical(tmp_path, data, adapter):
    path = tmp_path / "adapter.npz"
    adapter.save(path)
    loaded = Adapter.load(path)
    np.testing.assert_array_equal(loaded.transform(data[0][:50]), adapter.transform(data[0][:50]))
    assert loaded.info == json.loads(json.dumps(adapter.info))
    assert [p.name for p in tmp_path.iterdir()] == ["adapter.npz"]  # no temp file left behind


def test_load_refuses_pickles_and_foreign_files(tmp_path):
    pickled = tmp_path / "evil.npz"
    arrays = {k: np.zeros((2, 2)) for k in ("w1", "w2", "skip")} | {k: np.zeros(2) for k in ("mean", "b1", "b2")}
    np.savez(pickled, header=np.array([{"format": "stylesense-adapter", "version": 1}], dtype=object), **arrays)
    with pytest.raises(Damaged):
        Adapter.load(pickled)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip")
    with pytest.raises(Damaged):
        Adapter.load(garbage)


def test_training_is_deterministic_and_uses_groups(data):
    x, kind, _, train = data
    groups = np.array([f"p{i // 3}" if i % 2 else "" for i in range(int(train.sum()))], dtype=object)
    # 4 batches x 3 epochs = 12 steps (also covers the short-run warm-up path)
    seen = []
    a = Adapter.train(
        x[train], [kind[train]], groups, out_dim=16, epochs=3, seed=3, threads=1, batch_size=200,
        progress=lambda epoch, total, loss: seen.append((epoch, total)),
    )
    assert seen == [(1, 3), (2, 3), (3, 3)]
    b = Adapter.train(x[train], [kind[train]], groups, out_dim=16, epochs=3, seed=3, threads=1, batch_size=200)
    c = Adapter.train(x[train], [kind[train]], groups, out_dim=16, epochs=3, seed=4, threads=1, batch_size=200)
    np.testing.assert_array_equal(a.transform(x[:20]), b.transform(x[:20]))
    assert not np.array_equal(a.transform(x[:20]), c.transform(x[:20]))
    assert a.info["labels"][-1]["name"] == "groups"
    capped = Adapter.train(x[train], [kind[train]], out_dim=16, epochs=50, max_steps=8, threads=1, batch_size=200)
    assert capped.info["epochs"] == 2 and capped.info["steps"] == 8  # big catalogues train in bounded time


def test_training_refuses_useless_labels(data):
    x = data[0][:20]
    with pytest.raises(ValueError):
        Adapter.train(x, [np.array(["same"] * 20)], out_dim=8)


@pytest.fixture(scope="module")
def two_part(data):
    x, kind, colour, train = data
    parts = [Part("shape", ("kind",), 24, 3.0), Part("colour", ("colour",), 8, 1.0)]
    return Adapter.train(x[train], [kind[train], colour[train]], label_names=["kind", "colour"], parts=parts,
                         threads=1, epochs=30)


def test_parts_learn_their_own_labels_and_weigh_into_one_cosine(data, two_part):
    x, kind, colour, train = data
    layout = two_part.layout()
    assert layout == {"shape": (slice(0, 24), 0.75), "colour": (slice(24, 32), 0.25)} and two_part.out_dim == 32
    v = two_part.transform(x[~train])
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    shape, col = normalize(v[:, :24]), normalize(v[:, 24:])
    np.testing.assert_allclose(v @ v[:5].T, 0.75 * shape @ shape[:5].T + 0.25 * col @ col[:5].T, atol=1e-5)
    # each part ranks by its own label far better than the other part does
    assert precision_at_10(shape, kind[~train]) > precision_at_10(col, kind[~train]) + 0.3
    assert precision_at_10(col, colour[~train]) > precision_at_10(shape, colour[~train]) + 0.1
    np.testing.assert_allclose(two_part.steer(v, {"colour": 2.0}) @ v[:5].T, 2 * col @ col[:5].T, atol=1e-4)
    assert two_part.steerable  # parts named shape and colour: what steered search needs


def test_mixing_in_the_raw_vector_is_a_weighted_cosine_and_round_trips(tmp_path, data, two_part):
    x = data[0][:40]
    mixed = two_part.mixed(0.2)
    assert [p["name"] for p in mixed.info["parts"]] == ["shape", "colour", "raw"]
    assert [round(p["weight"], 6) for p in mixed.info["parts"]] == [0.6, 0.2, 0.2]
    v, plain = mixed.transform(x), two_part.transform(x)
    raw = normalize(x)
    np.testing.assert_allclose(v @ v.T, 0.8 * plain @ plain.T + 0.2 * raw @ raw.T, atol=1e-5)
    np.testing.assert_array_equal(mixed.mixed(0.0).transform(x), plain)
    path = tmp_path / "mixed.npz"
    mixed.save(path)
    loaded = Adapter.load(path)
    np.testing.assert_array_equal(loaded.transform(x), v)
    assert loaded.info["parts"] == mixed.info["parts"] and loaded.info["raw_weight"] == 0.2
    with pytest.raises(InvalidInput):
        two_part.mixed(1.0)


def test_the_trained_mix_projects_the_raw_part_on_its_principal_directions(tmp_path, data, two_part):
    """Features wider than the raw part's width: the mixed-in raw vector is their projection on
    the first principal directions, so the mix costs RAW_DIM-ish columns, not the CNN's width;
    the cosine stays the weighted sum, and the file round-trips with its projection."""
    x, kind, _, train = data
    directions = raw_directions(x[train], dim=24)
    assert directions.shape == (96, 24) and raw_directions(x[train], dim=96) is None  # none needed
    np.testing.assert_allclose(directions.T @ directions, np.eye(24), atol=1e-4)
    mixed = two_part.mixed(0.3, directions)
    assert mixed.layout()["raw"] == (slice(32, 56), 0.3) and mixed.out_dim == 56
    v, plain = mixed.transform(x[:40]), two_part.transform(x[:40])
    raw = normalize(normalize(x[:40]) @ directions)
    np.testing.assert_allclose(v @ v.T, 0.7 * plain @ plain.T + 0.3 * raw @ raw.T, atol=1e-5)
    # the top directions keep the unit vectors' cosines better than any 24 other directions would
    full = normalize(x[:40])
    random = normalize(full @ np.linalg.qr(np.random.default_rng(0).normal(size=(96, 24)))[0])
    kept = [np.corrcoef((r @ r.T).ravel(), (full @ full.T).ravel())[0, 1] for r in (raw, random)]
    assert kept[0] > 0.8 and kept[0] > kept[1] + 0.1
    path = tmp_path / "projected.npz"
    mixed.save(path)
    loaded = Adapter.load(path)
    np.testing.assert_array_equal(loaded.transform(x[:40]), v)
    assert loaded.mixed(0.5).layout()["raw"][0] == slice(32, 56)  # a new weight keeps the projection
    assert "raw.proj" not in loaded.mixed(0.0).weights
    trained = Adapter.train(x[train], [kind[train]], label_names=["kind"], out_dim=16, epochs=5, threads=1,
                            raw_weight=0.4)
    assert trained.layout()["raw"] == (slice(16, 112), 0.4)  # 96 columns: no wider than RAW_DIM, kept whole
    bad = dict(loaded.weights, **{"raw.proj": directions[:, :10]})
    with pytest.raises(InvalidInput, match="projection"):
        Adapter(bad, loaded.info)


def test_a_version_1_file_still_loads_and_transforms_the_same(tmp_path, data, adapter):
    path = tmp_path / "v1.npz"
    legacy = {k.split(".", 1)[-1]: v for k, v in adapter.weights.items()}
    info = {k: v for k, v in adapter.info.items() if k != "parts"} | {"format": FORMAT, "version": 1}
    np.savez(path, header=np.frombuffer(json.dumps(info).encode(), dtype=np.uint8), **legacy)
    loaded = Adapter.load(path)
    np.testing.assert_array_equal(loaded.transform(data[0][:30]), adapter.transform(data[0][:30]))
    assert loaded.layout() == {"adapted": (slice(0, 32), 1.0)} and not loaded.steerable
    mismatched = tmp_path / "bad.npz"
    np.savez(mismatched, header=np.frombuffer(json.dumps(adapter.info).encode(), dtype=np.uint8), **legacy)
    with pytest.raises(Damaged):  # version-2 header over version-1 arrays
        Adapter.load(mismatched)


def test_the_mix_weight_is_chosen_on_training_items_only(data):
    x, kind, _, train = data
    best, scores = validated_mix(x[train], [kind[train]], label_names=["kind"], grid=(0.0, 0.3, 0.9),
                                 out_dim=16, epochs=10, threads=1)
    assert set(scores) == {"0.0", "0.3", "0.9"} and best == max((0.0, 0.3, 0.9), key=lambda w: scores[str(w)])
    assert scores["0.9"] < scores["0.0"]  # raw cosine drowns this label: mixing much in hurts
    held_best, held = validated_mix(x[train], [kind[train]], label_names=["kind"], grid=(0.0, 0.9), holdout="labels",
                                    out_dim=16, epochs=10, threads=1)  # validated on kinds the fit part lacks
    assert set(held) == {"0.0", "0.9"} and held_best in (0.0, 0.9) and held != {k: scores[k] for k in held}
    with pytest.raises(InvalidInput):
        validated_mix(x[train], [kind[train]], holdout="colours")
    assert parse_mix("auto") is None and parse_mix("0.25") == 0.25
    for bad in ("1", "-0.1", "lots"):
        with pytest.raises(InvalidInput):
            parse_mix(bad)


def test_parts_refuse_labels_that_teach_nothing(data):
    x, kind, colour, _ = data
    with pytest.raises(InvalidInput, match="none of"):
        Adapter.train(x[:200], [kind[:200]], label_names=["kind"], parts=[Part("colour", ("colour",))], epochs=1)
    with pytest.raises(InvalidInput):
        Adapter.train(x[:200], [kind[:200]], label_names=["kind"], parts=[Part("raw", ("kind",))], epochs=1)
