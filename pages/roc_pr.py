"""ROC and precision-recall curves of chosen classes (the worst by default), runs overlaid; AUC per class."""

import altair as alt
import pandas as pd
import streamlit as st

from core.artifacts import charts
from pages.common import empty_state, load_metrics, pick_runs, results_token, selected_runs

st.title("ROC and precision–recall")
dataset, runs = selected_runs()
if runs.empty:
    empty_state(dataset)
    st.stop()
chosen = pick_runs(runs, "Runs (overlaid)", default=2)
token = results_token()
loaded = [(run, m) for _, run in chosen.iterrows() if (m := load_metrics(run["path"], token))]
if not loaded:
    st.stop()
first = loaded[0][1]
classes = st.multiselect("Classes (one-vs-rest)", first["classes"], default=charts.worst_classes(first),
                         help="By default the classes with the lowest AUC in the first run picked.")
roc_frames, pr_frames, summary, per_class = [], [], [], []
for run, m in loaded:
    tags = {"run": run["short"], "name": run["label"]}
    summary.append({"run": run["short"], "micro AUC": m["roc"]["micro_auc"], "macro AUC": m["roc"]["macro_auc"],
                    "micro AP": m["pr"]["micro_average_precision"], "macro AP": m["pr"]["macro_average_precision"],
                    "full name": run["label"]})
    per_class.append(charts.auc_table(m).assign(run=run["short"]))
    roc_frames += [charts.roc_points(c).assign(**tags, **{"class": c["class"]})
                   for c in m["roc"]["per_class"] if c["class"] in classes]
    pr_frames += [charts.pr_steps(c).assign(**tags, **{"class": c["class"]})
                  for c in m["pr"]["per_class"] if c["class"] in classes]


def curve_chart(frames: list[pd.DataFrame], x: str, y: str, interpolate: str) -> alt.Chart:
    """One line per (class, run) in threshold order: colour is the class, the dash pattern the run."""
    return alt.Chart(pd.concat(frames, ignore_index=True)).mark_line(interpolate=interpolate).encode(
        x=alt.X(f"{x}:Q", scale=alt.Scale(domain=[0, 1])), y=alt.Y(f"{y}:Q", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("class:N", legend=alt.Legend(orient="bottom", columns=2, labelLimit=0)),
        strokeDash=alt.StrokeDash("run:N", legend=alt.Legend(orient="bottom", columns=2, labelLimit=0)),
        order="step:Q", tooltip=[alt.Tooltip("name:N", title="run"), "class:N", alt.Tooltip(f"{x}:Q", format=".3f"),
                                 alt.Tooltip(f"{y}:Q", format=".3f")])


left, right = st.columns(2)
if roc_frames:
    diagonal = alt.Chart(pd.DataFrame({"fpr": [0, 1], "tpr": [0, 1]})).mark_line(
        strokeDash=[4, 4], color="gray").encode(x="fpr:Q", y="tpr:Q")
    roc = curve_chart(roc_frames, "fpr", "tpr", "linear") + diagonal
    left.altair_chart(roc.properties(title="ROC, one class vs the rest", height=360), width="stretch")
if pr_frames:
    pr = curve_chart(pr_frames, "recall", "precision", "step-after")
    right.altair_chart(pr.properties(title="Precision–recall", height=360), width="stretch")
    st.caption("Precision–recall curves are steps in threshold order, as scikit-learn draws them: the area under "
               "the steps is the average precision (AP).")
st.subheader("AUC and average precision")
st.dataframe(pd.DataFrame(summary).round(4), hide_index=True, width="stretch")
st.dataframe(pd.concat(per_class, ignore_index=True)[["run", "class", "AUC", "AP", "support"]].round(4),
             hide_index=True, width="stretch")
st.caption("One row per run and class, worst AUC first; click a column header to sort. Support: test images of "
           "the class. AUC and AP are one class against the rest.")
