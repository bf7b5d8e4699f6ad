"""The home's numbers (the paper's "user data" and "chart" views): shoppers and events over
time, events by type, sales and revenue by category and price band, top and trending
products, the repurchase rate, and the last offline evaluation. Every figure comes from
``stylesense.insights`` (aggregated in the database); charts are Altair, so they zoom and
show values on hover."""

from __future__ import annotations

import altair as alt
import streamlit as st

from stylesense import insights
from stylesense.engine import StyleSense
from stylesense.ui.common import guard, home, state_stamp

st.title("Dashboards")


def _money(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.2f}"


def _bars(frame, x: str, y: str, title: str) -> alt.Chart:
    return (alt.Chart(frame, title=title).mark_bar()
            .encode(x=alt.X(f"{x}:N", sort="-y", title=None), y=alt.Y(f"{y}:Q"), tooltip=list(frame.columns))
            .interactive())


@st.cache_data(show_spinner=False, max_entries=8)
def _figures(root: str, stamp: tuple) -> dict:
    """Every figure of the page but the activity chart, once per state of the home
    (``state_stamp``; ``root`` keys the home): a dozen aggregates over the whole log took
    ~1.5 s a visit on 100,000 events, and they change only when events, products or weights
    do. The last evaluation is a file of its own, read on every run."""
    ss = home()
    s = insights.summary(ss)
    out: dict = {"summary": s, "repurchase": insights.repurchase_rate(ss).rate}
    if s.events:
        category = insights.category_column(ss)
        out.update(by_type=insights.events_by_type(ss), bands=insights.sales_by_price_band(ss), category=category,
                   by_category=None if category is None else insights.sales_by(ss, category).head(30),
                   top=insights.top_products(ss, 15), trending=insights.trending_products(ss, 15))
    return out


@st.cache_data(show_spinner=False, max_entries=16)
def _activity(root: str, stamp: tuple, freq: str):
    return insights.activity(home(), freq)


@st.fragment
def activity_chart(ss: StyleSense) -> None:
    """Shoppers and events per period; changing the period redraws this chart alone."""
    with guard():
        freq = st.segmented_control("period", ["D", "W", "M"], default="W", key="dash_freq",
                                    format_func={"D": "day", "W": "week", "M": "month"}.get) or "W"
        long = _activity(str(ss.home.root), state_stamp(ss), freq).melt(id_vars=["period"], value_vars=["shoppers", "new_shoppers", "events"],
                                                var_name="series", value_name="count")
        st.altair_chart(alt.Chart(long, title="Shoppers and events over time").mark_line(point=True)
                        .encode(x="period:T", y="count:Q", color="series:N", tooltip=["period:T", "series", "count"])
                        .interactive(), width="stretch")


with guard():
    ss = home()
    fig = _figures(str(ss.home.root), state_stamp(ss))
    s = fig["summary"]
    cols = st.columns(6)
    for col, (label, value) in zip(cols, [("products", f"{s.items:,}"), ("shoppers", f"{s.shoppers:,}"),
                                          ("events", f"{s.events:,}"), ("purchases", f"{s.purchases:,}"),
                                          ("revenue", _money(s.revenue)),
                                          ("repurchase rate", f"{r:.1%}" if (r := fig["repurchase"])
                                           is not None else "n/a")]):
        col.metric(label, value)
    if not s.events:
        st.info("No events yet: import some (`stylesense events import`) or record them on the Shopper page.")
        st.stop()
    st.caption(f"events from {s.first_event:%Y-%m-%d} to {s.last_event:%Y-%m-%d}")

    activity_chart(ss)

    left, right = st.columns(2)
    left.altair_chart(_bars(fig["by_type"], "type", "events", "Events by type"), width="stretch")
    bands = fig["bands"]
    if len(bands):
        right.altair_chart(_bars(bands, "band", "purchases", "Purchases by price band"), width="stretch")
    else:
        right.info("No purchase carries a price: no price bands.")

    category, by_category = fig["category"], fig["by_category"]
    if category is not None:
        measure = "revenue" if by_category["revenue"].notna().any() else "purchases"
        st.altair_chart(_bars(by_category, category, measure, f"Sales by {category} ({measure})"), width="stretch")

    left, right = st.columns(2)
    left.subheader("Top products")
    left.dataframe(fig["top"], hide_index=True, width="stretch")
    right.subheader("Trending now")
    right.dataframe(fig["trending"], hide_index=True, width="stretch")

    st.subheader("Last offline evaluation")
    run = insights.last_evaluation(ss)
    if run is None:
        st.info("No evaluation yet: run `stylesense evaluate recommenders`.")
    else:
        table = run.table
        st.caption(f"{run.when:%Y-%m-%d %H:%M} UTC · protocol {run.result.protocol}")
        st.dataframe(table, hide_index=True, width="stretch")
        metrics = [c for c in table.columns if c not in ("model", "group") and table[c].notna().any()]
        chosen = st.selectbox("metric", metrics, key="dash_metric") if metrics else None
        if chosen:
            st.altair_chart(_bars(table[table["group"] == "warm"], "model", chosen, f"{chosen} by model"),
                            width="stretch")
