"""The leakage lesson as the report shows it: the stored :class:`~core.artifacts.records.LessonRecord` read
once, its arms as a table and a chart's rows, and the paragraph that explains the gap, worded from the
record's numbers (nothing here computes a score)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from core.artifacts.layout import LESSON_FILE, lesson_dir
from core.artifacts.records import LessonRecord, RecordError
from core.artifacts.report import format_ci

SCORED = ("validation", "test")
METRICS = ("accuracy", "balanced_accuracy")
LEAK_COUNTS = ("validation_sources_in_train", "validation_leak_seen_by_audit")
COMMANDS = ("python scripts/build_leaky_alzheimer.py\n"
            "python -m core experiment experiments/leakage_lesson.toml\n"
            "python -m core lesson")


def load_lesson(root: str | Path | None = None) -> LessonRecord | None:
    """The stored lesson record under the artifacts folder ``root``, or None when there is none yet
    (:class:`~core.artifacts.records.RecordError` when the file is there but unusable)."""
    path = lesson_dir(root) / LESSON_FILE
    if not path.is_file():
        return None
    record = LessonRecord.load(path)
    for n, a in enumerate(record.arms if isinstance(record.arms, list) else [None], 1):
        if not _whole(a):
            raise RecordError(f"{path}: not a {LessonRecord.KIND} (arm {n} lacks a name, a run, its scores or its "
                              "leak counts): run `python -m core lesson` again")
    return record


def _whole(a) -> bool:
    """Whether one stored arm has everything the page reads."""
    try:
        return (all(isinstance(a[k], str) for k in ("kind", "name", "description", "run"))
                and all(isinstance(a[s][m]["estimate"], (int, float)) for s in SCORED for m in METRICS)
                and all(isinstance(a[k]["of"], int) for k in LEAK_COUNTS))
    except (KeyError, TypeError):
        return False


def arm(record: LessonRecord, kind: str) -> dict | None:
    """The arm of ``kind`` (``none``, ``regex``, ``duplicates``), or None if the lesson lacks it."""
    return next((a for a in record.arms if a["kind"] == kind), None)


def score_rows(record: LessonRecord, metric: str = "accuracy") -> pd.DataFrame:
    """One row per arm and split scored (validation, test): ``metric`` (accuracy or balanced_accuracy) with its
    interval, for the chart."""
    rows = []
    for a in record.arms:
        for split in ("validation", "test"):
            acc = a[split][metric]
            rows.append({"arm": a["name"], "scored on": split, "score": acc["estimate"], "low": acc["low"],
                         "high": acc["high"], "n": a[split]["n"]})
    return pd.DataFrame(rows)


def table(record: LessonRecord) -> pd.DataFrame:
    """The arms side by side: how validation was carved, both scores with intervals, the gap and the leak."""
    rows = []
    for a in record.arms:
        val, test = a["validation"], a["test"]
        truth, audit = a["validation_sources_in_train"], a["validation_leak_seen_by_audit"]
        rows.append({
            "Split": a["name"],
            "How validation was carved": a["description"],
            "Validation accuracy [95% CI]": _ci(val["accuracy"]),
            "Test accuracy [95% CI]": _ci(test["accuracy"]),
            "Validation minus test (points)": f"{gap(a):+.1f}",
            "…in balanced accuracy": f"{gap(a, 'balanced_accuracy'):+.1f}",
            "Test balanced accuracy": _ci(test["balanced_accuracy"]),
            "Validation images whose source is in train": _share(truth),
            "…as the audit's near-duplicate groups see it": _share(audit),
        })
    return pd.DataFrame(rows)


def gap(a: dict, metric: str = "accuracy") -> float:
    """Validation minus test of one arm, in points."""
    return (a["validation"][metric]["estimate"] - a["test"][metric]["estimate"]) * 100


def explanation(record: LessonRecord) -> str:
    """The paragraph on the gap, worded from the record's numbers: a difference is called one only where the
    intervals (same resampling unit for every arm) are apart, and a cause is offered as a possibility."""
    leaky, fixed, default = arm(record, "none"), arm(record, "regex"), arm(record, "duplicates")
    if not leaky or not fixed:
        return "The lesson needs both the image-level and the source-image arm."

    def pct(a: dict, split: str, metric: str = "accuracy") -> str:
        return f"{a[split][metric]['estimate']:.1%}"

    def apart(x: dict, y: dict) -> bool:
        return None not in (x["low"], y["low"]) and (x["low"] > y["high"] or y["low"] > x["high"])

    truth, clean = leaky["validation_sources_in_train"], fixed["validation_sources_in_train"]
    parts = [f"Split image by image, {truth['images']} of {truth['of']} validation images have their source scan in "
             f"training (as itself or as another augmented copy). Validation reads {pct(leaky, 'validation')} "
             f"accuracy against {pct(leaky, 'test')} on the untouched test split ({gap(leaky):+.1f} points; balanced "
             f"accuracy {gap(leaky, 'balanced_accuracy'):+.1f}). Split by source image, {clean['images']} of "
             f"{clean['of']} validation images have their source in training, and validation reads "
             f"{pct(fixed, 'validation')} against {pct(fixed, 'test')} ({gap(fixed):+.1f} points; balanced accuracy "
             f"{gap(fixed, 'balanced_accuracy'):+.1f}). What the leak adds to the validation score is, roughly, the "
             f"difference of the two gaps: {gap(leaky) - gap(fixed):+.1f} points of accuracy, "
             f"{gap(leaky, 'balanced_accuracy') - gap(fixed, 'balanced_accuracy'):+.1f} of balanced accuracy (a "
             f"difference of four estimates, each with the interval in the table: a size, not a measurement)."]
    compared = []
    for metric, name in (("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy")):
        x, y = leaky["test"][metric], fixed["test"][metric]
        compared.append(f"{name} {pct(leaky, 'test', metric)} against {pct(fixed, 'test', metric)} "
                        f"({'intervals apart' if apart(x, y) else 'intervals overlap'})")
    parts.append("On the test split the two networks score " + "; ".join(compared) + ".")
    lb, fb = leaky["test"]["balanced_accuracy"], fixed["test"]["balanced_accuracy"]
    if apart(lb, fb) and lb["estimate"] < fb["estimate"]:
        parts.append("One possible reason: early stopping and the epoch kept were chosen on a validation split that "
                     "rewards remembering training scans. One seed per arm, and the arms trained on slightly "
                     "different images: the test interval does not cover that, so this is a lead, not a finding.")
    linked = leaky.get("true_leaks_linked_by_audit")
    if linked:
        parts.append(f"The audit's perceptual hash matches flips and quarter turns, not the arbitrary rotations, "
                     f"shifts and shears of this augmentation: in the image-level split its near-duplicate groups "
                     f"link {linked['images']} of the {linked['of']} validation images whose source is in training.")
    if default:
        real = default["validation_sources_in_train"]
        parts.append(f"A split by those groups (the default when the copies' origin is unknown) still leaves "
                     f"{real['images']} of {real['of']} validation images with their source in training, and its "
                     f"validation reads {pct(default, 'validation')} against {pct(default, 'test')} on test "
                     f"({gap(default):+.1f} points). When copies were made before the split, only their provenance "
                     "(here the file names; `--group-pattern` or `--groups FILE`) keeps them together.")
    copies = (record.build or {}).get("copies_per_image")
    parts.append("How large the inflation grows depends on how many copies each scan has and how long the network "
                 "trains on them" + (f" ({copies} augmented copies per scan here, with early stopping)" if copies
                                     else "") + ". One seed per arm: the direction is the lesson, not the last point.")
    return " ".join(parts)


def _ci(value: dict) -> str:
    return format_ci(value["estimate"], value.get("low"), value.get("high"))


def _share(count: dict) -> str:
    if count.get("images") is None or not count.get("of"):
        return "unknown"
    return f"{count['images']} of {count['of']} ({count['images'] / count['of']:.0%})"
