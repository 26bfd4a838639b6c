"""Per-class results: confusion matrices side by side, per-class metrics, most-confused pairs, misclassified images."""

import altair as alt
import streamlit as st

from core.artifacts import charts, record_view
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
loaded = [(run, m) for _, run in chosen.iterrows() if (m := load_metrics(run["path"], token))]
normalised = st.toggle("Normalise rows (recall per true class)", value=True)
many = bool(loaded) and len(loaded[0][1]["classes"]) > charts.MANY_CLASSES
if many:
    first = loaded[0][1]
    c1, c2 = st.columns([1, 2])
    order_by = c1.selectbox("Order classes by", charts.CLASS_ORDERS, index=1,
                            help=f"The order of {loaded[0][0]['short']}; the other runs use the same.")
    shown = c2.multiselect("Classes shown (empty: all)", first["classes"],
                           help="Pick classes to see their rows and columns only.")
    names = [c for c in charts.class_order(first, order_by) if not shown or c in shown]
    st.caption(f"{len(first['classes'])} classes: the matrices are colour only, hover a cell for its values.")
columns = st.columns(max(1, len(loaded)))
for col, (run, m) in zip(columns, loaded):
    order = names if many else m["classes"]
    df = record_view.confusion_cells(m, normalised)
    df = df[df["true"].isin(order) & df["predicted"].isin(order)]
    base = alt.Chart(df).encode(x=alt.X("predicted:N", sort=order, axis=alt.Axis(labels=len(order) <= 40)),
                                y=alt.Y("true:N", sort=order, axis=alt.Axis(labels=len(order) <= 40)))
    heat = base.mark_rect().encode(color=alt.Color("value:Q", scale=alt.Scale(scheme="blues"), legend=None),
                                   tooltip=["true", "predicted", "count", alt.Tooltip("value:Q", format=".3f")])
    chart = heat
    if len(order) <= charts.MANY_CLASSES:
        chart = heat + base.transform_filter("isValid(datum.value)").mark_text().encode(
            text=alt.Text("value:Q", format=".2f" if normalised else "d"))
    with col:
        st.markdown(f"**{run['short']}**", help=run["label"])
        st.altair_chart(chart.properties(height=max(300, min(900, 9 * len(order)))), width="stretch")
        table = record_view.per_class_with_leak_free(m, load_json("leakage", run["path"], token))
        st.dataframe(table.round(3), hide_index=True, width="stretch")
        if "leak-free recall" in table:
            st.caption("Leak-free: recall on the test images whose group of near-copies has no member in train or "
                       "val; a class whose leak-free support is small or zero is mostly scored on near-copies.")

st.subheader("Most confused pairs and misclassified test images")
if not loaded:
    st.stop()
run, m = loaded[0]
classes = m["classes"]
pairs = charts.most_confused_pairs(m, top=50)
st.caption(f"{run['label']}: the test images of a true class most often predicted as another, most first. "
           "Pick a row to see its images below.")
picked = st.dataframe(pairs.round({"share of true class": 3}), hide_index=True, width="stretch", key="pairs",
                      on_select="rerun", selection_mode="single-row")
rows = picked.selection.rows if picked else []
pair = tuple(pairs.iloc[rows[0]][["true", "predicted"]]) if rows and rows[0] < len(pairs) else None
if pair and st.session_state.get("pair_shown") != pair:  # a new row picked: it sets the two boxes once
    st.session_state["pair_shown"] = pair
    st.session_state["gallery_true"], st.session_state["gallery_pred"] = pair
preds = load_predictions(run["path"], token)
wrong = preds[preds["true"] != preds["pred"]]


def most_confused_with() -> None:
    """A new true class picked: open on the class it is most often mistaken for, not on the empty diagonal."""
    confused = wrong[wrong["true"] == st.session_state["gallery_true"]]["pred"].value_counts()
    if not confused.empty:
        st.session_state["gallery_pred"] = confused.index[0]


if {st.session_state.get("gallery_true"), st.session_state.get("gallery_pred")} - set(classes):
    # First visit, or classes of another dataset: open on the most confused pair.
    first_pair = tuple(pairs.iloc[0][["true", "predicted"]]) if not pairs.empty else (classes[0], classes[0])
    st.session_state["gallery_true"], st.session_state["gallery_pred"] = first_pair
c1, c2 = st.columns(2)
true_class = c1.selectbox("True class", classes, key="gallery_true", on_change=most_confused_with)
pred_class = c2.selectbox("Predicted as", classes, key="gallery_pred")
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
