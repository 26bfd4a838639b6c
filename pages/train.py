"""Train: launch runs as a background job and watch them live."""

from collections import Counter
from pathlib import Path

import pandas as pd
import streamlit as st

from core import jobs
from core.artifacts import charts, record_view, timing
from core.artifacts.layout import artifacts_dir
from core.artifacts.runs import RunFolder
from core.data import dataset as data_mod
from core.data import folders
from core.errors import UserError
from core.models import backbones
from core.orchestrate.experiment import grid_toml, parse_grid
from core.train import config as config_mod
from pages.common import app_setting, learning_curve_chart, training_disabled

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


def time_estimate(chosen: list[str], preset: str, weights: str, n_images: int, deploy: bool) -> str:
    """The job's estimated time, training and (when asked) deployment, from earlier runs stored here."""
    train = [timing.estimate_seconds(n, preset, weights, n_images) for n in chosen]
    measure = [timing.estimate_deploy_seconds(n) for n in chosen] if deploy else []
    if any(e is None for e in train + measure):
        return ("No estimate yet for some choices: no earlier run (or deployment) of that backbone and preset is "
                "stored here. The audit of the dataset comes first (seconds).")
    parts = f"training {max(1, round(sum(train) / 60))} min" + (
        f" + deployment {max(1, round(sum(measure) / 60))} min" if deploy else "")
    return (f"Estimated time: about {max(1, round((sum(train) + sum(measure)) / 60))} min ({parts}; from earlier runs "
            "stored here, training scaled by image count), after the dataset's audit (seconds).")


def images_used(counts: dict[str, int], preset: str) -> int:
    """Images a run of this preset will read (quick runs subsample each class)."""
    cfg = config_mod.resolve(".", "EfficientNetLite0", preset)
    if not cfg.max_train_per_class:
        return sum(counts.values())
    cap = cfg.max_train_per_class + 2 * (cfg.max_eval_per_class or 0)
    return sum(min(n, cap) for n in counts.values())


def run_line(run_dir: Path, deploying: bool) -> None:
    """One run of the job: its stage and epoch, or its test accuracy once trained (no banner: the job goes on)."""
    problems: list[str] = []
    events = RunFolder(run_dir).read_events(problems)
    for problem in problems:
        st.warning(problem)
    last = next((e for e in reversed(events) if e["event"] == "epoch"), None)
    run_status = RunFolder(run_dir).status()
    label = f"{run_dir.parent.name} / {run_dir.name}"
    if run_status.state == "complete":
        accuracy = dict(jobs.complete_runs_of([run_dir])).get(run_dir)
        measured, total = jobs.deployment_progress(run_dir)
        st.write(f"{label}: trained" + ("" if accuracy is None else f", test accuracy {accuracy:.3f}")
                 + (f"; measuring deployment variants ({measured} of {total})…" if deploying and measured < total
                    else ""))
    elif run_status.state == "failed":
        st.error(f"{label}: failed: {run_status.reason}")
    elif last:
        m = last["metrics"]
        st.write(f"{label}: {last['stage']} epoch {last['epoch']}/{last['epochs']}, val_acc "
                 f"{m['val_accuracy']:.3f}, val_loss {m['val_loss']:.4f}, stage ETA ≤ {last['eta_s']:.0f} s")
    elif events:
        st.write(f"{label}: {events[-1]['event']}…")
    curves = charts.learning_curves([(run_dir.parent.name, label, record_view.history(run_dir))], "accuracy")
    if not curves.empty:
        st.altair_chart(learning_curve_chart(curves, charts.stage_starts(curves), "accuracy", height=220),
                        width="stretch")


@st.fragment(run_every=2)
def live(job_id: str) -> None:
    status = jobs.job_status(job_id)
    if status is None:
        st.warning("The job's files are gone.")
        return
    st.markdown(f"**{status.spec['description']}**: {status.state}")
    fraction, doing = jobs.job_progress(status)
    st.progress(min(1.0, max(0.0, fraction)), text=f"{fraction:.0%} · {doing or 'starting'}")
    for run_dir in status.spec.get("run_dirs", []):
        run_line(Path(run_dir), jobs.job_deploys(status) and status.state == "running")
    st.code(status.log_tail or "(no output yet)", language="text")
    if status.state == "running":
        if st.button("Cancel", type="secondary"):
            with st.spinner("Stopping the job…"):
                jobs.cancel_job(job_id)
            st.rerun(scope="app")
    else:
        st.cache_data.clear()  # new results must show in the report pages
        st.rerun(scope="app")


def last_job_summary(last: jobs.JobStatus) -> None:
    """How the last job ended: what finished with its test accuracy and a link to its Overview, or why not."""
    message = {"succeeded": st.success, "cancelled": st.warning}.get(last.state, st.error)
    done = jobs.complete_runs_of(last.spec.get("run_dirs", []))
    lines = [f"{run.parent.name} on {run.parent.parent.name}: test accuracy {accuracy:.3f}" for run, accuracy in done]
    message(f"Last job, {last.spec['description']}: {last.state}"
            + ("" if last.state in ("succeeded", "cancelled") else f" (exit code {last.returncode}); its log below")
            + (". The run folders are left resumable: start the same runs to continue." if last.state == "cancelled"
               else "")
            + "".join(f"  \n- {line}" for line in lines))
    if done and st.session_state.get("summarised_job") != last.job_id:
        st.session_state["summarised_job"] = last.job_id  # once per job: the user may pick another dataset after
        st.session_state["switch_dataset"] = done[0][0].parent.parent.name  # the sidebar shows what was trained
        st.rerun()
    if done:
        st.page_link("pages/overview.py", label=f"Open the Overview of {done[0][0].parent.parent.name} →")
    if last.state != "succeeded":
        st.code(last.log_tail or "(no output)", language="text")


