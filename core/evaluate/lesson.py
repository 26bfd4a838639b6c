"""The leakage lesson: one network trained on a pre-augmented dataset under different splits, each scored on
its validation split and on the untouched predefined test split.

The runs come from ``experiments/leakage_lesson.toml`` on the set ``scripts/build_leaky_alzheimer.py`` builds
(every source image saved once as it is and several times augmented, before any split). The arms differ only
in how validation is carved from the augmented training folder (the ``grouping`` setting):

- ``none``: image by image, as the original study did; copies of one scan land on both sides;
- ``regex:...``: one group per source image (read from the copies' file names): the product's way when the
  origin of every copy is known;
- ``duplicates``: groups of near-duplicates found by the audit's perceptual hash: the product's default when
  it is not.

For every arm the record holds the validation and test scores with group-bootstrap intervals, and two counts
of validation images whose source image is also in training: the truth (from the file names, the source
groups) and what the audit's near-duplicate groups see. Every arm is measured the same way, whatever its own
split's grouping: validation intervals resample source scans, test intervals and the audit's counts use the
dataset's ``audit.json`` groups. Nothing is trained here: every number is computed from the runs' stored
predictions and splits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.artifacts import provenance
from core.artifacts.layout import (
    CONFIG_FILE,
    LESSON_FILE,
    PREDICTIONS_FILE,
    PROVENANCE_FILE,
    VAL_PREDICTIONS_FILE,
    dataset_complete_runs,
    find_dataset,
)
from core.artifacts.records import LessonRecord, Predictions, ProvenanceRecord, SplitRecord
from core.artifacts.storage import read_json, utc_timestamp
from core.data.groups import Grouping, from_pattern
from core.data.splits import SplitAssignment
from core.errors import UserError
from core.evaluate.compare import audit_groups
from core.evaluate.metrics import interval_summary

BUILD_FILE = "BUILD.json"  # written into the augmented dataset by scripts/build_leaky_alzheimer.py
# The arms in the order the page shows them: the mistake, the fix, the default without provenance.
ARMS = {
    "none": ("image-level split", "the original study's way: validation drawn image by image from the augmented "
             "training folder"),
    "regex": ("split by source image", "the product's way when each copy's origin is known: all copies of a scan "
              "on one side (groups from the file names)"),
    "duplicates": ("split by near-duplicate groups", "the product's default when the origin is unknown: groups "
                   "of near-copies found by the audit's perceptual hash"),
}


def build_lesson(lesson_root: str | Path, data_root: str | Path | None = None) -> LessonRecord:
    """The lesson record of the runs under ``lesson_root`` (one dataset folder; its runs differ in their split).

    ``data_root`` is where the augmented dataset's folder is found for its ``BUILD.json`` (default: the path
    the runs recorded); without it the record says the build settings are unknown.
    """
    root = Path(lesson_root)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and dataset_complete_runs(p)) if root.is_dir() else []
    if len(folders) != 1:
        found = ", ".join(p.name for p in folders) or "none"
        raise UserError(f"{root} should hold the complete runs of one dataset (experiments/leakage_lesson.toml); "
                        f"found: {found}")
    runs = dataset_complete_runs(folders[0])
    arms = {}
    for run in runs:
        config = read_json(run / CONFIG_FILE)
        kind = str(config.get("grouping", "none")).split(":", 1)[0]
        if kind in ARMS and kind not in arms:
            arms[kind] = run
    regex = [r for k, r in arms.items() if k == "regex"]
    if "none" not in arms or not regex:
        raise UserError(f"{folders[0]} needs a complete run split image by image (grouping none) and one split by "
                        "source image (grouping regex:...): run experiments/leakage_lesson.toml")
    pattern = read_json(regex[0] / CONFIG_FILE)["grouping"].split(":", 1)[1]
    prov = ProvenanceRecord.load(regex[0] / PROVENANCE_FILE)
    audited = audit_groups(folders[0], prov.fingerprint)
    if audited is None:
        raise UserError(f"{folders[0]} has no audit.json of these images: run `python -m core audit` on the augmented "
                        "set (an experiment sitting writes it) so every arm is measured by the same groups")
    build = _build_settings(prov, data_root, regex[0])
    return LessonRecord(
        created_at=utc_timestamp(),
        dataset={"slug": folders[0].name, "path": prov.dataset.get("path"),
                 "fingerprint": prov.fingerprint, "source_pattern": pattern, "audit_groups": audited.detail},
        build=build,
        arms=[_arm(kind, arms[kind], pattern, audited) for kind in ARMS if kind in arms],
        code=provenance.code_version())


def lesson_path(lesson_root: str | Path) -> Path:
    """Where the lesson record of ``lesson_root`` is stored."""
    return Path(lesson_root) / LESSON_FILE


def _arm(kind: str, run: Path, pattern: str, audited: Grouping) -> dict:
    """One arm: its split, validation and test scores, and the validation leak seen by the truth and the audit."""
    prov = ProvenanceRecord.load(run / PROVENANCE_FILE)
    split = SplitAssignment.from_dict(SplitRecord.load((run / prov.split_file).resolve()).to_dict())
    sources = from_pattern(pattern, [p for p, _, _ in split.items])
    scored = {}
    for name, file, groups in (("validation", VAL_PREDICTIONS_FILE, sources), ("test", PREDICTIONS_FILE, audited)):
        table = Predictions.load(run / file)
        y = np.array([list(table.classes).index(t) for t in table.true])
        scored[name] = (table, y, interval_summary(y, table.probs, list(table.classes), groups=groups.codes(table.ids)))
    test, y_test, _ = scored["test"]
    free = ~audited.leaking(split.items, test.ids)
    truth, seen = sources.validation_leak(split.items), audited.validation_leak(split.items)
    val_ids = split.paths("val")
    really = sources.leaking(split.items, val_ids, ("train",))
    linked = int((really & audited.leaking(split.items, val_ids, ("train",))).sum())
    name, description = ARMS[kind]
    return {
        "kind": kind, "name": name, "description": description, "grouping": read_json(run / CONFIG_FILE).get("grouping"),
        "run": f"{run.parent.name}/{run.name}",
        "counts": {s: len(split.paths(s)) for s in ("train", "val", "test")},
        "validation": _scores(scored["validation"][2]),
        "test": _scores(scored["test"][2]),
        "validation_sources_in_train": {"images": truth["leaking"], "of": truth["images"],
                                        "by": "source image (file names)"},
        "validation_leak_seen_by_audit": {"images": seen["leaking"], "of": seen["images"], "by": audited.detail},
        # Of the truly leaking validation images, those the audit's groups link to training too (its detection).
        "true_leaks_linked_by_audit": {"images": linked, "of": int(really.sum())},
        "test_leak_free": {"n": int(free.sum()),
                           "accuracy": float((test.probs[free].argmax(1) == y_test[free]).mean()) if free.any()
                           else None},
    }


def _scores(summary: dict) -> dict:
    """Accuracy and balanced accuracy with their intervals, and what the bootstrap resampled."""
    boot = summary["bootstrap"]
    out = {"n": summary["n"], "resampled": f"{boot.get('unit', 'image')}s ({boot.get('units', summary['n'])})"}
    for metric in ("accuracy", "balanced_accuracy"):
        interval = boot["metrics"].get(metric) or {}
        out[metric] = {"estimate": summary[metric], "low": interval.get("low"), "high": interval.get("high")}
    return out


def _build_settings(prov: ProvenanceRecord, data_root: str | Path | None, run: Path) -> dict | None:
    """The augmented dataset's BUILD.json (how it was made), or None where the dataset is not on this machine."""
    recorded = prov.dataset.get("path") or ""
    folder = Path(data_root) / Path(recorded).name if data_root else find_dataset(recorded, run)
    path = folder / BUILD_FILE if folder else None
    return read_json(path) if path and path.is_file() else None
