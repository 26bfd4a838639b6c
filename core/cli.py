"""Command-line interface: ``python -m core <command>``.

Each command imports its implementation when it runs (the one place in ``core`` that
imports its own modules inside functions): ``--help`` starts in a few hundredths of a
second instead of 1.6 s (pandas, scikit-learn and SciPy for commands it may never run),
and no command loads TensorFlow unless it trains or converts. A
:class:`core.errors.UserError` becomes one clear line on stderr and a non-zero exit,
never a traceback.
"""

from __future__ import annotations

import argparse
import difflib
import errno
import os
import sys
import time
from pathlib import Path
from typing import Sequence

from core.artifacts.config import BASELINES, ENSEMBLE_WEIGHTS, METHODS
from core.artifacts.layout import DEPLOYMENT_FILE, dataset_complete_runs, deployment_file, existing_artifacts_dir
from core.errors import UserError
from core.formatting import format_table

# --- backbones -----------------------------------------------------------------

def _cmd_backbones(args: argparse.Namespace) -> int:
    from core.models import backbones

    rows = []
    for spec in backbones.listed_specs():
        rows.append([
            spec.name,
            "" if spec.alpha is None else f"{spec.alpha:g}",
            f"{spec.input_size}x{spec.input_size}",
            f"{spec.param_count():,}",
            spec.entry.preprocessing,
            spec.weights_source(),
            "yes" if spec.weights_available() else "no",
        ])
    print(format_table(rows, ["backbone", "alpha", "input", "params (no top)", "preprocessing", "ImageNet weights from", "available here"]))
    missing = [s for s in backbones.listed_specs() if not s.weights_available()]
    if missing:
        print()
        print("Weights marked 'no' are not on this machine; see README 'Offline ImageNet weights'.")
    return 0


def _add_backbones(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("backbones", help="list the backbone registry and which ImageNet weights are available here")
    p.set_defaults(func=_cmd_backbones)


def _seed(text: str) -> int:
    """argparse type: a seed numpy and Keras accept, 0 <= seed < 2**32."""
    from core.artifacts.config import SEED_LIMIT

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if not 0 <= value < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"{value} is out of range: a seed is at least 0 and below 2**32")
    return value


# --- audit ---------------------------------------------------------------------

def _cmd_audit(args: argparse.Namespace) -> int:
    from core.data import audit

    out = Path(args.out).expanduser() if args.out else audit.default_report_path(args.root, args.artifacts)
    # Checked before the audit, not after minutes of hashing.
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; give a file path, e.g. {out / 'audit.json'}")
    if args.out:  # the default's folder is made under the artifacts folder; a typed path's folder must exist
        _check_output_folder(out.parent, "--out")
    progress = _AuditProgress()
    threshold = audit.DEFAULT_THRESHOLD if args.threshold is None else args.threshold
    report = audit.audit_dataset(args.root, seed=args.seed, near_threshold=threshold, progress=progress)
    audit.write_report(report, out)
    print(audit.format_summary(report))
    _print_leakage_effect(out.parent)
    print(f"\nreport written to {out}")
    return 0


