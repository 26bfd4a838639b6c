"""Scores of stored predictions that both the evaluation and the report compute (scikit-learn, no TensorFlow).

:mod:`core.evaluate.metrics` scores a run's test split with these when it is made; the report
scores each run's stored validation predictions with them when it chooses a configuration
(:func:`validation_scores`), so a validation score and its test counterpart mean the same thing.
"""

from __future__ import annotations

import functools
import os
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score, recall_score, roc_auc_score

from core.artifacts.records import Predictions, RecordError


def headline_metrics(y: Any, pred: Any) -> dict:
    """Accuracy, balanced accuracy and macro-F1 of predicted labels (the leaderboard's and every
    deployment variant's headline)."""
    y, pred = np.asarray(y), np.asarray(pred)
    # Macro recall over the classes in y_true is balanced_accuracy_score without its
    # warnings about single-label or extra predicted classes.
    balanced = recall_score(y, pred, labels=np.unique(y), average="macro", zero_division=0)
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": float(balanced),
        "macro_f1": float(f1_score(y, pred, average="macro", zero_division=0)),
    }


def balanced_accuracy_step(class_count, smallest_class_n) -> float | None:
    """How far one image of the rarest class moves a balanced accuracy: 1/(classes × its images); None when
    either count is unknown (missing, NaN) or zero."""
    if pd.isna(class_count) or pd.isna(smallest_class_n) or not class_count or not smallest_class_n:
        return None
    return 1 / (class_count * smallest_class_n)


def macro_auc(y: Any, probs: Any) -> float | None:
    """One-vs-rest ROC AUC averaged over the classes that have both positives and negatives in ``y`` (integer
    labels); with two classes the AUC of class 1. None when no class has both (the test split's ``macro_auc``)."""
    y, probs = np.asarray(y), np.asarray(probs, dtype=float)
    k = probs.shape[1]
    classes = [1] if k == 2 else range(k)
    aucs = [float(roc_auc_score(y == c, probs[:, c])) for c in classes if 0 < np.count_nonzero(y == c) < y.size]
    return float(np.mean(aucs)) if aucs else None


def validation_scores(path: str | os.PathLike) -> dict:
    """``val_<metric>`` for accuracy, balanced accuracy, macro-F1 and macro AUC, scored on a run's stored
    validation predictions (``val_predictions.csv``: the model the run kept); raises RecordError when the
    table cannot be read or has no rows, OSError when there is none. Also ``val_class_count`` and
    ``val_smallest_class_n``: the classes among its images and the images of the rarest one."""
    stat = os.stat(path)
    return dict(_scored(os.fspath(path), stat.st_mtime_ns, stat.st_size, stat.st_ino))


@functools.lru_cache(maxsize=512)
def _scored(path: str, mtime_ns: int, size: int, inode: int) -> tuple:
    table = Predictions.load(path)
    if not table.true:
        raise RecordError(f"{path}: a {Predictions.KIND} without rows")
    scores = headline_metrics(table.true, table.pred)
    auc = None
    if table.probs is not None and table.classes:
        index = {c: i for i, c in enumerate(table.classes)}
        if all(t in index for t in table.true):
            auc = macro_auc([index[t] for t in table.true], table.probs)
    scores["macro_auc"] = auc
    supports = Counter(table.true)
    # How far one image can move a class-averaged score: the recommendation says when that exceeds its lead.
    scores["class_count"], scores["smallest_class_n"] = len(supports), min(supports.values())
    return tuple((f"val_{name}", value) for name, value in scores.items())
