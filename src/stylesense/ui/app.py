"""The web app's entry script (``stylesense ui`` runs ``streamlit run`` on it): one page per
concern, each a script under ``views/`` that calls the library."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

PAGES = Path(__file__).parent / "views"

st.set_page_config(page_title="stylesense", page_icon=":material/checkroom:", layout="wide")
st.navigation([
    st.Page(PAGES / "search.py", title="Search by photo", icon=":material/image_search:", default=True),
    st.Page(PAGES / "shopper.py", title="Shopper", icon=":material/person:", url_path="shopper"),
    st.Page(PAGES / "dashboards.py", title="Dashboards", icon=":material/monitoring:", url_path="dashboards"),
    st.Page(PAGES / "experiments.py", title="Experiments", icon=":material/science:", url_path="experiments"),
    st.Page(PAGES / "clusters.py", title="Style clusters", icon=":material/bubble_chart:", url_path="clusters"),
    st.Page(PAGES / "duplicates.py", title="Near-duplicates", icon=":material/content_copy:", url_path="duplicates"),
    st.Page(PAGES / "catalogue.py", title="Catalogue", icon=":material/inventory_2:", url_path="catalogue"),
]).run()
