"""Steered search ("same cut, other colours", "same colour, other types") on drawn products
whose shape and colour are known by construction: the real embedder, a steerable adapter
trained on them, a real home, the CLI runner and the API's test client."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from stylesense.catalog.filters import Filters
from stylesense.cli import app
from stylesense.engine import StyleSense
from stylesense.errors import InvalidInput
from stylesense.serving.app import Settings, create_app
from stylesense.vision.adapter import MIX_GRID, RAW_DIM, STEER_PUSH, Adapter, Steer, steering

SHAPES = ("circle", "square", "triangle", "bar")
COLOURS = {"red": (205, 35, 35), "green": (40, 160, 60), "blue": (35, 60, 200), "yellow": (230, 200, 30)}
STYLES = 4  # products per shape; each comes in every colour (the H&M colour-variant layout)


def draw(shape: str, rgb: tuple[int, int, int], rng: random.Random, size: int = 160) -> Image.Image:
    """One product shot on white: the shape and colour jittered in size, place and shade."""
    img = Image.new("RGB", (size, size), "white")
    d = ImageDraw.Draw(img)
    colour = tuple(max(0, min(255, c + rng.randint(-15, 15))) for c in rgb)
    r = rng.randint(42, 58)
    cx, cy = size // 2 + rng.randint(-14, 14), size // 2 + rng.randint(-14, 14)
    if shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif shape == "square":
        d.rectangle([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif shape == "triangle":
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    else:
        d.rectangle([cx - r, cy - r // 4, cx + r, cy + r // 4], fill=colour)
    return img


def write_shapes(folder: Path) -> Path:
    """styles.csv (id, shape, colour, product) + images/<id>.jpg: 4 shapes x 4 styles x 4 colours."""
    rng = random.Random(7)
    (folder / "images").mkdir(parents=True)
    rows = []
    for shape in SHAPES:
        for style in range(STYLES):
            for name, rgb in COLOURS.items():
                item = f"{shape}-{style}-{name}"
                draw(shape, rgb, rng).save(folder / "images" / f"{item}.jpg", quality=90)
                rows.append({"id": item, "shape": shape, "colour": name, "product": f"{shape}-{style}"})
    path = folder / "styles.csv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def shapes(tmp_path_factory, model_cache) -> dict:
    """A plain home with the drawn catalogue, a steerable adapter trained on it (``adapt
    --colour``) and a second home made with that adapter."""
    root = tmp_path_factory.mktemp("steer")
    csv_path = write_shapes(root / "shop")
    homes = {}
    for name in ("plain", "steered"):
        (root / name).mkdir()
        (root / name / "models").symlink_to(model_cache, target_is_directory=True)
        homes[name] = root / name
    plain = StyleSense(homes["plain"], threads=1)
    assert plain.import_catalog(csv_path, "images/{id}.jpg").ok
    adapter_path = root / "adapter.npz"
    plain.train_adapter(["shape"], "product", out=adapter_path, colour=["colour"])
    steered = StyleSense.init(homes["steered"], adapter=adapter_path)
    assert steered.import_catalog(csv_path, "images/{id}.jpg").ok
    return {"plain": plain, "steered": steered, "adapter": adapter_path, "csv": csv_path, "homes": homes}


def attrs_of(hits) -> list[tuple[str, str]]:
    return [(h.attrs["shape"], h.attrs["colour"]) for h in hits]


def test_the_adapter_records_its_layout_and_its_full_vector_still_serves_plain_search(shapes):
    adapter = Adapter.load(shapes["adapter"])
    assert adapter.steerable
    parts = {p["name"]: p for p in adapter.info["parts"]}
    assert set(parts) == {"shape", "colour"} and parts["shape"]["labels"] == ["shape", "groups"]
    assert parts["colour"]["labels"] == ["colour"]
    assert sum(p["weight"] for p in parts.values()) == pytest.approx(1.0)
    layout = adapter.layout()
    assert layout["shape"][0] == slice(0, parts["shape"]["dim"])
    # cosine of the full vector = weighted sum of the parts' cosines (each part unit-normalised)
    _, raw = shapes["steered"].store.features()
    v = adapter.transform(raw[:6])
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    per_part = {n: v[:, cols] / np.linalg.norm(v[:, cols], axis=1, keepdims=True) for n, (cols, _) in layout.items()}
    cos = {n: p @ p.T for n, p in per_part.items()}
    np.testing.assert_allclose(v @ v.T, sum(w * cos[n] for n, (_, w) in layout.items()), atol=1e-5)
    np.testing.assert_allclose(adapter.steer(v, {"shape": 1, "colour": -0.5}) @ v.T,
                               cos["shape"] - 0.5 * cos["colour"], atol=1e-4)
    # plain search on the steerable home still finds the same shape first
    hits = shapes["steered"].search(item="circle-0-red", k=8)
    assert sum(s == "circle" for s, _ in attrs_of(hits)) >= 6


def test_same_cut_other_colours_returns_the_shape_in_the_other_colours(shapes):
    ss = shapes["steered"]
    plain_other, steered_other = 0, 0
    for item in ("circle-1-red", "square-2-blue", "triangle-0-green", "bar-3-yellow"):
        shape, _, colour = item.split("-")
        hits = ss.search(item=item, k=6, steer=steering("shape", "colour"))
        found = attrs_of(hits)
        assert all(s == shape for s, _ in found), (item, found)
        steered_other += sum(c != colour for _, c in found)
        plain_other += sum(s == shape and c != colour for s, c in attrs_of(ss.search(item=item, k=6)))
    assert steered_other >= 22  # of 24: the same cut, nearly always another colour
    assert steered_other > plain_other


def test_same_colour_other_types(shapes):
    ss = shapes["steered"]
    for item in ("circle-1-red", "square-2-blue", "triangle-0-green", "bar-3-yellow"):
        shape, _, colour = item.split("-")
        found = attrs_of(ss.search(item=item, k=8, steer=steering("colour", "type")))
        assert sum(c == colour and s != shape for s, c in found) >= 7, (item, found)


def test_same_colour_pulls_the_query_to_its_colour_s_prototype_and_reads_a_photo_s_colour_by_them(shapes):
    ss = shapes["steered"]
    adapter = ss.adapter
    assert adapter.prototypes("colour")[0] == sorted(COLOURS)
    # an item query: scored by its colour part moved towards the prototype of its label's colour
    index = ss.index()
    item = ss.store.items(["square-2-blue"])[0]
    _, query = index.lookup(np.array([item.pk], dtype=np.int64))
    hits = ss.search(item="square-2-blue", k=5, steer=Steer({"colour": 1.0}))
    stored = {h.item_id: index.lookup(np.array([ss.store.items([h.item_id])[0].pk], dtype=np.int64))[1][0]
              for h in hits}
    pulled = adapter.steer(query, {"colour": 1.0}, {"colour": ["blue"]})[0]
    assert [h.score for h in hits] == pytest.approx([float(pulled @ stored[h.item_id]) for h in hits], abs=1e-4)
    assert any(abs(h.score - float(adapter.steer(query, {"colour": 1.0})[0] @ stored[h.item_id])) > 1e-3 for h in hits)
    # a photo query in an off shade: its colour is its nearest prototype's, and "same colour,
    # other types" finds that colour on the other shapes
    path = ss.home.root / "dark-red-circle.jpg"
    draw("circle", (160, 30, 45), random.Random(5)).save(path, format="JPEG")
    photo = ss.to_vectors(ss.embedder.embed_batch([Image.open(path).convert("RGB")]))
    assert adapter.read(photo, "colour") == ["red"]
    found = attrs_of(ss.search(path, k=8, steer=steering("colour", "type")))
    assert sum(c == "red" and s != "circle" for s, c in found) >= 7, found


def test_a_free_mix_and_filters_inside_a_steered_search(shapes):
    ss = shapes["steered"]
    only_green = Filters.parse(["colour=green"], None, None, None)
    hits = ss.search(item="square-0-red", k=4, steer=steering(weights="shape=1,colour=-0.5"), filters=only_green)
    assert len(hits) == 4 and all(h.attrs["colour"] == "green" for h in hits)
    assert all(h.attrs["shape"] == "square" for h in hits)  # the 4 green squares
    colour_only = ss.search(item="square-0-red", k=10, steer=Steer({"colour": 1.0}))
    assert all(h.attrs["colour"] == "red" for h in colour_only[:10])
    # --vary keeps k results under a filter: every green item but the query's own colour's
    varied = ss.search(item="square-0-green", k=20, steer=steering("shape", "colour"),
                       filters=Filters.parse(["shape=square", "shape=circle"]))
    assert len(varied) == 20 and all(h.attrs["colour"] != "green" for h in varied)
    assert all(h.attrs["shape"] == "square" for h in varied[:12])
    with open(ss.home.root / "x.jpg", "wb") as f:  # a photo query steers the same way
        draw("triangle", COLOURS["blue"], random.Random(1)).save(f, format="JPEG")
    by_photo = ss.search(ss.home.root / "x.jpg", k=6, steer=steering("shape", "colour"))
    assert sum(h.attrs["shape"] == "triangle" and h.attrs["colour"] != "blue" for h in by_photo) >= 5


def test_a_home_without_a_steerable_adapter_says_how_to_get_one(shapes):
    with pytest.raises(InvalidInput, match="stylesense adapt --label TYPE_COLUMN --colour COLOUR_COLUMN"):
        shapes["plain"].search(item="circle-0-red", steer=steering("shape", "colour"))
    with pytest.raises(InvalidInput, match="no part"):
        shapes["steered"].search(item="circle-0-red", steer=Steer({"sleeves": 1.0}))
    with pytest.raises(InvalidInput, match="no part"):
        shapes["steered"].search(item="circle-0-red", steer=steering("shape", "sleeves"))


def test_steering_words():
    assert steering() is None
    assert steering("shape", "colour") == Steer({"shape": 1.0, **({"colour": -STEER_PUSH} if STEER_PUSH else {})},
                                                "colour")
    assert steering("color", "type").vary == "shape" and steering("color", "type").weights["colour"] == 1.0
    assert steering("shape", "colour", "colour=-1") == Steer({"shape": 1.0, "colour": -1.0}, "colour")
    assert steering(weights={"shape": 2}) == Steer({"shape": 2.0})
    assert steering(vary="colour") == Steer({}, "colour")  # plain scores, other colours only
    for bad in ("shape", "shape=lots", "colour=nan"):
        with pytest.raises(InvalidInput):
            steering(weights=bad)
    with pytest.raises(InvalidInput):
        steering("shape", "cut")
    with pytest.raises(InvalidInput):
        steering(weights="shape=0")


runner = CliRunner()


def cli(home: Path, *args: str):
    return runner.invoke(app, ["--home", str(home), "--threads", "1", *args])


def test_cli_steer_options(shapes):
    home = shapes["homes"]["steered"]
    r = cli(home, "search", "--item", "bar-0-blue", "--same", "shape", "--vary", "colour", "-k", "5", "--json")
    assert r.exit_code == 0, r.output
    found = [(h["attrs"]["shape"], h["attrs"]["colour"]) for h in json.loads(r.output)]
    assert len(found) == 5 and all(s == "bar" for s, _ in found) and sum(c != "blue" for _, c in found) >= 4
    r = cli(home, "search", "--item", "bar-0-blue", "--steer", "colour=1,shape=-0.5", "-k", "4", "--json",
            "--where", "shape=circle")
    assert r.exit_code == 0, r.output
    assert {(h["attrs"]["shape"], h["attrs"]["colour"]) for h in json.loads(r.output)} == {("circle", "blue")}
    r = cli(home, "search", "--item", "bar-0-blue", "--steer", "shape")
    assert r.exit_code == 2 and "PART=NUMBER" in r.output
    r = cli(shapes["homes"]["plain"], "search", "--item", "bar-0-blue", "--same", "colour")
    assert r.exit_code == 2 and "--colour COLOUR_COLUMN" in r.output


def test_api_steer_parameter(shapes):
    c = TestClient(create_app(shapes["homes"]["steered"], Settings(threads=1, public_reads=True)))
    r = c.get("/v1/items/square-1-green/similar", params={"same": "shape", "vary": "colour", "k": 5})
    assert r.status_code == 200, r.text
    found = [(h["attrs"]["shape"], h["attrs"]["colour"]) for h in r.json()["items"]]
    assert all(s == "square" for s, _ in found) and sum(c != "green" for _, c in found) >= 4
    r = c.post("/v1/search", json={"item_id": "square-1-green", "k": 5, "steer": {"colour": 1, "shape": -0.5}})
    assert r.status_code == 200, r.text
    assert all(h["attrs"]["colour"] == "green" and h["attrs"]["shape"] != "square" for h in r.json()["items"])
    photo = shapes["csv"].parent / "images" / "circle-2-yellow.jpg"
    r = c.post("/v1/search", files={"photo": ("p.jpg", photo.read_bytes(), "image/jpeg")},
               data={"k": "5", "steer": "shape=1,colour=-0.5"})
    assert r.status_code == 200, r.text
    assert all(h["attrs"]["shape"] == "circle" for h in r.json()["items"])
    r = c.get("/v1/items/square-1-green/similar", params={"steer": "shape=x"})
    assert r.status_code == 422 and "PART=NUMBER" in r.json()["detail"]
    plain = TestClient(create_app(shapes["homes"]["plain"], Settings(threads=1, public_reads=True)))
    r = plain.get("/v1/items/square-1-green/similar", params={"same": "shape", "vary": "colour"})
    assert r.status_code == 422 and "--colour" in r.json()["detail"]


def test_cli_adapt_with_a_validated_mix_and_the_labels_split(shapes, tmp_path):
    home = shapes["homes"]["plain"]
    out = tmp_path / "mixed.npz"
    r = cli(home, "adapt", "--label", "shape", "--colour", "colour", "--group", "product", "--mix", "auto",
            "--out", str(out))
    assert r.exit_code == 0, r.output
    info = Adapter.load(out).info
    assert set(info["mix_validation"]) == {str(w) for w in MIX_GRID}
    chosen = max(info["mix_validation"].items(), key=lambda kv: (kv[1], -float(kv[0])))[0]
    assert info.get("raw_weight", 0.0) == float(chosen)
    assert [p["name"] for p in info["parts"]][:2] == ["shape", "colour"]
    assert cli(home, "adapt", "--label", "shape", "--mix", "2", "--out", str(out)).exit_code == 2
    r = cli(home, "adapt", "--label", "shape", "--mix", "0.3", "--out", str(out))
    assert r.exit_code == 0, r.output
    mixed = Adapter.load(out)  # the raw part is the 1280 CNN columns projected on 256 directions
    assert mixed.layout()["raw"] == (slice(256, 256 + RAW_DIM), 0.3) and mixed.weights["raw.proj"].shape == (1280, RAW_DIM)

    result = tmp_path / "labels.json"
    r = cli(home, "evaluate", "retrieval", "--label", "shape", "--adapt", "--split", "labels", "-k", "5",
            "--json", str(result))
    assert r.exit_code == 0, r.output
    found = json.loads(result.read_text())
    assert found["split"] == "labels" and found["seen"]["labels"] == 3 and found["unseen"]["labels"] == 1
    assert found["unseen"]["items"] == 16 and found["seen"]["items"] + 16 == found["items"]
    for part in ("seen", "unseen"):
        assert set(found[part]["adapted"]) == set(found[part]["off_the_shelf"]) == {
            "precision_at_k", "map_at_k", "group_recall_at_k"}
    assert "seen.adapted.precision_at_k" in r.output  # nested results print as dotted rows
    r = cli(home, "evaluate", "retrieval", "--label", "shape", "--split", "labels")
    assert r.exit_code == 2 and "--adapt" in r.output


def test_web_app_buttons_steer_the_next_search(shapes, monkeypatch):
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    from stylesense.ui.common import HOME_ENV

    page = Path(__file__).parents[1] / "src" / "stylesense" / "ui" / "views" / "search.py"
    monkeypatch.setenv("STYLESENSE_THREADS", "1")
    monkeypatch.setenv(HOME_ENV, str(shapes["homes"]["steered"]))
    at = AppTest.from_file(str(page), default_timeout=120).run()
    at.radio(key="search_source").set_value("A catalogue item").run()
    at.text_input(key="search_item").set_value("circle-0-red").run()
    assert not at.exception and not at.error
    first = next(md.value.strip("`") for md in at.markdown if md.value.startswith("`"))
    next(b for b in at.button if b.key == f"hits-Same cut, other colours-{first}").click().run()
    assert not at.exception and not at.error
    assert at.text_input(key="search_item").value == first and at.radio(key="search_steer").value == "Same cut, other colours"
    shown = [md.value.strip("`") for md in at.markdown if md.value.startswith("`")]
    ss = shapes["steered"]
    assert shown == [h.item_id for h in ss.search(item=first, k=12, steer=steering("shape", "colour"))]
    first_colour = ss.item(first).attrs["colour"]
    assert all(ss.item(i).attrs["colour"] != first_colour for i in shown)
    next(b for b in at.button if b.key == f"hits-Same colour-{shown[0]}").click().run()
    assert at.radio(key="search_steer").value == "Same colour" and not at.exception

    monkeypatch.setenv(HOME_ENV, str(shapes["homes"]["plain"]))  # no steerable adapter: no steer buttons
    at = AppTest.from_file(str(page), default_timeout=120).run()
    at.radio(key="search_source").set_value("A catalogue item").run()
    at.text_input(key="search_item").set_value("circle-0-red").run()
    assert not at.exception and not at.error
    assert not [b for b in at.button if "Same" in b.key] and "search_steer" not in [r.key for r in at.radio]
