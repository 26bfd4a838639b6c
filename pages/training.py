"""Training: learning curves of both stages, stage boundary marked."""

import altair as alt
import pandas as pd
import streamlit as st

from pages.common import empty_state, load_history, pick_runs, results_token, selected_runs

st.title("Training curves")
dataset, runs = selected_runs()
if runs.empty:
    empty_state(dataset)
    st.stop()
# Baselines fit on frozen embeddings have no epochs: only network runs have curves.
with_curves = runs[runs["method"] == "finetune"]
if with_curves.empty:
    st.info(f"No run of {dataset} has learning curves: the runs shown are classical baselines on frozen "
            "embeddings, fitted in one step. Network runs (transfer or from scratch) have curves.")
    st.stop()
chosen = pick_runs(with_curves, "Runs", default=3)
metric = st.radio("Metric", ["loss", "accuracy"], horizontal=True)
frames = []
for _, run in chosen.iterrows():
    h = load_history(run["path"], results_token())
    if h.empty:
        continue
    for split, column in (("train", metric), ("validation", f"val_{metric}")):
        frames.append(pd.DataFrame({"run": run["label"], "epoch": h["step"], "stage": h["stage"],
                                    "split": split, "value": h[column]}))
if not frames:
    st.info("Pick at least one run.")
    st.stop()
data = pd.concat(frames, ignore_index=True)
lines = alt.Chart(data).mark_line(point=True).encode(
    x=alt.X("epoch:Q", title="epoch (all stages in order)"), y=alt.Y("value:Q", title=metric),
    color=alt.Color("run:N", legend=alt.Legend(orient="bottom", columns=1)),
    strokeDash=alt.StrokeDash("split:N", title=None), tooltip=["run", "stage", "epoch", "split", "value"])
firsts = data[data["stage"] != data.groupby("run")["stage"].transform("first")]
boundary = firsts.groupby("run", as_index=False)["epoch"].min()
boundary["epoch"] = boundary["epoch"] - 0.5
rules = alt.Chart(boundary).mark_rule(strokeDash=[4, 4], color="gray").encode(x="epoch:Q", tooltip=["run"])
st.altair_chart((lines + rules).properties(height=420), width="stretch")
st.caption("Solid: training, dashed: validation. The grey dashed rule marks where stage 2 (fine-tuning) "
           "begins. A validation curve that rises while training keeps falling is overfitting; early "
           "stopping restored the weights of the best validation epoch.")
