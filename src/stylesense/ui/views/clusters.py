"""Style clusters (the paper's "estimated number of clusters"): the catalogue's photos grouped
by a density method that decides how many groups there are, on a 2-D map with thumbnails on
hover, each cluster's most typical products and dominant labels; and shopper segments.

``stylesense.clusters`` computes both and keeps them in the home until the catalogue (or the
events) change, so after the first run this page only reads them."""

from __future__ import annotations

import base64

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from stylesense.clusters import ShopperSegments, StyleClusters, shopper_segments, style_clusters
from stylesense.engine import StyleSense
from stylesense.errors import NotReady
from stylesense.ui.common import Card, catalogue_facets, guard, home, show_cards, state_stamp, thumbnail

MAP_POINTS = 800  # points drawn with a thumbnail each (a sample of larger catalogues): ~1 MB of chart
MAP_THUMB = 48

st.title("Style clusters")


def _data_url(data: bytes | None) -> str | None:
    return None if data is None else "data:image/jpeg;base64," + base64.b64encode(data).decode()


@st.cache_data(show_spinner=False, max_entries=4)
def _styles(root: str, stamp: tuple) -> tuple[StyleClusters, pd.DataFrame]:
    """The clusters and the map's points (with their thumbnails) once per state of the home
    (``state_stamp``; ``root`` keys the home). The library's own cache check reads every
    product's metadata to stamp it (~1 s for 10,000), and 800 thumbnails are 800 file reads."""
    ss = home()
    found = style_clusters(ss)
    rng = np.random.default_rng(0)
    n = len(found.item_ids)
    shown = np.sort(rng.choice(n, MAP_POINTS, replace=False)) if n > MAP_POINTS else np.arange(n)
    points = pd.DataFrame({
        "x": found.xy[shown, 0], "y": found.xy[shown, 1],
        "cluster": [str(found.assignment[i]) if found.assignment[i] >= 0 else "noise" for i in shown],
        "item_id": [found.item_ids[i] for i in shown],
    })
    points["image"] = [_data_url(thumbnail(ss, i, MAP_THUMB)) for i in points["item_id"]]
    return found, points


@st.cache_data(show_spinner=False, max_entries=4)
def _segments(root: str, stamp: tuple) -> tuple[ShopperSegments | None, str]:
    """Shopper segments once per state of the home, or why there are none."""
    try:
        return shopper_segments(home()), ""
    except NotReady as e:  # too few shoppers with events on catalogue products
        return None, str(e)


@st.fragment
def typical_products(ss: StyleSense, found: StyleClusters) -> None:
    """One cluster's most typical products; choosing another reruns this part alone (the map
    above is not drawn again)."""
    with guard():
        chosen = st.selectbox("cluster", [cl.id for cl in found.clusters], key="cluster_id",
                              format_func=lambda i: next(f"{i}: " + ", ".join(v for _, v, _ in cl.top_labels())
                                                         + f" ({cl.size})" for cl in found.clusters if cl.id == i))
        cluster = next(cl for cl in found.clusters if cl.id == chosen)
        st.subheader(f"The most typical products of cluster {cluster.id}")
        items = {it.item_id: it for it in ss.items(cluster.typical)}
        show_cards(ss, [Card(i, items[i].attrs) for i in cluster.typical if i in items],
                   catalogue_facets(ss).roles, key=f"cluster-{cluster.id}", columns=6)


with guard():
    ss = home()
    stamp = state_stamp(ss)
    with st.spinner("clustering the catalogue (the first time only: then it is kept in the home)..."):
        found, points = _styles(str(ss.home.root), stamp)
    a, b, c = st.columns(3)
    a.metric("estimated number of clusters", found.n_clusters)
    b.metric("products clustered", f"{len(found.item_ids) - found.noise:,}")
    c.metric("left unassigned (noise)", f"{found.noise:,}")
    st.caption(f"method: {found.method}")

    st.altair_chart(
        alt.Chart(points, title="The catalogue's photos, mapped to 2-D (hover for the photo)")
        .mark_circle(size=40, opacity=0.7)
        .encode(x=alt.X("x:Q", axis=None), y=alt.Y("y:Q", axis=None), color=alt.Color("cluster:N", legend=None, scale=alt.Scale(scheme="category20")),
                tooltip=["item_id", "cluster", "image"])
        .interactive(), width="stretch")

    if found.clusters:
        summary = pd.DataFrame([{"cluster": cl.id, "size": cl.size,
                                 "what it is": ", ".join(f"{v} ({p:.0%})" for _, v, p in cl.top_labels())}
                                for cl in found.clusters])
        st.dataframe(summary, hide_index=True, width="stretch")
        typical_products(ss, found)

    st.header("Shopper segments")
    segments, why_not = _segments(str(ss.home.root), stamp)
    if segments is None:
        st.info(why_not)
    else:
        st.metric("segments", segments.n_segments)
        table = pd.DataFrame([{"segment": sg.id, "shoppers": sg.size,
                               "favourite categories": ", ".join(f"{c} ({share:.0%})"
                                                                 for c, share in sg.favourite_categories[:4])}
                              for sg in segments.segments])
        st.dataframe(table, hide_index=True, width="stretch")
