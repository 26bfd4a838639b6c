"""Evaluation of a classifier's test-set predictions, computed once and stored as plain data.

Everything :func:`evaluate`, :func:`mcnemar` and :func:`pairwise_mcnemar` return is
made of dicts, lists, ``str``, ``int``, ``float``, ``bool`` and ``None``: it passes
``json.dumps(..., allow_nan=False)``. A value that is undefined (the AUC of a class
with no test samples, the accuracy of an empty calibration bin) is ``None``, usually
next to a ``reason`` string.

Conventions used throughout:

* The predicted label is ``argmax`` of the probabilities (the first class on ties).
* ``balanced_accuracy`` is the mean recall over classes present in ``y_true`` and
  ``macro_f1`` the mean F1 over classes present in ``y_true`` or in the predictions
  (scikit-learn's defaults); ``per_class`` always lists all ``k`` classes.
* ROC and precision-recall curves are one-vs-rest. With two classes the headline
  numbers (``micro_auc``, ``macro_auc``, ``micro_average_precision``,
  ``macro_average_precision``) are those of the positive class, index 1, exactly as
  scikit-learn's binary ``roc_auc_score`` / ``average_precision_score`` compute them;
  the per-class curves are still given for both classes.
* Calibration bins are equal-width and right-closed, ``(lower, upper]``, the first
  one also holding 0; confidence is the largest probability of each row.
* Bootstrap intervals are percentile intervals over test samples resampled with
  replacement. Each resample is scored on the same classes as the point estimate;
  a resample in which one of those classes makes the metric undefined is skipped
  for that metric, and ``n_used`` says how many resamples were kept.
"""

from __future__ import annotations

import numbers
from itertools import combinations
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import stats
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_recall_curve,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)
from statsmodels.stats.multitest import multipletests

from core.artifacts.scoring import headline_metrics

SCHEMA_VERSION = 1
BOOTSTRAP_CONFIDENCE = 0.95
BOOTSTRAP_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "macro_auc")
# McNemar uses the exact binomial test below this many discordant pairs.
EXACT_MCNEMAR_BELOW = 25
METHOD_EXACT = "exact_binomial"
METHOD_CHI2 = "chi2_continuity_corrected"
# Loose enough for float16 softmax output, tight enough to catch logits passed by mistake.
ROW_SUM_TOLERANCE = 1e-2
# Resamples are drawn in blocks of about this many sample indices, bounding memory.
_BOOTSTRAP_BLOCK_ELEMENTS = 2_000_000

REASON_NO_POSITIVES = "class has no samples in y_true"
REASON_ALL_POSITIVES = "every sample in y_true belongs to this class"


# --- public API --------------------------------------------------------------------

def correctness(y_true: Any, probs: Any) -> np.ndarray:
    """Boolean array: ``argmax(probs[i]) == y_true[i]`` for every sample."""
    y, p = _validate_arrays(y_true, probs)
    return p.argmax(axis=1) == y


def evaluate(
    y_true: Any,
    probs: Any,
    class_names: Sequence[Any],
    n_bootstrap: int = 1000,
    seed: int = 0,
    calibration_bins: int = 15,
    max_curve_points: int = 200,
    groups: Any = None,
) -> dict:
    """Every test-set metric of one classifier, as a JSON-able dict (see the module doc).

    ``y_true`` holds integer labels ``0..k-1`` (shape ``(n,)``), ``probs`` the predicted
    class probabilities (shape ``(n, k)``, rows summing to 1) and ``class_names`` the
    ``k`` class names, stored as strings. ``groups`` (one id per sample) makes the
    bootstrap resample whole groups (a cluster bootstrap): near-copies of one image, or
    slices of one scan, are not independent evidence. Raises ``ValueError`` on malformed input.
    """
    y, p = _validate_arrays(y_true, probs)
    names = _validate_class_names(class_names, p.shape[1])
    _validate_options(n_bootstrap, seed, calibration_bins, max_curve_points)
    codes = _group_codes(groups, y.size)
    pred = p.argmax(axis=1)
    summary = _summary_metrics(y, pred)
    roc = _roc(y, p, names, max_curve_points)
    return {
        "schema_version": SCHEMA_VERSION,
        "n": int(y.size),
        "classes": names,
        **summary,
        "per_class": _per_class(y, pred, names),
        "confusion_matrix": _confusion(y, pred, len(names)),
        "roc": roc,
        "pr": _precision_recall(y, p, names, max_curve_points),
        "calibration": _calibration(y, p, calibration_bins),
        "bootstrap": _bootstrap(y, p, summary, roc, n_bootstrap, seed, codes),
    }


