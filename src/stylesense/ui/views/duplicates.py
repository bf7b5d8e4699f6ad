"""Near-duplicate photos: pairs of catalogue items whose photos are almost the same, side by
side (the same product listed twice, or a photo reused for another product)."""

from __future__ import annotations

import streamlit as st

from stylesense.ui.common import Card, catalogue_facets, guard, home, show_cards

MAX_PAIRS = 30


@st.cache_data(show_spinner=False, max_entries=8)
def _pairs(root: str, stamp: tuple, threshold: float) -> list[tuple[str, str, float]]:
    """All pairs at ``threshold``, once per state of the catalogue (an exact all-pairs search)."""
    return home().duplicates(threshold)

st.title("Near-duplicates")

with guard():
    ss = home()
    threshold = st.slider("similarity at least", 0.80, 1.0, 0.97, step=0.005, format="%.3f", key="dup_threshold")
    if st.button("Find near-duplicates", key="dup_find", type="primary"):
        with st.spinner("comparing every photo with its nearest neighbours..."):
            st.session_state["dup_pairs"] = (threshold, _pairs(str(ss.home.root), ss.store.stamp(), threshold))
    found = st.session_state.get("dup_pairs")
    if found is not None:
        at, pairs = found
        st.subheader(f"{len(pairs)} pairs at similarity >= {at:.3f}")
        roles = catalogue_facets(ss).roles
        items = {it.item_id: it for it in ss.items(sorted({i for a, b, _ in pairs[:MAX_PAIRS] for i in (a, b)}))}
        for a, b, score in pairs[:MAX_PAIRS]:
            st.markdown(f"**{a}** and **{b}**: similarity {score:.4f}")
            show_cards(ss, [Card(i, items[i].attrs if i in items else {}) for i in (a, b)], roles,
                       key=f"dup-{a}-{b}", columns=4)
        if len(pairs) > MAX_PAIRS:
            st.caption(f"the first {MAX_PAIRS} of {len(pairs)} pairs, most similar first")
