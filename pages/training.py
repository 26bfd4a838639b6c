"""Training: learning curves of both stages, stage boundary marked; each stage against the machine's limit."""

import streamlit as st

from core.artifacts import charts, record_view, report, training_compute
from pages.common import (
    empty_state,
    learning_curve_chart,
    load_batchnorm_diagnoses,
    load_history,
    load_json,
    pick_runs,
    results_token,
    selected_runs,
)

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
histories = []
for _, run in chosen.iterrows():
    h = load_history(run["path"], token)
    for problem in record_view.history_problems(h):
        st.warning(f"{run['label']}: {problem}")
    histories.append((run["short"], run["label"], h))
curves = charts.learning_curves(histories, metric)
if curves.empty:
    st.info("Pick at least one run.")
    st.stop()
st.altair_chart(learning_curve_chart(curves, charts.stage_starts(curves), metric), width="stretch")
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

st.subheader("Did training converge?")
st.dataframe(report.convergence_table(chosen), hide_index=True, width="stretch")
st.caption("Read from each run's history and test predictions: a stage stopped early (no validation-loss "
           "improvement for its patience) or ran out of epochs while still improving (more epochs may help); "
           "collapsed: one class predicted for most test images, far above its true share.")

st.subheader("Training against the machine's limit")
st.dataframe(training_compute.compute_table([(run["label"], load_json("provenance", run["path"], token))
                                             for _, run in chosen.iterrows()]), hide_index=True, width="stretch")
st.caption(training_compute.HOW_TO_READ)