def interval_summary(y_true: Any, probs: Any, class_names: Sequence[Any], groups: Any = None,
                     n_bootstrap: int = 1000, seed: int = 0) -> dict:
    """The headline metrics of a (sub)set with their bootstrap intervals, as in :func:`evaluate`.

    For scoring a subset of the test split (e.g. its leak-free part) without the curves.
    """
    y, p = _validate_arrays(y_true, probs)
    names = _validate_class_names(class_names, p.shape[1])
    _validate_options(n_bootstrap, seed, 15, 200)
    codes = _group_codes(groups, y.size)
    summary = _summary_metrics(y, p.argmax(axis=1))
    roc = _roc(y, p, names, 2)
    return {"n": int(y.size), **summary, "macro_auc": roc["macro_auc"],
            "bootstrap": _bootstrap(y, p, summary, roc, n_bootstrap, seed, codes)}


def binary_roc(positives: Any, scores: Any, name: str = "positive", max_points: int = 200) -> dict:
    """The ROC curve of one score against a yes/no truth, as one class's entry of :func:`evaluate`'s ``roc``
    (``fpr``, ``tpr`` in threshold order, ``auc``; None with a ``reason`` when one side is empty)."""
    return _roc_for_class(np.asarray(positives, dtype=bool), np.asarray(scores, dtype=float), name, max_points)


def resampled_sums(values: Any, groups: Any = None, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """Column sums of ``values`` (one row per sample) in each bootstrap resample, shape ``(n_resamples, m)``.

    The same draws as every interval here: samples with replacement, or with ``groups`` whole groups
    (a cluster bootstrap), from one ``Generator(seed)`` stream.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[:, None] if v.ndim == 1 else v
    codes = _group_codes(groups, v.shape[0])
    rng = np.random.default_rng(seed)
    block = max(1, _BOOTSTRAP_BLOCK_ELEMENTS // max(v.shape[0], 1))
    parts = [_resample_weights(rng, v.shape[0], min(block, n_resamples - start), codes) @ v
             for start in range(0, n_resamples, block)]
    return np.concatenate(parts) if parts else np.empty((0, v.shape[1]))


def percentile_interval(estimate: float | None, samples: Any) -> dict:
    """``estimate`` with the percentile interval of its finite resampled ``samples`` (``n_used`` of them)."""
    return _interval(estimate, np.asarray(samples, dtype=np.float64))


def bootstrap_units(groups: Any, n: int) -> tuple[str, int]:
    """What a bootstrap over ``n`` samples resamples: ``("group", groups)`` or ``("image", n)``."""
    codes = _group_codes(groups, n)
    return ("image", n) if codes is None else ("group", int(codes.max()) + 1)


def mcnemar(correct_a: Any, correct_b: Any) -> dict:
    """McNemar's test of two classifiers scored on the same samples.

    ``correct_a`` and ``correct_b`` are paired boolean arrays (was sample ``i`` classified
    correctly). Uses the exact two-sided binomial test when there are fewer than
    :data:`EXACT_MCNEMAR_BELOW` discordant pairs (``statistic`` is then the smaller
    discordant count), otherwise the chi-square test with continuity correction,
    ``max(|n01 - n10| - 1, 0)**2 / (n01 + n10)``. ``n01`` counts samples that ``a`` got
    wrong and ``b`` right, ``n10`` the reverse.
    """
    a = _as_bool_vector(correct_a, "correct_a")
    b = _as_bool_vector(correct_b, "correct_b")
    if a.size != b.size:
        raise ValueError(f"correct_a and correct_b must have the same length, got {a.size} and {b.size}")
    n01 = int(np.count_nonzero(~a & b))
    n10 = int(np.count_nonzero(a & ~b))
    statistic, p_value, method = _mcnemar_test(n01, n10)
    return {
        "n": int(a.size),
        "n01": n01,
        "n10": n10,
        "both_correct": int(np.count_nonzero(a & b)),
        "both_wrong": int(np.count_nonzero(~a & ~b)),
        "n_correct_a": int(np.count_nonzero(a)),
        "n_correct_b": int(np.count_nonzero(b)),
        "statistic": statistic,
        "p_value": p_value,
        "method": method,
    }


def pairwise_mcnemar(runs: Mapping[str, tuple[Sequence[str], Sequence[bool]]], alpha: float = 0.05) -> dict:
    """McNemar's test for every pair of runs, Holm–Bonferroni corrected across the pairs.

    ``runs`` maps a run name to ``(sample ids, correctness per sample)``. Each pair is
    compared on the sample ids both runs have, whatever their order; a pair with no
    common id gets ``None`` statistics and a ``reason`` and is left out of the
    correction. ``significant`` is ``p_holm <= alpha``; ``better`` is the run with more
    correct answers on the common samples (``None`` on a tie). ``matrix[i][j]`` is the
    corrected p-value of runs ``names[i]`` and ``names[j]`` (``None`` on the diagonal).
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    names = [str(name) for name in runs]
    if len(set(names)) != len(names):
        raise ValueError("run names must be distinct as strings")
    tables = {name: _correctness_by_id(name, *_unpack_run(name, run)) for name, run in zip(names, runs.values())}
    pairs = [_compare_runs(a, tables[a], b, tables[b]) for a, b in combinations(names, 2)]
    _apply_holm(pairs, alpha)
    return {
        "names": names,
        "alpha": float(alpha),
        "correction": "holm",
        "pairs": pairs,
        "matrix": _pair_matrix(names, pairs),
    }


# --- validation --------------------------------------------------------------------

def _validate_arrays(y_true: Any, probs: Any) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probs)
    if p.ndim != 2:
        raise ValueError(f"probs must be a 2-D array (n, k), got shape {p.shape}")
    if not np.issubdtype(p.dtype, np.number) or np.issubdtype(p.dtype, np.complexfloating):
        raise ValueError(f"probs must be a real numeric array, got dtype {p.dtype}")
    p = p.astype(np.float64)
    n, k = p.shape
    if n == 0:
        raise ValueError("no samples: probs has 0 rows")
    if k < 2:
        raise ValueError(f"probs must have at least 2 columns (classes), got {k}")
    y = _as_label_vector(y_true)
    if y.size != n:
        raise ValueError(f"y_true has {y.size} labels but probs has {n} rows")
    if y.min() < 0 or y.max() >= k:
        raise ValueError(f"labels in y_true must lie in 0..{k - 1}, found {int(y.min())}..{int(y.max())}")
    _check_probabilities(p)
    return y, p


