"""What every page of the web app shares: the open home, the one place library errors become
messages, product cards and the filter panel.

Streamlit runs each page as a script, once per interaction and per browser session, on a
thread of one long-running server: the home is opened once per process
(``st.cache_resource``; :class:`StyleSense` is safe across threads) and every per-shopper
state lives in ``st.session_state``, never in module globals.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import streamlit as st

from stylesense.catalog.facets import Facets, facets
from stylesense.catalog.filters import Filters
from stylesense.engine import StyleSense
from stylesense.errors import StyleSenseError
from stylesense.home import Home

log = logging.getLogger("stylesense.ui")
HOME_ENV = "STYLESENSE_HOME"
THREADS_ENV = "STYLESENSE_THREADS"
IMPORT_ROOTS_ENV = "STYLESENSE_IMPORT_ROOTS"  # os.pathsep-separated folders (`stylesense ui --import-root`)
PHOTO_UPLOAD_MB = 32  # a photo upload's cap: a 50-megapixel JPEG is ~20 MB
PHOTO_TYPES = ["jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"]
THUMB = 256  # px, the longest side of a card's photo
CARD_COLUMNS = 4


@st.cache_resource(show_spinner=False)
def _open(home: str) -> StyleSense:
    return StyleSense(home, threads=int(os.environ.get(THREADS_ENV, "0")) or None)


def home() -> StyleSense:
    """The home the app was started on (``stylesense ui --home``: ``$STYLESENSE_HOME``)."""
    return _open(str(Home.resolve(os.environ.get(HOME_ENV) or None).root))


@contextmanager
def guard() -> Iterator[None]:
    """Show a library error as a message and stop this run of the page; an unexpected error
    as a short message too (the traceback goes to the server's log, never to the page)."""
    try:
        yield
    except StyleSenseError as e:
        st.error(str(e))
    except Exception:  # noqa: BLE001: the page must stay usable whatever went wrong
        log.exception("page failed")
        st.error("Something went wrong on the server while drawing this page; the error is in the server's log.")


def thumbnail(ss: StyleSense, item_id: str, size: int = THUMB) -> bytes | None:
    """The item's photo scaled to ``size`` (made once, then read from the home's thumbnail
    folder by the library), or None where it has none."""
    try:
        return ss.photo(item_id, size).data
    except StyleSenseError:
        return None


@dataclass(frozen=True)
class Card:
    """One product to show: its id, photo, metadata and a line saying why it is here."""

    item_id: str
    attrs: dict[str, Any]
    note: str = ""


def card_lines(attrs: dict[str, Any], roles: dict[str, str], price_column: str) -> list[str]:
    """The card's caption: name, price, category, colour (whichever the catalogue has)."""
    lines = []
    if (name := roles.get("name")) and attrs.get(name):
        lines.append(f"**{attrs[name]}**")
    if isinstance(price := attrs.get(price_column), (int, float)):
        lines.append(f"price {price:,.2f}")
    details = [str(attrs[c]) for r in ("category", "colour", "gender") if (c := roles.get(r)) and attrs.get(c)]
    if details:
        lines.append(" · ".join(details))
    return lines


def show_cards(ss: StyleSense, cards: Sequence[Card], roles: dict[str, str], *, key: str,
               actions: Sequence[tuple[str, Callable[[Card], None]]] = (),
               columns: int = CARD_COLUMNS) -> None:
    """A grid of product cards. Each shows its item id as text and as the photo's alt text,
    and a button per action (``(label, on_click)``); ``key`` keeps buttons of two grids apart."""
    if not cards:
        st.info("Nothing to show.")
        return
    price_column = ss.config.price_column
    for start in range(0, len(cards), columns):
        for n, (col, card) in enumerate(zip(st.columns(columns), cards[start:start + columns]), start):
            with col.container(border=True, key=f"card-{key}-{n}"):  # the page's CSS class st-key-card-...
                name = card.attrs.get(roles.get("name", ""), "")
                alt = f"item {card.item_id}" + (f": {name}" if name else "")
                data = thumbnail(ss, card.item_id)
                if data is not None:
                    st.image(data, width="stretch", alt=alt)
                else:
                    st.caption("(no photo)")
                st.markdown(f"`{card.item_id}`")
                st.caption("  \n".join([*card_lines(card.attrs, roles, price_column), *([card.note] if card.note else [])]))
                for label, on_click in actions:
                    st.button(label, key=f"{key}-{label}-{card.item_id}", on_click=on_click, args=(card,),
                              width="stretch")


@st.cache_data(show_spinner=False, max_entries=16)
def _facets(home: str, stamp: tuple, price_column: str) -> Facets:
    return facets((it.attrs for it in _open(home).items()), price_column)


def state_stamp(ss: StyleSense) -> tuple:
    """A value that changes whenever what the dashboards show can: the event log (its count
    and newest pk: events are added and deleted), the catalogue (its stamp) and the event
    weights. Three indexed queries; figures cached under it are recomputed only on a change."""
    weights = tuple(sorted(ss.behaviour.weights.items()))
    return ss.behaviour.events.count(), ss.behaviour.events.max_pk(), ss.store.stamp(), weights


def catalogue_facets(ss: StyleSense) -> Facets:
    """The catalogue's filterable columns and roles: computed once per state of the catalogue
    (its stamp, one indexed query per run of a page), not on every run."""
    return _facets(str(ss.home.root), ss.store.stamp(), ss.config.price_column)


def filter_panel(ss: StyleSense, found: Facets, key: str) -> Filters:
    """Multiselects for the catalogue's facets, a price range and "in stock only"; returns
    the filters the library applies inside the search."""
    where: dict[str, tuple[str, ...]] = {}
    with st.expander("Filters", expanded=False):
        for column, values in found.values.items():
            chosen = st.multiselect(column, values, key=f"{key}-f-{column}")
            if chosen:
                where[column] = tuple(chosen)
        low = high = None
        if found.price_range is not None and found.price_range[0] < found.price_range[1]:
            lo, hi = found.price_range
            low, high = st.slider("price", min_value=float(lo), max_value=float(hi), value=(float(lo), float(hi)),
                                  key=f"{key}-price")
            if low <= lo and high >= hi:  # the whole range: no price filter (items without a price stay)
                low = high = None
        in_stock = st.checkbox("in stock only", key=f"{key}-stock")
    config = ss.config
    return Filters(where, low, high, config.price_column, in_stock, config.stock_column)
