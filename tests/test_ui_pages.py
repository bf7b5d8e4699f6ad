"""Each page of the web app through Streamlit's AppTest (no browser): what it shows is what
the library answers, its buttons record real events, and bad input is a message, never an
exception."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from stylesense.engine import StyleSense
from stylesense.ui.common import HOME_ENV

from ui_fixtures import category, shop_home

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

PAGES = Path(__file__).parents[1] / "src" / "stylesense" / "ui" / "views"
ITEM_ID = re.compile(r"^`([^`]+)`$")


@pytest.fixture(scope="module")
def shop(imported_home: Path, tmp_path_factory) -> Path:
    return shop_home(imported_home, tmp_path_factory.mktemp("ui"))


@pytest.fixture
def page(shop: Path, monkeypatch):
    monkeypatch.setenv(HOME_ENV, str(shop))
    monkeypatch.setenv("STYLESENSE_THREADS", "1")

    def run(name: str) -> AppTest:
        return AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=120).run()
    return run


def shown_ids(at: AppTest) -> list[str]:
    """The item ids the page's cards show as text, in order."""
    return [m.group(1) for md in at.markdown if (m := ITEM_ID.match(md.value))]


def clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def photo_bytes(path: Path) -> bytes:
    return path.read_bytes()


# -- search ------------------------------------------------------------------------------
def test_search_from_an_item_shows_the_librarys_k_nearest_and_a_result_starts_the_next_search(page, shop) -> None:
    at = page("search")
    clean(at)
    at.radio(key="search_source").set_value("A catalogue item").run()
    at.text_input(key="search_item").set_value("1").run()
    clean(at)
    ss = StyleSense(shop, threads=1)
    assert shown_ids(at) == [h.item_id for h in ss.search(item="1", k=12)]
    first = shown_ids(at)[0]
    next(b for b in at.button if b.key == f"hits-More like this-{first}").click().run()
    clean(at)
    assert at.text_input(key="search_item").value == first
    assert shown_ids(at) == [h.item_id for h in ss.search(item=first, k=12)]


def test_a_filter_applies_inside_the_search_so_every_card_passes_it(page, shop) -> None:
    at = page("search")
    at.radio(key="search_source").set_value("A catalogue item").run()
    at.text_input(key="search_item").set_value("1").run()  # a T-shirt: its neighbours are T-shirts
    at.multiselect(key="search-f-articleType").set_value(["Shoes"]).run()
    at.slider(key="search_k").set_value(4).run()
    clean(at)
    kinds = category(StyleSense(shop, threads=1))
    ids = shown_ids(at)
    assert len(ids) == 4 and {kinds[i] for i in ids} == {"Shoes"}


def test_search_by_an_uploaded_photo_and_by_a_crop_of_it(page, shop, catalog_dir) -> None:
    at = page("search")
    at.file_uploader(key="search_upload").set_value(("shoe.jpg", photo_bytes(catalog_dir / "images" / "7.jpg"),
                                                      "image/jpeg")).run()
    clean(at)
    kinds = category(StyleSense(shop, threads=1))
    ids = shown_ids(at)
    assert len(ids) == 12 and ids[0] == "7"  # the catalogue's own photo comes back first
    assert kinds[ids[1]] == kinds["7"]
    at.slider(key="crop_x").set_value((10, 90)).run()
    clean(at)
    assert len(shown_ids(at)) == 12


def test_a_file_that_is_not_an_image_is_a_message_and_the_page_keeps_working(page) -> None:
    at = page("search")
    at.file_uploader(key="search_upload").set_value(("notes.jpg", b"these are not pixels\n" * 50,
                                                      "image/jpeg")).run()
    assert not at.exception
    assert at.error and "image" in at.error[0].value.lower()
    at.radio(key="search_source").set_value("A catalogue item").run()
    at.text_input(key="search_item").set_value("2").run()
    clean(at)
    assert len(shown_ids(at)) == 12


