"""Deployment: size, accuracy change and latency of every variant; Pareto fronts across runs."""

import streamlit as st

from core.artifacts import deployment_view, report
from pages.common import (
    empty_state,
    load_architectures,
    load_json,
    pick_run,
    results_token,
    selected_runs,
    table_section,
)

st.title("Deployment cost")
dataset, runs = selected_runs()
token = results_token()


def show_architectures() -> None:
    table_section("Backbones measured without trained weights",
                  "Backbone + head with random weights, because their ImageNet weights were not available: the size "
                  "and speed of each form are real measurements, accuracy is not (`python -m core deploy "
                  "--architecture NAME`).", report.architecture_table(load_architectures(token)))


if runs.empty:
    empty_state(dataset)
    show_architectures()
    st.stop()
variants = deployment_view.variant_rows([(run["label"], load_json("deployment", run["path"], token))
                                         for _, run in runs.iterrows()])
if variants.empty:
    st.info("No run has deployment measurements yet: `python -m core deploy RUN_DIR`.")
    show_architectures()
    st.stop()
run = pick_run(runs[runs["label"].isin(variants["run"])], "Run")
shown = variants[variants["run"] == run["label"]]
st.dataframe(deployment_view.variant_table(shown), hide_index=True, width="stretch")
st.caption(deployment_view.change_caption(shown))
st.subheader("Accuracy against size and latency, all runs and variants")
st.caption("Up and to the left is better; the dashed line joins the points no other point beats on both axes. "
           "Each variant has one colour in both charts, each run one shape.")
for x, title in deployment_view.PARETO_AXES:
    chart = deployment_view.pareto_chart(variants, x, title)
    if chart is not None:
        st.altair_chart(chart, width="stretch")
unsupported = variants[variants["status"] != "ok"]
if not unsupported.empty:
    st.subheader("Variants that could not be made")
    st.dataframe(unsupported[["run", "variant", "status", "reason"]].rename(columns=str.capitalize), hide_index=True,
                 width="stretch")
show_architectures()