def _as_label_vector(y_true: Any) -> np.ndarray:
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise ValueError(f"y_true must be a 1-D array of labels, got shape {y.shape}")
    if y.dtype.kind in "iu":
        return y.astype(np.int64)
    if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        return y.astype(np.int64)
    raise ValueError(f"y_true must hold integer class labels, got dtype {y.dtype}")


def _check_probabilities(p: np.ndarray) -> None:
    if not np.all(np.isfinite(p)):
        raise ValueError("probs contains NaN or infinite values")
    if p.min() < -ROW_SUM_TOLERANCE or p.max() > 1 + ROW_SUM_TOLERANCE:
        raise ValueError(f"probs must lie in [0, 1], found {p.min():.4g}..{p.max():.4g} "
                         "(logits instead of probabilities?)")
    worst = float(np.max(np.abs(p.sum(axis=1) - 1)))
    if worst > ROW_SUM_TOLERANCE:
        raise ValueError(f"every row of probs must sum to 1, one is off by {worst:.4g}")


def _validate_class_names(class_names: Sequence[Any], k: int) -> list[str]:
    if isinstance(class_names, str):
        raise ValueError("class_names must be a sequence of names, not one string")
    names = [str(name) for name in class_names]
    if len(names) != k:
        raise ValueError(f"probs has {k} columns but {len(names)} class names were given")
    if len(set(names)) != k:
        raise ValueError(f"class names must be distinct, got {names}")
    return names


