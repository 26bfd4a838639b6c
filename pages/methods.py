"""Methods and reproducibility: settings, provenance, environment, the command behind each run."""

import pandas as pd
import streamlit as st

from core.artifacts import report
from core.train.config import reproduce_command, settings_rows
from pages.common import empty_state, load_json, pick_run, results_token, selected_runs

st.title("Methods and reproducibility")
dataset, runs = selected_runs()
if runs.empty:
    empty_state(dataset)
    st.stop()
run = pick_run(runs, "Run")
token = results_token()
cfg = load_json("config", run["path"], token)
prov = load_json("provenance", run["path"], token)
if run["kind"] == "ensemble":
    st.subheader("Reproduce this ensemble")
    st.code(report.ensemble_command(cfg), language="bash", wrap_lines=True)
    st.caption(f"Soft voting over stored runs' test probabilities: {cfg['weight_rule']}.")
    st.dataframe(pd.DataFrame(cfg["members"]), hide_index=True, width="stretch")
    st.stop()
st.subheader("Reproduce this run")
st.code(reproduce_command(cfg), language="bash", wrap_lines=True)
st.caption("Run from the repository root at commit "
           f"`{(prov.get('code') or {}).get('git_commit') or 'unknown'}` with the pinned requirements; "
           "the run id hashes every setting, so the command lands in the same folder.")
left, right = st.columns(2)
with left:
    st.subheader("Settings")
    st.caption("Every setting of the run; \"changed\" marks what differs from its preset's default (what the "
               "command above passes with --set).")
    st.dataframe(pd.DataFrame(settings_rows(cfg)), hide_index=True, width="stretch")
    st.subheader("Training details")
    st.json(prov.get("details", {}), expanded=False)
with right:
    st.subheader("Data")
    st.json(prov.get("dataset", {}), expanded=False)
    st.subheader("Machine and libraries")
    st.json({"machine": prov.get("machine"), "libraries": prov.get("libraries"), "code": prov.get("code"),
             "timings_s": prov.get("timings_s"), "invocations": prov.get("invocations")}, expanded=False)
st.subheader("All runs")
st.dataframe(runs[["label", "run_id", "git_commit", "wall_time_s"]], hide_index=True, width="stretch")
