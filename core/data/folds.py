"""Cross-validation folds over a run's non-test images: stratified, and disjoint by group.

A fold never cuts a group (near-copies of one image, one subject) across its training and held-out
parts, and keeps each class's share as far as the groups allow (scikit-learn's
``StratifiedGroupKFold``). Ungrouped folds (``StratifiedKFold``, image by image) exist only to show
what a leaky cross-validation would have said.
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import LeaveOneGroupOut, StratifiedGroupKFold, StratifiedKFold

from core.errors import UserError

Folds = list[tuple[np.ndarray, np.ndarray]]  # (training rows, held-out rows) per fold


def make_folds(labels: np.ndarray, groups: np.ndarray, k: int, seed: int, grouped: bool = True) -> Folds:
    """``k`` stratified folds of the rows of ``labels``, group-disjoint unless ``grouped`` is false; one
    line if ``k`` is not possible."""
    labels, groups = np.asarray(labels), np.asarray(groups)
    if k < 2:
        raise UserError(f"--folds {k}: cross-validation needs at least 2 folds")
    units = len(np.unique(groups)) if grouped else len(labels)
    if units < k:
        raise UserError(f"--folds {k}: only {units} {'groups' if grouped else 'images'} to spread over the folds; "
                        "use fewer folds")
    splitter = (StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed) if grouped
                else StratifiedKFold(n_splits=k, shuffle=True, random_state=seed))
    parts = splitter.split(np.zeros(len(labels)), labels, groups) if grouped else splitter.split(np.zeros(len(labels)), labels)
    return [(train, held) for train, held in parts]


def leave_one_group_out(groups: np.ndarray) -> Folds:
    """One fold per group, that group held out."""
    groups = np.asarray(groups)
    return list(LeaveOneGroupOut().split(np.zeros(len(groups)), groups=groups))


def inner_validation(labels: np.ndarray, groups: np.ndarray, rows: np.ndarray, fraction: float,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` split into (training, validation) rows, about ``fraction`` validation, group-disjoint and
    stratified: the early-stopping split of a head trained inside a fold (never the fold's held-out rows)."""
    rows = np.asarray(rows)
    k = max(2, min(int(round(1 / fraction)) if fraction > 0 else 2, len(np.unique(groups[rows]))))
    train, val = make_folds(labels[rows], groups[rows], k, seed)[0]
    return rows[train], rows[val]