def test_a_decompression_bomb_is_refused_with_a_message(page) -> None:
    buf = io.BytesIO()
    Image.new("1", (20_000, 20_000)).save(buf, "PNG")  # 400 MP in a few KB
    at = page("search")
    at.file_uploader(key="search_upload").set_value(("bomb.png", buf.getvalue(), "image/png")).run()
    assert not at.exception
    assert at.error and "pixels" in at.error[0].value.lower()


def test_an_unknown_item_is_a_message(page) -> None:
    at = page("search")
    at.radio(key="search_source").set_value("A catalogue item").run()
    at.text_input(key="search_item").set_value("no-such-item").run()
    assert not at.exception
    assert at.error and "no-such-item" in at.error[0].value


# -- shopper -----------------------------------------------------------------------------
def test_a_shoppers_history_and_three_models_side_by_side(page, shop) -> None:
    at = page("shopper")
    clean(at)
    at.selectbox(key="shopper_id").set_value("shopper1").run()
    clean(at)
    ss = StyleSense(shop, threads=1)
    assert [s.value for s in at.subheader][1:] == ss.behaviour.trained()
    history = [e.item_id for e in ss.behaviour.events.latest("shopper1", limit=8).events]
    assert at.caption[0].value.startswith(f"`{history[0]}`")
    expected = [r.item_id for name in ss.behaviour.trained() for r in ss.behaviour.recommend("shopper1", 8, model=name)]
    assert shown_ids(at) == expected


def test_view_buttons_record_events_and_the_list_follows_without_a_retrain(page, shop) -> None:
    at = page("shopper")
    at.selectbox(key="shopper_id").set_value("shopper2").run()  # keeps to shoes (ui_fixtures)
    at.multiselect(key="shopper_models").set_value(["visual"]).run()
    at.slider(key="shopper_k").set_value(24).run()  # the whole catalogue: every bag has a button
    clean(at)
    ss = StyleSense(shop, threads=1)
    kinds = category(ss)
    model_file = ss.behaviour.model_path("visual").stat().st_mtime_ns

    def bags_on_top() -> int:
        return sum(kinds[i] == "Bags" for i in shown_ids(at)[:6])

    before = bags_on_top()
    viewed: list[str] = []
    for _ in range(3):
        bag = next(i for i in shown_ids(at) if kinds[i] == "Bags" and i not in viewed)
        next(b for b in at.button if b.key == f"rec-visual-view-{bag}").click().run()
        clean(at)
        viewed.append(bag)
    assert [e.item_id for e in ss.behaviour.events.latest("shopper2", limit=3).events] == viewed[::-1]
    assert bags_on_top() > before and bags_on_top() >= 3
    assert ss.behaviour.model_path("visual").stat().st_mtime_ns == model_file  # no retrain


def test_anonymous_mode_starts_from_a_photo_and_keeps_its_events_in_the_session(page, shop, catalog_dir) -> None:
    at = page("shopper")
    at.radio(key="shopper_mode").set_value("Anonymous, from a photo").run()
    at.file_uploader(key="anon_photo").set_value(("bag.jpg", photo_bytes(catalog_dir / "images" / "13.jpg"),
                                                   "image/jpeg")).run()
    clean(at)
    ids = shown_ids(at)
    assert ids and ids[0] == "13"
    events_before = StyleSense(shop, threads=1).behaviour.events.count()
    next(b for b in at.button if b.key == f"anon-view-{ids[1]}").click().run()
    clean(at)
    assert at.session_state["anon_events"] == [(ids[1], "view")]
    assert StyleSense(shop, threads=1).behaviour.events.count() == events_before  # nothing stored


