"""The dashboards' figures (stylesense.insights) on a hand-made shop whose every aggregate is
worked out below, and sane invariants on the real H&M log."""

import csv
import json
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

from recsys_fixtures import block_events
from stylesense import insights
from stylesense.engine import StyleSense
from stylesense.errors import Damaged, InvalidInput

# Catalogue: two colours of one dress (product A), shoes B, a bag without a product code,
# shoes D without a price. "zz" is sold but is not in the catalogue.
ITEMS = {
    "a1": {"name": "Red dress", "category": "Dress", "product_code": "A", "price": 10.0},
    "a2": {"name": "Blue dress", "category": "Dress", "product_code": "A", "price": 20.0},
    "b1": {"name": "Boots", "category": "Shoes", "product_code": "B", "price": 50.0},
    "c1": {"name": "Tote", "category": "Bags", "price": 5.0},
    "d1": {"name": "Sandals", "category": "Shoes", "product_code": "D"},
}
# (user, item, type, time, price); weeks start on Monday 2024-01-01, the week of 01-08 is empty.
EVENTS = [
    ("ann", "a1", "view", "2024-01-01 10:00", None),
    ("ann", "a1", "purchase", "2024-01-01 11:00", 12.0),  # its own price beats the catalogue's 10
    ("bob", "a1", "purchase", "2024-01-02 09:00", None),  # no price: the catalogue's 10
    ("cat", "b1", "purchase", "2024-01-03 12:00", 50.0),  # two units in one basket:
    ("cat", "b1", "purchase", "2024-01-03 12:00", 50.0),  # one occasion
    ("ann", "a1", "purchase", "2024-01-15 10:00", 12.0),  # ann buys a1 again
    ("dan", "zz", "purchase", "2024-01-16 10:00", 7.0),
    ("dan", "d1", "purchase", "2024-01-17 10:00", None),  # no price anywhere
    ("dan", "c1", "view", "2024-01-17 11:00", None),
    ("bob", "a2", "purchase", "2024-01-20 10:00", 20.0),  # bob buys product A again, in blue
    ("bob", "b1", "cart", "2024-01-20 18:00", None),
    ("cat", "zz", "view", "2024-01-27 12:00", None),
]
PRICED = [12.0, 10.0, 50.0, 50.0, 12.0, 7.0, 20.0]  # the purchases' prices, as revenue counts them


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def events_frame(rows) -> pd.DataFrame:
    users, items, types, times, prices = zip(*rows)
    return pd.DataFrame({"user_id": users, "item_id": items, "type": types,
                         "ts": [utc(t) for t in times], "price": [np.nan if p is None else p for p in prices]})


@pytest.fixture
def shop(tmp_path) -> StyleSense:
    ss = StyleSense(tmp_path / "home")
    for item_id, attrs in ITEMS.items():
        ss.put_item(item_id, attrs)
    assert ss.behaviour.events.import_frame(events_frame(EVENTS)).inserted == len(EVENTS)
    return ss


def test_summary_counts_and_totals(shop):
    s = insights.summary(shop)
    assert (s.items, s.shoppers, s.event_items, s.events, s.purchases) == (5, 4, 6, 12, 8)
    assert s.revenue == pytest.approx(sum(PRICED))  # 161: d1's purchase has no price at all
    assert (s.first_event, s.last_event) == (utc("2024-01-01 10:00"), utc("2024-01-27 12:00"))
    assert json.loads(json.dumps(s.to_dict()))["first_event"] == "2024-01-01T10:00:00+00:00"


def test_activity_by_week_fills_the_empty_week(shop):
    a = insights.activity(shop, "W")
    assert list(a.columns) == ["period", "shoppers", "new_shoppers", "events"]
    assert a["period"].tolist() == [utc(d) for d in ("2024-01-01", "2024-01-08", "2024-01-15", "2024-01-22")]
    assert a["shoppers"].tolist() == [3, 0, 3, 1]  # ann bob cat | - | ann dan bob | cat
    assert a["new_shoppers"].tolist() == [3, 0, 1, 0]  # dan is the only newcomer after the first week
    assert a["events"].tolist() == [5, 0, 6, 1]


