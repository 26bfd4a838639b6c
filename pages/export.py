"""Export: the leaderboard and tables as CSV, all metrics as JSON, a self-contained HTML report."""

import json

import streamlit as st

from core.artifacts import html_report, report
from core.train.config import reproduce_command
from pages.common import empty_state, selected_runs

st.title("Export")
dataset, runs = selected_runs()
if runs.empty:
    empty_state(dataset)
    st.stop()
st.download_button("Leaderboard (CSV)", report.leaderboard(runs).to_csv(index=False), f"{dataset}_leaderboard.csv",
                   "text/csv")
st.download_button("All runs, raw numbers (CSV)", runs.drop(columns=["path"]).to_csv(index=False),
                   f"{dataset}_runs.csv", "text/csv")
# Built when clicked, not on every rerun: the report reads every run's records and draws every chart.
st.download_button("All metrics (JSON)", lambda: json.dumps(report.all_metrics(dataset, runs=runs), indent=1),
                   f"{dataset}_metrics.json", "application/json")
st.download_button("Report (one HTML file)",
                   lambda: html_report.static_html(dataset, runs=runs, reproduce=reproduce_command),
                   f"{dataset}_report.html", "text/html")
st.caption("Every download holds the runs the sidebar filters leave. The HTML report is one file that opens "
           "offline, charts included: data and audit, the configurations and runs with their intervals, per-class "
           "results and the most-confused pairs, calibration, deployment, significance, and the command behind "
           "each run.")
