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


def score_rows(record: LessonRecord) -> pd.DataFrame:
    """One row per arm and split scored (validation, test): accuracy with its interval, for the chart."""
    rows = []
    for a in record.arms:
        for split in ("validation", "test"):
            acc = a[split]["accuracy"]
            rows.append({"arm": a["name"], "scored on": split, "accuracy": acc["estimate"], "low": acc["low"],
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
    """One paragraph on the gap, with the record's numbers."""
    leaky, fixed, default = arm(record, "none"), arm(record, "regex"), arm(record, "duplicates")
    if not leaky or not fixed:
        return "The lesson needs both the image-level and the source-image arm."

    def acc(a: dict, split: str) -> str:
        return f"{a[split]['accuracy']['estimate']:.1%}"

    truth, clean = leaky["validation_sources_in_train"], fixed["validation_sources_in_train"]
    text = (f"Split image by image, {truth['images']} of {truth['of']} validation images have their source scan "
            f"in training (as itself or as another augmented copy), so validation partly measures recall of scans "
            f"the network has seen: {acc(leaky, 'validation')} on validation against {acc(leaky, 'test')} on the "
            f"untouched test split. Split by source image, {clean['images']} of {clean['of']} validation images "
            f"have their source in training, and validation reads {acc(fixed, 'validation')} against "
            f"{acc(fixed, 'test')} on test.")
    val_gap = leaky["validation"]["accuracy"]["estimate"] - fixed["validation"]["accuracy"]["estimate"]
    test_gap = leaky["test"]["accuracy"]["estimate"] - fixed["test"]["accuracy"]["estimate"]
    if abs(test_gap) < abs(val_gap):
        text += (f" The two arms' validation scores differ by {val_gap * 100:+.1f} points, their test scores by "
                 f"{test_gap * 100:+.1f}: the leak changes the network far less than it changes the score it is "
                 f"judged and chosen by (early stopping, the epoch kept, the model picked).")
    else:
        text += (f" Their test scores differ by {test_gap * 100:+.1f} points, as much as their validation scores "
                 f"({val_gap * 100:+.1f}): here the split changed the network itself, not only how it was judged.")
    if default:
        seen, real = default["validation_leak_seen_by_audit"], default["validation_sources_in_train"]
        text += (f" The audit's perceptual hash matches flips and quarter turns, not the arbitrary rotations, "
                 f"shifts and shears of this augmentation: split by its near-duplicate groups, it sees "
                 f"{seen['images']} leaking validation images where {real['images']} of {real['of']} have their "
                 f"source in training, and validation reads {acc(default, 'validation')} against "
                 f"{acc(default, 'test')} on test. When copies were made before the split, only their "
                 f"provenance (here the file names; `--group-pattern` or `--groups FILE`) keeps them together.")
    return text


def _ci(value: dict) -> str:
    return format_ci(value["estimate"], value.get("low"), value.get("high"))


def _share(count: dict) -> str:
    if count.get("images") is None or not count.get("of"):
        return "unknown"
    return f"{count['images']} of {count['of']} ({count['images'] / count['of']:.0%})"
