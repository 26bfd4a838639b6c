"""Significance: McNemar's test on the same test images, planned comparisons first, every pair on request."""

import altair as alt
import pandas as pd
import streamlit as st

from core.artifacts import ranking, report
from pages.common import empty_state, load_json, results_token, selected_runs

st.title("Which differences are real?")
st.write("McNemar's test compares two classifiers on the same test images, using only the images where "
         "exactly one of them is right. The default view tests a planned family of comparisons, Holm-corrected "
         "within that family: every configuration against the recommended one, and transfer learning against "
         "each baseline of the same backbone.")
dataset, runs = selected_runs()
if runs.empty:
    empty_state(dataset)
    st.stop()
if len(runs) < 2:
    st.info(f"Only one complete run of {dataset} is selected: a comparison needs two. Train another backbone, "
            "method or seed of it (Train page); the comparison is made when the job ends.")
    st.stop()
result = load_json("mcnemar", dataset, results_token())
if not result:
    st.info(f"No comparison stored yet: it is made after each experiment or Train-page job, or run "
            f"`python -m core compare {dataset}`.")
    st.stop()
labels = {f"{r['backbone']}/{r['run_id']}": r["label"] for _, r in runs.iterrows()}
pairs = pd.DataFrame(result["pairs"])
pairs = pairs[pairs["a"].isin(labels) & pairs["b"].isin(labels)]
if pairs.empty:
    st.info("The comparison holds none of the runs selected in the sidebar.")
    st.stop()


def planned() -> None:
    """The planned family: tests, Holm within the family, and which run stands for each configuration."""
    setup = ranking.preset_configurations(runs)
    configs, note, recommended = setup
    if recommended is None:
        st.info("No configuration could be recommended (no validation score), so the family holds only transfer "
                "against the baselines.")
    else:
        chosen_by = report.metric_label(ranking.validation_score(report.DEFAULT_METRIC)).lower()
        st.caption(f"Recommended configuration (by mean {chosen_by}, no limits): **{recommended['label']}**.")
    family = ranking.planned_family(runs, result, setup)
    if family.empty:
        st.info("No planned comparison among the selected runs: it needs two configurations of the same preset.")
        return
    tested = int(family["p_value"].notna().sum())
    st.caption(f"{len(family)} planned comparison(s), {tested} tested; Holm correction over those {tested}. "
               f"Each configuration is represented by one run, its seed 0 (its lowest seed where it has no seed 0); "
               f"McNemar compares single runs.{' ' + note if note else ''}")
    other_seed = configs[configs["run_seed"] != 0]
    if not other_seed.empty:
        st.caption("Represented by a seed other than 0: " + "; ".join(
            f"{r['label']} (seed {r['run_seed']})" for _, r in other_seed.iterrows()) + ".")
    units = set(family["bootstrap_unit"].dropna())
    if units:
        st.caption("Next to McNemar (which treats test images as independent): the accuracy difference A − B with a "
                   "95% paired bootstrap interval and p-value, resampling "
                   f"{'groups of near-copies' if units == {'group'} else 'test images'} (`python -m core compare`).")
    family = family.assign(**{"A − B [95% CI]": [
        "" if d is None or d != d else f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]"
        for d, lo, hi in zip(family["difference"], family["difference_low"], family["difference_high"])]})
    family = family.drop(columns=["difference", "difference_low", "difference_high", "bootstrap_unit"])
    table = family.assign(reason=family["reason"].fillna(""), better=family["better"].fillna(""))
    table = table.rename(columns={"comparison": "Comparison", "a": "A", "b": "B", "n_common": "Common images",
                                  "n01": "A wrong, B right", "n10": "A right, B wrong", "p_value": "p",
                                  "p_holm": "p (Holm, family)", "significant": f"Significant at {result['alpha']:g}",
                                  "better": "Better", "reason": "Note", "p_bootstrap": "p (paired bootstrap)"})
    st.dataframe(table.drop(columns=["run_a", "run_b"]), hide_index=True, width="stretch")


def all_pairs() -> None:
    """Every pair of runs, Holm-corrected over all pairs (as stored by ``python -m core compare``)."""
    st.caption(f"Every pair of runs, single seeds apart: {len(pairs)} pair(s), Holm-corrected over all pairs of the "
               "stored comparison. Exploratory: a pair picked from this matrix after looking is not a planned test.")
    both = pairs.assign(A=pairs["a"].map(labels), B=pairs["b"].map(labels))
    cells = pd.concat([both[["A", "B", "p_holm", "significant"]],
                       both.rename(columns={"A": "B", "B": "A"})[["A", "B", "p_holm", "significant"]]])
    heat = alt.Chart(cells).mark_rect().encode(
        x=alt.X("A:N", title=None), y=alt.Y("B:N", title=None),
        color=alt.Color("p_holm:Q", scale=alt.Scale(scheme="redblue", domain=[0, 0.1], clamp=True), title="p (Holm)"),
        tooltip=["A", "B", "p_holm", "significant"])
    st.altair_chart(heat.properties(height=max(250, 40 * len(labels))), width="stretch")
    table = both[["A", "B", "n_common", "n01", "n10", "p_value", "p_holm", "significant", "better"]].copy()
    table["better"] = table["better"].map(lambda b: labels.get(b, b) if b else "")
    st.dataframe(table.rename(columns={"n01": "A wrong, B right", "n10": "A right, B wrong"}), hide_index=True,
                 width="stretch")


def ensembles() -> None:
    """Each stored ensemble against its best member, from the stored comparison."""
    entries = [e for e in result.get("ensembles") or [] if e["ensemble"] in labels]
    if not entries:
        return
    st.subheader("Ensembles against their best member")
    st.caption("Each ensemble against the member with the highest test accuracy (the strongest single model, so the "
               "comparison leans towards the member): McNemar's test, Holm-corrected over the ensembles, and the "
               "accuracy difference with a 95% paired bootstrap interval. An ensemble costs the sum of its members' "
               "sizes and latencies.")
    st.dataframe(report.ensemble_comparison(entries, labels), hide_index=True, width="stretch")


view = st.radio("Comparisons", ["Planned (default)", "All pairs of runs"], horizontal=True, key="significance_view")
if view.startswith("Planned"):
    planned()
else:
    all_pairs()
ensembles()
