"""Per-class results: confusion matrices side by side, per-class metrics, misclassified images."""

import altair as alt
import streamlit as st

from core.artifacts import report
from pages.common import (
    dataset_root,
    empty_state,
    load_json,
    load_metrics,
    load_predictions,
    pick_runs,
    results_token,
    selected_runs,
)

st.title("Per-class results")
dataset, runs = selected_runs()
if runs.empty:
    empty_state(dataset)
    st.stop()
chosen = pick_runs(runs, "Runs (side by side)", default=2)
token = results_token()
normalised = st.toggle("Normalise rows (recall per true class)", value=True)
columns = st.columns(max(1, len(chosen)))
for col, (_, run) in zip(columns, chosen.iterrows()):
    m = load_metrics(run["path"], token)
    names = m["classes"]
    df = report.confusion_cells(m, normalised)
    base = alt.Chart(df).encode(x=alt.X("predicted:N", sort=names), y=alt.Y("true:N", sort=names))
    heat = base.mark_rect().encode(color=alt.Color("value:Q", scale=alt.Scale(scheme="blues"), legend=None),
                                   tooltip=["true", "predicted", "count", "value"])
    text = base.transform_filter("isValid(datum.value)").mark_text().encode(
        text=alt.Text("value:Q", format=".2f" if normalised else "d"))
    with col:
        st.markdown(f"**{run['label']}**")
        st.altair_chart((heat + text).properties(height=300), width="stretch")
        table = report.per_class_with_leak_free(m, load_json("leakage", run["path"], token))
        st.dataframe(table.round(3), hide_index=True, width="stretch")
        if "leak-free recall" in table:
            st.caption("Leak-free: recall on the test images whose group of near-copies has no member in train or "
                       "val; a class whose leak-free support is small or zero is mostly scored on near-copies.")

st.subheader("Misclassified test images")
if chosen.empty:
    st.stop()
run = chosen.iloc[0]
preds = load_predictions(run["path"], token)
wrong = preds[preds["true"] != preds["pred"]]
classes = load_metrics(run["path"], token)["classes"]
c1, c2 = st.columns(2)
true_class = c1.selectbox("True class", classes)
# Open on the most frequent confusion of the chosen true class, not on the empty diagonal cell.
confused = wrong[wrong["true"] == true_class]["pred"].value_counts()
pred_class = c2.selectbox("Predicted as", classes,
                          index=classes.index(confused.index[0]) if not confused.empty else 0)
cell = wrong[(wrong["true"] == true_class) & (wrong["pred"] == pred_class)]
st.caption(f"{run['label']}: {len(cell)} test images of '{true_class}' predicted as '{pred_class}'.")
root = dataset_root(run["path"])
if cell.empty:
    st.stop()
if root is None:
    st.info("The dataset's images are not on this machine (datasets are never copied into the artifacts); "
            "their paths:")
    st.dataframe(cell[["id"]], hide_index=True)
else:
    cols = st.columns(6)
    for i, (_, row) in enumerate(cell.head(24).iterrows()):
        cols[i % 6].image(str(root / row["id"]), caption=row["id"].split("/")[-1], width="stretch")
