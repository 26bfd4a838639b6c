"""Shared by the report pages: cached loads of stored results, the sidebar, empty states.

Only reads files through :mod:`core.artifacts.report` and :mod:`core.artifacts.record_view`; never imports
TensorFlow.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st

from core.artifacts import record_view, report
from core.artifacts.layout import DATASET_NOTES_FILE, artifacts_dir, find_dataset, result_files
from core.artifacts.records import RecordError


def _route_through_main_script() -> None:
    """Make sure pages are reached through ``st.navigation`` in streamlit_app.py.

    On a freshly started server Streamlit still assumes its legacy pages-folder mode
    (a ``pages/`` folder exists) until the main script has called ``st.navigation``
    once. If the very first visitor opens a page's URL directly (a shared link to
    /try, say), Streamlit would run that file on its own, with an auto-generated
    menu and no sidebar. Leave that mode and rerun, so the main script routes.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


_route_through_main_script()


def results_token() -> str:
    """Changes whenever a run completes or a result file is rewritten: the cache key of every load."""
    root = artifacts_dir()
    if not root.is_dir():
        return "none"
    stamps = [p.stat().st_mtime_ns for p in result_files(root)]
    return f"{root}:{len(stamps)}:{max(stamps, default=0)}"


def _cached_or_message(default):
    """Cache a loader of stored results; a file it cannot read becomes one error line on the page.

    ``default`` (a value, or a type called for a fresh one) stands in for what could not be
    read, so the rest of the page still draws.
    """
    def wrap(fn):
        cached = st.cache_data(show_spinner=False)(fn)

        @functools.wraps(fn)
        def load(*args):
            try:
                return cached(*args)
            except RecordError as exc:
                st.error(f"Not shown: {exc}")
                return default() if callable(default) else default
        return load
    return wrap


@st.cache_data(show_spinner=False)
def load_datasets(token: str) -> list[str]:
    return report.datasets()


@st.cache_data(show_spinner=False)
def load_runs(dataset: str, token: str) -> pd.DataFrame:
    return report.runs_table(dataset)


@_cached_or_message(pd.DataFrame)
def load_waiting(dataset: str, token: str) -> pd.DataFrame:
    return report.waiting_runs(dataset)


@_cached_or_message(pd.DataFrame)
def load_failed(dataset: str, token: str) -> pd.DataFrame:
    return report.failed_runs(dataset)


@_cached_or_message(pd.DataFrame)
def load_architectures(token: str) -> pd.DataFrame:
    return report.architectures()


@_cached_or_message(None)
def load_metrics(path: str, token: str) -> dict:
    return record_view.metrics(path)


@_cached_or_message(pd.DataFrame)
def load_history(path: str, token: str) -> pd.DataFrame:
    return record_view.history(path)


@_cached_or_message(pd.DataFrame)
def load_predictions(path: str, token: str) -> pd.DataFrame:
    return record_view.predictions(path)


@_cached_or_message(None)
def load_json(kind: str, key: str, token: str):
    loaders = {"audit": record_view.audit, "mcnemar": record_view.mcnemar, "config": record_view.config,
               "provenance": record_view.provenance, "deployment": record_view.deployment,
               "leakage": record_view.leakage}
    return loaders[kind](key)


@_cached_or_message(pd.DataFrame)
def load_batchnorm_diagnoses(dataset: str, token: str) -> pd.DataFrame:
    return record_view.batchnorm_diagnoses(dataset)


@_cached_or_message(pd.DataFrame)
def load_split_counts(dataset: str, token: str) -> pd.DataFrame:
    return record_view.split_counts(dataset)


@_cached_or_message(None)
def load_lesson(token: str):
    from core.artifacts.lesson import load_lesson as read

    return read()


def app_setting(key: str, default=None):
    """A setting of this deployment from the app's secrets (``.streamlit/secrets.toml``), or ``default``."""
    try:
        return st.secrets.get(key, default)
    except Exception:  # noqa: BLE001 - no secrets file at all is the normal local case
        return default


def training_disabled() -> bool:
    """True on a shared deployment: STUDY_DISABLE_TRAINING=1 or ``disable_training = true`` in st.secrets."""
    if os.environ.get("STUDY_DISABLE_TRAINING", "").strip().lower() in {"1", "true", "yes"}:
        return True
    return bool(app_setting("disable_training", False))


def compact_header() -> None:
    """At phone width, a smaller title and tighter top padding, so the first screen shows results."""
    st.markdown("<style>@media (max-width: 640px) { h1 { font-size: 1.45rem !important; padding-top: 0 !important; } "
                ".block-container { padding-top: 2.5rem !important; padding-left: 0.8rem !important; "
                "padding-right: 0.8rem !important; } }</style>", unsafe_allow_html=True)


def table_section(title: str, caption: str, table: pd.DataFrame | None) -> None:
    """A subheader, a caption and a table; nothing at all when there is no table."""
    if table is None or table.empty:
        return
    st.subheader(title)
    st.caption(caption)
    st.dataframe(table, hide_index=True, width="stretch")


