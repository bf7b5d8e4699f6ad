"""The catalogue and search routes of ``/v1`` through FastAPI's test client over a real home
(photos drawn by the tests, the real CNN): search by photo and by item, items page by page,
photos and thumbnails, put / patch / delete, and every bad input as a problem response."""

from __future__ import annotations

import io
import json
import random

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from stylesense.engine import StyleSense
from stylesense.serving.app import PROBLEM, Settings, create_app
from stylesense.serving.keys import KeyStore

from conftest import draw_product
from test_images import _png_claiming


def encoded(kind: str, seed: int, fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    draw_product(kind, random.Random(seed)).save(buf, fmt)
    return buf.getvalue()


@pytest.fixture
def api(home_copy):
    """(client, read key, write key) over a copy of the imported 24-item catalogue."""
    keys = KeyStore(StyleSense(home_copy).store.engine)
    read, write = keys.create("read")[0], keys.create("write")[0]
    client = TestClient(create_app(home_copy, Settings(threads=1, max_upload_bytes=1 << 20)))
    return client, {"X-API-Key": read}, {"X-API-Key": write}


def problem(r, status: int, *words: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM and "Traceback" not in r.text
    assert all(w in r.json()["detail"] for w in words), r.json()["detail"]


def test_search_by_photo(api):
    c, read, _ = api
    r = c.post("/v1/search", headers=read, files={"photo": ("q.jpg", encoded("Shoes", 1234), "image/jpeg")},
               data={"k": "5"})
    assert r.status_code == 200, r.text
    hits = r.json()["items"]
    assert len(hits) == 5 and sum(h["attrs"]["articleType"] == "Shoes" for h in hits) >= 4
    assert hits[0]["score"] >= hits[-1]["score"] and hits[0]["image_url"] == f"/v1/items/{hits[0]['item_id']}/image"
    # form filters: repeatable where, a price range, in stock; the header's type is not trusted
    r = c.post("/v1/search", headers=read, data={"k": "23", "where": ["gender=Women", "articleType=Bags"],
                                                 "max_price": "30", "in_stock": "true"},
               files={"photo": ("q.png", encoded("Bags", 7, "PNG"), "text/plain")})
    assert r.status_code == 200, r.text
    assert {h["attrs"]["gender"] for h in r.json()["items"]} == {"Women"}
    assert all(h["attrs"]["price"] <= 30 for h in r.json()["items"]) and r.json()["items"]


def test_search_by_item_and_similar(api):
    c, read, _ = api
    r = c.post("/v1/search", headers=read, json={"item_id": "1", "k": 23, "where": {"gender": ["Women", "Men"]},
                                                 "min_price": 15, "in_stock": True})
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert items and "1" not in {h["item_id"] for h in items} and all(h["attrs"]["price"] >= 15 for h in items)
    r = c.get("/v1/items/7/similar", headers=read, params={"k": 3, "where": "articleType=Shoes"})
    assert r.status_code == 200 and [h["attrs"]["articleType"] for h in r.json()["items"]] == ["Shoes"] * 3
    by_post = c.post("/v1/search", headers=read, json={"item_id": "7", "k": 3, "where": {"articleType": "Shoes"}})
    assert by_post.json() == r.json()


def test_search_bad_input(api):
    c, read, _ = api
    jpeg = encoded("Shoes", 1)
    problem(c.post("/v1/search", headers=read, json={"item_id": "nope"}), 404, "nope")
    problem(c.post("/v1/search", headers=read, json={"k": 3}), 422, "item_id")
    problem(c.post("/v1/search", headers=read, json={"item_id": "1", "k": 0}), 422, "k")
    problem(c.post("/v1/search", headers=read, json={"item_id": "1", "colour": "red"}), 422, "colour")
    problem(c.post("/v1/search", headers=read, json={"item_id": "1", "where": {"colour": "red"}}), 422, "colour")
    problem(c.post("/v1/search", headers=read, json={"item_id": "1", "min_price": 9, "max_price": 1}), 422, "above")
    problem(c.post("/v1/search", headers=read, json=["1"]), 422)
    problem(c.post("/v1/search", headers={**read, "Content-Type": "application/json"}, content=b"{nope"), 422, "JSON")
    problem(c.post("/v1/search", headers={**read, "Content-Type": "text/plain"}, content=b"1"), 415, "text/plain")
    problem(c.post("/v1/search", headers=read, data={"k": "3"}, files={"other": ("x", b"x")}), 422, "photo")
    problem(c.post("/v1/search", headers=read, files={"photo": ("q.jpg", jpeg)}, data={"k": "many"}), 422, "k")
    problem(c.post("/v1/search", headers=read, files={"photo": ("q.jpg", jpeg)}, data={"kk": "3"}), 422, "kk")
    problem(c.post("/v1/search", headers=read, files={"photo": ("q.jpg", b"%PDF-1.4 not a photo", "image/jpeg")}),
            415, "not an image")
    problem(c.post("/v1/search", headers=read, files={"photo": ("q.jpg", jpeg[: len(jpeg) // 2])}), 422)
    problem(c.post("/v1/search", headers=read, files={"photo": ("b.png", _png_claiming(20000, 20000))}),
            422, "too large")
    problem(c.post("/v1/search", headers=read, files={"photo": ("big.jpg", b"\xff" * (2 << 20))}), 413)
    problem(c.post("/v1/search", headers={"Content-Type": "application/json"}, content=b"{}"), 401)
    problem(c.get("/v1/items/1/similar", headers=read, params={"k": 1001}), 422, "k")
    problem(c.get("/v1/items/nope/similar", headers=read), 404, "nope")


def test_items_page_by_page_and_one_by_one(api):
    c, read, _ = api
    seen, cursor = [], None
    while True:
        r = c.get("/v1/items", headers=read, params={"n": 7, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        seen += [it["item_id"] for it in r.json()["items"]]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == [str(i) for i in range(1, 25)]
    r = c.get("/v1/items", headers=read, params={"where": "gender=Men", "max_price": 15, "n": 500})
    assert {(it["attrs"]["gender"], it["attrs"]["price"] <= 15) for it in r.json()["items"]} == {("Men", True)}
    item = c.get("/v1/items/7", headers=read).json()
    assert item == {"item_id": "7", "attrs": {"articleType": "Shoes", "gender": "Men", "price": 10.0,
                                              "name": "Shoes no. 0"},
                    "hidden": False, "in_stock": True, "has_photo": True, "image_url": "/v1/items/7/image"}
    problem(c.get("/v1/items", headers=read, params={"cursor": "forged"}), 422, "cursor")
    problem(c.get("/v1/items", headers=read, params={"n": 501}), 422, "n")
    problem(c.get("/v1/items", headers=read, params={"where": "colour"}), 422, "COLUMN=VALUE")
    problem(c.get("/v1/items/nope", headers=read), 404, "nope")
    problem(c.get("/v1/items/" + "x" * 256, headers=read), 422, "item_id")
    problem(c.get("/v1/items/bad%01id", headers=read), 422, "control character")
    problem(c.get("/v1/items/7"), 401)


def test_photos_and_thumbnails(api, catalog_dir):
    c, read, _ = api
    r = c.get("/v1/items/7/image", headers=read)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert r.content == (catalog_dir / "images" / "7.jpg").read_bytes()
    r = c.get("/v1/items/7/image", headers=read, params={"size": 64})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(r.content)) as img:
        assert max(img.size) == 64
    again = c.get("/v1/items/7/image", headers={**read, "If-None-Match": r.headers["etag"]}, params={"size": 64})
    assert again.status_code == 304 and not again.content
    problem(c.get("/v1/items/7/image", headers=read, params={"size": 8}), 422, "size")
    problem(c.get("/v1/items/7/image", headers=read, params={"size": "big"}), 422, "size")
    problem(c.get("/v1/items/nope/image", headers=read), 404)


def test_put_with_a_photo_then_search_finds_it(api):
    c, read, write = api
    bag = encoded("Bags", 4242, "PNG")
    meta = {"articleType": "Bags", "price": 12.5, "in_stock": "yes", "tags": ["sale"]}
    r = c.put("/v1/items/new%2Fbag", headers=write, data={"metadata": json.dumps(meta)},
              files={"photo": ("bag.bin", bag, "application/octet-stream")})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["created"] and body["embedded"] and body["attrs"] == meta and body["item_id"] == "new/bag"
    assert body["image_url"] == "/v1/items/new%2Fbag/image"
    photo = c.get(body["image_url"], headers=read)
    assert photo.content == bag and photo.headers["content-type"] == "image/png"  # sniffed, not the header's
    hits = c.post("/v1/search", headers=read, files={"photo": ("q.png", bag)}, data={"k": "1"}).json()["items"]
    assert hits[0]["item_id"] == "new/bag" and hits[0]["score"] > 0.99  # searchable in the next request
    r = c.put("/v1/items/new%2Fbag", headers=write, json={"articleType": "Bags", "price": 11})
    assert r.status_code == 200 and not r.json()["created"] and r.json()["has_photo"]  # keeps its photo
    assert c.get("/v1/items/new%2Fbag/similar", headers=read, params={"k": 2}).status_code == 200


def test_put_without_a_photo_and_bad_puts(api):
    c, read, write = api
    r = c.put("/v1/items/plain", headers=write, json={"articleType": "Shoes", "price": 20})
    assert r.status_code == 201 and r.json()["image_url"] is None and not r.json()["embedded"]
    r = c.put("/v1/items/plain", headers=write, files={"metadata": (None, '{"articleType": "Bags"}')})
    assert r.status_code == 200 and c.get("/v1/items/plain", headers=read).json()["attrs"] == {"articleType": "Bags"}
    problem(c.put("/v1/items/x", headers=write, json={"price": "cheap"}), 422, "price")
    problem(c.put("/v1/items/x", headers=write, json=[1]), 422, "object")
    problem(c.put("/v1/items/x", headers=write, json={"a": {"b": 1}}), 422, "'a'")
    problem(c.put("/v1/items/x", headers={**write, "Content-Type": "application/json"}, content=b"{,"), 422, "JSON")
    problem(c.put("/v1/items/x", headers=write, files={"metadata": (None, "not json")}), 422, "JSON")
    problem(c.put("/v1/items/x", headers=write, files={"metadata": (None, "{}"), "photo": (None, "text")}), 422, "photo")
    problem(c.put("/v1/items/x", headers=write, files={"metadata": (None, "{}"), "extra": (None, "1")}), 422, "extra")
    problem(c.put("/v1/items/x", headers=write, data={"metadata": "{}"}), 415, "urlencoded")  # a form without files
    problem(c.put("/v1/items/x", headers=write, files={"photo": ("p.jpg", b"GIF89a? no: text", "image/gif")}),
            422)  # starts like a GIF: a damaged image
    problem(c.put("/v1/items/x", headers=write, files={"photo": ("p.jpg", b"just text")}), 415)
    problem(c.put("/v1/items/x", headers=write, files={"photo": ("p.png", _png_claiming(20000, 20000))}), 422)
    problem(c.put("/v1/items/x", headers=write, files={"photo": ("p.jpg", b"\xff" * (2 << 20))}), 413)
    problem(c.put("/v1/items/x", headers={**write, "Content-Type": "text/csv"}, content=b"a,b"), 415)
    problem(c.put("/v1/items/bad%09id", headers=write, json={}), 422, "control character")
    problem(c.put("/v1/items/%20x", headers=write, json={}), 422)
    problem(c.put("/v1/items/x", headers=read, json={}), 403)
    problem(c.put("/v1/items/x", json={}), 401)
    assert c.get("/v1/items/x", headers=read).status_code == 404  # nothing half-written


def test_patch_and_delete(api):
    c, read, write = api
    r = c.patch("/v1/items/2", headers=write, json={"attrs": {"colour": "red", "name": None, "in_stock": 0}})
    assert r.status_code == 200, r.text
    assert r.json()["attrs"] == {"articleType": "Tshirts", "gender": "Women", "price": 15.0, "colour": "red",
                                 "in_stock": 0}
    assert r.json()["in_stock"] is False
    in_stock = c.get("/v1/items/1/similar", headers=read, params={"k": 23, "in_stock": "true"}).json()["items"]
    assert len(in_stock) == 22 and "2" not in {h["item_id"] for h in in_stock}
    assert c.patch("/v1/items/2", headers=write, json={"hidden": True}).json()["hidden"] is True
    found = c.get("/v1/items/1/similar", headers=read, params={"k": 23}).json()["items"]
    assert "2" not in {h["item_id"] for h in found}
    problem(c.get("/v1/items/2/similar", headers=read), 404, "hidden")
    assert c.get("/v1/items/2", headers=read).json()["hidden"] is True  # the back office still sees it
    problem(c.patch("/v1/items/nope", headers=write, json={"hidden": True}), 404, "nope")
    problem(c.patch("/v1/items/2", headers=write, json={"hidden": "maybe"}), 422, "hidden")
    problem(c.patch("/v1/items/2", headers=write, json={"attrs": {"price": "free"}}), 422, "price")
    problem(c.patch("/v1/items/2", headers=write, json={"colour": "red"}), 422, "colour")
    problem(c.patch("/v1/items/2", headers={**write, "Content-Type": "text/plain"}, content=b"{}"), 422)
    problem(c.patch("/v1/items/2", headers=read, json={}), 403)

    assert c.delete("/v1/items/3", headers=write).status_code == 204
    problem(c.delete("/v1/items/3", headers=write), 404, "3")
    problem(c.get("/v1/items/3", headers=read), 404)
    assert "3" not in {h["item_id"] for h in c.get("/v1/items/1/similar", headers=read, params={"k": 23}).json()["items"]}
    problem(c.delete("/v1/items/4", headers=read), 403)


def test_openapi_documents_both_bodies(api):
    c, _, _ = api
    paths = c.get("/openapi.json").json()["paths"]
    for path, method in (("/v1/search", "post"), ("/v1/items/{item_id}", "put")):
        content = paths[path][method]["requestBody"]["content"]
        assert set(content) == {"application/json", "multipart/form-data"}
        assert content["multipart/form-data"]["schema"]["properties"]["photo"]["format"] == "binary"
    assert paths["/v1/search"]["post"]["requestBody"]["content"]["application/json"]["schema"]["required"] == ["item_id"]
    assert {"get", "put", "patch", "delete"} <= set(paths["/v1/items/{item_id}"])
    assert all(p in paths for p in ("/v1/items", "/v1/items/{item_id}/similar", "/v1/items/{item_id}/image"))
