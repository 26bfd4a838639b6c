"""ROC and precision-recall curves per class and averaged, AUC table, runs overlaid."""

import altair as alt
import pandas as pd
import streamlit as st

from pages.common import empty_state, load_metrics, pick_runs, results_token, selected_runs

st.title("ROC and precision–recall")
dataset, runs = selected_runs()
if runs.empty:
    empty_state(dataset)
    st.stop()
chosen = pick_runs(runs, "Runs (overlaid)", default=2)
if chosen.empty:
    st.stop()
token = results_token()
first = load_metrics(chosen.iloc[0]["path"], token)
klass = st.selectbox("Class (one-vs-rest)", [c["class"] for c in first["roc"]["per_class"]])
roc_rows, pr_rows, auc_rows = [], [], []
for _, run in chosen.iterrows():
    m = load_metrics(run["path"], token)
    auc_row = {"run": run["label"], "micro AUC": m["roc"]["micro_auc"], "macro AUC": m["roc"]["macro_auc"]}
    for c in m["roc"]["per_class"]:
        auc_row[f"AUC {c['class']}"] = c["auc"]
        if c["class"] == klass and c["fpr"]:
            roc_rows += [{"run": run["label"], "fpr": x, "tpr": y} for x, y in zip(c["fpr"], c["tpr"])]
    for c in m["pr"]["per_class"]:
        if c["class"] == klass and c.get("precision"):
            pr_rows += [{"run": run["label"], "recall": r, "precision": p} for r, p in zip(c["recall"], c["precision"])]
    auc_rows.append(auc_row)
left, right = st.columns(2)
if roc_rows:
    roc = alt.Chart(pd.DataFrame(roc_rows)).mark_line().encode(
        x=alt.X("fpr:Q", title="false positive rate"), y=alt.Y("tpr:Q", title="true positive rate"),
        color=alt.Color("run:N", legend=alt.Legend(orient="bottom", columns=1)), order="fpr:Q")
    diagonal = alt.Chart(pd.DataFrame({"x": [0, 1], "y": [0, 1]})).mark_line(strokeDash=[4, 4], color="gray").encode(x="x", y="y")
    left.altair_chart((roc + diagonal).properties(title=f"ROC: {klass} vs rest", height=360), width="stretch")
if pr_rows:
    pr = alt.Chart(pd.DataFrame(pr_rows)).mark_line().encode(
        x=alt.X("recall:Q"), y=alt.Y("precision:Q", scale=alt.Scale(zero=False)),
        color=alt.Color("run:N", legend=alt.Legend(orient="bottom", columns=1)), order="recall:Q")
    right.altair_chart(pr.properties(title=f"Precision–recall: {klass}", height=360), width="stretch")
st.subheader("AUC")
st.dataframe(pd.DataFrame(auc_rows).round(4), hide_index=True, width="stretch")
