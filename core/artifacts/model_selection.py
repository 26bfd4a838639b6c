"""Tables of the stored cross-validation, fold-count and tuning records for the Model selection page
(pandas only: no TensorFlow, no Optuna; the records are plain JSON)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from core.artifacts.layout import artifacts_dir, dataset_dir, model_selection_records
from core.artifacts.records import CrossValidationRecord, FoldStudyRecord, RecordError, TuningRecord

LOGO_LABEL = "leave one group out"
CV_COMMAND = "python -m core cv --data DATA_DIR --backbone EfficientNetLite0 --folds 5"
STUDY_COMMAND = "python -m core cv --data DATA_DIR --backbone EfficientNetLite0 --fold-study --repeats 5 --ungrouped"
TUNE_COMMAND = "python -m core tune --data DATA_DIR --backbone EfficientNetLite0 --trials 30"


def load_records(dataset: str, root: Path | None = None) -> tuple[dict[str, list], list[str]]:
    """Every readable record of ``dataset`` by kind (``cv``, ``fold_study``, ``tuning``), and one line per
    unreadable file."""
    folder = dataset_dir(dataset, root or artifacts_dir())
    kinds = {"cv": CrossValidationRecord, "fold_study": FoldStudyRecord, "tuning": TuningRecord}
    out, problems = {k: [] for k in kinds}, []
    for prefix, kind in kinds.items():
        for path in model_selection_records(folder, prefix):
            try:
                out[prefix].append(kind.load(path))
            except RecordError as exc:
                problems.append(str(exc))
    return out, problems


def cv_table(records: list[CrossValidationRecord]) -> pd.DataFrame:
    """One row per CV record: method, folds, grouping, the mean with its t-interval, and the refitted test score."""
    rows = []
    for r in records:
        s = r.summary.get("balanced_accuracy", {})
        rows.append({"backbone": r.backbone, "method": "network head" if r.method == "finetune" else r.method,
                     "folds": r.k, "folds are": "grouped" if r.grouped else "ungrouped (leaky)",
                     "repeats": len(r.fold_seeds), "CV balanced accuracy": s.get("mean"), "SD across folds": s.get("sd"),
                     "95% low": s.get("low"), "95% high": s.get("high"),
                     "test (refitted)": r.test.get("balanced_accuracy"), "fit seconds": r.fit_seconds,
                     "hyperparameter": "" if not r.hyperparameter else
                     f"{r.hyperparameter['name']}={r.hyperparameter['value']}"})
    return pd.DataFrame(rows)


def fold_study_points(record: FoldStudyRecord) -> pd.DataFrame:
    """The fold-count study as chart points: estimate ± SD across repeats per fold count and grouping."""
    rows = []
    for s in record.summary:
        spread = s["spread_sd"] or 0.0
        rows.append({"folds": LOGO_LABEL if s["folds"] == 0 else str(s["folds"]),
                     "order": 99 if s["folds"] == 0 else s["folds"],
                     "folds are": "grouped" if s["grouped"] else "ungrouped (leaky)",
                     "estimate": s["estimate"], "low": s["estimate"] - spread, "high": s["estimate"] + spread,
                     "spread_sd": s["spread_sd"], "bias": s["bias"], "seconds": s["fit_seconds"],
                     "repeats": s["repeats"]})
    return pd.DataFrame(rows)


def tuning_history(record: TuningRecord) -> pd.DataFrame:
    """Trials in order with their value and the best value so far (complete trials only carry one)."""
    rows, best = [], None
    for t in record.trials:
        value = t["value"] if t["state"] == "COMPLETE" else None
        if value is not None:
            best = value if best is None else max(best, value)
        rows.append({"trial": t["number"], "state": t["state"], "value": value, "best so far": best})
    return pd.DataFrame(rows)


def importances(record: TuningRecord) -> pd.DataFrame:
    """Parameter importances, largest first."""
    return pd.DataFrame([{"setting": k, "importance": v} for k, v in
                         sorted(record.importances.items(), key=lambda kv: -kv[1])])


def best_settings(record: TuningRecord) -> pd.DataFrame:
    """The best trial's settings next to the base config's values."""
    if not record.best:
        return pd.DataFrame()
    base = record.base_config
    rows = []
    for key, value in record.best["overrides"].items():
        node = base
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        rows.append({"setting": key, "tuned": _value_text(value), "default": _value_text(node)})
    return pd.DataFrame(rows)


def _value_text(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def tuned_vs_default(configs: pd.DataFrame, metric: str = "balanced_accuracy") -> pd.DataFrame:
    """Configurations (:func:`core.artifacts.ranking.configurations`) of the backbones that have a tuned one:
    each with its mean, 95% interval and seeds, marked tuned or not."""
    if configs.empty or "label" not in configs or metric not in configs:
        return pd.DataFrame()
    tuned = configs["label"].astype(str).str.contains("tuned_from=")
    tuned &= ~configs["label"].astype(str).str.contains("tuned_from=default")
    if not tuned.any():
        return pd.DataFrame()
    backbones = set(configs.loc[tuned, "backbone"])
    keep = configs[configs["backbone"].isin(backbones) & (configs["kind"] == "transfer")].copy()
    keep["tuned"] = tuned[keep.index].map({True: "tuned", False: "default"})
    out = keep[["label", "tuned", "preset", "n_seeds", metric, f"{metric}_low", f"{metric}_high"]]
    return out.rename(columns={metric: "mean", f"{metric}_low": "low", f"{metric}_high": "high"})
