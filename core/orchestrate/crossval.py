"""``python -m core cv``: grouped K-fold cross-validation of a method on cached features, and the fold-count study.

The folds cover a run's non-test images (its train and val splits); the test split is left
untouched and scores the method refitted on all non-test images, the line every CV estimate is
set against. Folds keep the groups of the run's grouping whole (:attr:`PreparedData.measured_groups`:
the split's groups, or near-duplicate groups when the split was made image by image).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.artifacts import provenance
from core.artifacts.config import RunConfig
from core.artifacts.layout import cv_file, dataset_dir, dataset_slug, fold_study_file
from core.artifacts.records import CrossValidationRecord, FoldStudyRecord
from core.artifacts.storage import utc_timestamp
from core.data.folds import leave_one_group_out, make_folds
from core.data.prepare import PreparedData, prepare_data
from core.errors import UserError
from core.orchestrate.run import validate_config
from core.progress import Emit
from core.train import baselines, crossval
from core.train.features import PooledFeatures, load_pooled

STUDY_FOLDS = (2, 3, 5, 10)
LOGO = 0  # the "folds" value of leave-one-group-out in a fold study's rows
LOGO_METHODS = ("knn", "knn_uniform", "knn_nearest", "knn_random", "nn1")  # cheap enough for one fit per group
LOGO_MAX_GROUPS = 10_000


@dataclass
class Prepared:
    """What every fold of one method on one dataset shares: data, features, groups, hyperparameter."""

    config: RunConfig
    data: PreparedData
    feats: PooledFeatures
    groups: np.ndarray  # group code of each non-test image
    hyper: dict | None  # a baseline's {name, value, chosen_on}

    @property
    def num_classes(self) -> int:
        return len(self.data.classes)

    def procedure(self) -> str:
        if self.config.method == "finetune":
            return ("stage-1 head on the cached pooled features of every augmented view of the fold's training "
                    "images, early stopped on a group-disjoint inner validation split of them")
        return (f"{self.config.method} on the pooled features of the original images, {self.hyper['name']}="
                f"{self.hyper['value']} fixed (chosen on the run's validation split, as a run chooses it)")

    def dataset(self) -> dict:
        return {"path": str(Path(self.config.dataset)), "slug": dataset_slug(self.config.dataset),
                "fingerprint": self.data.fingerprint, "classes": self.data.classes,
                "counts": {"non_test": len(self.feats.ids), "test": len(self.feats.test_ids)}}

    def grouping(self) -> dict:
        g = self.data.measured_groups
        return {"source": g.source, "detail": g.detail, "split_grouping": self.config.grouping,
                "groups": int(len(np.unique(self.groups)))}

    def folder(self, artifacts: str | Path | None) -> Path:
        return dataset_dir(dataset_slug(self.config.dataset), artifacts)


def prepare(config: RunConfig, emit: Emit) -> Prepared:
    """Data, cached pooled features (computed where missing), groups and a baseline's hyperparameter."""
    spec = validate_config(config)
    data = prepare_data(config, emit)
    feats = load_pooled(config, spec, data, emit, augmented=config.method == "finetune")
    hyper = None
    if config.method != "finetune":
        x = {"train": feats.originals[:feats.n_train], "val": feats.originals[feats.n_train:], "test": feats.test}
        name, value = baselines.choose_on_validation(config, data, x, emit)
        hyper = {"name": name, "value": value, "chosen_on": "the run's validation split (its grid fitted on train)"}
    return Prepared(config, data, feats, data.measured_groups.codes(feats.ids), hyper)


def _value(hyper: dict | None):
    return None if hyper is None else hyper["value"]


def assignments(p: Prepared, k: int, repeats: int, grouped: bool, seed: int = 0) -> list[tuple[int, list]]:
    """``repeats`` fold assignments (seed, folds) of the non-test images."""
    return [(seed + r, make_folds(p.feats.labels, p.groups, k, seed + r, grouped)) for r in range(repeats)]


