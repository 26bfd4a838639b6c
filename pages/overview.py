"""Overview: the question, the leaderboard with CIs, a constrained recommendation, the headline chart."""

import altair as alt
import streamlit as st

from core.artifacts import report
from pages.common import (
    dataset_notes,
    empty_state,
    load_failed,
    load_waiting,
    results_token,
    selected_runs,
    table_section,
)

st.title("Which ImageNet backbone, in which form, for your images?")
st.write(
    "ImageNet-pretrained backbones are fine-tuned on each dataset (a new head on the frozen backbone, then "
    "the top layers fine-tuned) and compared with the same architectures trained from scratch and with "
    "classical classifiers on frozen embeddings. Every number below comes from a stored run: held-out test "
    "split, 95% bootstrap confidence intervals, and the cost of deploying each model."
)

dataset, runs = selected_runs()
waiting = load_waiting(dataset, results_token()) if dataset else None
failed = load_failed(dataset, results_token()) if dataset else None


def show_waiting() -> None:
    table_section("Not trained here: ImageNet weights unavailable",
                  "These backbones are part of the study, but their ImageNet weights were not on the machine that "
                  "made these artifacts. Their size and latency come from the architecture with random weights "
                  "(Deployment page); the command in each row fills in the accuracy on a machine that has the "
                  "weights.", None if waiting is None else report.waiting_table(waiting))
    table_section("Failed runs", "These runs stopped with an error when last tried, so they have no results. Fix "
                  "the reason and start the same run again (same command or experiment file): it picks up where it "
                  "stopped.", None if failed is None else report.failed_table(failed))


if dataset is None or runs.empty:
    empty_state(dataset)
    show_waiting()
    st.stop()

st.subheader(f"Leaderboard: {dataset}")
st.caption(f"{report.test_split_caption(runs)}. Metrics: value [95% bootstrap CI].")
notes = dataset_notes(dataset)
if notes:
    st.warning(notes)
st.dataframe(report.leaderboard(runs), hide_index=True, width="stretch")
spread = report.seed_spread(runs)
if not spread.empty:
    st.caption("Seed-to-seed spread (training randomness) next to the bootstrap CI width (which test images were "
               "drawn): a difference between backbones smaller than both is not evidence.")
    st.dataframe(spread, hide_index=True, width="stretch")
show_waiting()

st.subheader("Recommendation under your constraints")
c1, c2, c3 = st.columns(3)
metric = c1.selectbox("Rank by", list(report.METRICS), index=1, format_func=report.METRIC_LABELS.get)
max_mb = c2.number_input("Max model size (MB, full-int8 TFLite)", min_value=0.0, value=0.0, step=0.5,
                         help="0 = no limit")
max_ms = c3.number_input("Max latency (ms, int8, 1 thread)", min_value=0.0, value=0.0, step=1.0, help="0 = no limit")


def metric_with_ci(row) -> str:
    return report.format_ci(row[metric], row[f"{metric}_low"], row[f"{metric}_high"]) or "undefined"


if max_mb or max_ms:
    best = report.recommend(runs, max_mb or None, max_ms or None, metric)
    if best is None:
        st.error(report.no_recommendation_reason(runs))
    else:
        st.success(f"**{best['label']}**: {report.METRIC_LABELS[metric]} "
                   f"{metric_with_ci(best)}, "
                   f"int8 {best['int8_mb']:.2f} MB, {best['int8_latency_ms']:.1f} ms")
else:
    best = runs.sort_values(metric, ascending=False).iloc[0]
    st.success(f"Without limits: **{best['label']}**, {report.METRIC_LABELS[metric]} "
               f"{metric_with_ci(best)}.")

st.subheader("Headline")
chosen = report.METRIC_LABELS[metric]
base = alt.Chart(runs).encode(y=alt.Y("label:N", sort=alt.EncodingSortField(field=metric, order="descending"),
                                      title=None, axis=alt.Axis(labelLimit=420, labelOverlap=False)))
bars = base.mark_point(filled=True, size=80).encode(
    x=alt.X(f"{metric}:Q", title=f"{chosen} (test, 95% CI)", scale=alt.Scale(zero=False)),
    color=alt.Color("kind:N", title="kind"), tooltip=["label", metric, f"{metric}_low", f"{metric}_high"])
errors = base.mark_rule().encode(x=f"{metric}_low:Q", x2=f"{metric}_high:Q")
st.altair_chart((errors + bars).properties(height=max(120, 28 * len(runs))), width="stretch")
