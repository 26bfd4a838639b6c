"""The data behind the report's charts and class tables, built from stored metrics (no TensorFlow, no drawing).

Pages draw what these functions return: reliability curves with bin sizes, precision-recall
steps in threshold order, per-class AUC tables in long form, the most-confused class pairs.
"""

from __future__ import annotations

import pandas as pd

# A calibration bin with fewer test images than this: its gap is mostly noise.
MIN_BIN_COUNT = 10
# Above this many classes a confusion matrix has no cell labels and the class-balance chart is a histogram.
MANY_CLASSES = 15
CLASS_ORDERS = ("name", "recall, worst first", "test images, most first")
SPLITS = ("train", "val", "test")
STAGE_NAMES = {"stage1": "stage 1: head on the frozen backbone", "stage2": "stage 2: fine-tuning",
               "scratch": "from scratch"}


def calibration_points(runs: list[tuple[str, str, dict]], min_count: int = MIN_BIN_COUNT) -> pd.DataFrame:
    """One row per non-empty calibration bin of each run: the points of one reliability curve per run.

    ``runs`` holds ``(short label, full name, metrics)``; ``enough`` is False for a bin with
    fewer than ``min_count`` images, ``bin`` orders the points along each run's curve.
    """
    rows = []
    for short, name, m in runs:
        for i, b in enumerate(m["calibration"]["bins"]):
            if b["count"]:
                rows.append({"run": short, "name": name, "bin": i, "confidence": b["mean_confidence"],
                             "accuracy": b["accuracy"], "count": b["count"],
                             "gap": abs(b["accuracy"] - b["mean_confidence"]), "enough": b["count"] >= min_count})
    return pd.DataFrame(rows, columns=["run", "name", "bin", "confidence", "accuracy", "count", "gap", "enough"])


def calibration_summary(runs: list[tuple[str, str, dict]], min_count: int = MIN_BIN_COUNT) -> pd.DataFrame:
    """ECE and MCE of each run, with the number of images in the bin the MCE comes from."""
    rows = []
    for short, name, m in runs:
        cal = m["calibration"]
        worst = _mce_bin(cal)
        rows.append({"run": short, "ECE": cal["ece"], "MCE": cal["mce"],
                     "images in the MCE bin": worst["count"] if worst else None,
                     "MCE from a small bin": bool(worst and worst["count"] < min_count), "full name": name})
    return pd.DataFrame(rows)


def _mce_bin(cal: dict) -> dict | None:
    """The non-empty bin with the largest gap between accuracy and confidence (the one MCE reports)."""
    filled = [b for b in cal["bins"] if b["count"]]
    return max(filled, key=lambda b: abs(b["accuracy"] - b["mean_confidence"])) if filled else None


def pr_steps(curve: dict) -> pd.DataFrame:
    """A stored precision-recall curve as the points of a step function in threshold order.

    Recall never rises along ``step`` (lowest threshold first, as scikit-learn's
    ``precision_recall_curve`` stores it); draw it with step-after interpolation, like
    ``PrecisionRecallDisplay``. Of the operating points that share a recall only the last
    (highest threshold, best precision) is kept: the others add nothing to the average
    precision and would draw a cliff at recall 1.
    """
    recall, precision = list(curve.get("recall") or []), list(curve.get("precision") or [])
    if len(recall) > 1 and recall[0] < recall[-1]:  # stored highest threshold first: turn it round
        recall, precision = recall[::-1], precision[::-1]
    keep = [i for i in range(len(recall)) if i == len(recall) - 1 or recall[i + 1] != recall[i]]
    return pd.DataFrame({"step": range(len(keep)), "recall": [recall[i] for i in keep],
                         "precision": [precision[i] for i in keep]})


def roc_points(curve: dict) -> pd.DataFrame:
    """A stored ROC curve in threshold order (highest threshold first): ``step`` orders the line, not ``fpr``,
    so a vertical stretch (several points at one false-positive rate) is drawn in its true order."""
    fpr, tpr = curve.get("fpr") or [], curve.get("tpr") or []
    return pd.DataFrame({"step": range(len(fpr)), "fpr": fpr, "tpr": tpr})


