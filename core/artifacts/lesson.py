"""The leakage lesson as the report shows it: the stored :class:`~core.artifacts.records.LessonRecord` read
once, its arms as a table and a chart's rows, and the paragraph that explains the gap, worded from the
record's numbers (nothing here computes a score)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from core.artifacts.layout import LESSON_FILE, lesson_dir
from core.artifacts.records import LessonRecord
from core.artifacts.report import format_ci

COMMANDS = ("python scripts/build_leaky_alzheimer.py\n"
            "python -m core experiment experiments/leakage_lesson.toml\n"
            "python -m core lesson")


def load_lesson(root: str | Path | None = None) -> LessonRecord | None:
    """The stored lesson record under the artifacts folder ``root``, or None when there is none yet
    (:class:`~core.artifacts.records.RecordError` when the file is there but unusable)."""
    path = lesson_dir(root) / LESSON_FILE
    return LessonRecord.load(path) if path.is_file() else None


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
            "Validation minus test": f"{val['accuracy']['estimate'] - test['accuracy']['estimate']:+.3f}",
            "Test balanced accuracy": _ci(test["balanced_accuracy"]),
            "Validation images whose source is in train": _share(truth),
            "…as the audit's near-duplicate groups see it": _share(audit),
        })
    return pd.DataFrame(rows)


def explanation(record: LessonRecord) -> str:
    """The paragraph on the gap, worded from the record's numbers (claims only where the intervals allow them)."""
    leaky, fixed, default = arm(record, "none"), arm(record, "regex"), arm(record, "duplicates")
    if not leaky or not fixed:
        return "The lesson needs both the image-level and the source-image arm."

    def acc(a: dict, split: str, metric: str = "accuracy") -> str:
        return f"{a[split][metric]['estimate']:.1%}"

    def gap(a: dict) -> float:
        return (a["validation"]["accuracy"]["estimate"] - a["test"]["accuracy"]["estimate"]) * 100

    truth, clean = leaky["validation_sources_in_train"], fixed["validation_sources_in_train"]
    parts = [f"Split image by image, {truth['images']} of {truth['of']} validation images have their source scan in "
             f"training (as itself or as another augmented copy), so validation partly measures recall of scans the "
             f"network has seen: {acc(leaky, 'validation')} on validation against {acc(leaky, 'test')} on the "
             f"untouched test split, {gap(leaky):+.1f} points. Split by source image, {clean['images']} of "
             f"{clean['of']} validation images have their source in training, and validation "
             f"({acc(fixed, 'validation')}) is {gap(fixed):+.1f} points from test ({acc(fixed, 'test')})."]
    compared = []
    for metric, name in (("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy")):
        a, b = leaky["test"][metric], fixed["test"][metric]
        apart = a["low"] is not None and b["low"] is not None and (a["low"] > b["high"] or b["low"] > a["high"])
        compared.append(f"{name} {acc(leaky, 'test', metric)} against {acc(fixed, 'test', metric)} "
                        f"({'intervals apart' if apart else 'intervals overlap'})")
    parts.append("On the test split, the two networks score " + "; ".join(compared) + ".")
    lb, fb = leaky["test"]["balanced_accuracy"], fixed["test"]["balanced_accuracy"]
    if lb["high"] is not None and fb["low"] is not None and lb["high"] < fb["low"]:
        parts.append("So here the leak did more than inflate the score the network was judged by: the network "
                     "stopped and kept on the leaking validation split serves the rare classes worse (one seed each: "
                     "the test interval does not cover training randomness).")
    if default:
        seen, real = default["validation_leak_seen_by_audit"], default["validation_sources_in_train"]
        parts.append(f"The audit's perceptual hash matches flips and quarter turns, not the arbitrary rotations, "
                     f"shifts and shears of this augmentation: split by its near-duplicate groups, it sees "
                     f"{seen['images']} leaking validation images where {real['images']} of {real['of']} have their "
                     f"source in training, and validation reads {acc(default, 'validation')} against "
                     f"{acc(default, 'test')} on test ({gap(default):+.1f} points). When copies were made before the "
                     "split, only their provenance (here the file names; `--group-pattern` or `--groups FILE`) keeps "
                     "them together.")
    copies = (record.build or {}).get("copies_per_image")
    parts.append("How large the inflation grows depends on how many copies each scan has and how long the network "
                 "trains on them" + (f"; with {copies} augmented copies per scan and early stopping it is the "
                                     f"{gap(leaky):+.1f} points above" if copies else "") +
                 ". One seed per arm: the direction is the lesson, not the last point.")
    return " ".join(parts)


def _ci(value: dict) -> str:
    return format_ci(value["estimate"], value.get("low"), value.get("high"))


def _share(count: dict) -> str:
    if count.get("images") is None or not count.get("of"):
        return "unknown"
    return f"{count['images']} of {count['of']} ({count['images'] / count['of']:.0%})"
