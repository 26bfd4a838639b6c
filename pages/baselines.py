"""Classical baselines: the multi-class reduction strategies side by side, the k-NN tie rules and tree measures."""

import altair as alt
import streamlit as st

from core.artifacts import classical
from core.artifacts.records import RecordError
from pages.common import empty_state, selected_runs

st.title("Classical baselines on frozen embeddings")
dataset, runs = selected_runs()
if runs.empty:
    empty_state(dataset)
    st.stop()


def section(title: str, caption: str, methods: dict, what: str) -> None:
    """A table of the stored runs of ``methods`` and a chart of balanced accuracy against fit time."""
    st.subheader(title)
    try:
        rows = classical.baseline_rows(runs, methods)
    except RecordError as exc:
        st.error(f"Not shown: {exc}")
        return
    if rows.empty:
        st.info(f"No run of these methods for **{dataset}** yet. Make them with:\n\n"
                f"```\n{classical.make_command(methods)}\n```")
        return
    st.caption(caption)
    st.dataframe(classical.display_table(rows, what), hide_index=True, width="stretch")
    base = alt.Chart(rows.dropna(subset=["fit_seconds"])).encode(
        x=alt.X("fit_seconds:Q", title="fit time of the chosen model (s, log scale)", scale=alt.Scale(type="log")),
        color=alt.Color("base model:N", legend=alt.Legend(orient="right")))
    dots = base.mark_point(filled=True, size=90).encode(
        y=alt.Y("balanced_accuracy:Q", title="balanced accuracy (test, 95% CI)", scale=alt.Scale(zero=False)),
        shape=alt.Shape("strategy:N", title=what, legend=alt.Legend(orient="right", labelLimit=260)),
        tooltip=["label", "strategy", "base model", "chosen", alt.Tooltip("fit_seconds:Q", format=".2f"),
                 alt.Tooltip("balanced_accuracy:Q", format=".3f")])
    bars = base.mark_rule().encode(y="balanced_accuracy_low:Q", y2="balanced_accuracy_high:Q")
    st.altair_chart((bars + dots).properties(height=320), width="stretch")


section("Reducing a multi-class problem to binary ones",
        "One-vs-rest, one-vs-one and error-correcting output codes around logistic regression and a linear SVM, "
        "on the frozen backbone's pooled outputs; the plain multinomial logistic regression and LinearSVC are the "
        "references. Every reduction's class scores are sigmoid-calibrated on 3 folds (in the fit time). Value "
        "[95% bootstrap CI]; the hyperparameter was chosen on validation.", classical.REDUCTIONS, "Strategy")
section("k-NN tie rules and tree impurity measures",
        "k-NN with each tie-breaking rule (k chosen on validation) and decision trees with each impurity measure "
        "(depth chosen on validation), plus a random forest. Value [95% bootstrap CI].", classical.CLASSICAL, "Rule")