running = jobs.current_job()
if running:
    live(running)
    st.stop()

recent = jobs.list_jobs()[:1]
if recent:
    last_job_summary(recent[0])
saved = st.session_state.get("train_settings", {})  # the last job's choices, kept for the next one


def kept(name: str, default):
    """The value chosen for the last job, or ``default``."""
    return saved.get(name, default)


# A shared app restricts datasets to its allowed roots: no free path, nothing outside them is read.
allowed = folders.allowed_roots(app_setting("allowed_data_roots"))
choices = dataset_choices(allowed)


def index_of(options: list, value, default: int = 0) -> int:
    return options.index(value) if value in options else default


if allowed is None:
    options = choices + ["other…"]
    folder = st.selectbox("Dataset folder", options, index=index_of(options, kept("folder", None)),
                          help="Folders under the data roots (data/ in the repo, ../shared/data, and $STUDY_DATA_ROOTS)")
    if folder == "other…" or not choices:
        folder = st.text_input("Path of a class-per-folder image dataset",
                               value="" if kept("folder", "") in choices else kept("folder", ""))
elif choices:
    folder = st.selectbox("Dataset folder", choices, index=index_of(choices, kept("folder", None)),
                          help="Folders under this app's allowed data roots")
else:
    st.info("No dataset folder under this app's allowed data roots: "
            + ", ".join(f"`{r}`" for r in allowed) + ". Put class-per-folder image datasets there.")
    st.stop()
specs = backbones.listed_specs()
names = [s.name for s in specs]
available = {s.name for s in specs if s.weights_available()}
chosen = st.multiselect("Backbones", names, default=[n for n in kept("backbones", ["EfficientNetLite0"]) if n in names],
                        format_func=lambda n: n if n in available else f"{n} (no ImageNet weights here)")
c1, c2, c3 = st.columns(3)
weights = c1.radio("Weights", ["imagenet", "none"], index=index_of(["imagenet", "none"], kept("weights", None)),
                   format_func={"imagenet": "ImageNet (transfer)", "none": "from scratch"}.get)
preset = c2.radio("Preset", ["quick", "full"], index=index_of(["quick", "full"], kept("preset", None)))
seed = c3.number_input("Seed", min_value=0, value=int(kept("seed", 0)), step=1)
same = kept("preset", None) == preset  # the kept epochs and views belong to the preset they were chosen with
with st.expander("Main settings"):
    s1 = st.number_input("Stage 1 epochs (max)", 1, 200, kept("stage1.epochs", 10) if same else
                         (10 if preset == "quick" else 40))
    s2 = st.number_input("Stage 2 epochs (max, 0 = no fine-tuning)", 0, 100, kept("stage2.epochs", 2) if same else
                         (2 if preset == "quick" else 15))
    unfreeze = st.number_input("Layers unfrozen in stage 2", 1, 500, kept("unfreeze_layers", 20))
    views = st.number_input("Augmented views per training image", 0, 10, kept("augment.views", 1) if same else
                            (1 if preset == "quick" else 2))
    grouping = st.radio("Keep near-copies together", ["duplicates", "none"], horizontal=True,
                        index=index_of(["duplicates", "none"], kept("grouping", None)),
                        format_func={"duplicates": "yes: split by group of near-copies (leak-free)",
                                     "none": "no: split image by image (leaky when the set holds copies)"}.get,
                        help="A group is a set of near-duplicate images (flips, crops, adjacent slices); no group "
                             "is split across train, val and test. For real subject ids use the CLI's --groups.")
overrides = {"stage1.epochs": s1, "stage2.epochs": s2, "unfreeze_layers": unfreeze, "augment.views": views,
             "grouping": grouping}
split_folders = data_mod.split_folders(folder) if folder else {}
if data_mod.default_val_folder(split_folders) == "test":  # train/ and val/ only: which one is held out?
    val_name = split_folders["val"]
    overrides["val_folder"] = st.radio(
        f"The dataset's {val_name}/ folder is", ["test", "validation"], horizontal=True,
        index=index_of(["test", "validation"], kept("val_folder", None)),
        format_func={"test": f"the test split (scores come from {val_name}/; validation is carved from train/)",
                     "validation": "the validation split (a test split is carved from train/)"}.get)
deploy = st.checkbox("Then measure deployment variants (TFLite float/int8, pruning, clustering, QAT; adds minutes)",
                     value=kept("deploy", True), help="Needed for the Try page's LiteRT predictions and the Deployment "
                     "page; a run measured already keeps its measurements")

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
    st.caption(f"{sum(counts.values())} images in {len(counts)} classes; this preset uses {n_images}. "
               + time_estimate(chosen, preset, weights, n_images, deploy))
    if st.button("Start training", type="primary"):
        st.session_state["train_settings"] = {"folder": folder, "backbones": chosen, "weights": weights,
                                              "preset": preset, "seed": int(seed), "deploy": deploy, **overrides}
        toml = grid_toml(artifacts_dir(), [folder], chosen, weights, int(seed), preset, overrides)
        try:
            run_dirs = [str(RunFolder.for_config(p.config, artifacts_dir()).path)
                        for p in parse_grid(toml, "the Train page").runs]
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
