"""Data: class balance per split, the audit (duplicates, leakage, conflicting labels, corrupt files)."""

import shlex
from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st

from core.artifacts import charts, findings, report
from core.artifacts.layout import AUDIT_FILE, dataset_dir
from pages.common import (
    current_dataset,
    dataset_notes,
    empty_state,
    load_json,
    load_runs,
    load_split_counts,
    results_token,
)

st.title("Data and leakage audit")
dataset = current_dataset()
if not dataset:
    empty_state(what="datasets")
    st.stop()
notes = dataset_notes(dataset)
if notes:
    st.warning(notes)
token = results_token()
audit = load_json("audit", dataset, token)
counts = load_split_counts(dataset, token)
if counts.empty and audit:
    per_split = audit["counts"]["per_split"]
    counts = pd.DataFrame([{"split": s, "label": c, "images": n} for s, d in per_split.items() for c, n in d.items()])
if not counts.empty and "split_file" in counts:
    files = sorted(counts["split_file"].unique())
    shown = files[0] if len(files) == 1 else st.selectbox(
        "Split", files, help="This dataset was split more than once (another split seed, or its files changed).")
    counts = counts[counts["split_file"] == shown]
if not counts.empty:
    st.subheader("Class balance per split")
    balance = charts.class_balance(counts)
    if len(balance) > charts.MANY_CLASSES:
        chart = alt.Chart(counts).mark_bar().encode(
            x=alt.X("images:Q", bin=alt.Bin(maxbins=30), title="images of a class in the split"),
            y=alt.Y("count():Q", title="classes"), row=alt.Row("split:N", sort=list(charts.SPLITS), title=None),
            tooltip=[alt.Tooltip("images:Q", bin=alt.Bin(maxbins=30), title="images"),
                     alt.Tooltip("count():Q", title="classes")])
        st.altair_chart(chart.properties(height=90), width="stretch")
        st.caption(f"{len(balance)} classes: how many classes have how many images, per split. The table has each "
                   "class, largest first (click a column header to sort).")
    else:
        chart = alt.Chart(counts).mark_bar().encode(
            x=alt.X("images:Q"), y=alt.Y("split:N", sort=list(charts.SPLITS)), color="label:N",
            tooltip=["split", "label", "images"])
        st.altair_chart(chart.properties(height=160), width="stretch")
    st.dataframe(balance, width="stretch")

st.subheader("Audit")
if not audit:
    out = shlex.quote(str(dataset_dir(dataset) / AUDIT_FILE))  # the artifacts folder this app reads
    st.info(f"No audit stored for {dataset}: run `python -m core audit DATA_DIR --out {out}`.")
    st.stop()
verdict = audit["verdict"]
st.info("Which folder became which split (the split runs of this dataset make by default): "
        f"{findings.split_mapping_text(audit['split']['sources'])}.")
c = st.columns(5)
c[0].metric("Leakage pairs (across splits)", verdict["leakage_pairs"])
c[1].metric("Conflicting-label pairs", verdict["conflicting_label_pairs"])
c[2].metric("Duplicates within a split", verdict["within_split_pairs"])
c[3].metric("Corrupt files", verdict["corrupt_files"])
ratio = verdict.get("imbalance_ratio")
c[4].metric("Imbalance (largest/smallest)", "∞" if ratio is None else f"{ratio:.1f}×")
for message in verdict.get("messages", []):
    (st.error if verdict["leakage"] else st.info)(message)
st.caption(f"Perceptual hash: {audit['hash']['bits']}-bit pHash over all 8 flips/rotations, near-duplicate "
           f"threshold {audit['hash']['threshold']} bits; exact: {audit['hash']['exact']}. Split seed "
           f"{audit['split']['seed']} ({', '.join(f'{k}: {v}' for k, v in audit['split']['sources'].items())}).")

groups = audit.get("groups")
if groups:
    st.subheader("Groups: images that must stay on one side of a split")
    largest = groups["largest"] or {"size": 0, "classes": []}
    g = st.columns(3)
    g[0].metric("Groups", f"{groups['groups']:,} for {groups['images']:,} images")
    g[1].metric("Largest group", f"{largest['size']} ({', '.join(largest['classes'])})")
    g[2].metric("Images in groups of 2 or more", f"{groups['share_in_groups_of_2_or_more']:.1%}")
    st.caption(f"A group is a set of connected near-copies ({groups['detail']}). Runs split by group, so no group "
               "is on two sides of a split; a predefined test split is kept as its authors made it, and the test "
               "images whose group also has train or val members are scored apart (leak-free scores).")
    for split, found in (groups.get("leaking") or {}).items():
        if found["images"]:
            st.warning(f"{found['images']} of {found['of']} {split} images are in a group that also has images in an "
                       "earlier split (this audit's split).")
    for chained in groups.get("chaining", []):
        st.error(f"One group holds {chained['share_of_class']:.0%} of class '{chained['class']}' ({chained['size']} "
                 "images): one subject with many images, or a threshold so loose that distinct images chain together. "
                 "Its weakest links:")
        st.dataframe(pd.DataFrame(chained["weakest_links"]), hide_index=True, width="stretch")

runs = load_runs(dataset, token)
effect = report.leakage_effect(runs) if not runs.empty else pd.DataFrame()
if not effect.empty:
    st.subheader("What leakage does to the scores")
    st.caption("Each stored run's test accuracy on all test images, on the leak-free ones (no member of their group "
               "in train or val), on the leaking ones, and on the images that are themselves a near-copy of a "
               "training or validation image. From each run's leakage.json (`python -m core leakage DATASET`).")
    st.dataframe(effect, hide_index=True, width="stretch")

pairs = pd.DataFrame(audit["duplicates"]["pairs"])
if not pairs.empty:
    relation = st.selectbox("Pairs", ["cross_split", "cross_class", "within_split"],
                            format_func={"cross_split": "across splits (leakage)", "cross_class": "across classes",
                                         "within_split": "within a split"}.get)
    shown = pairs[pairs["relation"] == relation]
    st.dataframe(shown[["a", "split_a", "label_a", "b", "split_b", "label_b", "kind", "distance"]],
                 hide_index=True, width="stretch")
    root = Path(audit["dataset"]["root"])
    if not shown.empty and root.is_dir():
        st.caption("The first flagged pairs, side by side:")
        for _, p in shown.head(6).iterrows():
            a, b = st.columns(2)
            a.image(str(root / p["a"]), caption=f"{p['split_a']} · {p['label_a']} · {p['a']}", width=220)
            b.image(str(root / p["b"]), caption=f"{p['split_b']} · {p['label_b']} · distance {p['distance']}", width=220)
    elif not shown.empty:
        st.caption("Thumbnails need the dataset on this machine (datasets are not copied into the artifacts).")
if audit["corrupt"]:
    st.subheader("Unreadable files")
    st.dataframe(pd.DataFrame(audit["corrupt"]), hide_index=True, width="stretch")
