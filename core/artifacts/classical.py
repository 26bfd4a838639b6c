"""The classical baselines side by side: multi-class reduction strategies, k-NN tie rules, tree impurity measures.

Built from the stored baseline runs of a dataset (:func:`core.artifacts.report.runs_table`
rows and each run's ``provenance.json``: the hyperparameter chosen on validation and the
chosen model's fit time, ``details.fit_seconds``, as :mod:`core.train.baselines` records
them). No computing of scores here: every number is a stored run's.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from core.artifacts.layout import PROVENANCE_FILE
from core.artifacts.records import ProvenanceRecord
from core.artifacts.report import format_ci

# method -> (family, strategy or rule, base model); the order is the table's.
REDUCTIONS = {
    "logreg": ("reduction", "none: multinomial (reference)", "logistic regression"),
    "ovr_logreg": ("reduction", "one-vs-rest", "logistic regression"),
    "ovo_logreg": ("reduction", "one-vs-one", "logistic regression"),
    "ecoc_logreg": ("reduction", "output codes (ECOC)", "logistic regression"),
    "linear_svm": ("reduction", "LinearSVC's own one-vs-rest (reference)", "linear SVM"),
    "ovr_svm": ("reduction", "one-vs-rest", "linear SVM"),
    "ovo_svm": ("reduction", "one-vs-one", "linear SVM"),
    "ecoc_svm": ("reduction", "output codes (ECOC)", "linear SVM"),
}
CLASSICAL = {
    "knn": ("k-NN", "votes weighted by 1/distance", "k-NN"),
    "knn_uniform": ("k-NN", "tie: smallest class index", "k-NN"),
    "knn_nearest": ("k-NN", "tie: class of the nearest neighbour", "k-NN"),
    "knn_random": ("k-NN", "tie: drawn with the run's seed", "k-NN"),
    "nn1": ("k-NN", "1-NN (no vote)", "k-NN"),
    "tree_gini": ("tree", "Gini impurity", "decision tree"),
    "tree_entropy": ("tree", "entropy", "decision tree"),
    "tree_log_loss": ("tree", "log loss", "decision tree"),
    "forest": ("tree", "Gini impurity, 200 trees", "random forest"),
}
SHOWN = ("accuracy", "balanced_accuracy")
COMMAND = ("for m in {methods}; do python -m core run --data DATA_DIR --backbone EfficientNetLite0 "
           "--method $m; done")


def make_command(methods: dict) -> str:
    """The shell line that makes the runs of a table (one run per method)."""
    return COMMAND.format(methods=" ".join(methods))


def baseline_rows(runs: pd.DataFrame, methods: dict) -> pd.DataFrame:
    """One row per stored run of ``methods`` (runs as :func:`~core.artifacts.report.runs_table` gives them):
    family, strategy, base model, the chosen hyperparameter, fit seconds and the headline metrics with intervals."""
    columns = ["label", "backbone", "seed", "method", "family", "strategy", "base model", "chosen", "fit_seconds",
               "features_seconds", *[f"{m}{s}" for m in SHOWN for s in ("", "_low", "_high")]]
    if runs.empty or "method" not in runs:
        return pd.DataFrame(columns=columns)
    rows = []
    for _, r in runs[runs["method"].isin(list(methods))].iterrows():
        family, strategy, base = methods[r["method"]]
        details, timings = _provenance(r["path"])
        name, value = details.get("hyperparameter"), details.get("chosen")
        rows.append({"label": r["label"], "backbone": r["backbone"], "seed": r["seed"], "method": r["method"],
                     "family": family, "strategy": strategy, "base model": base,
                     "chosen": f"{name}={'unlimited' if value is None else value}" if name else "",
                     "fit_seconds": details.get("fit_seconds"), "features_seconds": timings.get("features"),
                     **{f"{m}{s}": r.get(f"{m}{s}") for m in SHOWN for s in ("", "_low", "_high")}})
    order = list(methods)
    table = pd.DataFrame(rows, columns=columns)
    return table.sort_values(["backbone", "method", "seed"], key=lambda c: c.map(order.index) if c.name == "method"
                             else c, kind="stable", ignore_index=True)


def _provenance(run_path: str) -> tuple[dict, dict]:
    record = ProvenanceRecord.load(Path(run_path) / PROVENANCE_FILE)
    return record.details or {}, record.timings_s or {}


def display_table(rows: pd.DataFrame, what: str = "Strategy") -> pd.DataFrame:
    """The rows as readers see them: metrics as 'value [low, high]', fit time in seconds."""
    return pd.DataFrame({
        "Backbone": rows["backbone"], "Seed": rows["seed"], what: rows["strategy"], "Model": rows["base model"],
        "Chosen on validation": rows["chosen"],
        "Fit (s)": rows["fit_seconds"].map(lambda v: "" if v is None or v != v else f"{v:.2f}"),
        "Accuracy": [format_ci(v, lo, hi) for v, lo, hi in
                     zip(rows["accuracy"], rows["accuracy_low"], rows["accuracy_high"])],
        "Balanced accuracy": [format_ci(v, lo, hi) for v, lo, hi in zip(
            rows["balanced_accuracy"], rows["balanced_accuracy_low"], rows["balanced_accuracy_high"])],
    })
