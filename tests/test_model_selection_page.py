"""The Model selection page: the commands to run when no record exists, and the charts and tables of stored
cross-validation, fold-study and tuning records (written here as plain records: no TensorFlow, no Optuna)."""

import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.artifacts import layout
from core.artifacts.records import CrossValidationRecord, FoldStudyRecord, TuningRecord

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[1]
DATASET = {"path": "data/colours", "slug": "colours", "fingerprint": "f" * 64, "classes": ["a", "b"],
           "counts": {"non_test": 40, "test": 10}}
SUMMARY = {"n": 5, "mean": 0.8, "sd": 0.05, "low": 0.74, "high": 0.86}


def _page(artifacts, monkeypatch):
    loaded = {m for m in ("tensorflow", "optuna") if m in sys.modules}  # by another test of the session
    monkeypatch.setenv("STUDY_ARTIFACTS", str(artifacts))
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=60).run()
    at.switch_page("pages/model_selection.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not {m for m in ("tensorflow", "optuna") if m in sys.modules} - loaded  # the page reads records only
    return at


def _write_records(folder):
    common = {"created_at": "2026-01-01T00:00:00Z", "dataset": DATASET, "backbone": "EfficientNetLite0",
              "code": {"git_commit": "abc"}}
    CrossValidationRecord(**common, method="logreg", config={}, grouped=True, grouping={"groups": 40}, k=5,
                          fold_seeds=[0], procedure="logreg", hyperparameter={"name": "C", "value": 1.0},
                          folds=[], summary={"balanced_accuracy": SUMMARY}, repeats=[],
                          test={"balanced_accuracy": 0.78}, fit_seconds=1.5).save(
        layout.cv_file(folder, "EfficientNetLite0", "logreg", 5, True))
    rows = [{"folds": k, "grouped": g, "repeats": 3, "estimate": 0.8 + (0 if g else 0.1), "spread_sd": 0.01,
             "bias": 0.02, "fit_seconds": k * 0.1} for k in (2, 5) for g in (True, False)]
    FoldStudyRecord(**common, method="knn", config={}, metric="balanced_accuracy", grouping={}, procedure="knn",
                    hyperparameter=None, test={"balanced_accuracy": 0.78}, rows=[], summary=rows).save(
        layout.fold_study_file(folder, "EfficientNetLite0", "knn"))
    trials = [{"number": i, "state": "COMPLETE" if i != 2 else "PRUNED", "value": 0.7 + i / 100 if i != 2 else None,
               "params": {}, "seconds": 1.0, "epochs_reported": 3} for i in range(4)]
    TuningRecord(**common, study="lite0-study", storage="sqlite:///x", base_config={"head_dropout": 0.2},
                 objective={"metric": "balanced_accuracy", "source": "validation"}, search_space={},
                 trials=trials, best={"number": 3, "value": 0.73, "params": {}, "overrides": {"head_dropout": 0.4}},
                 importances={"head_dropout": 0.7, "head_l2": 0.3}, importance_note="fANOVA").save(
        layout.tuning_file(folder, "lite0-study"))


def test_without_records_the_page_names_the_commands_that_make_them(tmp_path, monkeypatch):
    (tmp_path / "art").mkdir()
    at = _page(tmp_path / "art", monkeypatch)
    text = " ".join(i.value for i in at.info)
    assert "No cross-validation or tuning record" in text and "python -m core cv" in text
    assert "python -m core tune" in text


def test_stored_records_draw_the_fold_study_cv_table_and_tuning(tmp_path, monkeypatch):
    art = tmp_path / "art"
    _write_records(art / "colours")
    at = _page(art, monkeypatch)
    subheaders = [h.value for h in at.subheader]
    assert any(h.startswith("How many folds?") for h in subheaders)
    assert "Cross-validation results" in subheaders and "Tuning: lite0-study" in subheaders
    tables = [d.value for d in at.dataframe]
    cv = next(t for t in tables if "CV balanced accuracy" in t.columns)
    assert cv["95% low"].iloc[0] == 0.74 and cv["hyperparameter"].iloc[0] == "C=1.0"
    study = next(t for t in tables if "folds are" in t.columns and "bias" in t.columns)
    assert set(study["folds are"]) == {"grouped", "ungrouped (leaky)"}
    best = next(t for t in tables if "tuned" in t.columns)
    assert best.iloc[0].to_dict() == {"setting": "head_dropout", "tuned": "0.4", "default": "0.2"}
    assert any("No tuned run yet" in i.value for i in at.info)
    (art / "colours" / "model_selection" / "tuning-broken.json").write_text("{not json")
    at = _page(art, monkeypatch)
    assert any("tuning-broken.json" in e.value for e in at.error)