def test_activity_by_day_and_month(shop):
    days = insights.activity(shop, "D")
    assert len(days) == 27 and days["events"].sum() == 12 and days["new_shoppers"].sum() == 4
    assert days.set_index("period").loc[utc("2024-01-03"), "events"] == 2
    month = insights.activity(shop, "M")
    assert month.to_dict("records") == [{"period": pd.Timestamp("2024-01-01", tz="UTC"), "shoppers": 4,
                                         "new_shoppers": 4, "events": 12}]
    with pytest.raises(InvalidInput, match="unknown period"):
        insights.activity(shop, "fortnight")


def test_events_by_type(shop):
    assert insights.events_by_type(shop).to_dict("records") == [
        {"type": "purchase", "events": 8, "shoppers": 4},
        {"type": "view", "events": 3, "shoppers": 3},
        {"type": "cart", "events": 1, "shoppers": 1},
    ]


def test_sales_by_category_adds_up_to_every_purchase(shop):
    sales = insights.sales_by(shop, "category")
    assert sales.to_dict("records") == [
        {"category": "Shoes", "purchases": 3, "revenue": 100.0, "shoppers": 2},  # b1 twice, d1 unpriced
        {"category": "Dress", "purchases": 4, "revenue": 54.0, "shoppers": 2},  # 12 + 10 + 12 + 20
        {"category": None, "purchases": 1, "revenue": 7.0, "shoppers": 1},  # zz: not in the catalogue
    ]
    assert sales["purchases"].sum() == insights.summary(shop).purchases


def test_sales_by_a_group_without_any_price_has_no_revenue(shop):
    sales = insights.sales_by(shop, "product_code")
    assert sales["product_code"].tolist() == ["B", "A", None, "D"]
    assert sales["revenue"].tolist()[:3] == [100.0, 54.0, 7.0] and np.isnan(sales["revenue"].iloc[3])
    with pytest.raises(InvalidInput, match="no catalogue item has column 'colour'"):
        insights.sales_by(shop, "colour")


def test_price_bands_are_quantiles_of_the_purchase_prices(shop):
    two = insights.sales_by_price_band(shop, 2)  # prices 7 10 12 12 | 20 50 50: the median is 12
    assert two.to_dict("records") == [
        {"band": "7.00-12.00", "low": 7.0, "high": 12.0, "purchases": 4, "revenue": 41.0},
        {"band": "12.00-50.00", "low": 12.0, "high": 50.0, "purchases": 3, "revenue": 120.0},
    ]
    three = insights.sales_by_price_band(shop, 3)  # terciles at 12 and 20
    assert three["band"].tolist() == ["7.00-12.00", "12.00-20.00", "20.00-50.00"]
    assert three["purchases"].tolist() == [4, 1, 2] and three["revenue"].tolist() == [41.0, 20.0, 100.0]
    assert insights.sales_by_price_band(shop, 1)[["purchases", "revenue"]].values.tolist() == [[7, 161.0]]
    with pytest.raises(InvalidInput):
        insights.sales_by_price_band(shop, 0)


def test_price_band_labels_keep_small_prices_apart(tmp_path):
    """H&M's prices are scaled to ~0.01-0.3: the labels need more decimals to differ."""
    ss = StyleSense(tmp_path / "home")
    rows = [(f"u{i}", f"i{i}", "purchase", f"2024-01-0{1 + i % 5} 10:00", p)
            for i, p in enumerate([0.0101, 0.0102, 0.0103, 0.0104, 0.02, 0.02, 0.02])]
    ss.behaviour.events.import_frame(events_frame(rows))
    bands = insights.sales_by_price_band(ss, 3)
    assert bands["band"].is_unique and bands["purchases"].sum() == 7
    assert bands["band"].iloc[0] == f"{bands['low'].iloc[0]:.4f}-{bands['high'].iloc[0]:.4f}"
    one = insights.sales_by_price_band(StyleSense(_one_price_home(tmp_path)), 4)  # a single price: one band
    assert one.to_dict("records") == [{"band": "5.00-5.00", "low": 5.0, "high": 5.0, "purchases": 2, "revenue": 10.0}]


def _one_price_home(tmp_path):
    ss = StyleSense(tmp_path / "one")
    ss.behaviour.events.import_frame(events_frame([("u", "i", "purchase", "2024-01-01 10:00", 5.0),
                                                   ("v", "i", "purchase", "2024-01-02 10:00", 5.0)]))
    return ss.home.root