def auc_table(m: dict) -> pd.DataFrame:
    """One row per class: ROC AUC and average precision (one-vs-rest) and test images; worst AUC first.

    A class whose AUC is undefined (no test image of it, or only it) is last, with no AUC.
    """
    ap = {c["class"]: c["average_precision"] for c in m["pr"]["per_class"]}
    support = {c["class"]: c["support"] for c in m["per_class"]}
    table = pd.DataFrame([{"class": c["class"], "AUC": c["auc"], "AP": ap.get(c["class"]),
                           "support": support.get(c["class"], 0)} for c in m["roc"]["per_class"]],
                         columns=["class", "AUC", "AP", "support"])
    return table.sort_values(["AUC", "AP"], na_position="last", kind="stable", ignore_index=True)


def worst_classes(m: dict, n: int = 3) -> list[str]:
    """The classes shown by default on the ROC/PR curves: the positive class of a binary task, else the
    ``n`` classes with the lowest AUC."""
    if len(m["classes"]) == 2 and m["pr"].get("positive_class"):
        return [m["pr"]["positive_class"]]
    return auc_table(m).dropna(subset=["AUC"])["class"].head(n).tolist()


def most_confused_pairs(m: dict, top: int | None = None) -> pd.DataFrame:
    """Off-diagonal confusion cells with at least one image, most images first: true class, predicted class,
    count, and that count's share of the true class's test images."""
    counts, names = m["confusion_matrix"]["counts"], m["classes"]
    rows = []
    for i, true in enumerate(names):
        total = sum(counts[i])
        rows += [{"true": true, "predicted": pred, "count": counts[i][j], "share of true class": counts[i][j] / total}
                 for j, pred in enumerate(names) if j != i and counts[i][j]]
    table = pd.DataFrame(rows, columns=["true", "predicted", "count", "share of true class"])
    table = table.sort_values(["count", "share of true class"], ascending=False, kind="stable", ignore_index=True)
    return table if top is None else table.head(top)


def class_order(m: dict, by: str) -> list[str]:
    """The run's class names in one of :data:`CLASS_ORDERS`: by name, by recall (worst first), by test images."""
    if by not in CLASS_ORDERS:
        raise ValueError(f"unknown class order {by!r}; one of {', '.join(CLASS_ORDERS)}")
    if by == "name":
        return sorted(m["classes"])
    per_class = pd.DataFrame(m["per_class"])
    if by == CLASS_ORDERS[1]:
        per_class = per_class.sort_values(["recall", "class"], na_position="last", kind="stable")
    else:
        per_class = per_class.sort_values(["support", "class"], ascending=[False, True], kind="stable")
    return per_class["class"].tolist()


def class_balance(counts: pd.DataFrame) -> pd.DataFrame:
    """Images per class (rows) and split (columns) with a total, largest class first; ``counts`` is long
    (split, label, images)."""
    table = counts.pivot_table(index="label", columns="split", values="images", aggfunc="sum", fill_value=0)
    table = table[sorted(table.columns, key=lambda s: (SPLITS.index(s) if s in SPLITS else len(SPLITS), s))]
    table["total"] = table.sum(axis=1)
    return table.sort_values(["total"], ascending=False, kind="stable").astype(int)


def learning_curves(histories: list[tuple[str, str, pd.DataFrame]], metric: str) -> pd.DataFrame:
    """Long-form learning curves: one row per run, epoch and split (training, validation).

    ``histories`` holds ``(short label, full name, history)`` with the history as
    :func:`core.artifacts.record_view.history` returns it (``step`` counts epochs across stages).
    """
    frames = []
    for short, name, h in histories:
        if h.empty:
            continue
        for split, column in (("training", metric), ("validation", f"val_{metric}")):
            frames.append(pd.DataFrame({"run": short, "name": name, "epoch": h["step"],
                                        "stage": h["stage"].map(lambda s: STAGE_NAMES.get(s, s)),
                                        "stage epoch": h["epoch"], "split": split, "value": h[column]}))
    columns = ["run", "name", "epoch", "stage", "stage epoch", "split", "value"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def stage_starts(curves: pd.DataFrame) -> pd.DataFrame:
    """Where each run's later stages begin, half an epoch before their first epoch (for a rule on the chart)."""
    if curves.empty:
        return pd.DataFrame(columns=["run", "name", "stage", "epoch"])
    later = curves[curves["stage"] != curves.groupby("run")["stage"].transform("first")]
    starts = later.groupby(["run", "name", "stage"], as_index=False)["epoch"].min()
    starts["epoch"] = starts["epoch"] - 0.5
    return starts
