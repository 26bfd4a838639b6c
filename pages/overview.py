"""Overview: the question, the configurations ranked with their intervals, the recommendation, the headline chart."""

import altair as alt
import streamlit as st

from core.artifacts import findings, naming, ranking, report
from pages.common import (
    compact_header,
    dataset_notes,
    empty_state,
    load_failed,
    load_json,
    load_waiting,
    results_token,
    selected_runs,
    table_section,
)

compact_header()
st.title("Which ImageNet backbone, in which form, for your images?")
st.write(
    "ImageNet-pretrained backbones are fine-tuned on each dataset (a new head on the frozen backbone, then "
    "the top layers fine-tuned) and compared with the same architectures trained from scratch and with "
    "classical classifiers on frozen embeddings. Every number below comes from a stored run: held-out test "
    "split, 95% intervals, and the cost of deploying each model. Rankings compare configurations (a run's "
    "settings without its seed: the mean over its seeds), so one lucky seed cannot win them."
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

configs = ranking.configurations(runs)
metrics = ranking.interval_metrics(runs)
preset, preset_note = ranking.ranking_preset(configs)

st.subheader(f"Leaderboard: {dataset}")
metric = st.selectbox("Rank by", metrics,
                      index=metrics.index(report.DEFAULT_METRIC) if report.DEFAULT_METRIC in metrics else 0,
                      format_func=naming.metric_label)
chosen = naming.metric_label(metric)
st.caption(f"{report.test_split_caption(runs)}.")
level, lines = findings.audit_findings(load_json("audit", dataset, results_token()))
{"clean": st.success, "warning": st.warning}.get(level, st.info)("  \n".join(lines))
for sources in findings.split_sources(runs):
    st.caption(f"Splits: {findings.split_mapping_text(sources)}.")
if report.leak_free_differs(runs):
    st.caption(report.leak_free_caption(runs))
notes = dataset_notes(dataset)
if notes:
    st.warning(notes)
top = ranking.ranked(configs, metric)
if st.toggle("Show single runs", key="single_runs",
             help="Every run on its own, seeds apart. Rankings and the recommendation use configurations."):
    st.caption("Single runs: value [95% bootstrap CI]. A difference between seeds of one configuration is "
               "training randomness, not a better model.")
    st.dataframe(report.leaderboard(runs), hide_index=True, width="stretch")
else:
    st.caption(f"Configurations (runs that differ only by seed), ranked by mean {chosen.lower()}: "
               f"{ranking.interval_caption(top)}.")
    table = report.configurations_table(top, metric)
    shown, optional = findings.leaderboard_columns(list(table.columns), chosen)
    extra = st.multiselect("More columns", optional, key="leaderboard_columns", placeholder="add columns")
    order = [c for c in table.columns if c in shown or c in extra]
    st.dataframe(table, hide_index=True, width="stretch", column_order=order)
    others = configs.drop(index=ranking.ranking_pool(configs).index)  # other presets and other splits
    if not others.empty:
        st.caption(f"{preset_note} Their configurations, for reference:")
        st.dataframe(report.configurations_table(others, metric), hide_index=True, width="stretch", column_order=order)
    elif preset_note:
        st.caption(preset_note)
spread = report.seed_spread(runs)
if not spread.empty:
    st.caption(f"{report.SEED_SPREAD_NOTE}: a difference between backbones smaller than both is not evidence.")
    st.dataframe(spread, hide_index=True, width="stretch")
show_waiting()

st.subheader("Recommendation under your constraints")
st.caption(f"The configuration with the best mean validation {chosen.lower()} (ties: the smaller full-int8 model) "
           "among those with a deployable variant (TFLite float32, float16, int8, pruned, clustered, QAT) within the "
           f"limits, {preset}-preset ones only; the test split is not used to choose, only to report its "
           f"{chosen.lower()}.")
c1, c2 = st.columns(2)
max_mb = c1.number_input("Max model size (MB)", min_value=0.01, value=None, step=0.5, placeholder="no limit",
                         help="The size of the file you ship; leave empty for no limit")
max_ms = c2.number_input("Max latency (ms, 1 thread)", min_value=0.01, value=None, step=1.0, placeholder="no limit",
                         help="Median single-image latency on this machine; leave empty for no limit")
comparison = (load_json("mcnemar", dataset, results_token()) or {}).get("configurations")
rec = ranking.recommend(configs, max_mb, max_ms, metric, comparison)
if rec.chosen is None:
    (st.error if max_mb or max_ms else st.info)(rec.reason)
else:
    st.success(report.recommendation_text(rec, max_mb, max_ms))
    for note in rec.notes:  # what the choice rests on: a tuned validation score, a lead of a few images
        st.warning(note)
    others_close = report.not_distinguishable_text(rec)
    if others_close:
        st.info(others_close)
    disagreement = report.better_on_test_text(rec)
    if disagreement:
        st.warning(disagreement)
for line in report.transfer_gain_text(ranking.transfer_gains(configs, metric, comparison)):
    st.info(line)
leak = report.validation_leak_note(runs)
if leak:
    st.warning(leak)

st.subheader("Headline")
st.caption(f"Configurations of the {preset} preset: mean {chosen.lower()} over seeds with its 95% interval "
           "(t-interval over seeds; the bootstrap CI of the run where there is one seed).")
points = top.assign(seeds_text=top["n_seeds"].map(lambda n: "one seed" if n == 1 else f"{n} seeds"))[
    ["label", "kind", "seeds_text", metric, f"{metric}_low", f"{metric}_high"]]
# Labels sit above their interval (not on a y axis), so the chart keeps the page's full width on a phone.
base = alt.Chart(points).encode(y=alt.Y("label:N", sort=alt.EncodingSortField(field=metric, order="descending"),
                                        title=None, axis=None))
dots = base.mark_point(filled=True, size=80).encode(
    x=alt.X(f"{metric}:Q", title=f"{chosen} (test, mean over seeds, 95% interval)", scale=alt.Scale(zero=False)),
    color=alt.Color("kind:N", title="kind", legend=alt.Legend(orient="bottom")),
    shape=alt.Shape("seeds_text:N", title="seeds", legend=alt.Legend(orient="bottom")),
    tooltip=["label", "seeds_text", metric, f"{metric}_low", f"{metric}_high"])
errors = base.mark_rule().encode(x=f"{metric}_low:Q", x2=f"{metric}_high:Q")
names = base.mark_text(align="left", baseline="bottom", dy=-7, fontSize=11).encode(
    x=alt.value(0), text="label:N")
st.altair_chart((errors + dots + names).properties(height=max(140, 44 * len(points))), width="stretch")
