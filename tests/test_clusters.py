"""Style clusters and shopper segments on a home whose photos fall into known visual groups,
and whose shoppers into known tastes: the number of clusters is estimated, not given, so the
test is whether HDBSCAN finds the groups drawn."""

import csv
import json
import random
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from conftest import CLASSES, draw_product
from stylesense.cli import app
from stylesense.clusters import (CACHE_DIR, default_min_cluster_size, label_columns, shopper_segments,
                                 style_clusters)
from stylesense.engine import StyleSense
from stylesense.errors import InvalidInput, NotReady

# Six kinds of product shot, of uneven sizes: conftest's four and two more patterns.
KINDS = {"Tshirts": 20, "Shoes": 16, "Bags": 12, "Dresses": 10, "Scarves": 9, "Watches": 8}
# Shoppers' tastes: (shoppers, {kind: events each}); the last two have too few events to segment.
TASTES = {"tops": (12, {"Tshirts": 3, "Dresses": 3}), "shoes": (10, {"Shoes": 5}),
          "extras": (8, {"Bags": 4, "Watches": 2}), "new": (2, {"Tshirts": 2})}


def draw(kind: str, rng: random.Random) -> Image.Image:
    if kind in CLASSES:
        return draw_product(kind, rng)
    img = Image.new("RGB", (160, 160), "white")
    d = ImageDraw.Draw(img)
    j = lambda a: a + rng.randint(-10, 10)  # noqa: E731
    if kind == "Scarves":  # yellow stripes
        for y in range(20, 150, 22):
            d.rectangle([j(15), y, j(145), y + 10], fill=(j(230), j(200), 20))
    else:  # a magenta ring
        d.ellipse([j(40), j(40), j(120), j(120)], outline=(j(160), 20, j(160)), width=14)
    return img


def item_ids(kind: str) -> list[str]:
    return [f"{kind[:2].lower()}{j}" for j in range(KINDS[kind])]


