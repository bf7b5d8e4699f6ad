"""The web app in a real browser: ``stylesense ui`` in a subprocess on 127.0.0.1, driven by
Playwright in Debian's headless chromium (launched by path: Playwright's own browser download
cannot work here). Each test saves a screenshot under ``test-artifacts/ui/``.

Skipped, with the reason, where Playwright or chromium is missing (``make test`` installs
both on Debian)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from stylesense.engine import StyleSense
from stylesense.serving.process import ServerProcess

from ui_fixtures import category, shop_home

pytestmark = pytest.mark.browser
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")
CHROMIUM = os.environ.get("STYLESENSE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("no chromium executable (apt-get install chromium, or set STYLESENSE_CHROMIUM)",
                allow_module_level=True)
ARTIFACTS = Path(os.environ.get("STYLESENSE_ARTIFACTS", Path(__file__).parents[1] / "test-artifacts")) / "ui"
WAIT_MS = 60_000


@pytest.fixture(scope="module")
def shop(imported_home: Path, tmp_path_factory) -> Path:
    return shop_home(imported_home, tmp_path_factory.mktemp("browser"))


@pytest.fixture(scope="module")
def app(shop: Path, tmp_path_factory) -> Iterator[ServerProcess]:
    live = ServerProcess(shop, tmp_path_factory.mktemp("log") / "ui.log", workers=None, command="ui")
    live.start(ready="/_stcore/health")
    yield live
    live.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, app: ServerProcess, request) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda e: errors.append(str(e)))
    tab.base = app.url  # type: ignore[attr-defined]
    yield tab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"))
    context.close()
    assert not errors, errors  # no JavaScript error in the page


def open_page(tab, path: str, ready: str) -> None:
    tab.goto(f"{tab.base}/{path}")
    tab.get_by_text(ready).first.wait_for(timeout=WAIT_MS)
    settle(tab)


def settle(tab) -> None:
    """Wait until Streamlit has finished this run of the script (its status widget is gone)."""
    tab.wait_for_timeout(800)  # the widget shows only once a run has gone on for a moment
    tab.locator('[data-testid="stStatusWidget"]').wait_for(state="detached", timeout=WAIT_MS)
    assert tab.locator('[data-testid="stException"]').count() == 0, "an exception is shown in the page"


def card_ids(tab, within=None) -> list[str]:
    """Item ids of the product cards shown (from each photo's alt text, "item <id>: <name>")."""
    scope = within or tab
    alts = scope.locator('[class*="st-key-card-"] img[alt^="item "]').evaluate_all(
        "els => els.map(e => e.alt)")
    return [alt.removeprefix("item ").split(":")[0] for alt in alts]


def choose(tab, label: str, option: str) -> None:
    box = tab.get_by_role("combobox", name=label)
    box.click()
    box.fill(option)
    tab.keyboard.press("Enter")
    settle(tab)


def test_upload_a_photo_and_see_k_result_cards(page, catalog_dir) -> None:
    open_page(page, "", "Upload a photo, take one")
    page.locator('input[type="file"]').first.set_input_files(str(catalog_dir / "images" / "7.jpg"))
    page.get_by_text("12 most similar products").wait_for(timeout=WAIT_MS)
    settle(page)
    ids = card_ids(page)
    assert len(ids) == 12 and ids[0] == "7"
    alts = page.locator('[class*="st-key-card-"] img').evaluate_all("els => els.map(e => e.alt)")
    assert all(alt.startswith("item ") for alt in alts)  # every product photo has alt text


def test_a_filter_is_respected_by_every_card(page, shop, catalog_dir) -> None:
    open_page(page, "", "Upload a photo, take one")
    page.locator('input[type="file"]').first.set_input_files(str(catalog_dir / "images" / "7.jpg"))
    page.get_by_text("most similar products").wait_for(timeout=WAIT_MS)
    settle(page)
    page.get_by_text("Filters").first.click()
    choose(page, "articleType", "Bags")
    page.get_by_text("6 most similar products").wait_for(timeout=WAIT_MS)  # the catalogue's six bags
    settle(page)
    kinds = category(StyleSense(shop, threads=1))
    ids = card_ids(page)
    assert len(ids) == 6 and {kinds[i] for i in ids} == {"Bags"}  # every bag, and nothing else


def test_three_views_of_one_category_raise_it_in_the_recommendations(page, shop) -> None:
    open_page(page, "shopper", "Choose a shopper")
    choose(page, "Shopper", "shopper6")  # keeps to shoes (ui_fixtures)
    page.get_by_text("Recent history of shopper6").wait_for(timeout=WAIT_MS)
    for name in ("popular", "itemknn"):  # visual alone: it follows a shopper's latest views
        page.get_by_role("button", name=f"Remove {name}").click()
        settle(page)
    page.get_by_role("slider", name="recommendations per model").press("End")  # the whole catalogue
    settle(page)
    kinds = category(StyleSense(shop, threads=1))

    def bags_on_top() -> int:
        return sum(kinds[i] == "Bags" for i in card_ids(page)[:4])

    before = bags_on_top()
    viewed: list[str] = []
    for _ in range(3):
        bag = next(i for i in card_ids(page) if kinds[i] == "Bags" and i not in viewed)
        card = page.locator('[class*="st-key-card-"]').filter(
            has=page.locator(f'img[alt^="item {bag}:"]')).last
        card.get_by_role("button", name="view").click()
        settle(page)
        viewed.append(bag)
    stored = [e.item_id for e in StyleSense(shop, threads=1).behaviour.events.latest("shopper6", limit=3).events]
    assert stored == viewed[::-1]
    assert bags_on_top() > before and bags_on_top() >= 3


@pytest.mark.parametrize("path, ready", [("dashboards", "Shoppers and events over time"),
                                         ("clusters", "estimated number of clusters"),
                                         ("duplicates", "Find near-duplicates"),
                                         ("catalogue", "Catalogue CSV")])
def test_every_page_opens_without_an_exception(page, path: str, ready: str) -> None:
    open_page(page, path, ready)
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0


def test_a_non_image_upload_shows_a_message_and_the_app_keeps_working(page, tmp_path, catalog_dir) -> None:
    fake = tmp_path / "holiday.jpg"
    fake.write_text("<html>this is a web page saved with the wrong name</html>")
    open_page(page, "", "Upload a photo, take one")
    page.locator('input[type="file"]').first.set_input_files(str(fake))
    error = page.locator('[data-testid="stAlertContentError"]')
    error.wait_for(timeout=WAIT_MS)
    assert "image" in error.inner_text().lower()
    huge = {"name": "huge.jpg", "mimeType": "image/jpeg", "buffer": b"\xff\xd8\xff" + bytes(33 << 20)}
    page.locator('input[type="file"]').first.set_input_files(huge)  # over the 32 MB photo cap
    refusal = page.get_by_role("alert").filter(has_text="must be 32.0MB or smaller")
    refusal.wait_for(timeout=WAIT_MS)  # Streamlit refuses it in the browser: the server never reads it
    page.locator('input[type="file"]').first.set_input_files(str(catalog_dir / "images" / "7.jpg"))
    page.get_by_text("12 most similar products").wait_for(timeout=WAIT_MS)
    settle(page)
    assert len(card_ids(page)) == 12


def test_at_a_phones_width_nothing_overflows_and_the_keyboard_reaches_every_control(browser, app, catalog_dir) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    tab = context.new_page()
    tab.base = app.url
    try:
        open_page(tab, "", "Upload a photo, take one")
        tab.locator('input[type="file"]').first.set_input_files(str(catalog_dir / "images" / "7.jpg"))
        tab.get_by_text("12 most similar products").wait_for(timeout=WAIT_MS)
        settle(tab)
        assert tab.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 1
        rights = tab.locator('[class*="st-key-card-"] img').evaluate_all(
            "els => els.map(e => e.getBoundingClientRect().right)")
        assert len(rights) == 12 and max(rights) <= 390  # the cards stack in one column
        reached: list[str] = []
        for _ in range(120):  # Tab from the top of the page, as a keyboard user does
            tab.keyboard.press("Tab")
            reached.append(tab.evaluate("(() => { const e = document.activeElement;"
                                        " return (e.getAttribute('aria-label') || e.innerText || '').trim() })()"))
            if reached[-1] == "More like this":
                break
        for control in ("Upload a photo", "results", "More like this"):
            assert any(control in r for r in reached), (control, reached)
        first = card_ids(tab)[0]
        tab.keyboard.press("Enter")  # the first card's "More like this", by keyboard alone
        tab.get_by_role("textbox", name="Item id").wait_for(timeout=WAIT_MS)
        settle(tab)
        assert tab.get_by_role("textbox", name="Item id").input_value() == first
        assert first not in card_ids(tab)  # now the search is from it: never the item itself
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(ARTIFACTS / "phone-search.png"))
        context.close()