def run_cv(p: Prepared, k: int, repeats: int = 1, grouped: bool = True, artifacts=None, emit: Emit = print,
           seed: int = 0) -> tuple[CrossValidationRecord, Path]:
    """Cross-validate ``p``'s method with ``k`` folds (``repeats`` assignments) and store the record."""
    folds, repeat_rows, seconds = [], [], 0.0
    for r, (fold_seed, assignment) in enumerate(assignments(p, k, repeats, grouped, seed)):
        rows, _ = crossval.cross_validate(p.config, p.feats, p.groups, assignment, p.num_classes, _value(p.hyper),
                                          lambda i, row: emit(f"cv {r + 1}/{repeats} fold {i + 1}/{k}: balanced "
                                                              f"accuracy {row['balanced_accuracy']:.4f}"))
        folds += [{"repeat": r, "seed": fold_seed, **row} for row in rows]
        repeat_rows.append({"repeat": r, "seed": fold_seed,
                            **{m: float(np.mean([row[m] for row in rows])) for m in crossval.METRICS}})
        seconds += sum(row["fit_seconds"] for row in rows)
    summary = {m: crossval.t_summary([f[m] for f in folds if f["repeat"] == 0]) for m in crossval.METRICS}
    test = crossval.refit_test_score(p.config, p.feats, p.groups, p.num_classes, _value(p.hyper))
    record = CrossValidationRecord(
        created_at=utc_timestamp(), dataset=p.dataset(), backbone=p.config.backbone, method=p.config.method,
        config=p.config.to_dict(), grouped=grouped, grouping=p.grouping(), k=k,
        fold_seeds=[row["seed"] for row in repeat_rows], procedure=p.procedure(), hyperparameter=p.hyper,
        folds=folds, summary=summary, repeats=repeat_rows, test=test, fit_seconds=round(seconds, 3),
        code=provenance.code_version())
    path = cv_file(p.folder(artifacts), p.config.backbone, p.config.run_id(), k, grouped)
    record.save(path)
    return record, path


def fold_study(p: Prepared, repeats: int, ungrouped: bool, metric: str = "balanced_accuracy", artifacts=None,
               emit: Emit = print, seed: int = 0, folds: tuple[int, ...] = STUDY_FOLDS) -> tuple[FoldStudyRecord, Path]:
    """The CV estimate of ``metric`` for each fold count (and leave-one-group-out for cheap methods), grouped and,
    with ``ungrouped``, image by image; stored with the refitted test score, spread, bias and cost."""
    test = crossval.refit_test_score(p.config, p.feats, p.groups, p.num_classes, _value(p.hyper))
    units = len(np.unique(p.groups))
    rows = []
    for grouped in (True, False) if ungrouped else (True,):
        for k in folds:
            if k > (units if grouped else len(p.groups)):
                emit(f"fold study: {k} folds skipped, only {units} groups")
                continue
            for fold_seed, assignment in assignments(p, k, repeats, grouped, seed):
                scores, _ = crossval.cross_validate(p.config, p.feats, p.groups, assignment, p.num_classes,
                                                    _value(p.hyper))
                values = [s[metric] for s in scores]
                rows.append({"folds": k, "grouped": grouped, "seed": fold_seed, "estimate": float(np.mean(values)),
                             "fold_sd": float(np.std(values, ddof=1)), "fit_seconds": round(
                                 sum(s["fit_seconds"] for s in scores), 3)})
                emit(f"fold study: {k} folds, {'grouped' if grouped else 'ungrouped'}, seed {fold_seed}: "
                     f"{metric} {rows[-1]['estimate']:.4f}")
    if p.config.method in LOGO_METHODS and units <= LOGO_MAX_GROUPS:
        scores, oof = crossval.cross_validate(p.config, p.feats, p.groups, leave_one_group_out(p.groups),
                                              p.num_classes, _value(p.hyper))
        rows.append({"folds": LOGO, "grouped": True, "seed": None,
                     "estimate": crossval.score(p.feats.labels, oof)[metric], "fold_sd": None,
                     "fit_seconds": round(sum(s["fit_seconds"] for s in scores), 3)})
        emit(f"fold study: leave-one-group-out ({units} groups): {metric} {rows[-1]['estimate']:.4f}")
    record = FoldStudyRecord(
        created_at=utc_timestamp(), dataset=p.dataset(), backbone=p.config.backbone, method=p.config.method,
        config=p.config.to_dict(), metric=metric, grouping=p.grouping(), procedure=p.procedure(),
        hyperparameter=p.hyper, test=test, rows=rows, summary=study_summary(rows, test[metric]),
        code=provenance.code_version())
    path = fold_study_file(p.folder(artifacts), p.config.backbone, p.config.run_id())
    record.save(path)
    return record, path


def study_summary(rows: list[dict], test_score: float) -> list[dict]:
    """Per (folds, grouped): the mean estimate over repeats, its SD across repeats, its bias against the test
    score and the mean fit seconds of one assignment."""
    out = []
    keys = list(dict.fromkeys((r["folds"], r["grouped"]) for r in rows))
    for k, grouped in keys:
        members = [r for r in rows if (r["folds"], r["grouped"]) == (k, grouped)]
        estimates = [r["estimate"] for r in members]
        spread = float(np.std(estimates, ddof=1)) if len(estimates) > 1 else None
        out.append({"folds": k, "grouped": grouped, "repeats": len(members), "estimate": float(np.mean(estimates)),
                    "spread_sd": spread, "bias": float(np.mean(estimates)) - test_score,
                    "fit_seconds": float(np.mean([r["fit_seconds"] for r in members]))})
    return out


def check_metric(metric: str) -> str:
    """One line for a metric the CV does not compute."""
    if metric not in crossval.METRICS:
        raise UserError(f"unknown metric '{metric}'; choose one of: {', '.join(crossval.METRICS)}")
    return metric
