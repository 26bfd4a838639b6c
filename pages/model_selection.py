"""Model selection: grouped cross-validation, the fold-count study and the Optuna tuning of the head (records only)."""

import altair as alt
import pandas as pd
import streamlit as st

from core.artifacts import model_selection as ms
from core.artifacts import ranking
from core.artifacts.naming import metric_label
from pages.common import current_dataset, load_runs, results_token

st.title("Model selection")
st.write("Cross-validation over the non-test images (folds never cut a group of near-copies), how many folds "
         "to use, and a hyperparameter search of the network's head, all on cached backbone features. The test "
         "split is never in a fold or a trial: its score (refitted on all non-test images) is the line the "
         "estimates are set against.")
dataset = current_dataset()
records, problems = ms.load_records(dataset) if dataset else ({"cv": [], "fold_study": [], "tuning": []}, [])
for problem in problems:
    st.error(f"Not shown: {problem}")
if not any(records.values()):
    st.info(f"No cross-validation or tuning record{f' for **{dataset}**' if dataset else ''} yet. Make them with\n\n"
            f"```\n{ms.CV_COMMAND}\n{ms.STUDY_COMMAND}\n{ms.TUNE_COMMAND}\n```\n\nthen reload this page.")
    st.stop()

for study in records["fold_study"]:
    st.subheader(f"How many folds? {study.backbone} · {'network head' if study.method == 'finetune' else study.method}")
    points = ms.fold_study_points(study)
    scored = metric_label(study.metric).lower()
    x = alt.X("folds:N", sort=alt.SortField("order"), title="folds", axis=alt.Axis(labelAngle=0, labelLimit=200))
    color = alt.Color("folds are:N", legend=alt.Legend(orient="bottom"))
    base = alt.Chart(points).encode(x=x, color=color, xOffset="folds are:N")
    bars = base.mark_rule(strokeWidth=2).encode(y=alt.Y("low:Q", scale=alt.Scale(zero=False),
                                                        title=f"CV {scored}"), y2="high:Q")
    dots = base.mark_point(filled=True, size=70).encode(
        y="estimate:Q", tooltip=["folds", "folds are", alt.Tooltip("estimate:Q", format=".4f"),
                                 alt.Tooltip("spread_sd:Q", format=".4f", title="SD across repeats"),
                                 alt.Tooltip("bias:Q", format="+.4f"), alt.Tooltip("seconds:Q", format=".1f")])
    test = alt.Chart(pd.DataFrame({"test": [study.test[study.metric]]})).mark_rule(strokeDash=[5, 4], color="gray") \
        .encode(y="test:Q")
    st.altair_chart((bars + dots + test).properties(height=340), width="stretch")
    st.caption(f"Points: the CV estimate (mean over repeated fold assignments); bars: ± one SD across them; dashed "
               f"line: the test {scored} of the method refitted on all non-test images. {study.procedure}.")
    st.dataframe(points.drop(columns=["order", "low", "high"]).round(4), hide_index=True, width="stretch")

if records["cv"]:
    st.subheader("Cross-validation results")
    st.dataframe(ms.cv_table(records["cv"]).round(4), hide_index=True, width="stretch")
    st.caption("Mean over the folds of the first assignment with its 95% t-interval; test: the same procedure "
               "refitted on all non-test images. A baseline's hyperparameter is fixed to the value its validation "
               "split chooses in a run.")

for tuning in records["tuning"]:
    st.subheader(f"Tuning: {tuning.study}")
    history = ms.tuning_history(tuning)
    done = history.dropna(subset=["value"])
    if not done.empty:
        points = alt.Chart(done).mark_circle(size=45).encode(
            x="trial:Q", y=alt.Y("value:Q", scale=alt.Scale(zero=False), title=tuning.objective["metric"]),
            tooltip=["trial", alt.Tooltip("value:Q", format=".4f")])
        line = alt.Chart(done).mark_line(color="orange").encode(x="trial:Q", y="best so far:Q")
        st.altair_chart((points + line).properties(height=300), width="stretch")
    st.caption(f"{len(history)} trial(s): " + ", ".join(f"{n} {s.lower()}" for s, n in
                                                       history["state"].value_counts().items()) +
               f". Objective: {tuning.objective['metric']} on {tuning.objective['source']}; orange: best so far.")
    best = ms.best_settings(tuning)
    if not best.empty:
        st.write(f"Best: trial {tuning.best['number']}, {tuning.best['value']:.4f}")
        st.dataframe(best, hide_index=True, width="stretch")
    imp = ms.importances(tuning)
    if imp.empty:
        st.caption(f"Parameter importances {tuning.importance_note}.")
    else:
        st.altair_chart(alt.Chart(imp).mark_bar().encode(x="importance:Q", y=alt.Y("setting:N", sort="-x"))
                        .properties(height=220), width="stretch")
        st.caption(tuning.importance_note)

runs = load_runs(dataset, results_token())
compared = ms.tuned_vs_default(ranking.configurations(runs)) if not runs.empty else pd.DataFrame()
if records["tuning"]:
    st.subheader("Tuned vs default configurations (test split)")
    if compared.empty:
        st.info("No tuned run yet: `python -m core tune ... --run-best --seeds 0,1,2` trains the best settings.")
    else:
        base = alt.Chart(compared).encode(y=alt.Y("label:N", title=None), color="tuned:N")
        st.altair_chart((base.mark_rule(strokeWidth=2).encode(x=alt.X("low:Q", scale=alt.Scale(zero=False),
                                                                      title="balanced accuracy"), x2="high:Q")
                         + base.mark_point(filled=True, size=70).encode(x="mean:Q")), width="stretch")
        st.dataframe(compared.round(4), hide_index=True, width="stretch")