def _check_output_folder(folder: Path, option: str) -> None:
    """One line if ``folder`` (where ``option`` writes) is missing, not a folder or not writable."""
    if not folder.exists():
        raise UserError(f"{option}: the folder {folder} does not exist; create it first or give another path")
    if not folder.is_dir():
        raise UserError(f"{option}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"{option}: the folder {folder} is not writable")


class _AuditProgress:
    """Progress of the slow audit stages on stderr, at most every few seconds."""

    def __init__(self, every_s: float = 3.0):
        self._time, self.every_s, self.last = time.monotonic, every_s, 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = self._time()
        if done < total and now - self.last < self.every_s:
            return
        self.last = now
        print(f"{stage}: {done}/{total}", file=sys.stderr, flush=True)


def _print_leakage_effect(dataset_folder: Path) -> None:
    """After an audit beside stored runs: re-score them with its groups and show what leakage does to the scores."""
    from core.artifacts import report
    from core.evaluate.leakage import rescore_dataset

    if not dataset_complete_runs(dataset_folder):
        return
    rescore_dataset(dataset_folder, emit=lambda line: None)
    effect = report.leakage_effect(report.runs_table(dataset_folder.name, dataset_folder.parent))
    if not effect.empty:
        print("\nWhat leakage does to the stored runs' test accuracy (leakage.json of each run):")
        print(format_table(effect.values.tolist(), list(effect.columns)))


def _add_audit(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="audit an image dataset: duplicates, leakage across splits, conflicting labels, corrupt files, imbalance")
    p.add_argument("root", help="dataset folder (ROOT/<class>/... or ROOT/train|test/<class>/...)")
    p.add_argument("--out", default=None, help="JSON report path (default: <artifacts>/<folder name>/audit.json, "
                                               "where the report app reads it)")
    p.add_argument("--artifacts", default=None, help="results folder for the default --out (default: artifacts/ in "
                                                     "the repo, or $STUDY_ARTIFACTS)")
    p.add_argument("--seed", type=_seed, default=42, help="split seed when the dataset has no predefined split")
    p.add_argument("--threshold", type=int, default=None,
                   help="near-duplicate threshold in bits of the 256-bit perceptual hash (default 24)")
    p.set_defaults(func=_cmd_audit)


# --- run / experiment ----------------------------------------------------------

def _cmd_run(args: argparse.Namespace) -> int:
    _check_method(args.method)
    from core.orchestrate.run import execute
    from core.train import config as config_mod

    overrides = config_mod.parse_overrides(args.set or [])
    overrides.update(weights=args.weights, seed=args.seed, method=args.method)
    if args.groups and args.group_pattern:
        raise UserError("give either --groups FILE.csv or --group-pattern REGEX, not both")
    if args.groups:
        overrides["grouping"] = f"csv:{Path(args.groups).expanduser().resolve()}"
    elif args.group_pattern:
        overrides["grouping"] = f"regex:{args.group_pattern}"
    cfg = config_mod.resolve(args.data, args.backbone, args.preset, overrides)
    execute(cfg, args.artifacts, emit=_emit, deploy=args.deploy)
    return 0


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="train and evaluate one backbone on one dataset (resumes an interrupted run)")
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--backbone", required=True, help="registry name, e.g. EfficientNetLite0 or MobileNetV2@0.35")
    p.add_argument("--preset", default="full", help="quick (minutes, subsampled) or full (default)")
    p.add_argument("--weights", default="imagenet", choices=["imagenet", "none"],
                   help="imagenet (transfer learning, default) or none (same architecture from scratch)")
    p.add_argument("--method", default="finetune", metavar="METHOD",
                   help="finetune the network (default) or a scikit-learn baseline on frozen embeddings: "
                        f"{', '.join(BASELINES)} (README: Classical baselines)")
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--artifacts", default=None, help="results folder (default: artifacts/ in the repo)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a setting, e.g. --set stage1.epochs=5 --set augment.views=0 (repeatable)")
    p.add_argument("--deploy", action="store_true", help="measure the deployment variants right after training")
    p.add_argument("--groups", metavar="FILE.csv", default=None,
                   help="images that must stay on one side of every split: a CSV 'path,group' (e.g. subject ids); "
                        "default: groups of near-duplicate images (--set grouping=none splits image by image)")
    p.add_argument("--group-pattern", metavar="REGEX", default=None,
                   help="group id from each image's relative path: the first capture group of REGEX")
    p.set_defaults(func=_cmd_run)


