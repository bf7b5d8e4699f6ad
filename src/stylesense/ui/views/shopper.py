"""A shopper's history and live recommendations from two or three models side by side.

"View", "add to cart" and "buy" record a real event (``Behaviour.add_event``); the next
render folds it into each model (no retrain), so the lists move as the shopper browses. The
anonymous mode starts from a photo and keeps its events in this browser session only, as the
API's ``POST /v1/sessions/recommend`` does: nothing is stored for nobody.
"""

from __future__ import annotations

import streamlit as st

from stylesense.errors import StyleSenseError
from stylesense.ui.common import PHOTO_TYPES, PHOTO_UPLOAD_MB, Card, catalogue_facets, filter_panel, guard, home, show_cards, thumbnail

ACTIONS = (("view", "view"), ("add to cart", "cart"), ("buy", "purchase"))
MAX_MODELS = 3

st.title("Shopper")


def _actions(user: str | None) -> list:
    """One button per event type; for a known shopper the event is stored, for an anonymous
    one it joins this session's list. A refused event shows why on the next render."""
    def record(kind: str):
        def on_click(card: Card) -> None:
            if user is None:
                st.session_state.setdefault("anon_events", []).append((card.item_id, kind))
                return
            try:
                home().behaviour.add_event(user, card.item_id, kind)
                st.session_state["shopper_note"] = f"recorded: {user} {kind} {card.item_id}"
            except StyleSenseError as e:
                st.session_state["shopper_note"] = f"not recorded: {e}"
        return on_click
    return [(label, record(kind)) for label, kind in ACTIONS]


with guard():
    ss = home()
    b = ss.behaviour
    found = catalogue_facets(ss)
    if note := st.session_state.pop("shopper_note", None):
        st.toast(note)
    mode = st.radio("Who", ["A known shopper", "Anonymous, from a photo"], horizontal=True, key="shopper_mode")
    first, second = st.columns(2)
    with second:
        k = st.slider("recommendations per model", 2, 24, 8, step=2, key="shopper_k")
        filters = filter_panel(ss, found, "shopper")
    if mode == "A known shopper":
        trained = b.trained()
        if not trained:
            st.warning("No model trained yet: run `stylesense train --model NAME` first.")
            st.stop()
        with first:
            user = st.selectbox("Shopper", b.events.users(), index=None, key="shopper_id", accept_new_options=True,
                                placeholder="type a shopper id to search")
            models = st.multiselect("Models", trained, default=trained[:MAX_MODELS], max_selections=MAX_MODELS,
                                    key="shopper_models")
        if user is None:
            st.info("Choose a shopper (a new id gets the cold-start list).")
            st.stop()
        history = b.events.latest(user, limit=8).events
        st.subheader(f"Recent history of {user}" if history else f"{user} has no history yet")
        if history:
            for col, event in zip(st.columns(len(history)), history):
                data = thumbnail(ss, event.item_id, 128)
                if data is not None:
                    col.image(data, alt=f"item {event.item_id}", width="stretch")
                col.caption(f"`{event.item_id}` {event.type} {event.ts:%Y-%m-%d}")
        for col, name in zip(st.columns(max(len(models), 1)), models):
            with col:
                st.subheader(name)
                recs = b.recommend(user, k, model=name, filters=filters)
                items = {it.item_id: it for it in ss.items([r.item_id for r in recs])}
                cards = [Card(r.item_id, items[r.item_id].attrs if r.item_id in items else {},
                              r.reason or f"score {r.score:.3f}") for r in recs]
                show_cards(ss, cards, found.roles, key=f"rec-{name}", actions=_actions(user),
                           columns=max(1, 4 // len(models)))
    else:
        upload = first.file_uploader("A photo of what the shopper wants", key="anon_photo",
                                     type=PHOTO_TYPES, max_upload_size=PHOTO_UPLOAD_MB)
        events = st.session_state.setdefault("anon_events", [])
        if events:
            st.caption("This session: " + ", ".join(f"{kind} {item}" for item, kind in events[-10:]))
            if st.button("Start over", key="anon_reset"):
                events.clear()
                st.rerun()
        if upload is None and not events:
            st.info("Upload a photo to start.")
            st.stop()
        recs = b.recommend_session(events, k, photo=upload.getvalue() if upload is not None else None,
                                   filters=filters)
        items = {it.item_id: it for it in ss.items([r.item_id for r in recs])}
        cards = [Card(r.item_id, items[r.item_id].attrs if r.item_id in items else {}, r.reason or "")
                 for r in recs]
        show_cards(ss, cards, found.roles, key="anon", actions=_actions(None), columns=4)