# -- dashboards, duplicates, catalogue ------------------------------------------------------
def test_dashboards_show_the_homes_numbers(page, shop) -> None:
    from stylesense import insights

    at = page("dashboards")
    clean(at)
    s = insights.summary(StyleSense(shop, threads=1))
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["shoppers"] == f"{s.shoppers:,}" and metrics["purchases"] == f"{s.purchases:,}"
    assert metrics["revenue"] == f"{s.revenue:,.2f}"
    # The figures are cached per state of the home: a purchase recorded elsewhere shows on the next run.
    StyleSense(shop, threads=1).behaviour.add_event("dash-new-shopper", "5", "purchase", price=10.0)
    at.run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["shoppers"] == f"{s.shoppers + 1:,}" and metrics["purchases"] == f"{s.purchases + 1:,}"
    assert metrics["revenue"] == f"{s.revenue + 10:,.2f}"


def test_near_duplicates_are_shown_side_by_side(page, shop, tmp_path, catalog_dir) -> None:
    ss = StyleSense(shop, threads=1)
    ss.put_item("twin-of-5", {"articleType": "Tshirts", "price": 12.0}, (catalog_dir / "images" / "5.jpg").read_bytes())
    at = page("duplicates")
    next(b for b in at.button if b.key == "dup_find").click().run()
    clean(at)
    assert any("twin-of-5" in md.value and "5" in md.value for md in at.markdown if "similarity" in md.value)
    ss.remove_items(["twin-of-5"])


def zipped(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_the_catalogue_page_imports_a_csv_and_a_zip_and_reports_bad_rows(page, shop, catalog_dir) -> None:
    csv_text = "id,articleType,price\nnew-1,Shoes,19.5\nnew-2,Bags,oops\nnew-3,Bags,9\n"
    photos = zipped({"pics/new-1.jpg": (catalog_dir / "images" / "8.jpg").read_bytes(),
                     "pics/new-2.jpg": (catalog_dir / "images" / "14.jpg").read_bytes()})
    at = page("catalogue")
    at.file_uploader(key="cat_csv").set_value(("cat.csv", csv_text.encode(), "text/csv"))
    at.file_uploader(key="cat_zip").set_value(("pics.zip", photos, "application/zip")).run()
    next(b for b in at.button if b.key == "cat_import").click().run()
    clean(at)
    assert "2 added" in at.success[0].value
    ss = StyleSense(shop, threads=1)
    assert {it.item_id for it in ss.items(["new-1", "new-2", "new-3"])} == {"new-1", "new-2"}
    assert ss.search(item="new-1", k=1)  # embedded and indexed
    report = at.dataframe[0].value
    assert set(report["id"]) == {"new-2", "new-3"}  # a warning (price) and a bad row (no photo)
    assert not any(str(shop) in reason for reason in report["reason"])  # no server folder shown
    ss.remove_items(["new-1", "new-2"])


def test_a_zip_that_climbs_out_of_its_folder_imports_nothing(page, shop) -> None:
    at = page("catalogue")
    before = StyleSense(shop, threads=1).store.count()
    at.file_uploader(key="cat_csv").set_value(("cat.csv", b"id,price\nx-1,3\n", "text/csv"))
    at.file_uploader(key="cat_zip").set_value(("evil.zip", zipped({"../../x-1.jpg": b"\xff\xd8\xff"}),
                                               "application/zip")).run()
    next(b for b in at.button if b.key == "cat_import").click().run()
    assert not at.exception
    assert at.error and "outside" in at.error[0].value
    assert StyleSense(shop, threads=1).store.count() == before


def test_the_clusters_page_shows_the_librarys_estimate_typical_products_and_segments(page, shop) -> None:
    from stylesense.clusters import shopper_segments, style_clusters

    at = page("clusters")
    clean(at)
    ss = StyleSense(shop, threads=1)
    found = style_clusters(ss)  # read from the home's cache the page filled
    assert found.cached and found.n_clusters == 4  # the four drawn classes
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["estimated number of clusters"] == "4"
    last = found.clusters[-1]
    at.selectbox(key="cluster_id").set_value(last.id).run()
    clean(at)
    assert shown_ids(at) == last.typical
    assert metrics["segments"] == str(shopper_segments(ss).n_segments)
