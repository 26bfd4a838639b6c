"""Training: learning curves of both stages, stage boundary marked."""

import altair as alt
import pandas as pd
import streamlit as st

from core.artifacts import report
from pages.common import empty_state, load_batchnorm_diagnoses, load_history, pick_runs, results_token, selected_runs

STAGE_NAMES = {"stage1": "stage 1: head on the frozen backbone", "stage2": "stage 2: fine-tuning",
               "scratch": "from scratch"}

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
token = results_token()
metric = st.radio("Metric", ["loss", "accuracy"], horizontal=True)
frames = []
for _, run in chosen.iterrows():
    h = load_history(run["path"], token)
    for problem in report.history_problems(h):
        st.warning(f"{run['label']}: {problem}")
    if h.empty:
        continue
    for split, column in (("training", metric), ("validation", f"val_{metric}")):
        frames.append(pd.DataFrame({"run": run["short"], "name": run["label"], "epoch": h["step"],
                                    "stage": h["stage"].map(lambda s: STAGE_NAMES.get(s, s)),
                                    "stage epoch": h["epoch"], "split": split, "value": h[column]}))
if not frames:
    st.info("Pick at least one run.")
    st.stop()
data = pd.concat(frames, ignore_index=True)
base = alt.Chart(data).encode(
    x=alt.X("epoch:Q", title="epoch (all stages in order)", axis=alt.Axis(tickMinStep=1, format="d")),
    y=alt.Y("value:Q", title=metric),
    color=alt.Color("run:N", legend=alt.Legend(orient="bottom", columns=3, labelLimit=0)),
    tooltip=[alt.Tooltip("name:N", title="run"), "stage", "stage epoch", "epoch", "split",
             alt.Tooltip("value:Q", format=".4f")])
# Points in their own layer: a line mark with points draws an empty legend for the dash pattern.
lines = base.mark_line().encode(strokeDash=alt.StrokeDash(
    "split:N", title=None, sort=["training", "validation"],
    legend=alt.Legend(orient="bottom", symbolType="stroke", symbolStrokeColor="gray")))
points = base.mark_circle(size=25, opacity=1).encode(detail="split:N")
firsts = data[data["stage"] != data.groupby("run")["stage"].transform("first")]
boundary = firsts.groupby(["run", "name", "stage"], as_index=False)["epoch"].min()
boundary["epoch"] = boundary["epoch"] - 0.5
rules = alt.Chart(boundary).mark_rule(strokeDash=[4, 4], color="gray").encode(
    x="epoch:Q", tooltip=[alt.Tooltip("name:N", title="run"), alt.Tooltip("stage:N", title="begins")])
labels = alt.Chart(boundary.drop_duplicates("epoch")).mark_text(align="left", dx=4, dy=-6, color="gray").encode(
    x="epoch:Q", y=alt.value(0), text="stage:N")
st.altair_chart((lines + points + rules + labels).properties(height=420), width="stretch")
st.caption("Solid: training, dashed: validation. The grey dashed rule marks where stage 2 (fine-tuning) "
           "begins. A validation curve that rises while training keeps falling is overfitting; early "
           "stopping restored the weights of the best validation epoch.")

# Every diagnosed run passing the filters, picked above or not: the diagnosis explains a curve
# (a collapsed scratch run) that the default pick, the best runs, leaves out.
diagnosed = load_batchnorm_diagnoses(dataset, token).merge(
    with_curves[["run_id", "backbone", "label"]], on=["run_id", "backbone"])
if not diagnosed.empty:
    st.subheader("BatchNorm diagnosis")
    st.write("Validation accuracy of the same weights three ways: as the run was validated (BatchNorm "
             "moving statistics), with each batch normalised by its own statistics, and with the moving "
             "statistics re-estimated on training images. A large jump means the moving statistics, not "
             "the weights, held the run back.")
    st.dataframe(diagnosed.rename(columns={"label": "run", "val_images": "val images",
                                           "inference": "as validated", "batch_statistics": "batch statistics",
                                           "reestimated": "re-estimated", "train_images": "train images used"})
                 [["run", "val images", "as validated", "batch statistics", "re-estimated", "train images used"]],
                 hide_index=True)
    st.caption("Reproduce: " + "; ".join(f"`{c}`" for c in diagnosed["command"]))