def test_top_products_by_type_with_catalogue_columns(shop):
    top = insights.top_products(shop, 2)
    assert top.to_dict("records") == [
        {"item_id": "a1", "events": 3, "shoppers": 2, "revenue": 34.0, "name": "Red dress",
         "category": "Dress", "price": 10.0},
        {"item_id": "b1", "events": 2, "shoppers": 1, "revenue": 100.0, "name": "Boots",
         "category": "Shoes", "price": 50.0},
    ]
    any_type = insights.top_products(shop, 3, type=None)
    assert any_type[["item_id", "events", "shoppers", "revenue"]].values.tolist() == [
        ["a1", 4, 2, 34.0], ["b1", 3, 2, 100.0], ["zz", 2, 2, 7.0]]
    assert any_type["name"].iloc[2] is None  # zz is not in the catalogue
    views = insights.top_products(shop, 10, type="view")
    assert views["item_id"].tolist() == ["a1", "c1", "zz"] and views["revenue"].isna().all()
    with pytest.raises(InvalidInput, match="unknown event type"):
        insights.top_products(shop, type="purchse")
    with pytest.raises(InvalidInput):
        insights.top_products(shop, 0)


def test_trending_products_are_the_shops_trending_list_with_window_counts(shop):
    trend = insights.trending_products(shop, 10)
    expected = shop.behaviour.trending(10)
    assert trend["item_id"].tolist() == [r.item_id for r in expected]
    assert trend["score"].tolist() == pytest.approx([r.score for r in expected])
    # The newest event is 01-27 12:00: recent is after 01-20 12:00, before the week until then.
    counts = {row.item_id: (row.recent, row.before) for row in trend.itertuples()}
    assert counts == {"zz": (1, 1), "b1": (1, 0), "a2": (0, 1), "a1": (0, 1), "c1": (0, 1), "d1": (0, 1)}
    assert trend.set_index("item_id").loc["b1", "category"] == "Shoes"


def test_trending_leaves_out_what_the_shop_cannot_sell(shop):
    shop.set_hidden(["b1"])
    assert "b1" not in insights.trending_products(shop, 10)["item_id"].tolist()
    assert "b1" in insights.top_products(shop, 10)["item_id"].tolist()  # history still counts it


def test_repurchase_rate_by_item_and_by_product_group(shop):
    r = insights.repurchase_rate(shop)
    # ann bought a1 on two days; cat's two boots were one basket; bob came back for product A in blue.
    assert (r.buyers, r.repeaters, r.rate) == (4, 1, 0.25)
    assert (r.group_column, r.group_repeaters, r.group_rate) == ("product_code", 2, 0.5)
    assert json.loads(json.dumps(r.to_dict())) == {"buyers": 4, "repeaters": 1, "rate": 0.25,
                                                   "group_column": "product_code", "group_repeaters": 2,
                                                   "group_rate": 0.5}
    plain = insights.repurchase_rate(shop, group="category")  # d1 and b1 are both shoes, but dan
    assert plain.group_repeaters == 2  # bought them once each; cat's boots were one occasion
    with pytest.raises(InvalidInput):
        insights.repurchase_rate(shop, group="no_such_column")


def test_columns_guessed_and_configured(shop):
    assert insights.category_column(shop) == "category"
    assert insights.group_column(shop) == "product_code"
    shop.update_config(lambda c: c.extra.update(category_column="name"))
    shop.configure({"group_column": "category"})
    assert insights.category_column(shop) == "name" and insights.group_column(shop) == "category"


def test_a_log_without_purchases_has_no_revenue(tmp_path):
    ss = StyleSense(tmp_path / "home")
    assert insights.summary(ss).to_dict() == {"items": 0, "shoppers": 0, "event_items": 0, "events": 0,
                                              "purchases": 0, "revenue": None, "first_event": None,
                                              "last_event": None}
    assert insights.activity(ss).empty and list(insights.activity(ss).columns) == [
        "period", "shoppers", "new_shoppers", "events"]
    assert insights.events_by_type(ss).empty and insights.trending_products(ss).empty
    ss.behaviour.events.import_frame(events_frame([("u", "m1", "rating", "1998-01-01 10:00", None),
                                                   ("v", "m1", "rating", "1998-01-02 10:00", None)]))
    assert insights.summary(ss).revenue is None
    assert insights.sales_by_price_band(ss).empty
    assert insights.repurchase_rate(ss).to_dict()["rate"] is None
    top = insights.top_products(ss, type="rating")
    assert top["events"].tolist() == [2] and np.isnan(top["revenue"].iloc[0])
    assert insights.category_column(ss) is None and insights.last_evaluation(ss) is None


