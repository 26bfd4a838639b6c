"""One stored run's or dataset's records, read for the pages as plain dicts and DataFrames (no TensorFlow).

A run's history, metrics, config, provenance, predictions, deployment and leakage; a dataset's audit,
McNemar comparison, BatchNorm diagnoses and split counts. Tables across runs are :mod:`core.artifacts.report`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from core.artifacts.config import RunConfig
from core.artifacts.layout import (
    AUDIT_FILE,
    CONFIG_FILE,
    DIAGNOSTICS_DIR,
    HISTORY_FILE,
    LEAKAGE_FILE,
    MCNEMAR_FILE,
    METRICS_FILE,
    PREDICTIONS_FILE,
    PROVENANCE_FILE,
    SPLITS_DIR,
    artifacts_dir,
    deployment_file,
    is_ensemble,
)
from core.artifacts.records import (
    AuditRecord,
    BatchNormDiagnosis,
    ComparisonRecord,
    DeploymentRecord,
    EnsembleRecord,
    LeakageRecord,
    MetricsRecord,
    Predictions,
    ProvenanceRecord,
    SplitRecord,
    readable,
)
from core.artifacts.runs import HISTORY_COLUMNS, RunFolder


def history(run_path: str | Path) -> pd.DataFrame:
    """Epoch history with a global epoch counter across stages.

    Only whole, well-formed lines are kept; what is missing or was left out (a line cut
    short, fewer epochs than the run's provenance records) is in :func:`history_problems`.
    """
    folder = RunFolder(Path(run_path))
    rows = folder.read_history()
    problems = folder.history_problems() + _missing_epochs(folder.path, rows)
    df = pd.DataFrame(rows, columns=HISTORY_COLUMNS) if rows else pd.DataFrame()
    if rows:
        for column in HISTORY_COLUMNS[1:]:  # every column but the stage's name is a number (empty: missing)
            df[column] = pd.to_numeric(df[column], errors="coerce")
        df["step"] = range(1, len(df) + 1)
    df.attrs["problems"] = problems
    return df


def history_problems(df: pd.DataFrame) -> list[str]:
    """Why a :func:`history` table is incomplete, one line each naming the file (empty when it is whole)."""
    return list(df.attrs.get("problems", []))


def _missing_epochs(run: Path, rows: list[dict]) -> list[str]:
    """Stages whose history rows differ in number from the epochs the run's provenance records."""
    prov = readable(ProvenanceRecord, run / PROVENANCE_FILE, None)  # none yet while the run trains
    details = prov.details if prov else {}
    problems = []
    for stage, info in details.items():
        recorded = info.get("epochs_run") if isinstance(info, dict) else None
        found = sum(1 for r in rows if r["stage"] == stage)
        if isinstance(recorded, int) and found != recorded:
            problems.append(f"{run / HISTORY_FILE}: {found} {stage} epoch(s) where {PROVENANCE_FILE} records "
                            f"{recorded}: the curve is incomplete")
    return problems


def metrics(run_path: str | Path) -> dict:
    """A run's test metrics (metrics.json) as plain data."""
    return MetricsRecord.load(Path(run_path) / METRICS_FILE).to_dict()


def config(run_path: str | Path) -> dict:
    """A run's stored settings (config.json) as plain data (an ensemble's: its record)."""
    if is_ensemble(run_path):
        return EnsembleRecord.load(Path(run_path) / CONFIG_FILE).to_dict()
    return RunConfig.load(Path(run_path) / CONFIG_FILE).to_dict()


def provenance(run_path: str | Path) -> dict:
    """A run's provenance (provenance.json) as plain data."""
    return ProvenanceRecord.load(Path(run_path) / PROVENANCE_FILE).to_dict()


def predictions(run_path: str | Path) -> pd.DataFrame:
    """Per-image predictions; class names stay strings (a class called 'None' or 'NA' is not missing).

    A table cut short, or with another number of rows than the run's metrics count, raises
    :class:`RecordError` (without readable metrics only the cut is checked).
    """
    metrics_record = readable(MetricsRecord, Path(run_path) / METRICS_FILE, None)
    table = Predictions.load(Path(run_path) / PREDICTIONS_FILE,
                             expected_rows=metrics_record.n if metrics_record else None)
    df = pd.DataFrame({"id": table.ids, "true": table.true, "pred": table.pred})
    for i, name in enumerate(table.classes):
        df[f"p_{name}"] = table.probs[:, i]
    return df


def confusion_cells(metrics: dict, normalised: bool) -> pd.DataFrame:
    """The confusion matrix of a run's metrics as one row per (true, predicted) class name.

    ``value`` is the row-normalised share (recall per true class) or the count; a class
    with no test images has no normalised row, so its cells are empty, not zero.
    """
    cm, names = metrics["confusion_matrix"], metrics["classes"]
    rows = []
    for i, true in enumerate(names):
        for j, pred in enumerate(names):
            count = cm["counts"][i][j]
            share = cm["normalized"][i][j] if cm["normalized"][i] is not None else None
            rows.append({"true": true, "predicted": pred, "count": count,
                         "value": share if normalised else count})
    return pd.DataFrame(rows)


def deployment(run_path: str | Path) -> dict | None:
    path = deployment_file(Path(run_path))
    return DeploymentRecord.load(path).to_dict() if path.is_file() else None


def leakage(run_path: str | Path) -> dict | None:
    """A run's ``leakage.json`` (scores on leak-free and leaking test images), or None before it exists."""
    path = Path(run_path) / LEAKAGE_FILE
    return LeakageRecord.load(path).to_dict() if path.is_file() else None


def per_class_with_leak_free(metrics: dict, leak: dict | None) -> pd.DataFrame:
    """Per-class precision, recall, F1 and support, with recall and support on the leak-free test images
    next to them when some test images leak."""
    table = pd.DataFrame(metrics["per_class"])[["class", "precision", "recall", "f1", "support"]]
    free = (leak or {}).get("subsets", {}).get("leak_free")
    if leak and free and leak.get("leaking_images"):
        rows = {r["class"]: r for r in free.get("per_class", [])}
        table["leak-free recall"] = [rows.get(c, {}).get("recall") for c in table["class"]]
        table["leak-free support"] = [rows.get(c, {}).get("support", 0) for c in table["class"]]
    return table


def audit(dataset: str, root: Path | None = None) -> dict | None:
    path = Path(root or artifacts_dir()) / dataset / AUDIT_FILE
    return AuditRecord.load(path).to_dict() if path.is_file() else None


def mcnemar(dataset: str, root: Path | None = None) -> dict | None:
    path = Path(root or artifacts_dir()) / dataset / MCNEMAR_FILE
    return ComparisonRecord.load(path).to_dict() if path.is_file() else None


def batchnorm_diagnoses(dataset: str, root: Path | None = None) -> pd.DataFrame:
    """One row per stored BatchNorm diagnosis (scripts/diagnose_batchnorm.py) of a dataset's runs."""
    rows = []
    for path in sorted((Path(root or artifacts_dir()) / dataset / DIAGNOSTICS_DIR).glob("batchnorm-*.json")):
        doc = BatchNormDiagnosis.load(path)
        res = doc.results
        rows.append({"run_id": doc.run, "backbone": doc.backbone, "val_images": doc.val_images,
                     "inference": res["inference"]["accuracy"],
                     "batch_statistics": res["batch_statistics"]["accuracy"],
                     "reestimated": res["reestimated"]["accuracy"],
                     "train_images": res["reestimated"]["train_images"], "command": doc.command})
    return pd.DataFrame(rows, columns=["run_id", "backbone", "val_images", "inference", "batch_statistics",
                                       "reestimated", "train_images", "command"])


def split_counts(dataset: str, root: Path | None = None) -> pd.DataFrame:
    """Images per split and class of every stored split of the dataset (long format, one ``split_file`` each).

    A dataset split with several seeds, or whose files changed, has several split files.
    """
    files = sorted((Path(root or artifacts_dir()) / dataset / SPLITS_DIR).glob("split-*.json"))
    frames = []
    for path in files:
        items = pd.DataFrame(SplitRecord.load(path).items)
        counts = items.groupby(["split", "label"]).size().rename("images").reset_index()
        frames.append(counts.assign(split_file=path.stem))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
