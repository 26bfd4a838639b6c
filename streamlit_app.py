"""Entry point of the report app: routing and the shared sidebar; each page draws itself."""

import streamlit as st

from pages.common import current_dataset, load_datasets, load_runs, results_token

st.set_page_config(page_title="Transfer-learning study", layout="wide")

pages = {
    "Report": [
        st.Page("pages/overview.py", title="Overview", default=True),
        st.Page("pages/data.py", title="Data and audit"),
        st.Page("pages/training.py", title="Training curves"),
        st.Page("pages/per_class.py", title="Per-class results"),
        st.Page("pages/roc_pr.py", title="ROC and PR"),
        st.Page("pages/calibration.py", title="Calibration"),
        st.Page("pages/deployment.py", title="Deployment"),
        st.Page("pages/significance.py", title="Significance"),
        st.Page("pages/baselines.py", title="Classical baselines"),
        st.Page("pages/model_selection.py", title="Model selection"),
        st.Page("pages/leakage_lesson.py", title="The leakage lesson"),
        st.Page("pages/methods.py", title="Methods and reproducibility"),
        st.Page("pages/export.py", title="Export"),
    ],
    "Do it yourself": [
        st.Page("pages/train.py", title="Train"),
        st.Page("pages/try.py", title="Try the models"),
    ],
}
navigation = st.navigation(pages, expanded=True)  # every page listed: Streamlit folds a menu of over 10 items

token = results_token()
names = load_datasets(token)
with st.sidebar:
    if names:
        switch = st.session_state.pop("switch_dataset", None)  # a Train-page job that just ended: show its dataset
        if switch in names:
            st.session_state["dataset"] = switch
        # Open on a dataset that has results (current_dataset), not simply the first name.
        st.selectbox("Dataset", names, key="dataset", **({} if st.session_state.get("dataset") in names else
                                                          {"index": names.index(current_dataset(token))}))
        runs = load_runs(st.session_state["dataset"], token)
        if not runs.empty:
            st.multiselect("Backbone", sorted(runs["backbone"].unique()), key="f_backbone", placeholder="all")
            st.multiselect("Weights", sorted(runs["weights"].unique()), key="f_weights", placeholder="all")
            st.multiselect("Method", sorted(runs["method"].unique()), key="f_method", placeholder="all")
    else:
        st.caption("No results yet.")
navigation.run()
