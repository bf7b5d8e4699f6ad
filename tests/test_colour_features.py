"""The colour descriptor in the embedding pipeline: a home made with `init --colour-features`
stores each photo's descriptor after its CNN features, `adapt --colour` there trains the colour
part on both, and a home made with that adapter embeds the same way. Drawn products whose shape
and colour are known by construction (tests/test_steer.py's catalogue), the real embedder, real
homes and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from stylesense.cli import app
from stylesense.engine import StyleSense
from stylesense.errors import Conflict, InvalidInput
from stylesense.vision.adapter import Adapter, Part, steering
from stylesense.vision.colour import DIM, colour_descriptor
from stylesense.vision.embedder import CNN_DIM, make_embedder
from stylesense.vision.images import load_image
from test_steer import attrs_of, write_shapes


@pytest.fixture(scope="module")
def shop(tmp_path_factory, model_cache) -> dict:
    """The drawn catalogue in a home with colour features (made by the CLI) and in one without,
    a steerable adapter trained on the first, and a home made with that adapter."""
    root = tmp_path_factory.mktemp("colour")
    csv_path = write_shapes(root / "shop")
    homes = {}
    for name in ("plain", "colour", "steered"):
        (root / name).mkdir()
        (root / name / "models").symlink_to(model_cache, target_is_directory=True)
        homes[name] = root / name
    made = CliRunner().invoke(app, ["--home", str(homes["colour"]), "init", "--colour-features"])
    assert made.exit_code == 0, made.output
    plain, colour = StyleSense(homes["plain"], threads=1), StyleSense(homes["colour"], threads=1)
    for ss in (plain, colour):
        assert ss.import_catalog(csv_path, "images/{id}.jpg").ok
    adapter_path = root / "adapter.npz"
    colour.train_adapter(["shape"], "product", out=adapter_path, colour=["colour"])
    steered = StyleSense.init(homes["steered"], adapter=adapter_path)
    assert steered.import_catalog(csv_path, "images/{id}.jpg").ok
    return {"plain": plain, "colour": colour, "steered": steered, "adapter": adapter_path, "csv": csv_path,
            "homes": homes}


def test_the_embedder_appends_each_photos_descriptor_to_its_cnn_features(shop, model_cache):
    photos = sorted((shop["csv"].parent / "images").glob("*.jpg"))[:5]
    plain = make_embedder("lite0", cache_dir=model_cache, threads=1)
    with_colour = make_embedder("lite0", cache_dir=model_cache, threads=1, colour=True)
    assert (plain.dim, with_colour.dim) == (CNN_DIM, CNN_DIM + DIM)
    feats, failed = with_colour.embed_files(photos, batch_size=2)
    assert not failed and feats.shape == (5, CNN_DIM + DIM)
    cnn, _ = plain.embed_files(photos, batch_size=2)
    np.testing.assert_array_equal(feats[:, :CNN_DIM], cnn)
    decoded = [load_image(p, draft=with_colour.image_size) for p in photos]  # as the decoder threads read them
    np.testing.assert_array_equal(feats[:, CNN_DIM:], np.stack([colour_descriptor(img) for img in decoded]))
    np.testing.assert_array_equal(with_colour.embed_batch(decoded), feats)
    assert with_colour.embed_batch([]).shape == (0, CNN_DIM + DIM)


def test_a_home_with_colour_features_stores_them_and_searches_as_a_plain_home(shop):
    colour, plain = shop["colour"], shop["plain"]
    assert colour.config.colour_features and not plain.config.colour_features
    assert colour.store.features()[1].shape[1] == CNN_DIM + DIM
    assert colour.feature_recipe == {**plain.feature_recipe, "colour": "v1"}
    for item in ("circle-1-red", "bar-3-yellow"):  # the descriptor stays out of the off-the-shelf vectors
        a, b = colour.search(item=item, k=8), plain.search(item=item, k=8)
        assert [h.item_id for h in a] == [h.item_id for h in b]
        np.testing.assert_allclose([h.score for h in a], [h.score for h in b], atol=1e-5)
    assert colour.duplicates() == plain.duplicates()


def test_the_colour_part_reads_the_descriptor_and_the_shape_part_does_not(shop):
    adapter = Adapter.load(shop["adapter"])
    parts = {p["name"]: p for p in adapter.info["parts"]}
    assert adapter.colour_dim == DIM and adapter.in_dim == CNN_DIM + DIM
    assert parts["colour"]["colour_input"] and not parts["shape"]["colour_input"]
    assert adapter.info["features"]["colour"] == "v1"
    _, raw = shop["colour"].store.features()
    layout = adapter.layout()
    before = adapter.transform(raw[:4])
    changed = raw[:4].copy()
    changed[:, CNN_DIM:] = changed[::-1, CNN_DIM:]  # the first and last photos swap descriptors
    after = adapter.transform(changed)
    shape, colour = layout["shape"][0], layout["colour"][0]
    np.testing.assert_array_equal(after[:, shape], before[:, shape])
    assert not np.allclose(after[0, colour], before[0, colour])


def test_a_home_made_with_the_adapter_embeds_the_descriptor_and_steers_by_it(shop):
    steered = shop["steered"]
    assert steered.config.colour_features
    assert steered.store.features()[1].shape[1] == CNN_DIM + DIM
    for item in ("circle-1-red", "square-2-blue", "triangle-0-green", "bar-3-yellow"):
        shape, _, colour = item.split("-")
        same_colour = attrs_of(steered.search(item=item, k=8, steer=steering("colour", "type")))
        assert sum(c == colour and s != shape for s, c in same_colour) >= 7, (item, same_colour)
        same_cut = attrs_of(steered.search(item=item, k=6, steer=steering("shape", "colour")))
        assert all(s == shape and c != colour for s, c in same_cut), (item, same_cut)
    photo = shop["csv"].parent / "images" / "square-3-green.jpg"  # a photo query reads its colour off the pixels
    found = attrs_of(steered.search(photo, k=8, steer=steering("colour", "type")))
    assert sum(c == "green" for _, c in found) >= 7, found


def test_colour_features_are_fixed_once_a_home_has_items(shop):
    with pytest.raises(Conflict, match="colour features"):
        StyleSense.init(shop["homes"]["plain"], colour_features=True)


def test_parts_that_read_a_descriptor_need_features_that_carry_one():
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((40, 12)).astype(np.float32)
    labels = [np.array(["a", "b"] * 20)]
    part = [Part("colour", ("colour",), 4, 1.0, colour_input=True)]
    with pytest.raises(InvalidInput, match="colour features"):
        Adapter.train(feats, labels, label_names=["colour"], parts=part, epochs=1)
    trained = Adapter.train(feats, labels, label_names=["colour"], parts=part, colour_dim=4, epochs=1, hidden=8)
    assert trained.in_dim == 12 and trained.colour_dim == 4
    assert trained.mixed(0.5).info["parts"][-1]["dim"] == 8  # the raw part: the CNN columns only
    with pytest.raises(InvalidInput, match="lacks"):
        Adapter(trained.weights, {**trained.info, "colour_dim": 0})


def test_doctor_recovers_a_lost_config_of_a_colour_features_home(shop, tmp_path):
    import shutil

    home = tmp_path / "copy"
    shutil.copytree(shop["homes"]["colour"], home, symlinks=True)
    (home / "config.json").write_text("{oops")
    done = CliRunner().invoke(app, ["--home", str(home), "--threads", "1", "doctor", "--json", "--repair"])
    found = {f["check"]: f for f in json.loads(done.output)}
    assert found["config"]["repaired"], found["config"]
    assert "colour descriptor" in found["config"]["message"]
    assert json.loads((home / "config.json").read_text())["colour_features"] is True
