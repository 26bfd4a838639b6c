"""Pairwise McNemar comparison of every complete run of a dataset on its shared test set."""

from __future__ import annotations

from pathlib import Path

from core.artifacts.layout import MCNEMAR_FILE, METRICS_FILE, PREDICTIONS_FILE, complete_runs
from core.artifacts.records import ComparisonRecord, MetricsRecord, Predictions
from core.errors import UserError
from core.evaluate import metrics as evaluation


def run_label(run_dir: Path) -> str:
    """``Backbone/run id``: unique within a dataset folder."""
    return f"{run_dir.parent.name}/{run_dir.name}"


def load_correctness(run_dir: Path) -> tuple[list[str], list[bool]]:
    """Test-sample ids and whether the run predicted each correctly, from predictions.csv."""
    table = Predictions.load(run_dir / PREDICTIONS_FILE)
    return table.ids, table.correct()


def compare_dataset(dataset_dir: str | Path, alpha: float = 0.05) -> dict:
    """McNemar's test between every pair of complete runs under ``dataset_dir``.

    Writes ``mcnemar.json`` into the dataset folder and returns it. Runs are aligned
    on test-sample ids, so runs with different test subsets compare on their overlap.
    """
    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        raise UserError(f"results folder not found: {dataset_dir}")
    runs = [r for r in complete_runs(dataset_dir.parent) if r.parent.parent == dataset_dir]
    if len(runs) < 2:
        raise UserError(f"{dataset_dir} has {len(runs)} complete run(s); McNemar needs at least 2")
    result = evaluation.pairwise_mcnemar({run_label(r): load_correctness(r) for r in runs}, alpha=alpha)
    result["accuracy"] = {run_label(r): MetricsRecord.load(r / METRICS_FILE).accuracy for r in runs}
    record = ComparisonRecord.from_dict(result, "McNemar comparison")
    record.save(dataset_dir / MCNEMAR_FILE)
    return record.to_dict()