def _check_method(method: str) -> None:
    if method not in METHODS:  # before the heavy imports: a typo answers at once
        close = difflib.get_close_matches(method, METHODS, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise UserError(f"unknown method '{method}'; {hint}choose one of: {', '.join(METHODS)}")


def _selection_config(args: argparse.Namespace, method: str = "finetune"):
    """The run config CV and tuning start from: the flags and --set of ``python -m core run``."""
    from core.train import config as config_mod

    overrides = config_mod.parse_overrides(args.set or [])
    overrides.update(seed=args.seed, method=method)
    return config_mod.resolve(args.data, args.backbone, args.preset, overrides)


def _add_selection_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--backbone", required=True, help="registry name, e.g. EfficientNetLite0")
    p.add_argument("--preset", default="full", help="quick or full (default): the run settings to start from")
    p.add_argument("--seed", type=_seed, default=0, help="training seed (default 0)")
    p.add_argument("--artifacts", default=None, help="results folder (default: artifacts/ in the repo)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="a run setting, as for `run` (e.g. --set grouping=none for the first runs' split)")


def _cmd_cv(args: argparse.Namespace) -> int:
    method = "finetune" if args.method == "finetune-head" else args.method
    _check_method(method)
    from core.orchestrate import crossval

    metric = crossval.check_metric(args.metric)
    if args.folds is None and not args.fold_study:
        raise UserError("give --folds K (e.g. --folds 5) or --fold-study")
    prepared = crossval.prepare(_selection_config(args, method), _emit)
    if args.fold_study:
        record, path = crossval.fold_study(prepared, args.repeats, args.ungrouped, metric, args.artifacts, _emit)
        rows = [["leave one group out" if r["folds"] == crossval.LOGO else r["folds"],
                 "grouped" if r["grouped"] else "ungrouped", r["repeats"], f"{r['estimate']:.4f}",
                 "" if r["spread_sd"] is None else f"{r['spread_sd']:.4f}", f"{r['bias']:+.4f}",
                 f"{r['fit_seconds']:.1f}"] for r in record.summary]
        print(format_table(rows, ["folds", "folds are", "repeats", f"CV {metric}", "SD across repeats",
                                  "bias vs test", "seconds"]))
        print(f"test {metric} (refitted on all non-test images): {record.test[metric]:.4f}")
    else:
        record, path = crossval.run_cv(prepared, args.folds, args.repeats, not args.ungrouped, args.artifacts, _emit)
        rows = [[m, f"{s['mean']:.4f}", "" if s["sd"] is None else f"{s['sd']:.4f}",
                 "" if s["low"] is None else f"[{s['low']:.4f}, {s['high']:.4f}]", f"{record.test[m]:.4f}"]
                for m, s in record.summary.items()]
        print(format_table(rows, ["metric", "CV mean", "SD across folds", "95% t-interval", "test (refitted)"]))
    print(f"\nwritten to {path}")
    return 0


def _add_cv(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cv", help="grouped K-fold cross-validation of the network head or a baseline on cached "
                                  "features (test split untouched); --fold-study compares fold counts")
    _add_selection_options(p)
    p.add_argument("--folds", type=_positive(int), default=None, metavar="K", help="number of folds, e.g. 5")
    p.add_argument("--method", default="finetune-head", metavar="METHOD",
                   help="finetune-head (the network's stage-1 head, default) or a baseline: " + ", ".join(BASELINES))
    p.add_argument("--repeats", type=_positive(int), default=1, help="fold assignments with different seeds")
    p.add_argument("--ungrouped", action="store_true",
                   help="folds image by image, ignoring groups (leaky); with --fold-study: shown beside the grouped")
    p.add_argument("--fold-study", action="store_true",
                   help="K in 2, 3, 5, 10 (and leave-one-group-out for k-NN): estimate, spread, bias vs test, cost")
    p.add_argument("--metric", default="balanced_accuracy", help="the fold study's metric (default balanced_accuracy)")
    p.set_defaults(func=_cmd_cv)


def _seeds(text: str) -> list[int]:
    """argparse type: comma-separated seeds, e.g. ``0,1,2``."""
    return [_seed(part.strip()) for part in text.split(",") if part.strip()] or [0]


def _cmd_tune(args: argparse.Namespace) -> int:
    from core.orchestrate import crossval, tune
    from core.orchestrate.run import execute

    metric = crossval.check_metric(args.metric)
    base = _selection_config(args)
    if args.storage:
        tune.open_storage(args.storage)  # a bad URL answers before the features are loaded
    prepared = crossval.prepare(base, _emit)
    record, path = tune.tune(prepared, args.trials, metric, args.cv, args.storage, args.study, args.artifacts, _emit)
    rows = [[t["number"], t["state"], "" if t["value"] is None else f"{t['value']:.4f}"] for t in record.trials[-10:]]
    print(format_table(rows, ["trial", "state", metric]))
    if record.best:
        print(f"best: trial {record.best['number']}, {metric} {record.best['value']:.4f}: " +
              ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in record.best["overrides"].items()))
    print(f"\nwritten to {path}")
    if args.run_best:
        for config in tune.tuned_configs(base, record, args.seeds):
            execute(config, args.artifacts, emit=_emit)
    return 0


def _add_tune(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tune", help="Optuna search over the stage-1 head's settings on cached features (resumable "
                                    "study); --run-best makes the best settings full runs")
    _add_selection_options(p)
    p.add_argument("--trials", type=_positive(int), required=True,
                   help="finished trials the study should hold (a re-run continues it up to this number)")
    p.add_argument("--metric", default="balanced_accuracy", help="objective on validation (default balanced_accuracy)")
    p.add_argument("--cv", type=_positive(int), default=None, metavar="K",
                   help="objective: the grouped K-fold CV mean over the non-test images instead of validation")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="Optuna storage URL (default: sqlite:///<artifacts>/<dataset>/model_selection/optuna.sqlite3; "
                        "postgresql://... for a shared study)")
    p.add_argument("--study", default=None, help="study name (default: backbone, preset, metric, objective, settings)")
    p.add_argument("--run-best", action="store_true",
                   help="then train the best trial's settings as full runs (marked tuned_from in config.json)")
    p.add_argument("--seeds", type=_seeds, default=[0, 1, 2], help="seeds of --run-best (default 0,1,2)")
    p.set_defaults(func=_cmd_tune)


def _cmd_experiment(args: argparse.Namespace) -> int:
    if args.yes and not args.retire:
        raise UserError("--yes confirms --retire: add --retire, or leave --yes out")
    if args.retire and (args.dry_run or args.deploy or args.ray is not None or args.analyses_only):
        raise UserError("--retire runs nothing (it lists, and with --yes removes): leave out --dry-run, --deploy, "
                        "--analyses-only and --ray")
    if args.retire:
        from core.orchestrate.retire import retire_study

        retire_study(args.file, args.artifacts, _emit, delete=args.yes, data_root=args.data_root,
                     datasets=args.dataset)
        return 0
    if args.analyses_only and (args.dry_run or args.deploy or args.ray is not None):
        raise UserError("--analyses-only trains and deploys nothing, here: leave out --dry-run, --deploy and --ray")
    if args.ray is not None and not args.dry_run:
        from core.orchestrate import distributed

        options = distributed.RayOptions(address=args.ray, cpus_per_run=args.cpus_per_run,
                                         gpus_per_run=args.gpus_per_run, max_retries=args.max_retries,
                                         data_map=distributed.parse_data_map(args.data_map))
        return distributed.run_experiment_on_ray(args.file, artifacts=args.artifacts, emit=_emit, deploy=args.deploy,
                                                 options=options, data_root=args.data_root, datasets=args.dataset)
    from core.orchestrate.experiment import run_experiment

    return run_experiment(args.file, artifacts=args.artifacts, dry_run=args.dry_run, emit=_emit, deploy=args.deploy,
                          data_root=args.data_root, datasets=args.dataset, analyses_only=args.analyses_only)


def _positive(kind: type, zero: bool = False):
    """argparse type: a number above 0 (or at least 0 with ``zero``)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a {kind.__name__} number") from None
        if value < 0 or (value == 0 and not zero):
            raise argparse.ArgumentTypeError(f"{value} must be {'0 or more' if zero else 'above 0'}")
        return value
    return parse


def _add_experiment(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("experiment", help="run a grid from a TOML file, skipping complete runs and resuming others")
    p.add_argument("file", help="experiment file, e.g. experiments/study.toml")
    p.add_argument("--artifacts", default=None, help="results folder (default: the file's, else artifacts/)")
    p.add_argument("--data-root", default=None, metavar="DIR",
                   help="folder that holds the datasets the file names by relative path (default: $STUDY_DATA_ROOT, "
                        "else the file's data_root, else the current folder)")
    p.add_argument("--dry-run", action="store_true",
                   help="list the runs and their state without running, and any dataset folder that is missing")
    p.add_argument("--deploy", action="store_true", help="measure each network run's deployment variants after it")
    p.add_argument("--dataset", action="append", metavar="NAME",
                   help="only the runs and analyses on this dataset (its artifacts folder's name, e.g. flower_photos; "
                        "repeatable): one dataset's part of a study in one sitting")
    p.add_argument("--analyses-only", action="store_true",
                   help="train no run: carry out the file's analyses whose runs are complete (e.g. cross-validation "
                        "and tuning on cached features before a long grid); the others wait")
    p.add_argument("--retire", action="store_true",
                   help="list what the study's dataset folders hold that the file does not plan: every run no grid "
                        "of it names (an earlier edition's, hand-made ones, other files' grids), and the ensembles, "
                        "diagnoses, CV and tuning records and splits resting on them; runs nothing")
    p.add_argument("--yes", action="store_true",
                   help="with --retire: remove them (git history keeps committed ones; files never committed are gone)")
    ray = p.add_argument_group("Ray (optional: pip install -r requirements-ray.txt; README 'Scale out with Ray')")
    ray.add_argument("--ray", nargs="?", const="local", default=None, metavar="auto|ray://HOST:PORT",
                     help="run every run as a Ray task: no address starts Ray on this machine; 'auto' joins the "
                          "cluster started here with `ray start`; ray://HOST:PORT joins a remote one")
    ray.add_argument("--cpus-per-run", type=_positive(float), default=1.0,
                     help="CPUs each run reserves, and TensorFlow's thread count inside it (default 1)")
    ray.add_argument("--gpus-per-run", type=_positive(float, zero=True), default=0.0,
                     help="GPUs each run reserves (default 0)")
    ray.add_argument("--max-retries", type=_positive(int, zero=True), default=2,
                     help="times Ray reruns a run whose worker died (default 2)")
    ray.add_argument("--data-map", action="append", metavar="LOCAL=REMOTE",
                     help="dataset paths as the workers see them: replace the prefix LOCAL by REMOTE (repeatable)")
    p.set_defaults(func=_cmd_experiment)


def _dataset_folder(dataset: str, artifacts: str | None) -> Path:
    """A dataset's results folder: a path, or a name under the artifacts folder; one line if neither exists."""
    folder = Path(dataset).expanduser()
    if not folder.is_dir():
        root = existing_artifacts_dir(artifacts)
        folder = root / dataset
        if not folder.is_dir():
            from core.artifacts.report import datasets

            known = ", ".join(datasets(root)) or "none"
            raise UserError(f"no results for '{dataset}': neither a folder {dataset} nor {folder} exists "
                            f"(datasets with results in {root}: {known})")
    return folder


def _cmd_compare(args: argparse.Namespace) -> int:
    from core.evaluate.compare import compare_dataset

    folder = _dataset_folder(args.dataset, args.artifacts)
    result = compare_dataset(folder, alpha=args.alpha)
    rows = [[p["a"], p["b"], p["n_common"], p["n01"], p["n10"],
             "" if p["p_holm"] is None else f"{p['p_holm']:.4g}", "yes" if p["significant"] else "no"]
            for p in result["pairs"]]
    print(format_table(rows, ["run A", "run B", "n", "A wrong, B right", "A right, B wrong", "p (Holm)", "significant"]))
    if result.get("ensembles"):
        print("\nEach ensemble against its best member (highest test accuracy), Holm over the ensembles:")
        from core.artifacts.report import ensemble_comparison

        table = ensemble_comparison(result["ensembles"])
        print(format_table(table.values.tolist(), list(table.columns)))
    print(f"\nwritten to {folder / 'mcnemar.json'}")
    return 0


def _add_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="McNemar's test between every pair of complete runs of a dataset")
    p.add_argument("dataset", help="dataset folder under artifacts/ (e.g. flower_photos) or its path")
    p.add_argument("--artifacts", default=None)
    p.add_argument("--alpha", type=float, default=0.05)
    p.set_defaults(func=_cmd_compare)


