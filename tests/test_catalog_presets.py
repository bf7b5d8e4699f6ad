"""`stylesense catalog import --preset hm|kaggle`: the public catalogues' layouts (id column,
photo template; price and product-group columns recorded as the home's settings where it has
none of its own), explicit options over the preset, the ``group_column`` setting and what
reads it (`evaluate retrieval --group`'s default, the dashboards' product groups)."""

from __future__ import annotations

import csv
import json
import random

import pytest
from typer.testing import CliRunner

from stylesense import insights
from stylesense.catalog.presets import PRESETS, catalog_preset
from stylesense.cli import app
from stylesense.datasets import hm_articles, kaggle_fashion
from stylesense.engine import StyleSense
from stylesense.errors import InvalidInput

from conftest import CLASSES, draw_product, write_catalog

runner = CliRunner()


def run(home, *args):
    return runner.invoke(app, ["--home", str(home), *args])


def write_hm(folder, *, colours: int = 3):
    """articles.csv in H&M's layout: 10-digit article ids with a leading zero, photos under
    images/<first three digits>/, ``colours`` variants per product_code, one product per class."""
    rng = random.Random(1)
    rows = []
    for n, kind in enumerate(CLASSES):
        code = f"0{108775 + 111 * n}"
        for c in range(colours):
            article = f"{code}{c + 1:03d}"
            path = folder / "images" / article[:3] / f"{article}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            draw_product(kind, rng).save(path, quality=90)
            rows.append({"article_id": article, "product_code": code, "prod_name": f"{kind} {c}",
                         "product_type_name": kind, "colour_group_name": ("Black", "White", "Red")[c % 3]})
    with (folder / "articles.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return folder / "articles.csv"


def test_presets_name_the_public_layouts():
    assert (PRESETS["hm"].id_column, PRESETS["hm"].images) == ("article_id", "images/{article_id:.3}/{article_id}.jpg")
    assert PRESETS["hm"].settings() == {"price_column": "price", "group_column": "product_code"}
    assert (PRESETS["kaggle"].id_column, PRESETS["kaggle"].images, PRESETS["kaggle"].settings()) == (
        "id", "images/{id}.jpg", {})
    with pytest.raises(InvalidInput, match="hm, kaggle"):
        catalog_preset("nope")


def test_datasets_describe_the_shared_catalogues_by_the_presets(tmp_path):
    (tmp_path / "images").mkdir()
    for name in ("articles.csv", "styles.csv"):
        (tmp_path / name).write_text("id\n")
    hm, kaggle = hm_articles(tmp_path), kaggle_fashion(tmp_path)
    assert (hm.id_column, hm.image_template, hm.group_column) == ("article_id", PRESETS["hm"].images, "product_code")
    assert (kaggle.id_column, kaggle.image_template) == ("id", PRESETS["kaggle"].images)


def test_hm_preset_imports_and_records_the_product_groups(home, tmp_path):
    articles = write_hm(tmp_path / "hm")
    r = run(home, "catalog", "import", str(articles), "--preset", "hm")
    assert r.exit_code == 0, r.output
    assert "12 rows: 12 added" in r.output
    ss = StyleSense(home)
    assert sorted(it.item_id for it in ss.items())[0] == "0108775001"  # the leading zero kept
    assert (ss.config.group_column, ss.config.price_column) == ("product_code", "price")
    assert insights.group_column(ss) == "product_code"

    out = tmp_path / "retrieval.json"
    r = run(home, "evaluate", "retrieval", "--label", "product_type_name", "-k", "2", "--json", str(out))
    assert r.exit_code == 0, r.output
    result = json.loads(out.read_text())
    assert result["group"] == "product_code" and 0.0 <= result["group_recall_at_k"] <= 1.0
    named = ss.evaluate_retrieval("product_type_name", "colour_group_name", k=2)
    assert named["group"] == "colour_group_name"  # an explicit --group wins


def test_explicit_options_override_the_preset_and_the_homes_choice_stays(home, tmp_path):
    articles = write_hm(tmp_path / "hm", colours=2)
    flat = tmp_path / "hm" / "flat"
    flat.mkdir()
    for photo in (tmp_path / "hm" / "images").rglob("*.jpg"):
        (flat / photo.name).write_bytes(photo.read_bytes())
    assert run(home, "config", "group_column=prod_name").exit_code == 0
    r = run(home, "catalog", "import", str(articles), "--preset", "hm", "--images", "flat/{article_id}.jpg")
    assert r.exit_code == 0, r.output
    ss = StyleSense(home)
    assert len(ss.items()) == 8 and all("/flat/" in it.image_path for it in ss.items())
    assert ss.config.group_column == "prod_name"  # set by the home before: a preset does not undo it
    assert insights.group_column(ss) == "prod_name"


def test_a_preset_records_only_columns_the_csv_has(home, tmp_path):
    folder = tmp_path / "own"
    write_hm(folder, colours=1)
    rows = list(csv.DictReader((folder / "articles.csv").open()))
    with (folder / "articles.csv").open("w", newline="") as f:  # no product_code column
        w = csv.DictWriter(f, fieldnames=["article_id", "prod_name"])
        w.writeheader()
        w.writerows({"article_id": r["article_id"], "prod_name": r["prod_name"]} for r in rows)
    assert run(home, "catalog", "import", str(folder / "articles.csv"), "--preset", "hm").exit_code == 0
    assert StyleSense(home).config.group_column is None


def test_kaggle_preset_and_refusals(home, tmp_path):
    styles = write_catalog(tmp_path / "kaggle", n_per_class=2)
    r = run(home, "catalog", "import", str(styles), "--preset", "kaggle")
    assert r.exit_code == 0, r.output
    assert "8 rows: 8 added" in r.output and StyleSense(home).config.group_column is None
    r = run(home, "catalog", "import", str(styles), "--preset", "zara")
    assert r.exit_code == 2 and "unknown catalogue preset 'zara'" in r.output
    r = run(home, "catalog", "import", str(styles))
    assert r.exit_code == 2 and "--images" in r.output and "--preset" in r.output
    r = run(home, "config", "group_column=")
    assert r.exit_code == 2 and "must not be empty" in r.output


@pytest.mark.shared
def test_hm_preset_on_the_shared_articles(home, tmp_path, shared_data):
    """The first 60 real H&M articles (their photos where the competition put them) through the preset."""
    source = shared_data / "hm"
    lines = (source / "articles.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    folder = tmp_path / "hm"
    folder.mkdir()
    (folder / "articles.csv").write_text("".join(lines[:61]), encoding="utf-8")
    (folder / "images").symlink_to(source / "images", target_is_directory=True)
    r = run(home, "catalog", "import", str(folder / "articles.csv"), "--preset", "hm")
    assert r.exit_code == 0, r.output
    ss = StyleSense(home)
    assert len(ss.items()) == 60 and all(len(it.item_id) == 10 and it.item_id[0] == "0" for it in ss.items())
    assert ss.config.group_column == "product_code"
    result = ss.evaluate_retrieval("product_type_name", k=5)
    assert result["group"] == "product_code" and result["group_recall_at_k"] is not None
