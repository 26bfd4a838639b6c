"""Train/val/test splits: stratified by class and, when groups are given, disjoint by group.

A split is reproducible from its seed. Predefined split folders are kept by default
(results stay comparable with other work on a public dataset); a split the layout lacks
(usually val) is carved out of the predefined train set. A lone val/ folder beside train/
(no test/) is the held-out test split by default (``val_folder``). With a :class:`~core.data.groups.Grouping`
every carved split is disjoint by group (scikit-learn's ``StratifiedGroupKFold``), so
near-copies of one image never sit on both sides; ``policy="regroup"`` re-splits the
whole dataset, predefined folders included. Without groups (``grouping = "none"``) the
split is made image by image, as the first runs were.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from core.data.dataset import (
    LAYOUT_PREDEFINED,
    SPLITS,
    VAL_FOLDER_CHOICES,
    DatasetIndex,
    ImageRecord,
    default_val_folder,
)
from core.data.groups import Grouping
from core.errors import DatasetError

POLICIES = ("keep", "regroup")
MAX_FOLDS = 20  # held-out fractions are whole folds of at most this many: 0.15 = 3 folds of 20


@dataclass
class SplitAssignment:
    """The train/val/test split of every image, reproducible from the seed.

    ``items`` holds ``(relative path, label, split)`` sorted by path. ``sources`` says
    for each split whether it was predefined by the folder layout (``"predefined: folder val/"``:
    which folder became the split) or ``"stratified"`` (made here with scikit-learn and the seed). ``groups`` maps each path
    to its group (None for splits made without groups) and ``grouping`` says where the
    groups came from, with their summary.
    """

    seed: int
    val_fraction: float
    test_fraction: float
    layout: str
    items: list[tuple[str, str, str]]
    sources: dict[str, str] = field(default_factory=dict)
    dataset_fingerprint: str | None = None
    groups: dict[str, str] | None = None
    grouping: dict[str, Any] | None = None
    policy: str = "keep"

    def split_of(self, path: str) -> str:
        """The split of one relative path."""
        return self._by_path()[path]

    def groups_of(self, paths: Sequence[str]) -> list[str] | None:
        """The group of each of ``paths`` (an image outside every group is its own); None for a split made image by
        image."""
        return [self.groups.get(p, p) for p in paths] if self.groups else None

    def paths(self, split: str) -> list[str]:
        """Relative paths in ``split``, sorted."""
        return [p for p, _, s in self.items if s == split]

    def labelled(self, split: str) -> list[tuple[str, str]]:
        """``(relative path, label)`` pairs in ``split``, sorted by path."""
        return [(p, lab) for p, lab, s in self.items if s == split]

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per split per class: ``{"train": {"cat": 10, ...}, "val": ..., "test": ...}``."""
        classes = sorted({lab for _, lab, _ in self.items})
        out = {s: {c: 0 for c in classes} for s in SPLITS}
        for _, lab, s in self.items:
            out[s][lab] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data; :meth:`from_dict` reads it back."""
        return {
            "seed": self.seed,
            "val_fraction": self.val_fraction,
            "test_fraction": self.test_fraction,
            "layout": self.layout,
            "sources": dict(self.sources),
            "dataset_fingerprint": self.dataset_fingerprint,
            **({"grouping": self.grouping, "policy": self.policy} if self.groups is not None else {}),
            "items": [{"path": p, "label": lab, "split": s, **({"group": self.groups[p]} if self.groups else {})}
                      for p, lab, s in self.items],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SplitAssignment":
        """Inverse of :meth:`to_dict`."""
        items = [(d["path"], d["label"], d["split"]) for d in data["items"]]
        groups = {d["path"]: d["group"] for d in data["items"]} if data.get("grouping") else None
        return cls(int(data["seed"]), float(data["val_fraction"]), float(data["test_fraction"]),
                   str(data["layout"]), sorted(items), dict(data.get("sources", {})),
                   data.get("dataset_fingerprint"), groups, data.get("grouping"), data.get("policy", "keep"))

    def _by_path(self) -> dict[str, str]:
        cache = self.__dict__.get("_path_cache")
        if cache is None or len(cache) != len(self.items):
            cache = {p: s for p, _, s in self.items}
            self.__dict__["_path_cache"] = cache
        return cache


def min_class_size(val_fraction: float, test_fraction: float) -> int:
    """Fewest images a class needs so each split with a non-zero fraction gets one."""
    fractions = [1.0 - val_fraction - test_fraction] + [f for f in (val_fraction, test_fraction) if f > 0]
    return max([len(fractions)] + [math.ceil(1.0 / f - 1e-9) for f in fractions])


def make_splits(index: DatasetIndex, val_fraction: float = 0.15, test_fraction: float = 0.15,
                seed: int = 42, grouping: Grouping | None = None, policy: str = "keep",
                val_folder: str | None = None) -> SplitAssignment:
    """Assign every record of ``index`` to ``train``, ``val`` or ``test``, deterministically.

    - ``class_folders``: stratified by class, first ``test_fraction`` of all images, then
      ``val_fraction`` of all images out of the rest.
    - ``predefined_splits``: the folders' splits are kept. A split the layout lacks
      (usually val) is carved out of the predefined train set, stratified, with its
      fraction taken *of the train set*. ``val_folder`` says what a val/ folder becomes:
      ``"validation"``, or ``"test"`` (allowed only without a test/ folder; validation is then
      carved from train); None is the dataset's default
      (:func:`~core.data.dataset.default_val_folder`: test when val/ is the only held-out folder).
      ``policy="regroup"`` ignores the folders and splits the whole dataset as for ``class_folders``.

    ``sources`` says for each split where it came from, naming the folder of a predefined one.
    With a ``grouping`` other than ``none`` every split made here is disjoint by group
    (``StratifiedGroupKFold`` with ``seed``; fractions are whole folds of up to
    :data:`MAX_FOLDS`); without, images are split one by one (``train_test_split``).
    Raises :class:`DatasetError` when a class has too few images (or groups) to give
    each split at least one, or when the fractions are out of range.
    """
    _check_fractions(val_fraction, test_fraction)
    if policy not in POLICIES:
        raise DatasetError(f"split_policy must be one of {', '.join(POLICIES)}, not '{policy}'")
    groups = grouping.group_of if grouping is not None and grouping.source != "none" else None
    how = "stratified by group" if groups else "stratified"
    sources: dict[str, str] = {}
    role = folder_roles(index, val_folder)  # checked for every layout: a wrong val_folder is one clear line
    if index.layout == LAYOUT_PREDEFINED and policy == "keep":
        folders = {role[r.split]: r.path.split("/", 1)[0] for r in index.records if r.split}
        pool = [r for r in index.records if r.split == "train"]
        vf = 0.0 if "val" in folders else val_fraction
        tf = 0.0 if "test" in folders else test_fraction
        assigned = {r.path: role[r.split] for r in index.records if r.split != "train"}
        assigned.update(_split(pool, vf, tf, seed, " in the train split", groups))
        for s in SPLITS:
            carved = (s == "val" and vf > 0) or (s == "test" and tf > 0)
            sources[s] = f"{how} from train" if carved else (
                f"predefined: folder {folders[s]}/" if s in folders else "empty")
    else:
        assigned = _split(index.records, val_fraction, test_fraction, seed, "", groups)
        regrouped = " (predefined folders ignored)" if index.layout == LAYOUT_PREDEFINED else ""
        for s, f in (("train", 1.0), ("val", val_fraction), ("test", test_fraction)):
            sources[s] = f"{how}{regrouped}" if f > 0 else "empty"
    items = sorted((r.path, r.label, assigned[r.path]) for r in index.records)
    summary = None
    if grouping is not None:
        summary = {**grouping.to_dict(), "summary": grouping.summary({r.path: r.label for r in index.records})}
    return SplitAssignment(int(seed), float(val_fraction), float(test_fraction), index.layout, items, sources,
                           groups=({r.path: grouping.group_of.get(r.path, r.path) for r in index.records}
                                   if grouping is not None else None),
                           grouping=summary, policy=policy)


def folder_roles(index: DatasetIndex, val_folder: str | None = None) -> dict[str, str]:
    """Predefined split folder -> the split it becomes (see :func:`make_splits`'s ``val_folder``)."""
    present = index.splits()
    chosen = default_val_folder(present) if val_folder is None else val_folder
    if chosen not in VAL_FOLDER_CHOICES:
        raise DatasetError(f"val_folder must be one of {', '.join(VAL_FOLDER_CHOICES)}, not '{chosen}'")
    if chosen == "test" and default_val_folder(present) != "test":
        has = "its own test folder" if "test" in present else "no val folder beside train"
        raise DatasetError(f"val_folder=test applies to a dataset with train/ and val/ folders only, and this one has "
                           f"{has}; leave val_folder out or set it to validation")
    return {"train": "train", "val": "test" if chosen == "test" else "val", "test": "test"}


def _split(records: Sequence[ImageRecord], val_fraction: float, test_fraction: float, seed: int, where: str,
           groups: Mapping[str, str] | None) -> dict[str, str]:
    if groups is None:
        return _stratified_split(records, val_fraction, test_fraction, seed, where)
    return _stratified_group_split(records, val_fraction, test_fraction, seed, where, groups)


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    ok = 0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1
    if not ok:
        raise DatasetError(f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must be in [0, 1) "
                           "and leave some images for training")


def _stratified_split(records: Sequence[ImageRecord], val_fraction: float, test_fraction: float,
                      seed: int, where: str) -> dict[str, str]:
    """Stratified train/val/test assignment of ``records`` (path -> split)."""
    from sklearn.model_selection import train_test_split  # imported here: slow to import

    labels = np.array([r.label for r in records])
    _check_class_sizes(labels, val_fraction, test_fraction, where)
    idx = np.arange(len(records))
    split = np.full(len(records), "train", dtype=object)
    rest = idx
    if test_fraction > 0:
        rest, test = train_test_split(idx, test_size=test_fraction, stratify=labels, random_state=seed)
        split[test] = "test"
    if val_fraction > 0:
        rel = val_fraction / (1.0 - test_fraction)
        _, val = train_test_split(rest, test_size=rel, stratify=labels[rest], random_state=seed)
        split[val] = "val"
    _ensure_each_split(split, labels, val_fraction, test_fraction, seed)
    return {r.path: str(s) for r, s in zip(records, split)}


def _check_class_sizes(labels: np.ndarray, val_fraction: float, test_fraction: float, where: str) -> None:
    """Raise :class:`DatasetError` for the first class too small to split."""
    if val_fraction == 0 and test_fraction == 0:
        return
    need = min_class_size(val_fraction, test_fraction)
    names, counts = np.unique(labels, return_counts=True)
    for name, n in zip(names, counts):
        if n < need:
            wanted = ["train"] + [s for s, f in (("val", val_fraction), ("test", test_fraction)) if f > 0]
            raise DatasetError(
                f"class '{name}' has only {n} image(s){where}; at least {need} are needed to put one in each of "
                f"{'/'.join(wanted)} with val_fraction={val_fraction} and test_fraction={test_fraction}. "
                + _class_size_hint(int(counts.min()), val_fraction, test_fraction))


def _class_size_hint(n: int, val_fraction: float, test_fraction: float) -> str:
    """What would let every class split, the smallest having ``n`` images: larger fractions if any fit,
    else more images."""
    fractions = {k: f for k, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)) if f > 0}
    if n > len(fractions):
        wanted = math.ceil(100 / n) / 100  # smallest two-decimal fraction that gives this class one image
        raised = {k: max(f, wanted) for k, f in fractions.items()}
        if sum(raised.values()) < 1 and min_class_size(raised.get("val_fraction", 0.0),
                                                       raised.get("test_fraction", 0.0)) <= n:
            settings = " ".join(f"{k}={f:g}" for k, f in raised.items())
            return f"Add images, or raise the fractions ({settings} fits classes of {n} or more images)."
    return "Add images, or set a fraction to 0."


