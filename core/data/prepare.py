"""The dataset as one run sees it: discovered, checked, fingerprinted, split and (quick preset) subsampled."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.artifacts.config import RunConfig
from core.artifacts.scoring import balanced_accuracy_step
from core.data import groups
from core.data.dataset import DatasetIndex, discover, fingerprint
from core.data.duplicates import find_duplicates
from core.data.sampling import balanced_sample
from core.data.splits import SplitAssignment, make_splits
from core.errors import DatasetError
from core.progress import Emit

SKIPPED_SHOWN = 5  # skipped files named in a run's output


@dataclass
class PreparedData:
    """The dataset as a run sees it: classes, ids and labels per split."""

    root: Path
    classes: list[str]
    fingerprint: str
    split: SplitAssignment
    ids: dict[str, list[str]]  # split -> relative paths
    labels: dict[str, np.ndarray]  # split -> class indices
    skipped: list[tuple[str, str]]
    measured_groups: groups.Grouping  # the groups leak-free scores and intervals use (the split's, or duplicates)

    def test_groups(self) -> np.ndarray:
        """Group codes of the test images (equal codes: one group), for cluster-bootstrap intervals."""
        return self.measured_groups.codes(self.ids["test"])

    def abs_paths(self, split: str) -> list[str]:
        return [str(self.root / p) for p in self.ids[split]]


def prepare_data(config: RunConfig, emit: Emit) -> PreparedData:
    """Discover, validate, fingerprint and split the dataset; subsample for quick runs."""
    emit(f"data: scanning {config.dataset}")
    index = discover(config.dataset)
    if index.skipped:
        emit(f"data: skipped {len(index.skipped)} file(s), folder(s) or link(s) that are not usable images:")
        for path, reason in index.skipped[:SKIPPED_SHOWN]:
            emit(f"data:   {path}: {reason}")
        if len(index.skipped) > SKIPPED_SHOWN:
            emit(f"data:   ... and {len(index.skipped) - SKIPPED_SHOWN} more (python -m core audit lists them all)")
    for problem in index.problems:
        emit(f"data: note: {problem}")
    if len(index.classes) < 2:
        raise DatasetError(f"{config.dataset} has {len(index.classes)} class folder(s) with images; a classifier needs at least 2")
    grouping, shas = make_grouping(config, index, emit)
    split = make_splits(index, config.val_fraction, config.test_fraction, config.split_seed,
                        None if grouping.source == "none" else grouping, config.split_policy, config.val_folder)
    if grouping.source == "none":  # split image by image, but leakage is still measured on duplicates
        grouping, shas = duplicate_groups(index, config.duplicate_threshold, emit)
    for message in groups.chaining_messages(grouping.summary({p: lab for p, lab, _ in split.items})):
        emit(f"data: WARNING: {message}")
    digest = fingerprint(index, shas)  # the duplicate scan hashed every file already
    split.dataset_fingerprint = digest
    class_index = {c: i for i, c in enumerate(index.classes)}
    ids, labels = {}, {}
    for name in ("train", "val", "test"):
        pairs = run_pairs(split, name, config)
        ids[name] = [p for p, _ in pairs]
        labels[name] = np.array([class_index[lab] for _, lab in pairs], dtype=np.int64)
        if not pairs:
            raise DatasetError(f"the {name} split of {config.dataset} is empty")
    untrained = [c for i, c in enumerate(index.classes) if not (labels["train"] == i).any()]
    if untrained:
        raise DatasetError(f"class(es) {', '.join(untrained)} of {config.dataset} have no training images (only in "
                           "val/test): a model cannot learn them; add training images or remove the class")
    emit("data: " + ", ".join(f"{k} {len(v)}" for k, v in ids.items()) + f" images, {len(index.classes)} classes")
    sparse = sparse_validation_message(labels["val"], list(index.classes), split.groups_of(ids["val"]))
    if sparse:
        emit(f"data: WARNING: {sparse}")
    return PreparedData(index.root, list(index.classes), digest, split, ids, labels, list(index.skipped), grouping)


# Below this many validation images in a class, one image moves a class-averaged validation score by more than
# 1/(classes x this): 2.5 points of balanced accuracy with 4 classes.
SPARSE_VALIDATION_CLASS = 10


def sparse_validation_message(val_labels: np.ndarray, classes: list[str],
                              val_groups: list[str] | None = None) -> str | None:
    """A sentence when a class has fewer than :data:`SPARSE_VALIDATION_CLASS` validation images (None otherwise):
    early stopping, the baselines' hyperparameters and the recommendation choose on a score that one image moves.
    ``val_groups`` (each validation image's group of near-copies) adds each such class's group count."""
    labels = np.asarray(val_labels, dtype=np.int64)
    counts = np.bincount(labels, minlength=len(classes))
    present = [(int(n), c) for n, c in zip(counts, classes) if n]
    sparse = sorted((n, c) for n, c in present if n < SPARSE_VALIDATION_CLASS)
    if not sparse:
        return None

    def groups(name: str) -> str:
        if val_groups is None:
            return ""
        k = len({g for g, lab in zip(val_groups, labels) if classes[lab] == name})
        return f" in {k} group{'s' if k != 1 else ''}"

    n, name = sparse[0]
    listed = ", ".join(f"{c} {k}{groups(c)}" for k, c in sparse)
    return (f"the validation split holds few images of some classes ({listed}): one image of {name} moves a "
            f"validation balanced accuracy by {balanced_accuracy_step(len(present), n):.3f}, and early stopping, the "
            "baselines' hyperparameters and the recommendation choose on validation. Validation takes whole groups of "
            "near-copies, so a class with few groups cannot get many independent images: `python "
            "scripts/validation_carve.py DATASET` shows what other --set val_fraction=... or split_seed values would "
            "give; more images of the class (other subjects) help most")


def run_pairs(split: SplitAssignment, name: str, config: RunConfig) -> list[tuple[str, str]]:
    """``(relative path, label)`` of the images of split ``name`` a run of ``config`` uses (a quick preset's
    seeded, class-balanced subsample)."""
    pairs = split.labelled(name)
    cap = config.max_train_per_class if name == "train" else config.max_eval_per_class
    return balanced_sample(pairs, config.split_seed, per_class=cap) if cap else pairs


def make_grouping(config: RunConfig, index: DatasetIndex, emit: Emit) -> tuple[groups.Grouping, dict[str, str]]:
    """The groups the config asks for (see :mod:`core.data.groups`), and the SHA-256 of every file if finding
    them read the files (duplicates), else an empty dict."""
    kind, arg = groups.parse_grouping(config.grouping)
    paths = [r.path for r in index.records]
    if kind == "duplicates":
        return duplicate_groups(index, config.duplicate_threshold, emit)
    if kind == "csv":
        return groups.from_csv(arg, paths), {}
    if kind == "regex":
        return groups.from_pattern(arg, paths), {}
    return groups.singletons(paths), {}


def duplicate_groups(index: DatasetIndex, threshold: int, emit: Emit) -> tuple[groups.Grouping, dict[str, str]]:
    """Connected near-copies (perceptual hash within ``threshold`` bits, flips and rotations included), and the
    SHA-256 of every file read on the way.

    Kept for the process (:data:`_SCANS`): the runs of one sitting (an experiment, a Train-page job) scan a
    dataset once, while any file's size or modification time unchanged says it is the same images.
    """
    key = _scan_key(index, threshold)
    if key in _SCANS:
        emit(f"data: near-copies of {len(index.records)} images as found earlier in this process")
        found, shas = _SCANS[key]
        return copy.deepcopy(found), dict(shas)
    emit(f"data: grouping near-copies of {len(index.records)} images (pHash threshold {threshold})")
    scan = find_duplicates(index, threshold)
    paths = [r.path for r in scan.index.records]
    found = groups.from_pairs(paths, scan.ii, scan.jj, scan.dd, f"pHash within {threshold} of 256 bits, "
                              "flips and rotations included, or identical bytes")
    found.group_of.update({p: p for p in scan.bad})  # unreadable now, skipped by the split anyway
    if len(_SCANS) >= MAX_SCANS:
        _SCANS.pop(next(iter(_SCANS)))
    _SCANS[key] = (copy.deepcopy(found), dict(scan.shas))
    return found, scan.shas


MAX_SCANS = 4
_SCANS: dict[tuple, tuple[groups.Grouping, dict[str, str]]] = {}


def _scan_key(index: DatasetIndex, threshold: int) -> tuple:
    """What a scan's result depends on: the folder, the threshold and every file's path, size and mtime."""
    files = []
    for record in index.records:
        try:
            stat = (index.root / record.path).stat()
            files.append((record.path, stat.st_size, stat.st_mtime_ns))
        except OSError:
            files.append((record.path, None, None))
    return str(index.root), threshold, tuple(files)