def dataset_notes(dataset: str) -> str | None:
    """Free-text caveats for a dataset (``artifacts/<dataset>/dataset_notes.md``), if any."""
    path = artifacts_dir() / dataset / DATASET_NOTES_FILE
    return path.read_text(encoding="utf-8") if path.is_file() else None


def empty_state(dataset: str | None = None, what: str = "results") -> None:
    """Why there is nothing to show: a missing folder, a dataset without runs, or filters hiding them all."""
    root = artifacts_dir()
    how = ("Produce some with the CLI, e.g.\n\n"
           "```\npython -m core backbones                       # which backbones have ImageNet weights here\n"
           "python -m core audit DATA_DIR                   # duplicates and leakage across splits\n"
           "python -m core run --data DATA_DIR --backbone EfficientNetLite0 --preset quick\n```\n\n"
           "then reload this page.")
    if not root.is_dir():
        st.info(f"No {what} yet: the results folder `{root}` does not exist (check `STUDY_ARTIFACTS`). {how}")
    elif dataset and not load_runs(dataset, results_token()).empty:
        st.info(f"The sidebar filters hide every run of **{dataset}**: clear them to see its results.")
    elif dataset:
        st.info(f"No complete run of **{dataset}** yet in `{root}`. {how}")
    else:
        st.info(f"No {what} yet: `{root}` holds no complete run. {how}")


def current_dataset(token: str | None = None) -> str | None:
    """The dataset chosen in the sidebar (the first one before any choice), or None."""
    token = token or results_token()
    names = load_datasets(token)
    chosen = st.session_state.get("dataset")
    if chosen in names:
        return chosen
    # Open on a dataset with results, not one that only has runs waiting for weights.
    with_runs = [n for n in names if not load_runs(n, token).empty]
    return (with_runs or names or [None])[0]


def selected_runs() -> tuple[str | None, pd.DataFrame]:
    """The dataset chosen in the sidebar and its runs after the sidebar filters."""
    dataset = current_dataset()
    if not dataset:
        return None, pd.DataFrame()
    df = load_runs(dataset, results_token())
    problems = report.unreadable(df)
    if problems:
        st.warning(f"{len(problems)} run(s) of {dataset} could not be read and are left out: " + "; ".join(problems))
    if df.empty:
        return dataset, df
    for column, key in (("backbone", "f_backbone"), ("weights", "f_weights"), ("method", "f_method")):
        chosen = st.session_state.get(key)
        if chosen:
            df = df[df[column].isin(chosen)]
    return dataset, df.reset_index(drop=True)


def pick_runs(df: pd.DataFrame, label: str, default: int = 2, key: str | None = None) -> pd.DataFrame:
    """A multiselect of runs by label; returns the chosen rows."""
    labels = df["label"].tolist()
    chosen = st.multiselect(label, labels, default=labels[:default], key=key)
    return df[df["label"].isin(chosen)]


def pick_run(df: pd.DataFrame, label: str, key: str | None = None) -> pd.Series | None:
    labels = df["label"].tolist()
    if not labels:
        return None
    choice = st.selectbox(label, labels, key=key)
    return df[df["label"] == choice].iloc[0]


def dataset_root(run_path: str) -> Path | None:
    """The run's dataset folder if it exists on this machine (images are never in artifacts)."""
    cfg = load_json("config", run_path, results_token())
    return find_dataset(cfg["dataset"], Path(run_path)) if cfg else None


def learning_curve_chart(curves: pd.DataFrame, starts: pd.DataFrame, metric: str, height: int = 420) -> alt.Chart:
    """Training (solid) and validation (dashed) curves per run, whole epochs, a rule where a later stage begins."""
    base = alt.Chart(curves).encode(
        x=alt.X("epoch:Q", title="epoch (all stages in order)", axis=alt.Axis(tickMinStep=1, format="d")),
        y=alt.Y("value:Q", title=metric),
        color=alt.Color("run:N", legend=alt.Legend(orient="bottom", columns=3, labelLimit=0)),
        tooltip=[alt.Tooltip("name:N", title="run"), "stage", "stage epoch", "epoch", "split",
                 alt.Tooltip("value:Q", format=".4f")])
    # Points in their own layer: a line mark with points draws an empty legend for the dash pattern.
    lines = base.mark_line().encode(strokeDash=alt.StrokeDash(
        "split:N", title=None, sort=["training", "validation"],
        legend=alt.Legend(orient="bottom", symbolType="stroke", symbolStrokeColor="gray")))
    points = base.mark_circle(size=25, opacity=1).encode(detail="split:N")
    rules = alt.Chart(starts).mark_rule(strokeDash=[4, 4], color="gray").encode(
        x="epoch:Q", tooltip=[alt.Tooltip("name:N", title="run"), alt.Tooltip("stage:N", title="begins")])
    labels = alt.Chart(starts.drop_duplicates("epoch")).mark_text(align="left", dx=4, dy=-6, color="gray").encode(
        x="epoch:Q", y=alt.value(0), text="stage:N")
    return (lines + points + rules + labels).properties(height=height)
