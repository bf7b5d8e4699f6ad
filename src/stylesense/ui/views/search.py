"""Search by photo: upload one, take one, or start from a catalogue item; crop the region to
search; filters apply inside the search; any result starts the next search, plain or steered
("Same cut, other colours", "Same colour") where the home's adapter has shape and colour parts."""

from __future__ import annotations

import streamlit as st

from stylesense.ui.common import PHOTO_TYPES, PHOTO_UPLOAD_MB, Card, catalogue_facets, filter_panel, guard, home, show_cards, thumbnail
from stylesense.vision.adapter import steering
from stylesense.vision.images import crop, thumbnail_jpeg

st.title("Search by photo")

# steering mode -> (same, vary) for vision.adapter.steering
STEERS = {"Plain": (None, None), "Same cut, other colours": ("shape", "colour"), "Same colour": ("colour", "shape")}


def _search_from(card: Card, steer: str = "Plain") -> None:
    st.session_state["search_item"] = card.item_id
    st.session_state["search_source"] = "A catalogue item"
    st.session_state["search_steer"] = steer


def _actions(steerable: bool) -> list:
    """A button per way to search from a result: plain, and the steered ones where they work."""
    modes = list(STEERS) if steerable else ["Plain"]
    labels = {"Plain": "More like this"}
    return [(labels.get(m, m), lambda card, m=m: _search_from(card, m)) for m in modes]


with guard():
    ss = home()
    found = catalogue_facets(ss)
    left, right = st.columns([1, 2])
    with left:
        source = st.radio("Search with", ["Upload a photo", "Take a photo", "A catalogue item"],
                          key="search_source", horizontal=True)
        photo: bytes | None = None
        item: str | None = None
        if source == "Upload a photo":
            upload = st.file_uploader("Photo", type=PHOTO_TYPES, max_upload_size=PHOTO_UPLOAD_MB,
                                      key="search_upload")
            photo = upload.getvalue() if upload is not None else None
        elif source == "Take a photo":
            shot = st.camera_input("Camera", key="search_camera")
            photo = shot.getvalue() if shot is not None else None
        else:
            item = st.text_input("Item id", key="search_item").strip() or None
        if photo is not None:
            with st.expander("Crop the region to search"):
                x0, x1 = st.slider("left / right (%)", 0, 100, (0, 100), key="crop_x")
                y0, y1 = st.slider("top / bottom (%)", 0, 100, (0, 100), key="crop_y")
            if (x0, x1, y0, y1) != (0, 100, 0, 100):
                photo = crop(photo, (x0 / 100, y0 / 100, x1 / 100, y1 / 100))
            preview = thumbnail_jpeg(photo, 220)  # decoded safely: a bomb or a non-image stops here
            st.image(preview, caption="the photo searched", width=220, alt="the photo searched")
        elif item is not None and (data := thumbnail(ss, item)) is not None:
            st.image(data, caption=f"item {item}", width=220, alt=f"item {item}")
        k = st.slider("results", 4, 48, 12, step=4, key="search_k")
        steerable = ss.adapter is not None and ss.adapter.steerable
        mode = st.radio("Steer", list(STEERS), key="search_steer", horizontal=True) if steerable else "Plain"
        filters = filter_panel(ss, found, "search")
    with right:
        if photo is None and item is None:
            st.info("Upload a photo, take one, or give a catalogue item's id.")
        else:
            steer = steering(*STEERS[mode])
            hits = ss.search(photo, k=k, filters=filters, steer=steer) if photo is not None else \
                ss.search(item=item, k=k, filters=filters, steer=steer)
            st.subheader(f"{len(hits)} most similar products" + ("" if mode == "Plain" else f": {mode.lower()}"))
            cards = [Card(h.item_id, h.attrs, f"{'score' if steer else 'similarity'} {h.score:.3f}") for h in hits]
            show_cards(ss, cards, found.roles, key="hits", actions=_actions(steerable), columns=3)
