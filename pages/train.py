"""Train: launch runs as a background job and watch them live."""

from collections import Counter
from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st

from core import jobs
from core.artifacts import report
from core.artifacts.layout import artifacts_dir
from core.artifacts.runs import RunFolder
from core.data import folders
from core.errors import UserError
from core.models import backbones
from core.orchestrate.experiment import grid_toml, parse_grid
from core.train import config as config_mod
from pages.common import app_setting, training_disabled

st.title("Train")
if training_disabled():
    st.info("Training is switched off on this shared app (a visitor must not start hour-long jobs). To train, "
            "run the app on your own machine: `pip install -r requirements.txt && streamlit run streamlit_app.py`, "
            "or use the CLI: `python -m core run --data DATA_DIR --backbone EfficientNetLite0 --preset quick`.")
    st.stop()


@st.cache_data(ttl=60, show_spinner=False)
def dataset_choices(allowed: list[Path] | None) -> list[str]:
    return folders.dataset_choices(allowed)


@st.cache_data(show_spinner=False)
def class_counts(folder: str, allowed: list[Path] | None) -> dict[str, int]:
    return dict(Counter(r.label for r in folders.scan_for_training(folder, allowed).records))


def images_used(counts: dict[str, int], preset: str) -> int:
    """Images a run of this preset will read (quick runs subsample each class)."""
    cfg = config_mod.resolve(".", "EfficientNetLite0", preset)
    if not cfg.max_train_per_class:
        return sum(counts.values())
    cap = cfg.max_train_per_class + 2 * (cfg.max_eval_per_class or 0)
    return sum(min(n, cap) for n in counts.values())


@st.fragment(run_every=2)
def live(job_id: str) -> None:
    status = jobs.job_status(job_id)
    if status is None:
        st.warning("The job's files are gone.")
        return
    st.markdown(f"**{status.spec['description']}**: {status.state}")
    for run_dir in status.spec.get("run_dirs", []):
        run_dir = Path(run_dir)
        problems: list[str] = []
        events = RunFolder(run_dir).read_events(problems)
        for problem in problems:
            st.warning(problem)
        last = next((e for e in reversed(events) if e["event"] == "epoch"), None)
        run_status = RunFolder(run_dir).status()
        label = f"{run_dir.parent.name} / {run_dir.name}"
        if run_status.state == "complete":
            st.success(f"{label}: complete")
        elif run_status.state == "failed":
            st.error(f"{label}: failed: {run_status.reason}")
        elif last:
            m = last["metrics"]
            st.write(f"{label}: {last['stage']} epoch {last['epoch']}/{last['epochs']}, val_acc "
                     f"{m['val_accuracy']:.3f}, val_loss {m['val_loss']:.4f}, stage ETA ≤ {last['eta_s']:.0f} s")
        elif events:
            st.write(f"{label}: {events[-1]['event']}…")
        history = report.history(run_dir)
        if not history.empty:
            long = history.melt(id_vars=["step", "stage"], value_vars=["accuracy", "val_accuracy"])
            st.altair_chart(alt.Chart(long).mark_line(point=True).encode(
                x=alt.X("step:Q", title="epoch"), y=alt.Y("value:Q", title="accuracy"), color="variable:N",
                tooltip=["stage", "step", "variable", "value"]).properties(height=220), width="stretch")
    st.code(status.log_tail or "(no output yet)", language="text")
    if status.state == "running":
        if st.button("Cancel", type="secondary"):
            with st.spinner("Stopping the job…"):
                jobs.cancel_job(job_id)
            st.rerun(scope="app")
    else:
        st.cache_data.clear()  # new results must show in the report pages
        st.rerun(scope="app")


running = jobs.current_job()
if running:
    live(running)
    st.stop()

recent = jobs.list_jobs()[:1]
if recent:
    last = recent[0]
    message = {"succeeded": st.success, "cancelled": st.warning}.get(last.state, st.error)
    message(f"Last job, {last.spec['description']}: {last.state}"
            + ("" if last.state in ("succeeded", "cancelled") else f" (exit code {last.returncode}); its log:")
            + (" The results are in the report pages." if last.state == "succeeded" else "")
            + (" The run folders are left resumable: start the same runs to continue." if last.state == "cancelled" else ""))
    if last.state not in ("succeeded",):
        st.code(last.log_tail or "(no output)", language="text")

# A shared app restricts datasets to its allowed roots: no free path, nothing outside them is read.
allowed = folders.allowed_roots(app_setting("allowed_data_roots"))
choices = dataset_choices(allowed)
if allowed is None:
    folder = st.selectbox("Dataset folder", choices + ["other…"], help="Folders under the data roots "
                          "(data/ in the repo, ../shared/data, and $STUDY_DATA_ROOTS)")
    if folder == "other…" or not choices:
        folder = st.text_input("Path of a class-per-folder image dataset")
