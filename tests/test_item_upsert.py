"""One item at a time through the library: put (metadata and a photo, embedded and indexed at
once), patch, the catalogue page by page, an item's photo and its cached thumbnails, the
in-stock filter. The real CNN on drawn product photos."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from stylesense.catalog.filters import FilterError, Filters
from stylesense.cli import app
from stylesense.engine import StyleSense
from stylesense.errors import InvalidInput, NotFound
from stylesense.vision.images import ImageError, NotAnImage, load_image

from conftest import draw_product
from test_images import _png_claiming


def encoded(kind: str, seed: int, fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    draw_product(kind, random.Random(seed)).save(buf, fmt)
    return buf.getvalue()


def noisy_jpeg() -> bytes:
    """A JPEG of noise: cutting it anywhere past the header cuts entropy-coded data."""
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (128, 128, 3), np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture
def ss(home_copy) -> StyleSense:
    return StyleSense(home_copy, threads=1)


def features(ss: StyleSense, item_id: str) -> np.ndarray:
    pks, raw = ss.store.features()
    return raw[list(pks).index(ss.item(item_id).pk)]


def test_put_with_a_photo_is_searchable_at_once_and_embedded_as_an_import_embeds(ss, catalog_dir):
    shoe = encoded("Shoes", 99)
    written = ss.put_item("new-shoe", {"articleType": "Shoes", "price": 42, "name": "Runner"}, shoe)
    assert written.created and written.embedded
    stored = Path(written.item.image_path)
    assert stored == ss.home.root / "photos" / f"{hashlib.sha256(shoe).hexdigest()}.jpg"
    assert stored.read_bytes() == shoe
    hits = ss.search(shoe, k=3)
    assert hits[0].item_id == "new-shoe" and hits[0].score > 0.99
    assert StyleSense(ss.home.root).search(shoe, k=1)[0].item_id == "new-shoe"  # another worker too

    # the bytes of an imported photo give exactly the features the import stored
    ss.put_item("copy-of-1", {"articleType": "Tshirts"}, (catalog_dir / "images" / "1.jpg").read_bytes())
    np.testing.assert_array_equal(features(ss, "copy-of-1"), features(ss, "1"))

    again = ss.put_item("new-shoe", {"articleType": "Shoes", "price": 40}, shoe)
    assert not again.created and not again.embedded  # the same photo is not embedded again
    assert again.item.attrs == {"articleType": "Shoes", "price": 40}  # a put replaces the metadata
    png = encoded("Bags", 5, "PNG")
    bag = ss.put_item("new-shoe", {"articleType": "Bags"}, png)
    assert bag.embedded and bag.item.image_path.endswith(".png")
    assert ss.search(png, k=1)[0].item_id == "new-shoe"


def test_put_without_a_photo(ss):
    ss.set_hidden(["2"])
    before = features(ss, "2")
    kept = ss.put_item("2", {"articleType": "Tshirts", "price": 99.5, "note": None})
    assert not kept.created and not kept.embedded
    assert kept.item.attrs == {"articleType": "Tshirts", "price": 99.5}  # None: no value
    assert kept.item.hidden and kept.item.image_path  # back-office state and the photo stay
    np.testing.assert_array_equal(features(ss, "2"), before)
    new = ss.put_item("sku/with slash", {"articleType": "Bags", "tags": ["sale", "new"]})
    assert new.created and new.item.image_path is None
    assert ss.item("sku/with slash").attrs["tags"] == ["sale", "new"]
    with pytest.raises(NotFound):  # listed, but nothing to search with until it has a photo
        ss.search(item="sku/with slash")
    ss.remove_items(["3"])
    assert ss.put_item("3", {"articleType": "Shoes"}).created  # a removed item comes back as new
    assert ss.put_item("4", {"price": 10 ** 400}).item.attrs == {"price": 10 ** 400}  # a number no float holds


@pytest.mark.parametrize("item_id", ["", " padded", "x" * 256, "line\nbreak", "nul\x00", "lone\ud800"])
def test_put_refuses_bad_ids(ss, item_id):
    with pytest.raises(InvalidInput):
        ss.put_item(item_id, {"articleType": "Bags"})
    assert ss.store.count() == 24


@pytest.mark.parametrize(("attrs", "message"), [
    ([1, 2], "must be an object"),
    ({"price": "cheap"}, "price column"),
    ({"price": float("nan")}, "price column"),
    ({"price": True}, "price column"),
    ({"a=b": 1}, "contains '='"),
    ({"": 1}, "empty column name"),
    ({" padded": 1}, "whitespace"),
    ({"nested": {"a": 1}}, "not a value"),
    ({"list": [{"a": 1}]}, "not a value"),
    ({"weight": float("inf")}, "not a value"),
    ({"name": "lone\ud800"}, "not valid Unicode"),  # JSON can carry it; the database cannot
    ({"tags": ["ok", "\udfff"]}, "not valid Unicode"),
    ({"\ud800": 1}, "not valid Unicode"),
])
def test_put_refuses_bad_metadata_and_stores_nothing(ss, attrs, message):
    with pytest.raises(InvalidInput, match=message):
        ss.put_item("new", attrs, encoded("Bags", 1))
    assert ss.store.count() == 24 and not (ss.home.root / "photos").exists()


def test_put_refuses_bad_photos_and_stores_nothing(ss):
    jpeg = noisy_jpeg()
    with pytest.raises(NotAnImage):
        ss.put_item("new", {}, b"<html>404 not found</html>")
    for data, reason in [(jpeg[: len(jpeg) // 2], "truncated image"), (jpeg[:20], "damaged header"),
                         (_png_claiming(20000, 20000), "too large"), (b"", "empty")]:
        with pytest.raises(ImageError, match=reason) as info:
            ss.put_item("new", {}, data)
        assert not isinstance(info.value, NotAnImage)  # a broken image, not some other file
    assert ss.store.count() == 24 and not (ss.home.root / "photos").exists()
    with pytest.raises(ImageError, match="file too large"):  # bytes have the byte cap of files
        load_image(jpeg, max_bytes=100)


def test_concurrent_puts_of_one_new_item_create_it_once(ss):
    errors: list[BaseException] = []

    def put(i: int) -> None:
        try:
            ss.put_item("racy", {"n": i})
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)

    threads = [threading.Thread(target=put, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and [it.item_id for it in ss.items(["racy"])] == ["racy"]


def test_patch_merges_metadata_and_hides(ss):
    item = ss.patch_item("1", {"colour": "red", "name": None})
    assert item.attrs == {"articleType": "Tshirts", "gender": "Men", "price": 10.0, "colour": "red"}
    assert ss.patch_item("1", {"in_stock": "sold out"}).in_stock is False
    assert ss.patch_item("1", hidden=True).hidden
    assert "1" not in {h.item_id for h in ss.search(item="2", k=23)}
    shown = ss.patch_item("1", {"in_stock": 3}, hidden=False)
    assert not shown.hidden and shown.in_stock and "1" in {h.item_id for h in ss.search(item="2", k=23)}
    with pytest.raises(NotFound):
        ss.patch_item("no-such-item", {"colour": "red"})
    with pytest.raises(InvalidInput, match="price column"):
        ss.patch_item("1", {"price": "free", "colour": "blue"})
    assert ss.item("1").attrs["colour"] == "red"  # a refused patch changes nothing


def test_in_stock_filter_in_search_and_the_cli(ss):
    for item in ("2", "3"):
        ss.patch_item(item, {"in_stock": 0})
    in_stock = Filters.parse([], in_stock=True, stock_column=ss.config.stock_column)
    ids = {h.item_id for h in ss.search(item="1", k=23, filters=in_stock)}
    assert len(ids) == 21 and not ids & {"2", "3"}  # a missing stock cell means in stock
    assert len(ss.search(item="1", k=23)) == 23  # out-of-stock items stay searchable unless asked
    done = CliRunner().invoke(app, ["--home", str(ss.home.root), "search", "--item", "1", "-k", "23",
                                    "--in-stock", "--json"])
    assert done.exit_code == 0, done.output
    assert {h["item_id"] for h in json.loads(done.output)} == ids


def test_item_pages_walk_the_catalogue_without_reading_it_whole(ss, monkeypatch):
    by_id = ss.store.items

    def items(item_ids=None):
        assert item_ids is not None, "read the whole catalogue"
        return by_id(item_ids)

    monkeypatch.setattr(ss.store, "items", items)
    seen, cursor, pages = [], None, 0
    while True:
        page = ss.item_page(cursor, 10)
        seen += [it.item_id for it in page.items]
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [str(i) for i in range(1, 25)] and pages == 3
    assert ss.item_page(None, 24).next_cursor is None  # exactly the last item: no empty page after it
    women = Filters.parse(["gender=Women"])
    first = ss.item_page(None, 5, women)
    rest = ss.item_page(first.next_cursor, 500, women)
    assert [it.attrs["gender"] for it in first.items + rest.items] == ["Women"] * 12 and rest.next_cursor is None
    ss.put_item("25", {"articleType": "Bags"})
    assert [it.item_id for it in ss.item_page(cursor, 10).items] == ["21", "22", "23", "24", "25"]


def test_item_page_refuses_bad_requests(ss):
    for n in (0, 501):
        with pytest.raises(InvalidInput, match="n must be"):
            ss.item_page(None, n)
    too_far = base64.urlsafe_b64encode(b"pk:" + b"9" * 20).decode()  # past any int64 primary key
    for cursor in ("nonsense", "cGs6LTE", "", "%%%", too_far):
        with pytest.raises(InvalidInput, match="cursor"):
            ss.item_page(cursor)
    with pytest.raises(FilterError, match="colour"):
        ss.item_page(None, 10, Filters.parse(["colour=red"]))


def test_photo_and_cached_thumbnails(ss, catalog_dir):
    original = (catalog_dir / "images" / "1.jpg").read_bytes()
    photo = ss.photo("1")
    assert photo.data == original and photo.media_type == "image/jpeg"
    thumb = ss.photo("1", 48)
    with Image.open(io.BytesIO(thumb.data)) as img:
        assert img.format == "JPEG" and max(img.size) == 48
    cached = ss.home.root / "thumbnails" / f"{hashlib.sha256(original).hexdigest()}-48.jpg"
    assert cached.read_bytes() == thumb.data
    stamp = cached.stat().st_mtime_ns
    assert ss.photo("1", 48).data == thumb.data and cached.stat().st_mtime_ns == stamp  # made once
    assert ss.photo("1", 1024).data != original  # never enlarged, but always a JPEG
    png = encoded("Dresses", 3, "PNG")
    ss.put_item("1", {"articleType": "Dresses"}, png)
    assert ss.photo("1").media_type == "image/png" and ss.photo("1", 48).etag != thumb.etag  # a new photo
    for size in (15, 1025):
        with pytest.raises(InvalidInput, match="thumbnail size"):
            ss.photo("2", size)
    ss.put_item("bare", {})
    with pytest.raises(NotFound, match="no photo"):
        ss.photo("bare")
    Path(ss.put_item("3", {}, encoded("Shoes", 8)).item.image_path).unlink()  # a photo file lost
    with pytest.raises(NotFound, match="missing") as info:
        ss.photo("3", 64)
    assert str(ss.home.root) not in str(info.value)  # no server paths
