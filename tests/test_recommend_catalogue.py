"""Recommenders beside a real catalogue: the visual model serves photos nobody bought yet,
catalogue filters restrict any model's list, and items without a catalogue row fail filters."""

import pandas as pd
import pytest

from stylesense.catalog.filters import FilterError, Filters
from stylesense.engine import StyleSense

from conftest import write_catalog

# write_catalog ids: 1-6 Tshirts, 7-12 Shoes, 13-18 Bags, 19-24 Dresses
SHOES, BAGS = [str(i) for i in range(7, 13)], [str(i) for i in range(13, 19)]


@pytest.fixture
def shop(home, tmp_path):
    ss = StyleSense(home, threads=2)
    csv_path = write_catalog(tmp_path / "catalog")
    assert ss.import_catalog(csv_path, "images/{id}.jpg").ok
    # purchases of shirts, bags and an item the catalogue lacks; shoes 7-12 nobody bought
    rows = [(f"u{u}", item, "purchase", f"2024-01-0{1 + u % 5}") for u in range(10) for item in ("1", "2", "13", "x99")]
    path = tmp_path / "events.csv"
    pd.DataFrame(rows, columns=["user", "item", "type", "day"]).to_csv(path, index=False)
    ss.behaviour.import_events(path, user_column="user", item_column="item", time_column="day", type_column="type")
    return ss


def test_visual_serves_unbought_photos_and_follows_live_views(shop):
    model, _ = shop.behaviour.train("visual")
    assert "x99" in model.item_ids.tolist()  # event-only items are items too
    for item in ("7", "8"):
        shop.behaviour.add_event("window-shopper", item, "view")
    recs = shop.behaviour.recommend("window-shopper", 4)
    assert {r.item_id for r in recs} <= set(SHOES) - {"7", "8"}  # never bought by anyone
    assert recs[0].reason.startswith("looks like")
    assert "x99" not in {r.item_id for r in shop.behaviour.recommend("u1", 24)}  # no photo, no visual score


def test_filters_restrict_every_model(shop):
    shop.behaviour.train("popular")
    bags = Filters.parse(["articleType=Bags"])
    recs = shop.behaviour.recommend("u1", 5, filters=bags, exclude_seen=False)
    assert recs[0].item_id == "13" and {r.item_id for r in recs} <= set(BAGS)
    everything = {r.item_id for r in shop.behaviour.recommend("u1", 30, exclude_seen=False)}
    assert "x99" in everything  # without filters the metadata-less item is eligible
    cheap = Filters.parse(max_price=20.0)
    assert "x99" not in {r.item_id for r in shop.behaviour.recommend("u1", 30, filters=cheap)}
    with pytest.raises(FilterError):
        shop.behaviour.recommend("u1", 5, filters=Filters.parse(["colour=red"]))
