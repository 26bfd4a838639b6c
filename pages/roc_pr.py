"""ROC and precision-recall curves of chosen classes (the worst by default), runs overlaid; AUC per class."""

import altair as alt
import pandas as pd
import streamlit as st

from core.artifacts import charts, screens
from core.errors import UserError
from core.evaluate import operating_point as op
from pages.common import empty_state, load_metrics, pick_run, pick_runs, results_token, selected_runs

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


@st.cache_data(show_spinner=False)
def screen_inputs(path: str, token: str) -> op.ScreenInputs | str:
    """The run's validation and test probabilities and groups, or the one line saying what is missing."""
    try:
        return op.load_run(path)
    except UserError as exc:
        return str(exc)


@st.cache_data(show_spinner=False)
def screen_point(path: str, token: str, positives: tuple, kind: str, value: float) -> dict | str:
    """The operating point, computed live (threshold on validation, test figures with intervals)."""
    inputs = screen_inputs(path, token)
    try:
        target = op.make_target(**{kind: value})
        point = op.operating_point(inputs, positives, target)
        return {"point": point, "curves": op.roc_curves(inputs, positives)}
    except UserError as exc:
        return str(exc)


st.subheader("Operating point: the run as a binary screen")
st.caption("Name the positive classes (a missed one is the costly error) and a target; the threshold on their summed "
           "probability is chosen on the validation split only, then applied to the test split. Intervals resample "
           "whole groups. `python -m core operating-point RUN_DIR ...` gives and stores the same numbers.")
run = pick_run(screens.screen_candidates(runs), "Run read as a screen", key="screen_run")
inputs = screen_inputs(run["path"], token)
if isinstance(inputs, str):
    st.info(inputs)
    st.stop()
positives = st.multiselect("Positive classes", inputs.classes, key="screen_positives",
                           default=screens.default_positives(inputs.classes, inputs.test.true))
kind = st.radio("Target", ["sensitivity", "cost ratio"], horizontal=True, key="screen_kind")
if kind == "sensitivity":
    value = st.slider("Sensitivity to reach on validation", 0.50, 1.0, 0.95, 0.01, key="screen_sensitivity")
else:
    value = st.number_input("Cost of a missed positive, in false alarms (FN cost / FP cost)", min_value=0.01,
                            value=5.0, step=1.0, key="screen_cost")
result = screen_point(run["path"], token, tuple(positives), kind.replace(" ", "_"), float(value))
if isinstance(result, str):
    st.info(result)
    st.stop()
point = result["point"]
st.success(screens.chosen_text(point))
st.caption(screens.leak_text(point))
lines, dots = screens.roc_frame(result["curves"], point)
curve = alt.Chart(lines).mark_line().encode(
    x=alt.X("fpr:Q", title="1 - specificity", scale=alt.Scale(domain=[0, 1])),
    y=alt.Y("tpr:Q", title="sensitivity", scale=alt.Scale(domain=[0, 1])), color="split:N", order="step:Q")
chosen = alt.Chart(dots).mark_point(size=140, filled=True, shape="diamond").encode(
    x="fpr:Q", y="tpr:Q", color="split:N", tooltip=["split", alt.Tooltip("threshold:Q", format=".4f"),
                                                    alt.Tooltip("tpr:Q", format=".3f"), alt.Tooltip("fpr:Q", format=".3f")])
left, right = st.columns(2)
left.altair_chart((curve + chosen).properties(title="ROC of the screen, chosen threshold marked", height=340),
                  width="stretch")
with right:
    st.dataframe(screens.figures_table(point), hide_index=True, width="stretch")
    st.caption(f"Validation: the {point['validation']['at_threshold']['images']} images the threshold was chosen "
               "on. Test: value [95% CI].")
    st.caption("Test split, 2x2 matrix (counts with 95% intervals):")
    st.dataframe(screens.matrix_table(point), hide_index=True, width="stretch")
try:
    stored_points = op.stored(run["path"])
except UserError as exc:
    stored_points = []
    st.error(f"Not shown: {exc}")
if stored_points:
    st.caption("Stored with `python -m core operating-point` (operating_points.json):")
    st.dataframe(screens.stored_table(stored_points), hide_index=True, width="stretch")
