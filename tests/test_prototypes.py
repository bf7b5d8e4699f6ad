"""Colour prototypes: a steerable adapter keeps the mean colour vector of each colour it was
trained on, reads a photo's colour as its nearest prototype, and pulls a steered query's colour
part towards its colour's prototype ("things in this colour", not "in this photo's shade")."""

import json

import numpy as np
import pytest

from stylesense.errors import Damaged
from stylesense.vision.adapter import PROTOTYPE_PULL, Adapter, Part, normalize

from test_adapter import synthetic


@pytest.fixture(scope="module")
def data():
    x, kind, colour = synthetic(seed=3)
    train = np.arange(len(x)) % 2 == 0
    return x, kind, colour, train


@pytest.fixture(scope="module")
def steerable(data):
    x, kind, colour, train = data
    colour = colour.astype(object)
    colour[::9] = ""  # items without a colour teach the colour part nothing and make no prototype
    parts = [Part("shape", ("kind",), 24, 3.0), Part("colour", ("colour",), 8, 1.0)]
    return Adapter.train(x[train], [kind[train], colour[train]], label_names=["kind", "colour"], parts=parts,
                         threads=1, epochs=30)


def colour_part(adapter: Adapter, vectors: np.ndarray) -> np.ndarray:
    return normalize(vectors[:, adapter.layout()["colour"][0]])


def test_the_colour_part_keeps_one_prototype_per_colour_the_mean_of_its_training_items(data, steerable):
    x, _, colour, train = data
    values, protos = steerable.prototypes("colour")
    assert values == sorted(set(colour)) and protos.shape == (len(values), 8)
    np.testing.assert_allclose(np.linalg.norm(protos, axis=1), 1.0, rtol=1e-5)
    trained = colour_part(steerable, steerable.transform(x[train]))
    known = np.arange(int(train.sum())) % 9 != 0  # the rows whose colour was kept
    for value, proto in zip(values, protos, strict=True):
        rows = known & (colour[train] == value)
        np.testing.assert_allclose(proto, normalize(trained[rows].mean(axis=0, keepdims=True))[0], atol=1e-5)
    assert steerable.prototypes("shape") is None and steerable.read(x[:3], "shape") is None
    assert steerable.prototypes("color") is not None  # the alias steering accepts


def test_a_photo_s_colour_is_read_as_its_nearest_prototype(data, steerable):
    x, _, colour, train = data
    test = steerable.transform(x[~train])
    read = np.array(steerable.read(test, "colour"))
    values, protos = steerable.prototypes("colour")
    np.testing.assert_array_equal(read, np.array(values)[np.argmax(colour_part(steerable, test) @ protos.T, axis=1)])
    # the nearest other item's colour, which a photo query got before: one noisy neighbour
    scores = colour_part(steerable, test) @ colour_part(steerable, test).T
    np.fill_diagonal(scores, -np.inf)
    nearest = colour[~train][np.argmax(scores, axis=1)]
    assert np.mean(read == colour[~train]) > np.mean(nearest == colour[~train]) + 0.05 > 0.05 + 1 / len(values)


def test_a_steered_query_s_colour_part_moves_towards_its_colour_s_prototype(data, steerable):
    x, _, colour, train = data
    test = steerable.transform(x[~train][:50])
    values, protos = steerable.prototypes("colour")
    labels = list(colour[~train][:50])
    labels[0] = "no such colour"  # an unknown value leaves its row as it is
    plain = steerable.steer(test, {"colour": 1.0})
    pulled = steerable.steer(test, {"colour": 1.0}, {"colour": labels})
    cols, w = steerable.layout()["colour"]
    np.testing.assert_array_equal(pulled[0], plain[0])
    for row in (1, 2, 3):
        proto = protos[values.index(labels[row])]
        expected = normalize((1 - PROTOTYPE_PULL) * colour_part(steerable, test[row:row + 1]) + PROTOTYPE_PULL * proto)
        np.testing.assert_allclose(pulled[row, cols], expected[0] / np.sqrt(w), atol=1e-5)
    np.testing.assert_allclose(steerable.steer(test, {"colour": 1.0}, {"colour": labels}, pull=0.0), plain, atol=1e-6)
    # a part that is not weighed is not pulled; a part without prototypes ignores values
    np.testing.assert_array_equal(steerable.steer(test, {"shape": 1.0}, {"colour": labels, "shape": labels}),
                                  steerable.steer(test, {"shape": 1.0}))


def test_pulling_finds_more_of_the_query_s_colour_among_unseen_items(data, steerable):
    x, _, colour, train = data
    test, labels = steerable.transform(x[~train]), colour[~train]

    def share_same_colour(queries: np.ndarray) -> float:
        scores = queries @ test.T
        np.fill_diagonal(scores, -np.inf)
        top = np.argsort(-scores, axis=1)[:, :10]
        return float(np.mean(labels[top] == labels[:, None]))

    plain = share_same_colour(steerable.steer(test, {"colour": 1.0}))
    pulled = share_same_colour(steerable.steer(test, {"colour": 1.0}, {"colour": list(labels)}))
    assert pulled > plain + 0.03, (plain, pulled)


def test_prototypes_round_trip_and_an_adapter_without_them_still_loads(tmp_path, data, steerable):
    x = data[0][:20]
    path = tmp_path / "steer.npz"
    steerable.save(path)
    loaded = Adapter.load(path)
    assert loaded.prototypes("colour")[0] == steerable.prototypes("colour")[0]
    np.testing.assert_array_equal(loaded.prototypes("colour")[1], steerable.prototypes("colour")[1])
    assert loaded.read(loaded.transform(x), "colour") == steerable.read(steerable.transform(x), "colour")
    # a file written before prototypes were kept: it loads, reads nothing, steers without a pull
    info = {**steerable.info, "parts": [{k: v for k, v in p.items() if k != "prototypes"}
                                        for p in steerable.info["parts"]]}
    older = {k: v for k, v in steerable.weights.items() if k != "colour.prototypes"}
    header = np.frombuffer(json.dumps(info).encode(), dtype=np.uint8)
    np.savez(tmp_path / "older.npz", header=header, **older)
    old = Adapter.load(tmp_path / "older.npz")
    v = old.transform(x)
    assert old.read(v, "colour") is None
    np.testing.assert_array_equal(old.steer(v, {"colour": 1.0}, {"colour": ["0"] * 20}), old.steer(v, {"colour": 1.0}))
    # prototypes that do not match the values they name make the file damaged, not a wrong answer
    bad = dict(steerable.weights, **{"colour.prototypes": steerable.weights["colour.prototypes"][:-1]})
    np.savez(tmp_path / "bad.npz", header=np.frombuffer(json.dumps(steerable.info).encode(), dtype=np.uint8), **bad)
    with pytest.raises(Damaged):
        Adapter.load(tmp_path / "bad.npz")
