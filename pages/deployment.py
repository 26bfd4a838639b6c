"""Deployment: size, accuracy change and latency of every variant; Pareto fronts across runs."""

import altair as alt
import pandas as pd
import streamlit as st

from core.artifacts import report
from core.evaluate.pareto import pareto_optimal
from pages.common import (
    empty_state,
    load_architectures,
    load_json,
    pick_run,
    results_token,
    selected_runs,
    table_section,
)

st.title("Deployment cost")
dataset, runs = selected_runs()
token = results_token()


def show_architectures() -> None:
    table_section("Backbones measured without trained weights",
                  "Backbone + head with random weights, because their ImageNet weights were not available: the size "
                  "and speed of each form are real measurements, accuracy is not (`python -m core deploy "
                  "--architecture NAME`).", report.architecture_table(load_architectures(token)))


if runs.empty:
    empty_state(dataset)
    show_architectures()
    st.stop()
rows = []
for _, run in runs.iterrows():
    dep = load_json("deployment", run["path"], token)
    for v in (dep or {}).get("variants", []):
        lat = ((v.get("latency") or {}).get("threads_1") or {}).get("median_ms")
        rows.append({"run": run["label"], "variant": v["name"], "status": v.get("status"), "reason": v.get("reason"),
                     "MB": (v.get("bytes") or 0) / 1e6 or None, "gzip MB": (v.get("gzip_bytes") or 0) / 1e6 or None,
                     "accuracy": (v.get("metrics") or {}).get("accuracy"),
                     "Δ accuracy": (v.get("delta_vs_parent") or {}).get("accuracy"),
                     "latency ms (1 thread)": lat,
                     "latency ms (all cores)": ((v.get("latency") or {}).get("threads_all") or {}).get("median_ms"),
                     "fraction of peak": v.get("fraction_of_peak")})
if not rows:
    st.info("No run has deployment measurements yet: `python -m core deploy RUN_DIR`.")
    show_architectures()
    st.stop()
variants = pd.DataFrame(rows)
run = pick_run(runs[runs["label"].isin(variants["run"])], "Run")
st.dataframe(variants[variants["run"] == run["label"]].drop(columns=["run"]), hide_index=True, width="stretch")
ok = variants[(variants["status"] == "ok") & variants["accuracy"].notna()]
st.subheader("Accuracy against size and latency, all runs and variants")
st.caption("Up and to the left is better; points on the front are not beaten on both axes by any other.")
for x, title in (("gzip MB", "gzip size (MB, log)"), ("latency ms (1 thread)", "median latency, 1 thread (ms, log)")):
    data = ok.dropna(subset=[x]).copy()
    if data.empty:
        continue
    data["pareto"] = pareto_optimal(data[x], data["accuracy"])
    points = alt.Chart(data).mark_point(filled=True).encode(
        x=alt.X(f"{x}:Q", scale=alt.Scale(type="log"), title=title), y=alt.Y("accuracy:Q", scale=alt.Scale(zero=False)),
        color="variant:N", shape="run:N", tooltip=["run", "variant", x, "accuracy"])
    optimal = data[data["pareto"]].sort_values(x)
    front = alt.Chart(optimal).mark_line(color="black", strokeDash=[3, 3]).encode(
        x=f"{x}:Q", y="accuracy:Q", order=f"{x}:Q")
    st.altair_chart((points + front).properties(height=360), width="stretch")
unsupported = variants[variants["status"] != "ok"]
if not unsupported.empty:
    st.subheader("Variants that could not be made")
    st.dataframe(unsupported[["run", "variant", "status", "reason"]], hide_index=True, width="stretch")
show_architectures()
