"""Visual search through the engine: by photo, by item, with filters inside the search."""

import random

import pytest

from stylesense.catalog.filters import FilterError, Filters
from stylesense.engine import StyleSense
from stylesense.errors import NotFound

from conftest import draw_product


@pytest.fixture(scope="module")
def shop(tmp_path_factory, catalog_dir, model_cache):
    root = tmp_path_factory.mktemp("searchhome")
    (root / "models").symlink_to(model_cache, target_is_directory=True)
    ss = StyleSense(root, threads=2)
    report = ss.import_catalog(catalog_dir / "styles.csv", "images/{id}.jpg")
    assert report.ok
    return ss


def test_query_photo_finds_its_class(shop, tmp_path):
    for kind in ("Tshirts", "Shoes", "Bags", "Dresses"):
        path = tmp_path / f"{kind}.jpg"
        draw_product(kind, random.Random(1234)).save(path)
        hits = shop.search(path, k=5)
        assert len(hits) == 5
        assert sum(h.attrs["articleType"] == kind for h in hits) >= 4, (kind, [h.attrs for h in hits])
        assert hits[0].score >= hits[-1].score


def test_item_query_never_returns_itself(shop):
    for item in ("1", "7", "24"):
        hits = shop.search(item=item, k=23)
        assert len(hits) == 23 and item not in {h.item_id for h in hits}


@pytest.mark.parametrize("kind", ["flat", "kdtree", "ivf", "hnsw"])
def test_filters_return_k_whenever_k_match(shop, kind):
    shop.build_index(kind)
    assert shop.index().kind == kind
    women = shop.search(item="1", k=10, filters=Filters.parse(["gender=women"]))
    assert len(women) == 10 and all(h.attrs["gender"] == "Women" for h in women)
    # a restrictive filter, far from the query (a T-shirt querying shoes under a budget)
    cheap_shoes = shop.search(item="1", k=10, filters=Filters.parse(["articleType=Shoes"], max_price=20))
    assert sorted(h.item_id for h in cheap_shoes) == ["7", "8", "9"]
    budget = shop.search(item="1", k=5, filters=Filters.parse([], min_price=15, max_price=25))
    assert len(budget) == 5 and all(15 <= h.attrs["price"] <= 25 for h in budget)
    none = shop.search(item="1", k=5, filters=Filters.parse(["gender=Kids"]))
    assert none == []


def test_bad_queries(shop, tmp_path):
    with pytest.raises(FilterError, match="colour"):
        shop.search(item="1", filters=Filters.parse(["colour=red"]))
    with pytest.raises(NotFound):
        shop.search(item="no-such-item")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image at all")
    from stylesense.vision.images import ImageError
    with pytest.raises(ImageError):
        shop.search(broken)