elif choices:
    folder = st.selectbox("Dataset folder", choices, help="Folders under this app's allowed data roots")
else:
    st.info("No dataset folder under this app's allowed data roots: "
            + ", ".join(f"`{r}`" for r in allowed) + ". Put class-per-folder image datasets there.")
    st.stop()
specs = backbones.listed_specs()
names = [s.name for s in specs]
available = {s.name for s in specs if s.weights_available()}
chosen = st.multiselect("Backbones", names, default=[n for n in ["EfficientNetLite0"] if n in names],
                        format_func=lambda n: n if n in available else f"{n} (no ImageNet weights here)")
c1, c2, c3 = st.columns(3)
weights = c1.radio("Weights", ["imagenet", "none"], format_func={"imagenet": "ImageNet (transfer)",
                                                                   "none": "from scratch"}.get)
preset = c2.radio("Preset", ["quick", "full"])
seed = c3.number_input("Seed", min_value=0, value=0, step=1)
with st.expander("Main settings"):
    s1 = st.number_input("Stage 1 epochs (max)", 1, 200, 10 if preset == "quick" else 40)
    s2 = st.number_input("Stage 2 epochs (max, 0 = no fine-tuning)", 0, 100, 2 if preset == "quick" else 15)
    unfreeze = st.number_input("Layers unfrozen in stage 2", 1, 500, 20)
    views = st.number_input("Augmented views per training image", 0, 10, 1 if preset == "quick" else 2)
    grouping = st.radio("Keep near-copies together", ["duplicates", "none"], horizontal=True,
                        format_func={"duplicates": "yes: split by group of near-copies (leak-free)",
                                     "none": "no: split image by image (leaky when the set holds copies)"}.get,
                        help="A group is a set of near-duplicate images (flips, crops, adjacent slices); no group "
                             "is split across train, val and test. For real subject ids use the CLI's --groups.")
overrides = {"stage1.epochs": s1, "stage2.epochs": s2, "unfreeze_layers": unfreeze, "augment.views": views,
             "grouping": grouping}
deploy = st.checkbox("Then measure deployment variants (TFLite float/int8, pruning, clustering, QAT; adds minutes)",
                     value=True, help="Needed for the Try page's LiteRT predictions and the Deployment page")

if folder and chosen:
    try:  # the folder is checked (allowed roots, scan limit) before anything else reads it
        counts = class_counts(folder, allowed)
        n_images = images_used(counts, preset)
    except Exception as exc:  # noqa: BLE001 - shown to the user as a message
        st.error(str(exc))
        st.stop()
    missing = [n for n in chosen if weights == "imagenet" and n not in available]
    if missing:
        st.error(" ".join(backbones.get_spec(n).missing_weights_message() for n in missing))
        st.stop()
    estimates = [report.estimate_seconds(n, preset, weights, n_images) for n in chosen]
    if all(e is not None for e in estimates):
        st.caption(f"{sum(counts.values())} images in {len(counts)} classes; this preset uses {n_images}. Estimated "
                   f"time: about {max(1, round(sum(estimates) / 60))} min (from earlier runs stored here, scaled by "
                   "image count).")
    else:
        st.caption(f"{sum(counts.values())} images in {len(counts)} classes; this preset uses {n_images}. No "
                   "estimate yet for some choices: no earlier run of that backbone and preset is stored here.")
    if st.button("Start training", type="primary"):
        toml = grid_toml(artifacts_dir(), [folder], chosen, weights, int(seed), preset, overrides)
        try:
            run_dirs = [str(RunFolder.for_config(p.config, artifacts_dir()).path)
                        for p in parse_grid(toml, "the Train page")[0]]
            jobs.start_job(["experiment", "{job}/experiment.toml"] + (["--deploy"] if deploy else []),
                           f"{', '.join(chosen)} on {Path(folder).name} ({preset}, {weights})",
                           run_dirs=run_dirs, files={"experiment.toml": toml})
        except (jobs.JobRunningError, UserError) as exc:
            st.error(str(exc))
        else:
            st.rerun()

finished = [s for s in jobs.list_jobs()[:5] if s.state != "running"]
if finished:
    st.subheader("Recent jobs")
    st.dataframe(pd.DataFrame([{"job": s.job_id, "what": s.spec["description"], "state": s.state,
                                "exit code": s.returncode} for s in finished]), hide_index=True, width="stretch")
