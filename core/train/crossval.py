"""Cross-validation of a method on cached pooled features: the stage-1 head of the network, or a
scikit-learn baseline.

One *procedure* per method is fitted on a set of non-test images and predicts probabilities:

- ``finetune``: the stage-1 head (:func:`core.train.transfer.fit_head`) on every augmented view of the
  training images, early stopped on a group-disjoint inner validation split of those images
  (:func:`core.data.folds.inner_validation`): a fold's held-out images, and their views, are never seen;
- a baseline: the estimator (:func:`core.train.baselines.make_model`) on the original images, its
  hyperparameter fixed to the value the run's validation split chooses.

The same procedure fitted on all non-test images gives the held-out test score the CV estimate is set against.
"""

from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np
from scipy import stats

from core.artifacts.config import RunConfig
from core.artifacts.scoring import headline_metrics
from core.data.folds import Folds, inner_validation
from core.train import baselines
from core.train.features import PooledFeatures
from core.train.transfer import fit_head

METRICS = ("accuracy", "balanced_accuracy", "macro_f1")
CONFIDENCE = 0.95
Predictor = Callable[[np.ndarray], np.ndarray]  # pooled features -> class probabilities


def fit_procedure(config: RunConfig, feats: PooledFeatures, groups: np.ndarray, rows: np.ndarray,
                  num_classes: int, hyper=None, on_epoch=None) -> Predictor:
    """The method of ``config`` fitted on the non-test images at ``rows``; returns its probability function.
    ``hyper``: a baseline's hyperparameter value; ``on_epoch``: the head's per-epoch hook."""
    rows = np.asarray(rows)
    if config.method != "finetune":
        calibration = baselines.calibration_folds(config, feats.labels[rows], groups[rows])
        model = baselines.make_model(config.method, hyper, config.seed, calibration).fit(feats.originals[rows],
                                                                                        feats.labels[rows])
        return lambda x: baselines.full_probs(model, x, num_classes)
    train, val = inner_validation(feats.labels, groups, rows, config.val_fraction, config.seed)
    head, _ = fit_head(config, num_classes, feats.training_rows(train), (feats.originals[val], feats.labels[val]),
                       on_epoch=on_epoch)
    return lambda x: np.asarray(head.predict(x, verbose=0, batch_size=1024), dtype=np.float64)


def score(labels: np.ndarray, probs: np.ndarray) -> dict:
    """The headline metrics of predicted probabilities."""
    return headline_metrics(labels, np.asarray(probs).argmax(1))


def cross_validate(config: RunConfig, feats: PooledFeatures, groups: np.ndarray, folds: Folds, num_classes: int,
                   hyper=None, on_fold: Callable[[int, dict], None] | None = None) -> tuple[list[dict], np.ndarray]:
    """Each fold's scores (with sizes and fit seconds), and the out-of-fold probabilities of every non-test image."""
    rows, oof = [], np.zeros((len(feats.labels), num_classes))
    for i, (train, held) in enumerate(folds):
        started = time.perf_counter()
        predict = fit_procedure(config, feats, groups, train, num_classes, hyper)
        probs = predict(feats.originals[held])
        seconds = time.perf_counter() - started
        oof[held] = probs
        row = {"fold": i, "n_train": int(len(train)), "n_heldout": int(len(held)),
               "groups_heldout": int(len(np.unique(groups[held]))), **score(feats.labels[held], probs),
               "fit_seconds": round(seconds, 4)}
        rows.append(row)
        if on_fold is not None:
            on_fold(i, row)
    return rows, oof


def t_summary(values) -> dict:
    """Mean, SD and the t-based 95% interval of the mean of ``values`` (fold scores); SD and interval are null
    with one value."""
    values = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    n = len(values)
    if n == 0:
        return {"n": 0, "mean": None, "sd": None, "low": None, "high": None}
    mean = float(values.mean())
    if n < 2:
        return {"n": 1, "mean": mean, "sd": None, "low": None, "high": None}
    sd = float(values.std(ddof=1))
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * sd / math.sqrt(n)
    return {"n": n, "mean": mean, "sd": sd, "low": mean - half, "high": mean + half}


def refit_test_score(config: RunConfig, feats: PooledFeatures, groups: np.ndarray, num_classes: int,
                     hyper=None) -> dict:
    """The procedure fitted on every non-test image, scored on the test split (with its fit seconds)."""
    started = time.perf_counter()
    predict = fit_procedure(config, feats, groups, np.arange(len(feats.labels)), num_classes, hyper)
    seconds = time.perf_counter() - started
    return {**score(feats.test_labels, predict(feats.test)), "n": int(len(feats.test_labels)),
            "fit_seconds": round(seconds, 4)}
