"""Calibration: one reliability curve per run, bin sizes visible, and expected calibration error."""

import altair as alt
import pandas as pd
import streamlit as st

from core.artifacts import charts
from pages.common import empty_state, load_metrics, pick_runs, results_token, selected_runs

st.title("Calibration")
st.write("Does a predicted confidence of 90% mean right 90% of the time? Points on the diagonal are "
         "perfectly calibrated; below it the model is over-confident. ECE is the gap averaged over bins, "
         "weighted by how many test images fall in each; MCE is the largest gap of any bin.")
dataset, runs = selected_runs()
if runs.empty:
    empty_state(dataset)
    st.stop()
chosen = pick_runs(runs, "Runs", default=3)
token = results_token()
loaded = [(run["short"], run["label"], load_metrics(run["path"], token)) for _, run in chosen.iterrows()]
loaded = [entry for entry in loaded if entry[2]]
points = charts.calibration_points(loaded)
if not points.empty:
    tooltip = [alt.Tooltip("name:N", title="run"), alt.Tooltip("confidence:Q", format=".3f"),
               alt.Tooltip("accuracy:Q", format=".3f"), alt.Tooltip("count:Q", title="images")]
    base = alt.Chart(points).encode(
        x=alt.X("confidence:Q", scale=alt.Scale(domain=[0, 1]), title="mean confidence in bin"),
        y=alt.Y("accuracy:Q", scale=alt.Scale(domain=[0, 1]), title="accuracy in bin"),
        color=alt.Color("run:N", title="run", legend=alt.Legend(orient="bottom", columns=3, labelLimit=0)),
        tooltip=tooltip)
    size = alt.Size("count:Q", title="images in bin", scale=alt.Scale(range=[40, 500]),
                    legend=alt.Legend(orient="bottom"))
    curves = base.mark_line().encode(order="bin:Q")
    enough = base.transform_filter("datum.enough").mark_circle(opacity=0.9).encode(size=size)
    few = base.transform_filter("!datum.enough").mark_point(filled=False, strokeWidth=2).encode(size=size)
    diagonal = alt.Chart(pd.DataFrame({"x": [0, 1], "y": [0, 1]})).mark_line(strokeDash=[4, 4], color="gray").encode(
        x="x", y="y")
    st.altair_chart((diagonal + curves + enough + few).properties(height=420), width="stretch")
    if not points["enough"].all():
        st.caption(f"Hollow points: bins with fewer than {charts.MIN_BIN_COUNT} test images. Their gap from the "
                   "diagonal carries little weight: a few images more or less would move it a lot.")
summary = charts.calibration_summary(loaded)
if not summary.empty:
    for _, row in summary[summary["MCE from a small bin"]].iterrows():
        st.caption(f"{row['run']}: its MCE ({row['MCE']:.2f}) comes from a bin of {row['images in the MCE bin']} "
                   "image(s); read it as noise, not as the model's worst calibration.")
    st.dataframe(summary.round(4), hide_index=True, width="stretch")