def _ensure_each_split(split: np.ndarray, labels: np.ndarray, val_fraction: float, test_fraction: float,
                       seed: int) -> None:
    """Rounding can leave a class without a val or test image; move one over from train."""
    _ensure_each_split_by_group(split, labels, np.arange(len(labels)), val_fraction, test_fraction, seed)


# --- group-disjoint splits ------------------------------------------------------------

def _stratified_group_split(records: Sequence[ImageRecord], val_fraction: float, test_fraction: float,
                            seed: int, where: str, groups: Mapping[str, str]) -> dict[str, str]:
    """Train/val/test assignment (path -> split) stratified by class and disjoint by group."""
    labels = np.array([r.label for r in records])
    ids: dict[str, int] = {}
    codes = np.array([ids.setdefault(groups.get(r.path, r.path), len(ids)) for r in records], dtype=np.int64)
    _check_class_sizes(labels, val_fraction, test_fraction, where)
    _check_class_groups(labels, codes, val_fraction, test_fraction, where)
    split = np.full(len(records), "train", dtype=object)
    rest = np.arange(len(records))
    if test_fraction > 0:
        split[_hold_out_groups(rest, labels, codes, test_fraction, seed)] = "test"
        rest = np.flatnonzero(split == "train")
    if val_fraction > 0:
        split[_hold_out_groups(rest, labels, codes, val_fraction / (1.0 - test_fraction), seed)] = "val"
    _ensure_each_split_by_group(split, labels, codes, val_fraction, test_fraction, seed)
    return {r.path: str(s) for r, s in zip(records, split)}


