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

A sitting runs them after its grids, before the comparisons (an ensemble is compared with its best
member). Both are idempotent: a stored ensemble of the same members and weights, or an operating point
of the same key, is left as it is. An analysis whose runs are not complete yet waits for a later sitting.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

from core.artifacts.config import RunConfig
from core.artifacts.layout import dataset_slug, ensemble_folders
from core.artifacts.runs import RunFolder
from core.errors import UserError
from core.evaluate import operating_point as op
from core.evaluate.ensemble import WEIGHT_METHODS, build_ensemble
from core.progress import Emit
from core.train import config as config_mod

ANALYSES = ("ensemble", "operating_point")
_KEYS = {
    "ensemble": {"datasets", "backbones", "seed", "preset", "set", "weights"},
    "operating_point": {"datasets", "backbone", "seed", "preset", "set", "positive", "sensitivity", "cost_ratio"},
}


@dataclass
class Analysis:
    """One analysis on one dataset: its kind, the runs it reads (as configs) and its options."""

    kind: str
    dataset: str
    members: list[RunConfig]
    options: dict = field(default_factory=dict)

    def describe(self) -> str:
        """One line: what it is and on which runs."""
        runs = ", ".join(f"{c.backbone} seed {c.seed}" for c in self.members)
        where = dataset_slug(self.dataset)
        if self.kind == "ensemble":
            return f"{where}: ensemble ({self.options['weights']}) of {runs}"
        return (f"{where}: operating point of {runs}: {', '.join(self.options['positive'])} at "
                f"{self.options['target'].label()}")


def parse_analyses(spec: dict, resolve_dataset, where: str) -> list[Analysis]:
    """The ``[[ensemble]]`` and ``[[operating_point]]`` tables of an experiment file, checked; one line per mistake.
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

    def member(dataset: str, backbone: str) -> RunConfig:
        layer = copy.deepcopy(overrides)
        layer.update(weights="imagenet", method="finetune", seed=seed)
        return config_mod.resolve(resolve_dataset(dataset), backbone, table.get("preset", "full"), layer)

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


def run_analyses(analyses: list[Analysis], root: Path, emit: Emit) -> tuple[list[tuple[Analysis, str]], list[str]]:
    """Carry out every analysis whose runs are complete; returns the failures (analysis, reason) and the datasets
    an analysis changed (their comparison is redone). One that waits for runs is said so and skipped."""
    failures, changed = [], []
    for analysis in analyses:
        folders = [RunFolder.for_config(c, root) for c in analysis.members]
        missing = [f.path for f in folders if not f.is_complete()]
        if missing:
            emit(f"  waits for {len(missing)} run(s) to complete: {analysis.describe()}")
            continue
        try:
            if analysis.kind == "ensemble":
                dataset_dir = folders[0].path.parent.parent
                before = ensemble_folders(dataset_dir)
                build_ensemble(dataset_dir, [str(f.path) for f in folders], analysis.options["weights"], emit=emit)
                if ensemble_folders(dataset_dir) != before:
                    changed.append(analysis.dataset)
            else:
                _operating_point(analysis, folders[0].path, emit)
        except UserError as exc:
            failures.append((analysis, str(exc)))
            emit(f"  failed: {analysis.describe()}: {exc}")
    return failures, changed


def _operating_point(analysis: Analysis, run: Path, emit: Emit) -> None:
    target, positive = analysis.options["target"], analysis.options["positive"]
    inputs = op.load_run(run)
    key = op.screen_key(op.positive_columns(inputs.classes, positive), target)
    if any(p.get("key") == key for p in op.stored(run)):
        emit(f"  complete already: {analysis.describe()}")
        return
    op.store(run, op.operating_point(inputs, positive, target))
    emit(f"  stored: {analysis.describe()} -> {run}")