def _cmd_ensemble(args: argparse.Namespace) -> int:
    from core.evaluate.ensemble import build_ensemble, load_ensemble

    folder = build_ensemble(_dataset_folder(args.dataset, args.artifacts), args.runs, args.weights, args.name,
                            emit=_emit)
    record = load_ensemble(folder)
    rows = [[m["run"], f"{m['weight']:.4f}", "" if m["val_loss"] is None else f"{m['val_loss']:.4f}",
             f"{m['accuracy']:.4f}"] for m in record.members]
    print(format_table(rows, ["member", "weight", "validation loss", "test accuracy"]))
    for cost in record.deployment.values():
        print(f"{cost['label']}: " + (f"{cost['mb']:.2f} MB, " + ("latency not measured" if cost["ms"] is None
                                                                  else f"{cost['ms']:.1f} ms at 1 thread")
                                      if cost["measured"] else cost["reason"]))
    return 0


def _add_ensemble(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ensemble", help="soft-voting ensemble of stored runs of a dataset, stored and scored like a "
                                        "run (artifacts/<dataset>/ensembles/<name>/)")
    p.add_argument("dataset", help="dataset folder under artifacts/ (e.g. flower_photos) or its path")
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="member runs: run folders, backbone/run id, or a run id unique in the dataset folder")
    p.add_argument("--weights", default="uniform", choices=ENSEMBLE_WEIGHTS,
                   help="uniform (default); val_loss: w ∝ exp(-validation log loss); stacked: logistic regression "
                        "on validation probabilities")
    p.add_argument("--name", default=None, help="the ensemble's folder name (default: <weights>-<n>runs-<hash>)")
    p.add_argument("--artifacts", default=None)
    p.set_defaults(func=_cmd_ensemble)