def _folds_for(fraction: float, max_folds: int) -> tuple[int, int]:
    """``(m, k)``: hold out ``m`` of ``k`` folds, ``m / k`` as close to ``fraction`` as ``k <= max_folds`` allows."""
    candidates = [(abs(m / k - fraction), k, m) for k in range(2, max(2, max_folds) + 1) for m in range(1, k)]
    _, k, m = min(candidates)
    return m, k


def _hold_out_groups(idx: np.ndarray, labels: np.ndarray, codes: np.ndarray, fraction: float,
                     seed: int) -> np.ndarray:
    """Rows of ``idx`` held out as whole groups, about ``fraction`` of them, class proportions kept."""
    from sklearn.model_selection import StratifiedGroupKFold  # imported here: slow to import

    largest_class = int(np.unique(labels[idx], return_counts=True)[1].max())  # scikit-learn's limit on folds
    m, k = _folds_for(fraction, min(MAX_FOLDS, len(np.unique(codes[idx])), largest_class))
    folds = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # "least populated class has fewer members than n_splits": expected
        warnings.simplefilter("ignore", UserWarning)
        held = [test for _, test in folds.split(idx, labels[idx], codes[idx])][:m]
    return idx[np.concatenate(held)]


def _check_class_groups(labels: np.ndarray, codes: np.ndarray, val_fraction: float, test_fraction: float,
                        where: str) -> None:
    """A class needs a group for each split it must appear in."""
    wanted = ["train"] + [s for s, f in (("val", val_fraction), ("test", test_fraction)) if f > 0]
    for name in np.unique(labels):
        n_groups = len(np.unique(codes[labels == name]))
        if n_groups < len(wanted):
            raise DatasetError(
                f"class '{name}' has its {int((labels == name).sum())} image(s){where} in only {n_groups} group(s) of "
                f"near-copies, too few for a group-disjoint {'/'.join(wanted)} split. Add images of other subjects, "
                "give real groups (--groups FILE.csv), or split image by image with --set grouping=none (leaky "
                "when the copies are augmented versions of one image)")


def _ensure_each_split_by_group(split: np.ndarray, labels: np.ndarray, codes: np.ndarray, val_fraction: float,
                                test_fraction: float, seed: int) -> None:
    """A class the folds left without a val or test image gets its smallest train group moved there, whole
    (a random one of the smallest, from ``seed``; with one image per group, a random image)."""
    rng = np.random.default_rng(seed)
    wanted = [s for s, f in (("val", val_fraction), ("test", test_fraction)) if f > 0]
    for label in np.unique(labels):
        for s in wanted:
            members = labels == label
            if np.any(members & (split == s)):
                continue
            donors = np.unique(codes[members & (split == "train")])
            if len(donors) < 2:
                continue
            sizes = np.bincount(codes)[donors]
            smallest = donors[sizes == sizes.min()]
            split[codes == smallest[rng.integers(len(smallest))]] = s
