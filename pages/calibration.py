"""Calibration: reliability diagrams and expected calibration error."""

import altair as alt
import pandas as pd
import streamlit as st

from pages.common import empty_state, load_metrics, pick_runs, results_token, selected_runs

st.title("Calibration")
st.write("Does a predicted confidence of 90% mean right 90% of the time? Points on the diagonal are "
         "perfectly calibrated; below it the model is over-confident. ECE is the gap averaged over bins, "
         "weighted by how many test images fall in each.")
dataset, runs = selected_runs()
if runs.empty:
    empty_state(dataset)
    st.stop()
chosen = pick_runs(runs, "Runs", default=3)
rows, summary = [], []
for _, run in chosen.iterrows():
    cal = load_metrics(run["path"], results_token())["calibration"]
    summary.append({"run": run["label"], "ECE": cal["ece"], "MCE": cal["mce"]})
    rows += [{"run": run["label"], "confidence": b["mean_confidence"], "accuracy": b["accuracy"], "count": b["count"]}
             for b in cal["bins"] if b["count"]]
if rows:
    points = alt.Chart(pd.DataFrame(rows)).mark_line(point=True).encode(
        x=alt.X("confidence:Q", scale=alt.Scale(domain=[0, 1]), title="mean confidence in bin"),
        y=alt.Y("accuracy:Q", scale=alt.Scale(domain=[0, 1]), title="accuracy in bin"),
        color=alt.Color("run:N", legend=alt.Legend(orient="bottom", columns=1)),
        size=alt.Size("count:Q", legend=None), tooltip=["run", "confidence", "accuracy", "count"])
    diagonal = alt.Chart(pd.DataFrame({"x": [0, 1], "y": [0, 1]})).mark_line(strokeDash=[4, 4], color="gray").encode(x="x", y="y")
    st.altair_chart((diagonal + points).properties(height=420), width="stretch")
st.dataframe(pd.DataFrame(summary).round(4), hide_index=True, width="stretch")