def _cmd_leakage(args: argparse.Namespace) -> int:
    from core.evaluate.leakage import rescore_dataset

    folder = _dataset_folder(args.dataset, args.artifacts)
    rows = []
    for run, result in rescore_dataset(folder, emit=_emit):
        name = f"{run.parent.name}/{run.name}"
        if isinstance(result, str):
            rows.append([name, "", "", "", "", f"not scored: {result}"])
            continue
        everything, free = result.subset("all"), result.subset("leak_free")
        rows.append([name, everything["n"], f"{everything['accuracy']:.3f}", free["n"] if free else 0,
                     f"{free['accuracy']:.3f}" if free else "-", ""])
    print(format_table(rows, ["run", "test images", "accuracy", "leak-free images", "leak-free accuracy", "note"]))
    return 0


def _add_leakage(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("leakage", help="score every stored run of a dataset on its leak-free test images "
                                       "(groups from the dataset's audit.json), written to each run's leakage.json")
    p.add_argument("dataset", help="dataset folder under artifacts/ (e.g. alzheimer_mri) or its path")
    p.add_argument("--artifacts", default=None)
    p.set_defaults(func=_cmd_leakage)


def _cmd_operating_point(args: argparse.Namespace) -> int:
    from core.artifacts.screens import describe
    from core.evaluate import operating_point as op

    target = op.make_target(args.sensitivity, args.cost_ratio)
    inputs = op.load_run(Path(args.run_dir))
    point = op.operating_point(inputs, args.positive.split(","), target, n_bootstrap=args.bootstrap, seed=args.seed)
    where = op.store(inputs.run, point)
    for line in describe(point):
        print(line)
    print(f"\nwritten to {where}")
    return 0


def _add_operating_point(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("operating-point", help="read a run as a binary screen: threshold on the summed probability of "
                                              "the positive classes chosen on validation, figures on test")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a complete run folder with val_predictions.csv")
    p.add_argument("--positive", required=True, metavar="A,B,C", help="the positive classes, comma-separated")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--sensitivity", type=float, help="target sensitivity on validation, in (0, 1]")
    target.add_argument("--cost-ratio", type=float, help="cost of a false negative over a false positive (> 0)")
    p.add_argument("--bootstrap", type=_positive(int, zero=True), default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=_seed, default=0, help="bootstrap seed")
    p.set_defaults(func=_cmd_operating_point)


def _cmd_val_predictions(args: argparse.Namespace) -> int:
    from core.orchestrate.val_predictions import add_val_predictions

    add_val_predictions([Path(r) for r in args.run_dirs], emit=_emit)
    return 0


def _add_val_predictions(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("val-predictions", help="add val_predictions.csv (validation probabilities) to stored complete "
                                               "network runs that kept model.keras (resumable)")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="complete run folders")
    p.set_defaults(func=_cmd_val_predictions)


def _cmd_lesson(args: argparse.Namespace) -> int:
    from core.artifacts.layout import lesson_dir
    from core.evaluate.lesson import build_lesson, lesson_path

    root = Path(args.lesson) if args.lesson else lesson_dir(args.artifacts)
    record = build_lesson(root, args.data_root)
    path = record.save(lesson_path(root))
    for arm in record.arms:
        val, test = arm["validation"]["accuracy"], arm["test"]["accuracy"]
        leak = arm["validation_sources_in_train"]
        print(f"{arm['name']:32s} validation {val['estimate']:.3f}  test {test['estimate']:.3f}  "
              f"validation images whose source is in train: {leak['images']} of {leak['of']}")
    print(f"written: {path}")
    return 0


def _add_lesson(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lesson", help="the leakage lesson's record from the runs of experiments/leakage_lesson.toml "
                                      "(validation vs test for each split)")
    p.add_argument("--artifacts", default=None, help="results folder (default: artifacts/, or $STUDY_ARTIFACTS)")
    p.add_argument("--lesson", default=None, metavar="DIR",
                   help="the lesson's folder (default: <artifacts>/lessons/leakage)")
    p.add_argument("--data-root", default=None, metavar="DIR",
                   help="folder holding the augmented dataset, for its BUILD.json (default: the path the runs "
                        "recorded)")
    p.set_defaults(func=_cmd_lesson)


def _cmd_report(args: argparse.Namespace) -> int:
    from core.artifacts import readme

    root = existing_artifacts_dir(args.artifacts)
    if args.readme:
        changed = readme.update_readme(Path(args.readme), root)
        print(f"{args.readme}: results section {'updated' if changed else 'already current'}")
    else:
        print(readme.markdown_results(root))
    return 0


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="leaderboard tables of every dataset as Markdown, from the stored runs")
    p.add_argument("--readme", default=None, help="rewrite the results section of this README in place")
    p.add_argument("--artifacts", default=None)
    p.set_defaults(func=_cmd_report)


def _emit(line: str) -> None:
    print(line, flush=True)


def _cmd_deploy(args: argparse.Namespace) -> int:
    from core.deploy import measure as deploy

    if args.paired_only:
        from core.evaluate.variant_change import add_to_stored

        if not args.run_dir or args.architecture:
            raise UserError("--paired-only works on a measured run: give its RUN_DIR and no --architecture")
        doc = add_to_stored(Path(args.run_dir), emit=_emit)
        rows, headers = deployment_table(doc)
        print(format_table(rows, headers))
        return 0
    if args.architecture:
        if args.run_dir or not args.out:
            raise UserError("--architecture measures a backbone without a run: give --out DIR and no RUN_DIR")
        doc = deploy.deploy_architecture(args.architecture, args.classes, args.out, emit=_emit,
                                         input_size=args.input_size, threads=args.threads, runs=args.runs,
                                         only=args.only)
        where = Path(args.out) / DEPLOYMENT_FILE
    else:
        if not args.run_dir:
            raise UserError("give a run folder (RUN_DIR) or --architecture NAME --out DIR")
        doc = deploy.deploy_run(args.run_dir, emit=_emit, threads=args.threads, runs=args.runs, only=args.only)
        where = deployment_file(Path(args.run_dir))
    rows, headers = deployment_table(doc)
    print()
    print(format_table(rows, headers))
    problems = [v for v in doc["variants"] if v["status"] != "ok"]
    if doc.get("kind") == "architecture":
        print(f"accuracy not measured: {(doc.get('parent') or {}).get('metrics_reason')}")
    for v in problems:
        print(f"{v['name']}: {v['status']}: {v['reason']}")
    for v in doc["variants"]:
        for warning in v.get("warnings") or []:
            print(f"{v['name']}: warning: {warning}")
    print(f"\nwritten to {where}")
    return 1 if any(v["status"] == "failed" for v in problems) else 0


def _add_deploy(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("deploy", help="TFLite and tfmot-compressed variants of a run's model: size, test accuracy "
                                      "(LiteRT), latency; results in RUN_DIR/deploy/ (resumes)")
    p.add_argument("run_dir", nargs="?", metavar="RUN_DIR", help="a complete run folder with model.keras")
    p.add_argument("--threads", type=int, default=None, help="'all cores' thread count for latency (default: every core)")
    p.add_argument("--runs", type=int, default=None, help="timed batch-1 runs per latency figure (default 50)")
    p.add_argument("--only", nargs="+", metavar="VARIANT", help="measure only these variants, e.g. tflite_int8_full")
    p.add_argument("--architecture", metavar="BACKBONE",
                   help="measure sizes and latency of a backbone + head with random weights (no run, no accuracy)")
    p.add_argument("--classes", type=int, default=5, help="with --architecture: classes of the head (default 5)")
    p.add_argument("--input-size", type=int, default=None, help="with --architecture: input side in pixels")
    p.add_argument("--out", default=None, help="with --architecture: the folder for the results")
    p.add_argument("--paired-only", action="store_true",
                   help="measure nothing: add each variant's accuracy change against the Keras model (paired "
                        "bootstrap interval) and agreement rate from the stored predictions (no model needed)")
    p.set_defaults(func=_cmd_deploy)


# --- entry point ---------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="python -m core",
        description="Transfer-learning study: backbones, datasets, training, evaluation, deployment.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_backbones(sub)
    _add_audit(sub)
    _add_leakage(sub)
    _add_operating_point(sub)
    _add_run(sub)
    _add_experiment(sub)
    _add_cv(sub)
    _add_tune(sub)
    _add_compare(sub)
    _add_report(sub)
    _add_deploy(sub)
    _add_val_predictions(sub)
    _add_ensemble(sub)
    _add_lesson(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            print(f"error: the disk is full ({exc.filename or 'writing results'}); free some space and run the "
                  "same command again to resume", file=sys.stderr)
            return 3
        if exc.filename:  # a path the user gave (a folder where a file was expected, no permission, ...)
            print(f"error: {exc.strerror or exc}: {exc.filename}", file=sys.stderr)
            return 2
        raise


def deployment_table(doc: dict) -> tuple[list[list], list[str]]:
    """A readable table of deployment.json: one row per variant."""
    def mb(b):
        return "" if not b else f"{b / 1e6:.2f} MB"

    def ms(lat_):
        return "" if not lat_ else f"{lat_['median_ms']:.1f}"

    rows = []
    for r in doc["variants"]:
        m, d = r.get("metrics") or {}, r.get("delta_vs_parent") or {}
        io_ = f"{r['input_dtype']}/{r['output_dtype']}" if r.get("input_dtype") else ""
        rows.append([r["name"], r["status"], mb(r.get("bytes")), mb(r.get("gzip_bytes")),
                     "" if r.get("ratio_to_keras") is None else f"{r['ratio_to_keras']:.3f}",
                     "" if r.get("ratio_to_tflite_float32") is None else f"{r['ratio_to_tflite_float32']:.3f}",
                     io_, "" if m.get("accuracy") is None else f"{m['accuracy']:.4f}",
                     "" if d.get("accuracy") is None else f"{d['accuracy'] * 100:+.1f}",
                     _pp_interval(r.get("accuracy_change_vs_parent")),
                     "" if r.get("agreement_with_parent") is None else f"{r['agreement_with_parent']:.1%}",
                     ms((r.get("latency") or {}).get("threads_1")), ms((r.get("latency") or {}).get("threads_all"))])
    headers = ["variant", "status", "bytes", "gzip", "x keras", "x tflite f32", "in/out", "accuracy",
               "delta pp", "95% CI pp", "agrees", "ms 1 thread", "ms all cores"]
    return rows, headers


def _pp_interval(change: dict | None) -> str:
    """A paired interval of an accuracy change in percentage points, e.g. ``[-1.2, +0.8]``."""
    return "" if not change else f"[{change['low'] * 100:+.1f}, {change['high'] * 100:+.1f}]"
