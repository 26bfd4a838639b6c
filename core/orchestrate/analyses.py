"""Analyses of a study's stored runs, declared in its experiment file after the grids.

An ``[[ensemble]]`` table combines the study's runs of several backbones; an ``[[operating_point]]`` table
reads one run as a binary screen. Members are named the way the grids name runs (dataset, backbone, seed,
preset and the same ``set`` overrides), so an analysis always uses the runs of this study's split, never
an older run of the same backbone::

    [[ensemble]]
    datasets = ["flower_photos", "alzheimer_mri"]
    backbones = ["EfficientNetLite0", "EfficientNetLite1"]
    seed = 0                       # default 0; preset (default "full") and set as in a grid
    weights = ["uniform", "val_loss"]

    [[operating_point]]
    datasets = ["alzheimer_mri"]
    backbone = "EfficientNetLite0"
    positive = ["MildDemented", "ModerateDemented", "VeryMildDemented"]
    sensitivity = 0.95             # or cost_ratio = 5

    [[cv]]                         # python -m core cv: grouped K-fold CV over the non-test images
    datasets = ["flower_photos"]
    backbone = "EfficientNetLite0"
    methods = ["finetune-head", "knn"]
    folds = 5                      # or fold_study = true (K = 2, 3, 5, 10); repeats, ungrouped as the CLI's

    [[tune]]                       # python -m core tune: Optuna over the stage-1 head's settings
    datasets = ["flower_photos"]
    backbone = "EfficientNetLite0"
    trials = 30                    # metric, cv as the CLI's

Ensembles and operating points are made as soon as their runs are complete (after any run of a sitting),
before the comparisons (an ensemble is compared with its best member); cross-validation and tuning, which
train on cached features and need no run, after all the grids. All are idempotent: a stored ensemble of the
same members and weights, an operating point of the same key, a stored CV or fold-study record of the same
base settings, or a tuning study that holds its trials already, is left as it is.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

from core.artifacts.config import BASELINES, RunConfig, identity_settings
from core.artifacts.layout import (
    COMPLETE_MARKER,
    PREDICTIONS_FILE,
    cv_file,
    dataset_dir,
    dataset_slug,
    ensemble_dir,
    fold_study_file,
    model_selection_records,
)
from core.artifacts.records import CrossValidationRecord, FoldStudyRecord, Predictions, TuningRecord
from core.artifacts.runs import RunFolder
from core.errors import UserError
from core.evaluate import operating_point as op
from core.evaluate.ensemble import WEIGHT_METHODS, build_ensemble, default_name, deployment_settled
from core.orchestrate import crossval, tune
from core.progress import Emit
from core.train import config as config_mod
from core.train.crossval import METRICS

ANALYSES = ("ensemble", "operating_point", "cv", "tune")
ON_RUNS = ("ensemble", "operating_point")  # read complete runs: made as soon as those are there
_KEYS = {
    "ensemble": {"datasets", "backbones", "seed", "preset", "set", "weights"},
    "operating_point": {"datasets", "backbone", "seed", "preset", "set", "positive", "sensitivity", "cost_ratio"},
    "cv": {"datasets", "backbone", "seed", "preset", "set", "methods", "folds", "fold_study", "repeats", "ungrouped",
           "metric"},
    "tune": {"datasets", "backbone", "seed", "preset", "set", "trials", "metric", "cv"},
}
HEAD = "finetune-head"  # the network's stage-1 head on cached features, as `cv --method` names it


@dataclass
class Analysis:
    """One analysis on one dataset: its kind, the runs it reads (as configs; for CV and tuning, the one config they
    start from) and its options."""

    kind: str
    dataset: str
    members: list[RunConfig]
    options: dict = field(default_factory=dict)

    def describe(self) -> str:
        """One line: what it is and on which runs."""
        runs = ", ".join(f"{c.backbone} seed {c.seed}" for c in self.members)
        where = dataset_slug(self.dataset)
        o = self.options
        if self.kind == "ensemble":
            return f"{where}: ensemble ({o['weights']}) of {runs}"
        if self.kind == "operating_point":
            return f"{where}: operating point of {runs}: {', '.join(o['positive'])} at {o['target'].label()}"
        method = HEAD if self.members[0].method == "finetune" else self.members[0].method
        if self.kind == "cv":
            what = (f"fold-count study ({o['repeats']} repeats)" if o["fold_study"] else
                    f"{o['folds']}-fold CV{' (and ungrouped)' if o['ungrouped'] else ''}")
            return f"{where}: {what} of {method} on {self.members[0].backbone}"
        return (f"{where}: tuning of the head on {self.members[0].backbone}, {o['trials']} trials of "
                f"{o['metric']}" + (f" ({o['cv']}-fold CV)" if o["cv"] else ""))


def parse_analyses(spec: dict, resolve_dataset, where: str) -> list[Analysis]:
    """The ``[[ensemble]]``, ``[[operating_point]]``, ``[[cv]]`` and ``[[tune]]`` tables of an experiment file,
    checked; one line per mistake.
    ``resolve_dataset`` turns a dataset as written into the path runs use (the data root)."""
    out = []
    for kind in ANALYSES:
        tables = spec.get(kind, [])
        if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
            raise UserError(f"{where}: write each {kind} as a [[{kind}]] section (an array of tables)")
        for n, table in enumerate(tables, 1):
            try:
                out += _parse(kind, table, resolve_dataset)
            except UserError as exc:
                raise UserError(f"{where}: {kind} {n}: {exc}") from None
    return out


def _parse(kind: str, table: dict, resolve_dataset) -> list[Analysis]:
    unknown = set(table) - _KEYS[kind]
    if unknown:
        raise UserError(f"unknown keys: {', '.join(sorted(unknown))} (allowed: {', '.join(sorted(_KEYS[kind]))})")
    datasets = table.get("datasets")
    if not datasets or not isinstance(datasets, list) or not all(isinstance(d, str) for d in datasets):
        raise UserError("needs 'datasets', a list, e.g. datasets = [\"flower_photos\"]")
    seed = table.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise UserError("'seed' must be one whole number, e.g. seed = 0")
    overrides = table.get("set", {})
    if not isinstance(overrides, dict):
        raise UserError('\'set\' must be a table, e.g. set = { "stage1.epochs" = 5 }')
    overrides = config_mod.nest(overrides)
    config_mod.reject_identity_overrides(overrides, "'set'")

    def member(dataset: str, backbone: str, method: str = "finetune") -> RunConfig:
        layer = copy.deepcopy(overrides)
        layer.update(weights="imagenet", method=method, seed=seed)
        return config_mod.resolve(resolve_dataset(dataset), backbone, table.get("preset", "full"), layer)

    if kind in ("cv", "tune"):
        backbone = table.get("backbone")
        if not isinstance(backbone, str):
            raise UserError("needs 'backbone', one name, e.g. backbone = \"EfficientNetLite0\"")
        metric = table.get("metric", "balanced_accuracy")
        if metric not in METRICS:
            raise UserError(f"'metric' must be one of: {', '.join(METRICS)}")
        if kind == "tune":
            trials, cv = table.get("trials"), table.get("cv")
            if not _count(trials, 1):
                raise UserError("needs 'trials', a whole number of at least 1, e.g. trials = 30")
            if cv is not None and not _count(cv, 2):
                raise UserError("'cv' must be a whole number of folds of at least 2")
            return [Analysis(kind, resolve_dataset(d), [member(d, backbone)],
                             {"trials": trials, "metric": metric, "cv": cv}) for d in datasets]
        methods = table.get("methods", [HEAD])
        if not isinstance(methods, list) or not methods or not all(isinstance(m, str) for m in methods):
            raise UserError(f"'methods' must be a list, e.g. methods = [\"{HEAD}\", \"knn\"]")
        unknown = [m for m in methods if m != HEAD and m not in BASELINES]
        if unknown:
            raise UserError(f"unknown method {', '.join(unknown)}: use {HEAD} or a baseline ({', '.join(BASELINES)})")
        folds, fold_study, repeats = table.get("folds"), table.get("fold_study", False), table.get("repeats", 1)
        ungrouped = table.get("ungrouped", False)
        if not isinstance(fold_study, bool) or not isinstance(ungrouped, bool):
            raise UserError("'fold_study' and 'ungrouped' must be true or false")
        if fold_study == (folds is not None):
            raise UserError("give either 'folds' (e.g. folds = 5) or fold_study = true")
        if folds is not None and not _count(folds, 2):
            raise UserError("'folds' must be a whole number of at least 2")
        if not _count(repeats, 1):
            raise UserError("'repeats' must be a whole number of at least 1")
        return [Analysis(kind, resolve_dataset(d), [member(d, backbone, "finetune" if m == HEAD else m)],
                         {"folds": folds, "fold_study": fold_study, "repeats": repeats, "ungrouped": ungrouped,
                          "metric": metric})
                for d in datasets for m in methods]

    if kind == "ensemble":
        backbones = table.get("backbones")
        if not isinstance(backbones, list) or len(backbones) < 2 or not all(isinstance(b, str) for b in backbones):
            raise UserError("needs 'backbones', a list of two or more, e.g. backbones = [\"EfficientNetLite0\", "
                            "\"MobileNetV2@0.35\"]")
        weights = table.get("weights", ["uniform"])
        if not isinstance(weights, list) or not weights or any(w not in WEIGHT_METHODS for w in weights):
            raise UserError(f"'weights' must be a list of: {', '.join(WEIGHT_METHODS)}")
        return [Analysis(kind, resolve_dataset(d), [member(d, b) for b in backbones], {"weights": w})
                for d in datasets for w in weights]
    backbone = table.get("backbone")
    if not isinstance(backbone, str):
        raise UserError("needs 'backbone', one name, e.g. backbone = \"EfficientNetLite0\"")
    positive = table.get("positive")
    if not isinstance(positive, list) or not positive or not all(isinstance(p, str) for p in positive):
        raise UserError("needs 'positive', a list of class names, e.g. positive = [\"MildDemented\"]")
    target = op.make_target(table.get("sensitivity"), table.get("cost_ratio"))
    return [Analysis(kind, resolve_dataset(d), [member(d, backbone)], {"positive": positive, "target": target})
            for d in datasets]


def run_key(config: RunConfig) -> tuple[str, str, str]:
    """What names one run folder: its dataset, backbone and run id (a run id alone repeats across datasets)."""
    return config.dataset, config.backbone, config.run_id()


def waiting_for(analysis: Analysis, root: Path) -> int:
    """How many of the runs an ensemble or operating point reads are not ready yet (CV and tuning: none): not
    complete, or, for an ensemble, planned for deployment (``options["deployed"]``, as :func:`run_key`) and not
    deployed yet (:func:`~core.evaluate.ensemble.deployment_settled`; built before, its cost would stay not
    measured)."""
    if analysis.kind not in ON_RUNS:
        return 0
    deployed = analysis.options.get("deployed", set())
    waiting = 0
    for config in analysis.members:
        folder = RunFolder.for_config(config, root)
        waiting += not folder.is_complete() or (analysis.kind == "ensemble" and run_key(config) in deployed
                                                and not deployment_settled(folder.path))
    return waiting


def is_done(analysis: Analysis, root: Path) -> bool:
    """Whether the analysis is stored already (its ensemble, operating point, CV or fold-study record, or a tuning
    record of its base settings holding its trials)."""
    folders = [RunFolder.for_config(c, root).path for c in analysis.members]
    o = analysis.options
    if analysis.kind == "ensemble":
        labels = [f"{f.parent.name}/{f.name}" for f in folders]
        return (ensemble_dir(folders[0].parent.parent, default_name(labels, o["weights"])) / COMPLETE_MARKER).is_file()
    if analysis.kind == "operating_point":
        if not (folders[0] / COMPLETE_MARKER).is_file():
            return False
        classes = Predictions.load(folders[0] / PREDICTIONS_FILE).classes
        positives = [c for c in classes if c in {p.strip() for p in o["positive"]}]
        return any(p.get("key") == op.screen_key(positives, o["target"]) for p in op.stored(folders[0]))
    base = analysis.members[0]
    folder = dataset_dir(dataset_slug(base.dataset), root)
    if analysis.kind == "cv":
        if o["fold_study"]:
            path = fold_study_file(folder, base.backbone, base.run_id())
            if not path.is_file():
                return False
            study = FoldStudyRecord.load(path)
            repeats = {(r["folds"], r["grouped"]) for r in study.summary if r.get("repeats") == o["repeats"]}
            return study.metric == o["metric"] and any(not g for _, g in repeats) == o["ungrouped"] and bool(repeats)
        paths = [cv_file(folder, base.backbone, base.run_id(), o["folds"], grouped)
                 for grouped in ((True, False) if o["ungrouped"] else (True,))]
        return all(p.is_file() and len(CrossValidationRecord.load(p).fold_seeds) == o["repeats"] for p in paths)
    settings = identity_settings(base.to_dict(), ["dataset"])  # the data root may move; the settings may not
    for path in model_selection_records(folder, "tuning"):
        record = TuningRecord.load(path)
        finished = sum(t["state"] in ("COMPLETE", "PRUNED") for t in record.trials)
        source = str(record.objective.get("source", ""))
        same_source = source == f"cv {o['cv']}" if o["cv"] else not source.startswith("cv ")
        if (identity_settings(record.base_config, ["dataset"]) == settings and same_source
                and record.objective.get("metric") == o["metric"] and finished >= o["trials"]):
            return True
    return False


def run_analyses(analyses: list[Analysis], root: Path, emit: Emit, kinds: tuple[str, ...] = ANALYSES,
                 quiet: bool = False) -> tuple[list[tuple[Analysis, str]], list[str]]:
    """Carry out every analysis of ``kinds`` that is ready (its runs complete) and not stored yet; returns the
    failures (analysis, reason: an unreadable record is one too) and the datasets whose ensembles or operating
    points changed (their comparison is redone). One that waits for runs, or is stored already, is said so unless
    ``quiet``."""
    failures, changed = [], []
    for analysis in (a for a in analyses if a.kind in kinds):
        try:
            missing = waiting_for(analysis, root)
            if missing or is_done(analysis, root):
                if not quiet:
                    state = f"waits for {missing} run(s) to complete or be deployed" if missing else "complete already"
                    emit(f"  {state}: {analysis.describe()}")
                continue
            emit(f"  {analysis.describe()}")
            _carry_out(analysis, root, emit)
            if analysis.kind in ON_RUNS:
                changed.append(analysis.dataset)
        except UserError as exc:  # RecordError included: one bad file is this analysis's failure, not the sitting's
            failures.append((analysis, str(exc)))
            emit(f"  failed: {analysis.describe()}: {exc}")
    return failures, changed


def _carry_out(analysis: Analysis, root: Path, emit: Emit) -> None:
    folders = [RunFolder.for_config(c, root).path for c in analysis.members]
    o = analysis.options
    if analysis.kind == "ensemble":
        build_ensemble(folders[0].parent.parent, [str(f) for f in folders], o["weights"], emit=emit)
    elif analysis.kind == "operating_point":
        inputs = op.load_run(folders[0])
        op.store(folders[0], op.operating_point(inputs, o["positive"], o["target"]))
    elif analysis.kind == "cv":
        prepared = crossval.prepare(analysis.members[0], emit)
        if o["fold_study"]:
            crossval.fold_study(prepared, o["repeats"], o["ungrouped"], o["metric"], root, emit)
        else:
            for grouped in (True, False) if o["ungrouped"] else (True,):
                crossval.run_cv(prepared, o["folds"], o["repeats"], grouped, root, emit)
    else:
        tune.tune(crossval.prepare(analysis.members[0], emit), o["trials"], o["metric"], o["cv"], artifacts=root,
                  emit=emit)


def _count(value, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low