def _validate_options(n_bootstrap: int, seed: int, calibration_bins: int, max_curve_points: int) -> None:
    for name, value, least in (("n_bootstrap", n_bootstrap, 0), ("calibration_bins", calibration_bins, 1),
                               ("max_curve_points", max_curve_points, 2), ("seed", seed, 0)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")


def _as_bool_vector(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr
    if arr.size and (arr.dtype.kind not in "iuf" or not np.all((arr == 0) | (arr == 1))):
        raise ValueError(f"{name} must hold booleans (or 0/1)")
    return arr.astype(bool)


# --- point estimates ---------------------------------------------------------------

def _summary_metrics(y: np.ndarray, pred: np.ndarray) -> dict:
    return {**headline_metrics(y, pred),
            "weighted_f1": float(f1_score(y, pred, average="weighted", zero_division=0))}


def _per_class(y: np.ndarray, pred: np.ndarray, names: list[str]) -> list[dict]:
    labels = np.arange(len(names))
    precision, recall, f1, support = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    predicted = np.bincount(pred, minlength=len(names))
    return [
        {
            "class": name,
            "precision": float(precision[c]),
            "recall": float(recall[c]),
            "f1": float(f1[c]),
            "support": int(support[c]),
            "predicted": int(predicted[c]),
            "never_predicted": bool(predicted[c] == 0),
        }
        for c, name in enumerate(names)
    ]


def _confusion(y: np.ndarray, pred: np.ndarray, k: int) -> dict:
    counts = confusion_matrix(y, pred, labels=np.arange(k))
    totals = counts.sum(axis=1)
    normalized = [(row / total).tolist() if total else None for row, total in zip(counts, totals)]
    return {"labels": list(range(k)), "counts": counts.tolist(), "normalized": normalized}


def _undefined_reason(positives: np.ndarray) -> str | None:
    n_pos = int(np.count_nonzero(positives))
    if n_pos == 0:
        return REASON_NO_POSITIVES
    if n_pos == positives.size:
        return REASON_ALL_POSITIVES
    return None


def _roc(y: np.ndarray, p: np.ndarray, names: list[str], max_points: int) -> dict:
    per_class = [_roc_for_class(y == c, p[:, c], name, max_points) for c, name in enumerate(names)]
    excluded = [entry["class"] for entry in per_class if entry["auc"] is None]
    if len(names) == 2:
        positive = per_class[1]
        micro = macro = positive["auc"]
        reason = positive.get("reason")
        excluded = [] if macro is not None else [names[1]]
    else:
        aucs = [entry["auc"] for entry in per_class if entry["auc"] is not None]
        macro = float(np.mean(aucs)) if aucs else None
        micro = float(roc_auc_score(np.eye(len(names), dtype=bool)[y].ravel(), p.ravel()))
        reason = None if aucs else "no class has both positive and negative samples"
    result = {
        "positive_class": names[1] if len(names) == 2 else None,
        "per_class": per_class,
        "micro_auc": micro,
        "macro_auc": macro,
        "macro_auc_excluded": excluded,
    }
    if reason is not None:
        result["reason"] = reason
    return result


def _roc_for_class(positives: np.ndarray, scores: np.ndarray, name: str, max_points: int) -> dict:
    reason = _undefined_reason(positives)
    if reason is not None:
        return {"class": name, "fpr": None, "tpr": None, "auc": None, "reason": reason}
    fpr, tpr, _ = roc_curve(positives, scores)
    fpr, tpr = _downsample_curve(fpr, tpr, max_points)
    return {"class": name, "fpr": fpr, "tpr": tpr, "auc": float(roc_auc_score(positives, scores))}


def _precision_recall(y: np.ndarray, p: np.ndarray, names: list[str], max_points: int) -> dict:
    per_class = [_pr_for_class(y == c, p[:, c], name, max_points) for c, name in enumerate(names)]
    if len(names) == 2:
        micro = macro = per_class[1]["average_precision"]
        excluded = [] if macro is not None else [names[1]]
    else:
        aps = [entry["average_precision"] for entry in per_class if entry["average_precision"] is not None]
        macro = float(np.mean(aps)) if aps else None
        micro = float(average_precision_score(np.eye(len(names), dtype=bool)[y].ravel(), p.ravel()))
        excluded = [entry["class"] for entry in per_class if entry["average_precision"] is None]
    return {
        "positive_class": names[1] if len(names) == 2 else None,
        "per_class": per_class,
        "micro_average_precision": micro,
        "macro_average_precision": macro,
        "macro_average_precision_excluded": excluded,
    }


def _pr_for_class(positives: np.ndarray, scores: np.ndarray, name: str, max_points: int) -> dict:
    if not positives.any():
        return {"class": name, "precision": None, "recall": None, "average_precision": None,
                "reason": REASON_NO_POSITIVES}
    precision, recall, _ = precision_recall_curve(positives, scores, drop_intermediate=True)
    recall, precision = _downsample_curve(recall, precision, max_points)
    return {"class": name, "precision": precision, "recall": recall,
            "average_precision": float(average_precision_score(positives, scores))}


def _downsample_curve(x: np.ndarray, y: np.ndarray, max_points: int) -> tuple[list[float], list[float]]:
    """At most ``max_points`` vertices of the polyline, evenly spaced along its length.

    Spacing by arc length rather than by index keeps sharp turns, where a classifier's
    curves carry their shape, and both endpoints are always kept.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.size <= max_points:
        return x.tolist(), y.tolist()
    length = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))])
    if length[-1] > 0:
        idx = np.searchsorted(length, np.linspace(0.0, length[-1], max_points))
    else:
        idx = np.linspace(0, x.size - 1, max_points).round().astype(np.int64)
    idx[0], idx[-1] = 0, x.size - 1
    idx = np.unique(np.clip(idx, 0, x.size - 1))
    return x[idx].tolist(), y[idx].tolist()


def _calibration(y: np.ndarray, p: np.ndarray, n_bins: int) -> dict:
    confidence = np.clip(p.max(axis=1), 0.0, 1.0)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.searchsorted(edges[1:-1], confidence, side="left")
    counts = np.bincount(which, minlength=n_bins)
    conf_sums = np.bincount(which, weights=confidence, minlength=n_bins)
    correct_sums = np.bincount(which, weights=correct, minlength=n_bins)
    bins, gaps = [], []
    for b in range(n_bins):
        count = int(counts[b])
        mean_conf = float(conf_sums[b] / count) if count else None
        acc = float(correct_sums[b] / count) if count else None
        bins.append({"lower": float(edges[b]), "upper": float(edges[b + 1]), "count": count,
                     "mean_confidence": mean_conf, "accuracy": acc})
        if count:
            gaps.append((count, abs(acc - mean_conf)))
    return {
        "n_bins": n_bins,
        "ece": float(sum(count * gap for count, gap in gaps) / y.size),
        "mce": float(max(gap for _, gap in gaps)),
        "mean_confidence": float(confidence.mean()),
        "bins": bins,
    }


# --- bootstrap ---------------------------------------------------------------------

def _group_codes(groups: Any, n: int) -> np.ndarray | None:
    """Dense codes ``0..G-1`` per sample, or None when every sample is its own group."""
    if groups is None:
        return None
    values = np.asarray(groups)
    if values.shape != (n,):
        raise ValueError(f"groups must have one entry per sample ({n}), got shape {values.shape}")
    _, codes = np.unique(values, return_inverse=True)
    return None if codes.max(initial=-1) + 1 == n else codes.astype(np.int64)


def _bootstrap(y: np.ndarray, p: np.ndarray, summary: dict, roc: dict, n_resamples: int, seed: int,
               groups: np.ndarray | None = None) -> dict:
    estimates = {**summary, "macro_auc": roc["macro_auc"]}
    auc_classes = _bootstrap_auc_classes(roc)
    samples = _bootstrap_samples(y, p, auc_classes, n_resamples, seed, groups)
    return {
        "n_resamples": int(n_resamples),
        "seed": int(seed),
        "confidence": BOOTSTRAP_CONFIDENCE,
        "method": "percentile",
        "unit": "image" if groups is None else "group",
        "units": int(y.size if groups is None else groups.max() + 1),
        "metrics": {name: _interval(estimates[name], samples[name]) for name in BOOTSTRAP_METRICS},
    }


def _bootstrap_auc_classes(roc: dict) -> list[int]:
    if roc["macro_auc"] is None:
        return []
    if roc["positive_class"] is not None:
        return [1]
    return [c for c, entry in enumerate(roc["per_class"]) if entry["auc"] is not None]


def _bootstrap_samples(y: np.ndarray, p: np.ndarray, auc_classes: list[int], n_resamples: int,
                       seed: int, groups: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Every metric of every resample (NaN where undefined), from one Generator(seed) stream."""
    n, k = p.shape
    pred = p.argmax(axis=1)
    cells = np.eye(k * k)[y * k + pred]
    support = np.bincount(y, minlength=k)
    predicted = np.bincount(pred, minlength=k)
    recall_classes = support > 0
    f1_classes = (support + predicted) > 0
    rankings = [_AucRanking(y == c, p[:, c]) for c in auc_classes]
    rng = np.random.default_rng(seed)
    block = max(1, _BOOTSTRAP_BLOCK_ELEMENTS // n)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in BOOTSTRAP_METRICS}
    for start in range(0, n_resamples, block):
        weights = _resample_weights(rng, n, min(block, n_resamples - start), groups)
        counts = (weights @ cells).reshape(-1, k, k)
        parts["accuracy"].append(np.trace(counts, axis1=1, axis2=2) / weights.sum(axis=1))
        parts["balanced_accuracy"].append(_weighted_balanced_accuracy(counts, recall_classes))
        parts["macro_f1"].append(_weighted_macro_f1(counts, f1_classes))
        parts["macro_auc"].append(_weighted_macro_auc(weights, rankings))
    return {name: np.concatenate(values) if values else np.empty(0) for name, values in parts.items()}


def _resample_weights(rng: np.random.Generator, n: int, n_resamples: int,
                      groups: np.ndarray | None = None) -> np.ndarray:
    """How often each sample is drawn, one row per resample of size ``n``.

    With ``groups`` (dense codes) whole groups are drawn, as many as there are, and every
    sample of a group gets its group's count (a cluster bootstrap).
    """
    if groups is not None:
        return _resample_weights(rng, int(groups.max()) + 1, n_resamples)[:, groups]
    idx = rng.integers(0, n, size=(n_resamples, n))
    flat = idx + (np.arange(n_resamples) * n)[:, None]
    return np.bincount(flat.ravel(), minlength=n_resamples * n).reshape(n_resamples, n).astype(np.float64)


def _weighted_balanced_accuracy(counts: np.ndarray, classes: np.ndarray) -> np.ndarray:
    tp = np.diagonal(counts, axis1=1, axis2=2)[:, classes]
    support = counts.sum(axis=2)[:, classes]
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = tp / support
    return np.where((support > 0).all(axis=1), recall.mean(axis=1), np.nan)


def _weighted_macro_f1(counts: np.ndarray, classes: np.ndarray) -> np.ndarray:
    tp = np.diagonal(counts, axis1=1, axis2=2)
    denominator = (counts.sum(axis=2) + counts.sum(axis=1))[:, classes]
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = 2 * tp[:, classes] / denominator
    return np.where((denominator > 0).all(axis=1), f1.mean(axis=1), np.nan)


class _AucRanking:
    """One class's scores sorted once, so each resample's AUC is a weighted rank sum.

    The AUC of a resample is the Mann–Whitney statistic with sample weights (how often
    each sample was drawn): the weighted share of (positive, negative) pairs ranked
    correctly, ties counting one half, which is what ``roc_auc_score`` computes.
    """

    def __init__(self, positives: np.ndarray, scores: np.ndarray):
        self.order = np.argsort(scores, kind="stable")
        sorted_scores = scores[self.order]
        self.positive = positives[self.order]
        self.group_starts = np.flatnonzero(np.concatenate([[True], sorted_scores[1:] != sorted_scores[:-1]]))

    def auc(self, weights: np.ndarray) -> np.ndarray:
        """AUC per row of ``weights`` (NaN where a row has no positive or no negative weight)."""
        w = weights.T[self.order]
        positive = self.positive[:, None]
        pos = np.where(positive, w, 0.0)
        neg = np.where(positive, 0.0, w)
        if self.group_starts.size < self.order.size:
            pos = np.add.reduceat(pos, self.group_starts, axis=0)
            neg = np.add.reduceat(neg, self.group_starts, axis=0)
        neg_below = np.cumsum(neg, axis=0) - neg
        pairs = pos.sum(axis=0) * neg.sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            result = (pos * (neg_below + 0.5 * neg)).sum(axis=0) / pairs
        return np.where(pairs > 0, result, np.nan)


def _weighted_macro_auc(weights: np.ndarray, rankings: list[_AucRanking]) -> np.ndarray:
    if not rankings:
        return np.full(weights.shape[0], np.nan)
    return np.mean([ranking.auc(weights) for ranking in rankings], axis=0)


def _interval(estimate: float | None, samples: np.ndarray) -> dict:
    used = samples[np.isfinite(samples)]
    result = {"estimate": estimate, "low": None, "high": None, "n_used": int(used.size)}
    if estimate is None:
        result["reason"] = "the metric is undefined on the full test set"
    elif used.size == 0:
        result["reason"] = "undefined on every resample" if samples.size else "no resamples requested"
    else:
        tail = (1 - BOOTSTRAP_CONFIDENCE) / 2 * 100
        low, high = np.percentile(used, [tail, 100 - tail])
        result["low"], result["high"] = float(low), float(high)
    return result


# --- McNemar -----------------------------------------------------------------------

def _mcnemar_test(n01: int, n10: int) -> tuple[float, float, str]:
    # Not statsmodels' mcnemar: it agrees on the exact test and on the chi-square test except when
    # n01 == n10, where it does not clamp |n01 - n10| - 1 at 0 (14 vs 14 gives p 0.85 instead of 1).
    discordant = n01 + n10
    if discordant < EXACT_MCNEMAR_BELOW:
        if discordant == 0:
            return 0.0, 1.0, METHOD_EXACT
        p_value = stats.binomtest(n01, discordant, 0.5, alternative="two-sided").pvalue
        return float(min(n01, n10)), float(min(p_value, 1.0)), METHOD_EXACT
    statistic = max(abs(n01 - n10) - 1, 0) ** 2 / discordant
    return float(statistic), float(stats.chi2.sf(statistic, df=1)), METHOD_CHI2


def _unpack_run(name: str, run: Any) -> tuple[Sequence[Any], Sequence[Any]]:
    try:
        ids, correct = run
    except (TypeError, ValueError):
        raise ValueError(f"run {name!r} must be a pair (sample ids, correctness)") from None
    return ids, correct


def _correctness_by_id(name: str, ids: Sequence[Any], correct: Sequence[Any]) -> dict[str, bool]:
    ids = [str(sample_id) for sample_id in ids]
    flags = _as_bool_vector(correct, f"correctness of run {name!r}")
    if len(ids) != flags.size:
        raise ValueError(f"run {name!r} has {len(ids)} sample ids but {flags.size} correctness values")
    table = dict(zip(ids, flags.tolist()))
    if len(table) != len(ids):
        raise ValueError(f"run {name!r} lists some sample ids more than once")
    return table


def _compare_runs(a: str, table_a: dict[str, bool], b: str, table_b: dict[str, bool]) -> dict:
    common = sorted(table_a.keys() & table_b.keys())
    pair = {"a": a, "b": b, "n_common": len(common)}
    if not common:
        return {**pair, "n01": None, "n10": None, "statistic": None, "p_value": None, "p_holm": None,
                "significant": None, "method": None, "better": None, "reason": "no common sample ids"}
    result = mcnemar([table_a[i] for i in common], [table_b[i] for i in common])
    better = a if result["n10"] > result["n01"] else b if result["n01"] > result["n10"] else None
    return {**pair, "n01": result["n01"], "n10": result["n10"], "statistic": result["statistic"],
            "p_value": result["p_value"], "p_holm": None, "significant": None,
            "method": result["method"], "better": better}


def _apply_holm(pairs: list[dict], alpha: float) -> None:
    """Holm–Bonferroni adjusted p-values (statsmodels) over the pairs that were tested."""
    tested = [pair for pair in pairs if pair["p_value"] is not None]
    if not tested:
        return
    adjusted = multipletests([pair["p_value"] for pair in tested], method="holm")[1]
    for pair, p_holm in zip(tested, adjusted.tolist()):
        pair["p_holm"] = p_holm
        pair["significant"] = p_holm <= alpha


def _pair_matrix(names: list[str], pairs: list[dict]) -> list[list[float | None]]:
    position = {name: i for i, name in enumerate(names)}
    matrix: list[list[float | None]] = [[None] * len(names) for _ in names]
    for pair in pairs:
        i, j = position[pair["a"]], position[pair["b"]]
        matrix[i][j] = matrix[j][i] = pair["p_holm"]
    return matrix


def configuration_differences(runs: list[list[Any]], labels: Any, groups: Any = None, n_resamples: int = 2000,
                              seed: int = 0, streams: Sequence[int] | None = None) -> list[dict]:
    """Balanced-accuracy differences between configurations scored on the same test images, each configuration the
    mean over its runs (seeds), with a two-level paired bootstrap.

    ``runs[c]`` holds configuration ``c``'s runs as boolean vectors (each test image right or wrong), ``labels``
    the images' true classes. Each resample draws the test images (with ``groups``, whole groups) once for every
    configuration, so the comparison is paired, and each configuration's runs with replacement, so one lucky seed
    cannot decide it (with one run, only the images vary). Balanced accuracy is the mean recall over the classes a
    resample holds. Returns one dict per pair ``i < j``: ``i``, ``j``, ``difference`` (i minus j, on all images),
    ``low``, ``high`` (the 95% percentile interval).

    The image draws come from ``seed`` alone and each configuration's seed draws from its own stream
    (``streams[c]``, default its index), so a pair's interval does not change when other configurations join.
    """
    labels = np.asarray(labels)
    n = labels.size
    correct = [[_as_bool_vector(r, "runs").astype(np.float64) for r in config] for config in runs]
    if n == 0 or any(not config or any(r.size != n for r in config) for config in correct):
        raise ValueError("every configuration needs runs scored on the same, non-empty set of test images")
    onehot = (labels[:, None] == np.unique(labels)[None, :]).astype(np.float64)
    codes = _group_codes(groups, n)
    rng = np.random.default_rng(seed)
    seed_rngs = [np.random.default_rng([seed, int(s)]) for s in (streams if streams is not None else range(len(runs)))]

    def balanced(weights: np.ndarray, right: np.ndarray) -> np.ndarray:
        support = weights @ onehot
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.nanmean(np.where(support > 0, (weights @ (onehot * right[:, None])) / support, np.nan), axis=1)

    observed = [np.mean([balanced(np.ones((1, n)), r)[0] for r in config]) for config in correct]
    replicates = []
    block = max(1, _BOOTSTRAP_BLOCK_ELEMENTS // n)
    for start in range(0, n_resamples, block):
        weights = _resample_weights(rng, n, min(block, n_resamples - start), codes)
        per_config = []
        for config, seed_rng in zip(correct, seed_rngs):
            scores = np.stack([balanced(weights, r) for r in config], axis=1)  # resamples x runs
            drawn = seed_rng.integers(0, len(config), size=scores.shape)
            per_config.append(np.take_along_axis(scores, drawn, axis=1).mean(axis=1))
        replicates.append(np.stack(per_config, axis=1))
    draws = np.concatenate(replicates)  # resamples x configurations
    alpha = (1 - BOOTSTRAP_CONFIDENCE) / 2
    out = []
    for i in range(len(correct)):
        for j in range(i + 1, len(correct)):
            diff = draws[:, i] - draws[:, j]
            out.append({"i": i, "j": j, "difference": float(observed[i] - observed[j]),
                        "low": float(np.quantile(diff, alpha)), "high": float(np.quantile(diff, 1 - alpha))})
    return out


def paired_bootstrap(correct_a: Any, correct_b: Any, groups: Any = None, n_resamples: int = 2000,
                     seed: int = 0) -> dict:
    """Accuracy difference of two runs on the same samples (a minus b), with a paired bootstrap.

    Each resample draws samples (or, with ``groups``, whole groups) and scores both runs on
    the same draw, so the interval accounts for the pairing and for correlated near-copies,
    which McNemar's test treats as independent. ``p_value`` is two-sided: twice the share of
    resamples on the far side of zero (at least one resample's worth, at most 1).
    """
    a = _as_bool_vector(correct_a, "correct_a").astype(np.float64)
    b = _as_bool_vector(correct_b, "correct_b").astype(np.float64)
    if a.size != b.size or a.size == 0:
        raise ValueError(f"correct_a and correct_b must have the same non-zero length, got {a.size} and {b.size}")
    codes = _group_codes(groups, a.size)
    rng = np.random.default_rng(seed)
    diffs = []
    block = max(1, _BOOTSTRAP_BLOCK_ELEMENTS // a.size)
    for start in range(0, n_resamples, block):
        weights = _resample_weights(rng, a.size, min(block, n_resamples - start), codes)
        diffs.append((weights @ (a - b)) / weights.sum(axis=1))
    diff = np.concatenate(diffs)
    alpha = (1 - BOOTSTRAP_CONFIDENCE) / 2
    far = min((diff <= 0).mean(), (diff >= 0).mean())
    return {"difference": float(a.mean() - b.mean()), "low": float(np.quantile(diff, alpha)),
            "high": float(np.quantile(diff, 1 - alpha)), "p_value": float(min(1.0, max(2 * far, 1 / n_resamples))),
            "n": int(a.size), "unit": "image" if codes is None else "group",
            "units": int(a.size if codes is None else codes.max() + 1), "n_resamples": int(n_resamples),
            "seed": int(seed)}
