"""The classical-baselines tables (core.artifacts.classical) and their page, on fake baseline runs written with the
record classes (no training, no TensorFlow)."""

import json
from pathlib import Path

import numpy as np
import pytest

from core.artifacts import classical, report
from core.artifacts.config import RunConfig
from core.artifacts.records import CompleteRecord, MetricsRecord, Predictions, ProvenanceRecord
from core.evaluate.metrics import evaluate

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parent.parent
CLASSES = ["a", "b", "c"]


def write_baseline(art: Path, method: str, chosen, fit_seconds: float, correct: int, seed: int = 0,
                   dataset: str = "ds") -> Path:
    """A complete baseline run: ``correct`` of 30 test images right, the given choice and fit time recorded."""
    cfg = RunConfig(dataset=dataset, backbone="EfficientNetLite0", preset="full", seed=seed, method=method)
    run = art / dataset / cfg.backbone / f"full-imagenet-{method}-s{seed}-x"
    run.mkdir(parents=True)
    cfg.save(run / "config.json")
    y = np.arange(30) % 3
    pred = np.where(np.arange(30) < correct, y, (y + 1) % 3)
    probs = np.full((30, 3), 0.1)
    probs[np.arange(30), pred] = 0.8
    MetricsRecord.from_dict(evaluate(y, probs, CLASSES, n_bootstrap=50)).save(run / "metrics.json")
    Predictions.from_probs([f"t/{i}.png" for i in range(30)], y, probs, CLASSES).save(run / "predictions.csv")
    name = {"ecoc_svm": "code_size", "knn_nearest": "n_neighbors", "tree_gini": "max_depth"}.get(method, "C")
    ProvenanceRecord(code={}, libraries={}, machine={}, dataset={"classes": CLASSES},
                     timings_s={"features": 12.0, "fit": fit_seconds * 5},
                     details={"method": method, "hyperparameter": name, "chosen": chosen, "grid": [],
                              "fit_seconds": fit_seconds}).save(run / "provenance.json")
    CompleteRecord(completed_at="2026-11-30T00:00:00Z").save(run / "complete.json")
    return run


@pytest.fixture
def baselines(tmp_path):
    art = tmp_path / "art"
    write_baseline(art, "ovo_svm", 0.01, 3.5, 24)
    write_baseline(art, "ovr_logreg", 1.0, 1.25, 27)
    write_baseline(art, "logreg", 0.1, 0.5, 21)
    write_baseline(art, "ecoc_svm", 1.5, 7.0, 18)
    write_baseline(art, "knn_nearest", 5, 0.01, 15)
    write_baseline(art, "tree_gini", None, 0.2, 12)
    write_baseline(art, "finetune", None, 0.0, 29)  # a network run: in neither table
    return art


def test_the_reduction_table_reads_each_runs_strategy_choice_fit_time_and_intervals(baselines):
    runs = report.runs_table("ds", baselines)
    rows = classical.baseline_rows(runs, classical.REDUCTIONS)
    # The table's order, the reference first, whatever order the runs were stored in.
    assert rows["method"].tolist() == ["logreg", "ovr_logreg", "ovo_svm", "ecoc_svm"]
    ovr = rows.set_index("method").loc["ovr_logreg"]
    assert (ovr["strategy"], ovr["base model"], ovr["chosen"]) == ("one-vs-rest", "logistic regression", "C=1.0")
    assert ovr["fit_seconds"] == 1.25 and ovr["features_seconds"] == 12.0
    assert ovr["accuracy"] == pytest.approx(27 / 30) and ovr["accuracy_low"] <= 0.9 <= ovr["accuracy_high"]
    shown = classical.display_table(rows).set_index("Strategy")
    assert shown.loc["output codes (ECOC)", "Chosen on validation"] == "code_size=1.5"
    assert shown.loc["output codes (ECOC)", "Fit (s)"] == "7.00"
    assert shown.loc["one-vs-rest", "Accuracy"].startswith("0.900 [")
    other = classical.baseline_rows(runs, classical.CLASSICAL)
    assert other["method"].tolist() == ["knn_nearest", "tree_gini"]
    assert other["chosen"].tolist() == ["n_neighbors=5", "max_depth=unlimited"]


def test_the_tables_are_empty_without_baseline_runs_and_name_the_command():
    assert classical.baseline_rows(report.runs_table("none", Path("/nonexistent")), classical.REDUCTIONS).empty
    command = classical.make_command(classical.REDUCTIONS)
    assert "--method $m" in command and "ovo_svm" in command and "ecoc_logreg" in command


def _page(art, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("STUDY_ARTIFACTS", str(art))
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=120).run()
    at.switch_page("pages/baselines.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_baselines_page_draws_both_tables_and_a_chart_each(baselines, monkeypatch):
    at = _page(baselines, monkeypatch)
    [reductions, others] = [d.value for d in at.dataframe if "Fit (s)" in d.value]
    assert reductions["Strategy"].tolist() == ["none: multinomial (reference)", "one-vs-rest", "one-vs-one",
                                               "output codes (ECOC)"]
    assert others["Rule"].tolist() == ["tie: class of the nearest neighbour", "Gini impurity"]
    specs = [json.loads(el.proto.spec) for el in at.get("vega_lite_chart")]
    assert len(specs) == 2


def test_the_baselines_page_without_reduction_runs_says_which_command_makes_them(tmp_path, monkeypatch):
    art = tmp_path / "art"
    write_baseline(art, "knn_nearest", 5, 0.01, 15)
    at = _page(art, monkeypatch)
    assert any("No run of these methods" in i.value and "--method $m" in i.value for i in at.info)
    assert len([d for d in at.dataframe if "Fit (s)" in d.value]) == 1
