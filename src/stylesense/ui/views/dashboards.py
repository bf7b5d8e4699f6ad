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
from stylesense.ui.common import guard, home

st.title("Dashboards")


def _money(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.2f}"


def _bars(frame, x: str, y: str, title: str) -> alt.Chart:
    return (alt.Chart(frame, title=title).mark_bar()
            .encode(x=alt.X(f"{x}:N", sort="-y", title=None), y=alt.Y(f"{y}:Q"), tooltip=list(frame.columns))
            .interactive())


@st.fragment
def activity_chart(ss: StyleSense) -> None:
    """Shoppers and events per period; changing the period redraws this chart alone."""
    with guard():
        freq = st.segmented_control("period", ["D", "W", "M"], default="W", key="dash_freq",
                                    format_func={"D": "day", "W": "week", "M": "month"}.get) or "W"
        long = insights.activity(ss, freq).melt(id_vars=["period"], value_vars=["shoppers", "new_shoppers", "events"],
                                                var_name="series", value_name="count")
        st.altair_chart(alt.Chart(long, title="Shoppers and events over time").mark_line(point=True)
                        .encode(x="period:T", y="count:Q", color="series:N", tooltip=["period:T", "series", "count"])
                        .interactive(), width="stretch")


with guard():
    ss = home()
    s = insights.summary(ss)
    cols = st.columns(6)
    for col, (label, value) in zip(cols, [("products", f"{s.items:,}"), ("shoppers", f"{s.shoppers:,}"),
                                          ("events", f"{s.events:,}"), ("purchases", f"{s.purchases:,}"),
                                          ("revenue", _money(s.revenue)),
                                          ("repurchase rate", f"{r:.1%}" if (r := insights.repurchase_rate(ss).rate)
                                           is not None else "n/a")]):
        col.metric(label, value)
    if not s.events:
        st.info("No events yet: import some (`stylesense events import`) or record them on the Shopper page.")
        st.stop()
    st.caption(f"events from {s.first_event:%Y-%m-%d} to {s.last_event:%Y-%m-%d}")

    activity_chart(ss)

    left, right = st.columns(2)
    left.altair_chart(_bars(insights.events_by_type(ss), "type", "events", "Events by type"), width="stretch")
    bands = insights.sales_by_price_band(ss)
    if len(bands):
        right.altair_chart(_bars(bands, "band", "purchases", "Purchases by price band"), width="stretch")
    else:
        right.info("No purchase carries a price: no price bands.")

    category = insights.category_column(ss)
    if category is not None:
        by_category = insights.sales_by(ss, category).head(30)
        measure = "revenue" if by_category["revenue"].notna().any() else "purchases"
        st.altair_chart(_bars(by_category, category, measure, f"Sales by {category} ({measure})"), width="stretch")

    left, right = st.columns(2)
    left.subheader("Top products")
    left.dataframe(insights.top_products(ss, 15), hide_index=True, width="stretch")
    right.subheader("Trending now")
    right.dataframe(insights.trending_products(ss, 15), hide_index=True, width="stretch")

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
