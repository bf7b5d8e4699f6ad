"""Catalogue import: idempotent upsert, re-embedding only changed photos, bad rows, removal."""

import csv
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stylesense.catalog.csvtable import CsvError
from stylesense.catalog.filters import Filters
from stylesense.engine import StyleSense

from conftest import draw_product, write_catalog


@pytest.fixture
def shop(tmp_path) -> Path:
    folder = tmp_path / "shop"
    write_catalog(folder, n_per_class=4)
    return folder


def rows(csv_path: Path) -> list[dict]:
    with csv_path.open() as f:
        return list(csv.DictReader(f))


def rewrite(csv_path: Path, data: list[dict]) -> None:
    with csv_path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(data[0]))
        w.writeheader()
        w.writerows(data)


def test_import_is_idempotent_and_reembeds_only_changed_photos(home, shop):
    ss = StyleSense(home, threads=2)
    first = ss.import_catalog(shop / "styles.csv", "images/{id}.jpg")
    assert (first.added, first.updated, first.embedded, first.bad) == (16, 0, 16, [])
    assert len(ss.index()) == 16
    assert ss.items(["3"])[0].attrs == {"articleType": "Tshirts", "gender": "Men", "price": 20.0, "name": "Tshirts no. 2"}

    again = StyleSense(home).import_catalog(shop / "styles.csv", "images/{id}.jpg")
    assert (again.added, again.updated, again.unchanged, again.embedded) == (0, 0, 16, 0)

    data = rows(shop / "styles.csv")
    data[0]["price"] = "99.50"                       # metadata change only
    draw_product("Bags", random.Random(7)).save(shop / "images" / "2.jpg")  # photo change
    data.append({**data[0], "id": "100", "name": "new"})
    shutil.copy(shop / "images" / "5.jpg", shop / "images" / "100.jpg")
    rewrite(shop / "styles.csv", data)
    ss = StyleSense(home)
    before = ss.index().vectors(np.array([ss.items(["3"])[0].pk]))
    third = ss.import_catalog(shop / "styles.csv", "images/{id}.jpg")
    assert (third.added, third.updated, third.unchanged, third.embedded) == (1, 2, 14, 2)
    assert ss.items(["1"])[0].attrs["price"] == 99.5
    assert len(ss.index()) == 17
    after = StyleSense(home).index().vectors(np.array([ss.items(["3"])[0].pk]))
    np.testing.assert_array_equal(before, after)     # untouched items keep their vectors
    # item 2 now looks like a bag: its nearest neighbours are bags
    hits = ss.search(item="2", k=3)
    assert [h.attrs["articleType"] for h in hits] == ["Bags"] * 3


