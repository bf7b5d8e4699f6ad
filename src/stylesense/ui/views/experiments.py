"""A/B experiments: each arm's engagement, satisfaction and revenue with 95 % intervals and
p-values against the control, the sample-ratio check, the chart; the online feedback rate of
served recommendations per model (as Gorse's dashboard); start and stop experiments. Every
number comes from ``StyleSense.experiments`` (the same report as `stylesense experiment report`
and ``GET /v1/experiments/{name}/report``)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from stylesense.experiments import METRICS
from stylesense.ui.common import guard, home

st.title("Experiments")


def _create(ss) -> None:
    """The form that starts an experiment between trained models."""
    trained = ss.behaviour.trained()
    with st.expander("Start an experiment", expanded=False):
        if len(trained) < 2:
            st.info("An experiment needs two trained models: run `stylesense train --model NAME`.")
            return
        with st.form("exp_new"):
            name = st.text_input("name", key="exp_new_name")
            arms = st.multiselect("arms (the first is the control)", trained, default=trained[:2], key="exp_new_arms")
            split = st.text_input("split (weights per arm, e.g. 50,50; empty: equal)", key="exp_new_split")
            metric = st.selectbox("decided on", METRICS, index=METRICS.index("purchase"), key="exp_new_metric")
            window = st.number_input("attribution window (hours)", min_value=1.0, max_value=24.0 * 90, value=24.0,
                                     key="exp_new_window")
            if st.form_submit_button("Start"):
                weights = [w.strip() for w in split.split(",") if w.strip()] or None
                created = ss.experiments.create(name.strip(), arms, weights, metric=metric, window_hours=window)
                st.session_state["exp_name"] = created.name
                st.rerun()


with guard():
    ss = home()
    experiments = ss.experiments.list()
    running = next((e.name for e in experiments if e.running), None)
    _create(ss)
    if not experiments:
        st.info("No experiments yet: start one above, or run "
                "`stylesense experiment create NAME --arms MODEL,MODEL`.")
    else:
        names = [e.name for e in experiments]
        if st.session_state.get("exp_name") not in names:
            st.session_state["exp_name"] = running or names[0]
        name = st.selectbox("Experiment", names, key="exp_name",
                            format_func=lambda n: f"{n} (running)" if n == running else n)
        report = ss.experiments.report(name)
        e = report.experiment
        st.caption(f"{e.status} · started {e.started:%Y-%m-%d %H:%M} UTC"
                   + (f" · stopped {e.stopped:%Y-%m-%d %H:%M} UTC" if e.stopped else "")
                   + f" · arms {', '.join(f'{a} {s:.0%}' for a, s in zip(e.arms, e.split))}"
                   + f" · window {e.window_hours:g} h · control {e.arms[0]}")
        (st.warning if report.srm else st.success if report.winner else st.info)(report.verdict())
        cols = st.columns(len(report.arms))
        for col, arm in zip(cols, report.arms):
            primary = arm.estimates[report.primary]
            col.metric(f"{arm.arm}: {report.primary.replace('_', ' ')}",
                       "n/a" if primary.value is None else f"{primary.value:.4g}",
                       None if primary.diff is None else f"{primary.diff:+.4g} vs control")
        rows = report.rows()
        st.dataframe(pd.DataFrame([[label, *cells] for label, cells in rows],
                                  columns=["measure", *(a.arm for a in report.arms)]),
                     hide_index=True, width="stretch")
        st.pyplot(report.figure())
        if e.running and st.button("Stop this experiment", key="exp_stop"):
            ss.experiments.stop(e.name)
            st.rerun()

    st.subheader("Online evaluation")
    hours = st.select_slider("rolling window (hours)", [1, 6, 24, 72, 168], value=24, key="exp_online_window")
    rates = ss.experiments.online(float(hours))
    if not rates:
        st.info("No recommendations served in an experiment in this window.")
    else:
        frame = pd.DataFrame([r.to_dict() for r in rates])
        st.dataframe(frame, hide_index=True, width="stretch")
        st.bar_chart(frame, x="model", y="rate")