@pytest.fixture(scope="module")
def styled_home(tmp_path_factory, model_cache) -> Path:
    """A home with the six kinds imported, the shoppers' events recorded and both results
    cached. Tests that change it take ``styled_copy``."""
    folder = tmp_path_factory.mktemp("styles")
    (folder / "images").mkdir()
    rng = random.Random(0)
    rows = []
    for kind in KINDS:
        for j, item in enumerate(item_ids(kind)):
            draw(kind, rng).save(folder / "images" / f"{item}.jpg", quality=90)
            rows.append({"id": item, "articleType": kind, "gender": "Women" if j % 2 else "Men",
                         "name": f"{kind} no. {j}", "price": f"{10 + j}"})
    with (folder / "styles.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    root = folder / "home"
    root.mkdir()
    (root / "models").symlink_to(model_cache, target_is_directory=True)
    ss = StyleSense(root, threads=1)
    assert ss.import_catalog(folder / "styles.csv", "images/{id}.jpg").ok
    for taste, (shoppers, mix) in TASTES.items():
        for u in range(shoppers):
            for kind, count in mix.items():
                for item in rng.sample(item_ids(kind), count):
                    ss.behaviour.add_event(f"{taste}{u}", item, rng.choice(["view", "purchase"]))
            ss.behaviour.add_event(f"{taste}{u}", "not-in-catalogue", "view")  # no category: left out
    style_clusters(ss)
    shopper_segments(ss)
    ss.store.engine.dispose()
    return root


@pytest.fixture
def styled_copy(styled_home, tmp_path) -> Path:
    copy = tmp_path / "home"
    shutil.copytree(styled_home, copy, symlinks=True)
    return copy


def test_estimates_the_number_of_styles_and_says_what_each_is(styled_home):
    result = style_clusters(StyleSense(styled_home, threads=1))
    assert result.n_clusters == len(KINDS) and result.noise == 0
    assert result.min_cluster_size == default_min_cluster_size(sum(KINDS.values())) == 5
    assert result.label_columns == ["articleType", "gender"]  # not the unique names, not the prices
    assert [c.size for c in result.clusters] == sorted(KINDS.values(), reverse=True)  # largest first
    assert [c.id for c in result.clusters] == list(range(len(KINDS)))
    for c in result.clusters:
        kind = c.labels["articleType"]
        assert c.size == KINDS[kind] and c.purity["articleType"] == 1.0
        assert c.lift["articleType"] == pytest.approx(sum(KINDS.values()) / KINDS[kind], rel=1e-3)
        assert c.top_labels(1) == [("articleType", kind, 1.0)]
        assert 0 < len(c.typical) <= 12 and set(c.typical) <= set(item_ids(kind))
        members = [i for i, a in zip(result.item_ids, result.assignment) if a == c.id]
        assert sorted(members) == sorted(item_ids(kind))
    assert result.xy.shape == (len(result.item_ids), 2) and np.isfinite(result.xy).all()
    assert result.cluster_of("sh0") == next(c.id for c in result.clusters if c.labels["articleType"] == "Shoes")


def test_cache_is_read_until_the_catalogue_changes(styled_copy):
    ss = StyleSense(styled_copy, threads=1)
    first = style_clusters(ss)  # computed by the fixture, in the home it was copied from
    assert first.cached and (styled_copy / CACHE_DIR / "styles.npz").exists()

    ss.set_hidden(["ts0", "ts1"])
    hidden = style_clusters(ss)
    assert not hidden.cached and "ts0" not in hidden.item_ids and len(hidden.item_ids) == len(first.item_ids) - 2
    assert style_clusters(ss).cached

    ss.patch_item("ba0", {"articleType": "Totes"})  # metadata only: the labels change with it
    patched = style_clusters(ss)
    assert not patched.cached and patched.n_clusters == len(KINDS)
    bags = next(c for c in patched.clusters if c.labels["articleType"] == "Bags")
    assert bags.purity["articleType"] == pytest.approx(11 / 12, abs=1e-4)

    ss.remove_items(["wa0"])
    assert not (removed := style_clusters(ss)).cached and "wa0" not in removed.item_ids
    again = style_clusters(ss, refresh=True)
    assert not again.cached and np.array_equal(again.assignment, removed.assignment)  # the same input, the same answer
    assert style_clusters(StyleSense(styled_copy)).cached  # another process reads the file


def test_cached_result_is_the_computed_one(styled_copy):
    ss = StyleSense(styled_copy, threads=1)
    computed = style_clusters(ss, refresh=True)
    cached = style_clusters(ss)
    assert cached.cached and not computed.cached
    assert cached.to_dict() == {**computed.to_dict(), "cached": True}
    assert np.array_equal(cached.xy, computed.xy)


def test_a_damaged_cache_is_recomputed(styled_copy):
    (styled_copy / CACHE_DIR / "styles.npz").write_bytes(b"not a cache")
    result = style_clusters(StyleSense(styled_copy, threads=1))
    assert not result.cached and result.n_clusters == len(KINDS)


def test_two_callers_compute_once(styled_copy):
    (styled_copy / CACHE_DIR / "styles.npz").unlink()
    ss = StyleSense(styled_copy, threads=1)
    results = []
    threads = [threading.Thread(target=lambda: results.append(style_clusters(ss))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.cached for r in results) == [False, True]  # the second waited and read the first's file
    assert results[0].computed_at == results[1].computed_at


def test_a_larger_min_cluster_size_merges_or_drops_small_styles(styled_copy):
    ss = StyleSense(styled_copy, threads=1)
    coarse = style_clusters(ss, min_cluster_size=15)
    assert not coarse.cached and coarse.min_cluster_size == 15
    assert all(c.size >= 15 for c in coarse.clusters) and coarse.n_clusters < len(KINDS)
    with pytest.raises(InvalidInput):
        style_clusters(ss, min_cluster_size=1)


def test_too_few_items_is_not_ready(home, tmp_path):
    from conftest import write_catalog

    ss = StyleSense(home, threads=1)
    assert ss.import_catalog(write_catalog(tmp_path / "small", n_per_class=2), "images/{id}.jpg").ok
    with pytest.raises(NotReady, match="at least 20"):
        style_clusters(ss)


def test_label_columns_are_the_categorical_text_columns():
    attrs = [{"type": t, "code": c, "name": f"item {i}", "year": 2010 + i % 3, "rare": "x" if i < 3 else None,
              "colour": ["red", "blue", "red", "green"][i % 4]}
             for i, (t, c) in enumerate([("Shirt", "S"), ("Shoe", "F"), ("Bag", "B")] * 10)]
    attrs = [{k: v for k, v in a.items() if v is not None} for a in attrs]
    # "code" only renames "type" (the longer values stay); names are unique, years numbers, "rare" rare
    assert label_columns(attrs) == ["type", "colour"]
    assert label_columns(attrs, skip=["colour"]) == ["type"]


def test_shopper_segments_find_the_tastes(styled_home):
    result = shopper_segments(StyleSense(styled_home, threads=1))
    assert result.category == "articleType"  # the category-like label column
    assert result.n_segments == 3 and len(result.segments) == 3
    assert result.shoppers == 30 and result.unassigned == 2
    assert [s.size for s in result.segments] == [12, 10, 8]
    tops, shoes, extras = result.segments
    assert {c for c, _ in tops.favourite_categories[:2]} == {"Tshirts", "Dresses"}
    assert shoes.favourite_categories == [("Shoes", 1.0)]
    assert extras.favourite_categories[0][0] == "Bags" and extras.favourite_categories[1][0] == "Watches"
    assert all(u.startswith("shoes") for u in shoes.typical_shoppers)
    assert result.segment_of("extras3") == 2 and result.segment_of("new0") is None
    assert shoes.events_per_shopper == 5.0  # the event off the catalogue is not counted


def test_segments_follow_the_events_and_the_chosen_column(styled_copy):
    ss = StyleSense(styled_copy, threads=1)
    assert shopper_segments(ss).cached
    ss.behaviour.add_event("new0", "sh1", "view")  # the third event: new0 is segmented now
    changed = shopper_segments(ss)
    assert not changed.cached and changed.shoppers == 31 and changed.segment_of("new0") is not None
    fixed = shopper_segments(ss, n_segments=2, category="gender")
    assert fixed.n_segments == 2 and fixed.category == "gender"
    with pytest.raises(InvalidInput, match="no catalogue item has column 'colour'"):
        shopper_segments(ss, category="colour")


def test_segments_need_events(home, catalog_dir):
    ss = StyleSense(home, threads=1)
    assert ss.import_catalog(catalog_dir / "styles.csv", "images/{id}.jpg").ok
    with pytest.raises(NotReady, match="no events"):
        shopper_segments(ss)


def test_cli_prints_the_estimate_and_writes_json_and_a_map(styled_home, tmp_path):
    runner = CliRunner()
    out, png = tmp_path / "clusters.json", tmp_path / "map.png"
    r = runner.invoke(app, ["--home", str(styled_home), "clusters", "--json", str(out), "--plot", str(png)])
    assert r.exit_code == 0, r.output
    assert "estimated number of style clusters: 6 (0 of 75 items unassigned; from the home's cache)" in r.output
    assert "Tshirts (100%)" in r.output
    data = json.loads(out.read_text())
    assert data["n_clusters"] == 6 and data["items"] == 75 and len(data["clusters"]) == 6
    assert set(data["clusters"][0]) >= {"id", "size", "typical", "labels", "purity", "top_labels"}
    assert len(data["points"]["item_id"]) == len(data["points"]["x"]) == len(data["points"]["cluster"]) == 75
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    seg = tmp_path / "segments.json"
    r = runner.invoke(app, ["--home", str(styled_home), "clusters", "--segments", "--json", str(seg)])
    assert r.exit_code == 0, r.output
    assert "estimated number of shopper segments: 3" in r.output
    data = json.loads(seg.read_text())
    assert data["n_segments"] == 3 and data["segments"][1]["favourite_categories"] == [{"category": "Shoes", "share": 1.0}]
    assert len(data["members"]["user_id"]) == 30

    r = runner.invoke(app, ["--home", str(styled_home), "clusters", "--segments", "--plot", str(png)])
    assert r.exit_code == 2 and "for style clusters" in r.output


@pytest.mark.shared
def test_kaggle_subset_clusters_by_product_kind(shared_data, home, tmp_path):
    """A twelfth of the Kaggle catalogue: the styles found are mostly of one master category
    each (apparel, footwear, accessories), and few items are left unassigned."""
    from test_integration_shared import subset

    root = shared_data / "fashion-product-images"
    ss = StyleSense(home, threads=2)
    report = ss.import_catalog(subset(root / "styles.csv", tmp_path / "styles.csv", 800, every=12),
                               f"{root}/images/{{id}}.jpg")
    assert report.ok
    result = style_clusters(ss)
    assert 5 <= result.n_clusters <= 40 and result.noise < 0.3 * len(result.item_ids)
    assert {"articleType", "masterCategory", "baseColour"} <= set(result.label_columns)
    clustered = sum(c.size for c in result.clusters)
    assert sum(c.size * c.purity["masterCategory"] for c in result.clusters) > 0.9 * clustered
    assert style_clusters(ss).cached