def test_evaluate_saves_the_last_run_for_the_dashboards(tmp_path):
    ss = StyleSense(tmp_path / "home")
    ss.behaviour.events.import_frame(block_events(n_users=40, n_items=24, per_user=6))
    assert insights.last_evaluation(ss) is None
    before = datetime.now(timezone.utc)
    result = ss.behaviour.evaluate("stratified", ["popular", "trending"], k=3)
    run = insights.last_evaluation(ss)
    assert run is not None and run.result == result
    assert before.timestamp() - 1 <= run.when.timestamp() <= datetime.now(timezone.utc).timestamp() + 1
    table = run.table
    assert table[["model", "group"]].values.tolist() == [["popular", "warm"], ["trending", "warm"]]
    assert table["users"].tolist() == [result.models["popular"]["users"]] * 2
    assert table.set_index("model").loc["popular", "ndcg_at_k"] == result.models["popular"]["ndcg_at_k"]
    saved = json.loads(json.dumps(run.to_dict()))
    assert saved["protocol"] == "stratified" and saved["k"] == 3 and set(saved["models"]) == {"popular", "trending"}

    ss.behaviour.evaluate("stratified", ["popular"], k=5)  # the next run replaces it
    assert set(insights.last_evaluation(ss).result.models) == {"popular"}
    ss.behaviour.last_evaluation_path.write_text("{not json")
    with pytest.raises(Damaged, match="last evaluation .* run `stylesense evaluate recommenders` again"):
        insights.last_evaluation(ss)


@pytest.mark.shared
def test_hm_figures_agree_with_each_other(shared_data, tmp_path):
    """The real H&M log (30,451 priced purchases) with part of its articles as the catalogue."""
    ss = StyleSense(tmp_path / "home")
    ss.behaviour.import_events(shared_data / "hm" / "transactions.csv", preset="hm")
    with (shared_data / "hm" / "articles.csv").open(newline="", encoding="utf-8") as f:
        for row, _ in zip(csv.DictReader(f), range(300)):
            ss.put_item(row.pop("article_id"), {k: v for k, v in row.items() if v})
    s = insights.summary(ss)
    assert (s.events, s.purchases, s.shoppers, s.items) == (30451, 30451, 1332, 300)
    assert (s.first_event.date().isoformat(), s.last_event.date().isoformat()) == ("2018-09-20", "2020-08-22")
    assert insights.category_column(ss) == "product_type_name"
    assert insights.group_column(ss) == "product_code"

    sales = insights.sales_by(ss, "product_type_name")
    assert sales["purchases"].sum() == s.purchases and sales["revenue"].sum() == pytest.approx(s.revenue)
    assert sales["revenue"].is_monotonic_decreasing and sales["shoppers"].max() <= s.shoppers
    bands = insights.sales_by_price_band(ss)
    assert len(bands) == 5 and bands["band"].is_unique and bands["purchases"].sum() == s.purchases
    assert bands["revenue"].sum() == pytest.approx(s.revenue) and (bands["low"] < bands["high"]).all()
    assert bands["purchases"].min() > 0.1 * s.purchases  # quantile bands hold similar counts
    weeks = insights.activity(ss, "W")
    assert weeks["events"].sum() == s.events and weeks["new_shoppers"].sum() == s.shoppers
    assert weeks["period"].is_monotonic_increasing and (weeks["shoppers"] >= weeks["new_shoppers"]).all()
    assert insights.events_by_type(ss).to_dict("records") == [{"type": "purchase", "events": 30451, "shoppers": 1332}]
    top = insights.top_products(ss, 10)
    assert top["events"].is_monotonic_decreasing and top["item_id"].str.len().eq(10).all()  # leading zeros kept
    trend = insights.trending_products(ss, 10)
    assert trend["item_id"].tolist() == [r.item_id for r in ss.behaviour.trending(10)]
    assert (trend["recent"] > 0).any()
    r = insights.repurchase_rate(ss)
    assert r.buyers == s.shoppers and 0 < r.repeaters <= r.group_repeaters < r.buyers