def test_bad_rows_are_reported_and_valid_rows_imported(home, shop):
    images = shop / "images"
    (images / "1.jpg").unlink()                                   # missing
    (images / "2.jpg").write_bytes(b"")                           # zero bytes
    data = (images / "3.jpg").read_bytes()
    (images / "3.jpg").write_bytes(data[: len(data) // 2])        # truncated
    (images / "4.jpg").write_text("<html>not a photo</html>")     # not an image
    Image.open(images / "5.jpg").convert("CMYK").save(images / "5.jpg")  # CMYK is fine
    table = rows(shop / "styles.csv")
    table.append(dict(table[6]))                                   # duplicate id 7
    rewrite(shop / "styles.csv", table)

    report = StyleSense(home).import_catalog(shop / "styles.csv", "images/{id}.jpg")
    reasons = {b.item_id: b.reason for b in report.bad}
    assert set(reasons) == {"1", "2", "3", "4", "7"}
    assert "not found" in reasons["1"] and "empty" in reasons["2"]
    assert "truncated" in reasons["3"] and "not an image" in reasons["4"]
    assert "duplicate id" in reasons["7"]
    assert report.added == 12 and report.rows == 17
    with report.report_path.open() as f:
        written = list(csv.DictReader(f))
    assert [r["id"] for r in written] == ["1", "2", "3", "4", "7"] and all(r["row"] for r in written)


def test_a_broken_photo_on_reimport_keeps_the_previous_version(home, shop):
    ss = StyleSense(home)
    ss.import_catalog(shop / "styles.csv", "images/{id}.jpg")
    pk = ss.items(["6"])[0].pk
    before = ss.index().vectors(np.array([pk]))
    (shop / "images" / "6.jpg").write_bytes(b"\xff\xd8\xff garbage")
    report = StyleSense(home).import_catalog(shop / "styles.csv", "images/{id}.jpg")
    assert [b.item_id for b in report.bad] == ["6"]
    ss = StyleSense(home)
    np.testing.assert_array_equal(ss.index().vectors(np.array([pk])), before)
    assert ss.search(item="6", k=2)


def test_whole_file_errors_import_nothing(home, shop):
    ss = StyleSense(home)
    with pytest.raises(CsvError, match="no id column 'sku'"):
        ss.import_catalog(shop / "styles.csv", "images/{id}.jpg", id_column="sku")
    with pytest.raises(CsvError, match="names column.*colour"):
        ss.import_catalog(shop / "styles.csv", "images/{colour}/{id}.jpg")
    assert ss.store.count() == 0


def test_remove_drops_items_from_search_and_reimport_restores_them(home, shop):
    ss = StyleSense(home)
    ss.import_catalog(shop / "styles.csv", "images/{id}.jpg")
    assert ss.remove_items(["2", "3", "nope"]) == ["2", "3"]
    ss = StyleSense(home)
    assert len(ss.index()) == 14
    found = {h.item_id for h in ss.search(item="1", k=14)}
    assert found.isdisjoint({"2", "3"}) and len(found) == 13
    report = ss.import_catalog(shop / "styles.csv", "images/{id}.jpg")
    assert report.added + report.updated == 2 and len(StyleSense(home).index()) == 16


def test_interrupted_index_update_is_finished_by_the_next_command(home, shop):
    ss = StyleSense(home)
    ss.import_catalog(shop / "styles.csv", "images/{id}.jpg")
    # simulate a crash after the database commit but before the index was saved
    feats = np.ones((1, ss.embedder.dim), dtype=np.float32)
    from stylesense.catalog.store import Upsert
    ss.store.upsert([Upsert("crash", {"articleType": "Bags"}, None, "x", feats[0])])
    ss.store.mark_removed(["4"])
    fresh = StyleSense(home)
    index = fresh.index()
    assert "crash" in {it.item_id for it in fresh.items()} and len(index) == 16  # 16 + 1 - 1
    assert fresh.items(["crash"])[0].pk in index
    assert fresh.store.unsearchable_pks().size == 0 and not fresh.store.index_behind()


def test_bad_prices_are_reported_and_price_filters_keep_working(home, shop):
    """A price column with the odd "N/A", "$12" or "12,50" used to be stored as text, so every
    price filter matched nothing."""
    data = rows(shop / "styles.csv")
    for row_id, price in (("1", "N/A"), ("2", "$12"), ("6", "12,50")):
        data[int(row_id) - 1]["price"] = price
    rewrite(shop / "styles.csv", data)
    ss = StyleSense(home)
    report = ss.import_catalog(shop / "styles.csv", "images/{id}.jpg")
    assert (report.added, report.bad, report.ok) == (16, [], False)  # the rows import all the same
    assert [(w.row, w.item_id) for w in report.warnings] == [(2, "1"), (3, "2"), (7, "6")]
    assert report.warnings[2].reason == ("column 'price': '12,50' is not a number (the column is numeric); "
                                         "stored empty, the rest of the row imported")
    with report.report_path.open() as f:
        assert [(r["row"], r["id"]) for r in csv.DictReader(f)] == [("2", "1"), ("3", "2"), ("7", "6")]
    assert "price" not in ss.items(["1"])[0].attrs and ss.items(["3"])[0].attrs["price"] == 20.0

    hits = ss.search(item="9", k=16, filters=Filters.parse([], 15, 25))
    # prices 15, 20 and 25 in each of the 4 classes, less the two whose price was not a number
    assert len(hits) == 10 and all(15 <= h.attrs["price"] <= 25 for h in hits)
    with pytest.raises(ValueError, match="has leading or trailing whitespace"):
        ss.search(item=" 9 ")


def test_allowed_roots_keep_an_import_inside_its_folders(home, tmp_path):
    shop, elsewhere = tmp_path / "shop", tmp_path / "elsewhere"
    write_catalog(shop, n_per_class=1)
    elsewhere.mkdir()
    draw_product("Bags", random.Random(3)).save(elsewhere / "photo.jpg")
    (shop / "images" / "link.jpg").symlink_to(elsewhere / "photo.jpg")
    data = rows(shop / "styles.csv")
    for row, photo in zip(data, ("images/1.jpg", "/etc/passwd", "../elsewhere/photo.jpg", "images/link.jpg")):
        row["photo"] = photo
    rewrite(shop / "styles.csv", data)

    ss = StyleSense(home)
    report = ss.import_catalog(shop / "styles.csv", "{photo}", allowed_roots=[shop])
    assert report.added == 1
    assert {b.item_id: b.reason for b in report.bad} == {
        "2": "image '/etc/passwd' is outside the allowed folders",
        "3": "image '../elsewhere/photo.jpg' is outside the allowed folders",
        "4": "image 'images/link.jpg' is outside the allowed folders",  # a link out counts as out
    }
    with pytest.raises(CsvError, match="outside the allowed folders"):
        ss.import_catalog(shop / "styles.csv", "{photo}", allowed_roots=[elsewhere])

    # without roots (the CLI) the import reads where its user points
    report = ss.import_catalog(shop / "styles.csv", "{photo}")
    assert report.added == 2
    assert [(b.item_id, b.reason) for b in report.bad] == [("2", "not an image (unrecognised format)")]
