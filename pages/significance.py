"""Significance: McNemar's test between runs on the same test images."""

import altair as alt
import pandas as pd
import streamlit as st

from pages.common import empty_state, load_json, results_token, selected_runs

st.title("Which differences are real?")
st.write("McNemar's test compares two classifiers on the same test images, using only the images where "
         "exactly one of them is right. p-values are Holm-corrected for the number of pairs.")
dataset, runs = selected_runs()
if runs.empty:
    empty_state(dataset)
    st.stop()
result = load_json("mcnemar", dataset, results_token())
if not result:
    st.info(f"No comparison stored yet: run `python -m core compare {dataset}`.")
    st.stop()
labels = {f"{r['backbone']}/{r['run_id']}": r["label"] for _, r in runs.iterrows()}
pairs = pd.DataFrame(result["pairs"])
pairs = pairs[pairs["a"].isin(labels) & pairs["b"].isin(labels)]
if pairs.empty:
    st.info("The comparison holds none of the runs selected in the sidebar.")
    st.stop()
pairs["A"] = pairs["a"].map(labels)
pairs["B"] = pairs["b"].map(labels)
cells = pd.concat([pairs[["A", "B", "p_holm", "significant"]],
                   pairs.rename(columns={"A": "B", "B": "A"})[["A", "B", "p_holm", "significant"]]])
heat = alt.Chart(cells).mark_rect().encode(
    x=alt.X("A:N", title=None), y=alt.Y("B:N", title=None),
    color=alt.Color("p_holm:Q", scale=alt.Scale(scheme="redblue", domain=[0, 0.1], clamp=True), title="p (Holm)"),
    tooltip=["A", "B", "p_holm", "significant"])
st.altair_chart(heat.properties(height=max(250, 40 * len(labels))), width="stretch")
table = pairs[["A", "B", "n_common", "n01", "n10", "p_value", "p_holm", "significant", "better"]].copy()
table["better"] = table["better"].map(lambda b: labels.get(b, b) if b else "")
st.dataframe(table.rename(columns={"n01": "A wrong, B right", "n10": "A right, B wrong"}), hide_index=True,
             width="stretch")
