"""Analyses declared in an experiment file ([[ensemble]], [[operating_point]], [[cv]], [[tune]]): parsed into the
grid's own runs, carried out once their runs are complete, idempotent (fake run folders and stand-ins for the CV
and tuning work, no TensorFlow)."""

import os

import numpy as np
import pytest
from test_operating_point import CLASSES, _probs

from core.artifacts.layout import VAL_PREDICTIONS_FILE, ensemble_folders
from core.artifacts.records import (
    CompleteRecord,
    DeploymentRecord,
    EnsembleRecord,
    MetricsRecord,
    OperatingPointsRecord,
    Predictions,
    ProvenanceRecord,
    SplitRecord,
)
from core.artifacts.runs import RunFolder
from core.errors import UserError
from core.evaluate.metrics import evaluate
from core.orchestrate.analyses import is_done, run_analyses
from core.orchestrate.experiment import parse_grid

pytestmark = pytest.mark.unit

STUDY = '''
[[grid]]
datasets = ["mri"]
backbones = ["EfficientNetLite0", "MobileNetV2@0.35"]
seeds = [0, 1]

[[ensemble]]
datasets = ["mri"]
backbones = ["EfficientNetLite0", "MobileNetV2@0.35"]
weights = ["uniform", "val_loss"]

[[operating_point]]
datasets = ["mri"]
backbone = "EfficientNetLite0"
positive = ["Mild", "Moderate", "VeryMild"]
sensitivity = 0.9
'''


def fake_run(cfg, root, seed=0):
    """A complete run at the folder the config names: test and validation probabilities, one split with groups."""
    rng = np.random.default_rng(seed)
    run = RunFolder.for_config(cfg, root).path
    run.mkdir(parents=True)
    cfg.save(run / "config.json")
    # The same images and labels in every run (one split); only the probabilities differ.
    y = {s: np.random.default_rng(len(s)).integers(0, 4, n) for s, n in (("train", 60), ("val", 200), ("test", 150))}
    ids = {s: [f"{s}/{CLASSES[c]}/{i}.png" for i, c in enumerate(y[s])] for s in y}
    split_file = root / "mri" / "splits" / "split-seed42-abc.json"
    if not split_file.is_file():
        items = [{"path": p, "label": CLASSES[c], "split": s, "group": p} for s in y for p, c in zip(ids[s], y[s])]
        SplitRecord(seed=42, val_fraction=0.15, test_fraction=0.15, layout="class_folders", items=items,
                    grouping={"source": "csv"}).save(split_file)
    test = _probs(rng, y["test"])
    MetricsRecord.from_dict(evaluate(y["test"], test, CLASSES, n_bootstrap=0)).save(run / "metrics.json")
    Predictions.from_probs(ids["test"], y["test"], test, CLASSES).save(run / "predictions.csv")
    Predictions.from_probs(ids["val"], y["val"], _probs(rng, y["val"]), CLASSES).save(run / VAL_PREDICTIONS_FILE)
    ProvenanceRecord(code={}, libraries={}, machine={}, details={},
                     dataset={"classes": CLASSES, "split_file": os.path.relpath(split_file, run), "fingerprint": "f"}
                     ).save(run / "provenance.json")
    CompleteRecord(completed_at="2026-11-30T00:00:00Z").save(run / "complete.json")
    return run


def test_analyses_name_the_grids_own_runs():
    study = parse_grid(STUDY)
    assert [a.kind for a in study.analyses] == ["ensemble", "ensemble", "operating_point"]
    seed0 = {(r.config.backbone, r.config.run_id()) for r in study.runs if r.config.seed == 0}
    assert {(c.backbone, c.run_id()) for c in study.analyses[0].members} == seed0
    assert study.analyses[2].members[0].run_id() == next(
        r.config.run_id() for r in study.runs if r.config.seed == 0 and r.config.backbone == "EfficientNetLite0")
    assert study.analyses[2].describe() == ("mri: operating point of EfficientNetLite0 seed 0: Mild, Moderate, "
                                            "VeryMild at sensitivity 0.9")
    # Members follow the analysis's overrides: another split's runs are other runs, which no grid here plans.
    with pytest.raises(UserError, match="no grid plans the run of EfficientNetLite0 seed 0, MobileNetV2@0.35 seed 0"):
        parse_grid(STUDY.replace('weights = ["uniform", "val_loss"]', 'weights = ["uniform"]\nset = { grouping = "none" }'))


@pytest.mark.parametrize("change, message", [
    (('weights = ["uniform", "val_loss"]', 'weights = ["mean"]'), "'weights' must be a list of: uniform"),
    (('backbones = ["EfficientNetLite0", "MobileNetV2@0.35"]\nweights', 'backbones = ["EfficientNetLite0"]\nweights'),
     "ensemble 1: needs 'backbones', a list of two or more"),
    (("sensitivity = 0.9", "sensitivity = 0.9\ncost_ratio = 5"), "either a target sensitivity or a cost ratio"),
    (("sensitivity = 0.9", "sensitivity = 0.9\nthreshold = 0.5"), "operating_point 1: unknown keys: threshold"),
    (("[[operating_point]]", "[operating_point]"), r"as a \[\[operating_point\]\] section"),
])
def test_a_mistake_in_an_analysis_is_one_line(change, message):
    with pytest.raises(UserError, match=message) as caught:
        parse_grid(STUDY.replace(*change), "study.toml")
    assert str(caught.value).startswith("study.toml: ") and "\n" not in str(caught.value)


def test_analyses_wait_for_their_runs_then_run_once(tmp_path):
    root = tmp_path / "art"
    study = parse_grid(STUDY)
    lines = []
    lite0, mobilenet = study.analyses[0].members
    fake_run(lite0, root, seed=1)
    assert run_analyses(study.analyses, root, lines.append) == ([], ["mri"])  # the operating point reads Lite0 only
    assert sum("waits for 1 run(s) to complete" in line for line in lines) == 2
    assert not (root / "mri" / "ensembles").exists()
    fake_run(mobilenet, root, seed=2)
    failures, changed = run_analyses(study.analyses, root, lines.append)
    assert failures == [] and changed == ["mri", "mri"]  # the two ensembles
    folders = ensemble_folders(root / "mri")
    assert sorted(EnsembleRecord.load(f / "config.json").weights_method for f in folders) == ["uniform", "val_loss"]
    points = OperatingPointsRecord.load(RunFolder.for_config(lite0, root).path / "operating_points.json").points
    assert [p["key"] for p in points] == ["Mild + Moderate + VeryMild | sensitivity 0.9"]
    lines.clear()  # a second sitting: nothing is redone
    assert run_analyses(study.analyses, root, lines.append) == ([], [])
    assert sum("complete already" in line for line in lines) == 3


def _deployment(run, int8: str | None = "ok"):
    """deployment.json with float32 measured and the full-int8 variant ``ok``, failed, or not tried yet (None)."""
    variants = [{"name": "tflite_float32", "status": "ok", "bytes": 4e6, "file": "tflite_float32.tflite",
                 "latency": {"threads_1": {"median_ms": 10.0}}}]
    if int8 == "ok":
        variants.append({**variants[0], "name": "tflite_int8_full", "file": "tflite_int8_full.tflite"})
    elif int8:
        variants.append({"name": "tflite_int8_full", "status": int8, "reason": "converter error"})
    DeploymentRecord(kind="run", variants=variants).save(run / "deploy" / "deployment.json")


def test_an_ensemble_of_runs_the_study_deploys_waits_for_their_deployment(tmp_path):
    """Built before a member's deployment, the ensemble would store its cost as not measured for good."""
    root = tmp_path / "art"
    study = parse_grid(STUDY.replace("seeds = [0, 1]", "seeds = [0, 1]\ndeploy = true"))
    ensembles = study.analyses[:2]
    lite0, mobilenet = (fake_run(cfg, root, seed=n) for n, cfg in enumerate(ensembles[0].members))
    lines = []
    assert run_analyses(ensembles, root, lines.append) == ([], [])
    assert sum("waits for 2 run(s) to complete or be deployed" in line for line in lines) == 2
    _deployment(lite0)
    _deployment(mobilenet, int8=None)  # a deployment cut short before its int8 variant
    lines.clear()
    assert run_analyses(ensembles, root, lines.append) == ([], [])
    assert sum("waits for 1 run(s) to complete or be deployed" in line for line in lines) == 2
    _deployment(mobilenet, int8="failed")  # tried: the ensemble is made, and says what was not measured
    assert run_analyses(ensembles, root, lines.append) == ([], ["mri", "mri"])
    record = EnsembleRecord.load(ensemble_folders(root / "mri")[0] / "config.json")
    assert record.deployment["tflite_float32"] == {"label": "float32", "measured": True, "mb": 8.0, "ms": 20.0}
    assert not record.deployment["tflite_int8_full"]["measured"]
    assert "MobileNetV2@0.35" in record.deployment["tflite_int8_full"]["reason"]
    # A study that does not deploy its members builds the ensemble at once; with --deploy (every run deployed)
    # it waits as for a deploying grid.
    for name, study in (("plain", parse_grid(STUDY)), ("flag", parse_grid(STUDY).deploying_all())):
        other = tmp_path / name
        for n, cfg in enumerate(study.analyses[0].members):
            fake_run(cfg, other, seed=n)
        built = run_analyses(study.analyses[:1], other, print) == ([], ["mri"])
        assert built == (name == "plain") and all(r.deploy for r in study.runs) == (name == "flag")


def test_an_analysis_that_cannot_be_made_is_a_failure_of_the_sitting_not_a_crash(tmp_path):
    root = tmp_path / "art"
    study = parse_grid(STUDY.replace('positive = ["Mild", "Moderate", "VeryMild"]', 'positive = ["Severe"]'))
    for cfg in study.analyses[0].members:
        fake_run(cfg, root)
    failures, _ = run_analyses(study.analyses[2:], root, print)
    assert len(failures) == 1 and "unknown class 'Severe'" in failures[0][1]


def test_a_dry_run_lists_each_analysis_and_the_runs_it_waits_for(tmp_path, monkeypatch):
    from conftest import make_image_dataset

    from core.orchestrate.experiment import DATA_ROOT_ENV, run_experiment

    monkeypatch.delenv(DATA_ROOT_ENV, raising=False)
    make_image_dataset(tmp_path / "data" / "mri", classes=tuple(CLASSES), per_class=6)
    grid = tmp_path / "study.toml"
    grid.write_text(f'artifacts = "{tmp_path / "art"}"\ndata_root = "{tmp_path / "data"}"\n' + STUDY)
    lines = []
    assert run_experiment(grid, dry_run=True, emit=lines.append) == 0
    assert ("  waiting  mri: ensemble (uniform) of EfficientNetLite0 seed 0, MobileNetV2@0.35 seed 0  (after 2 run(s) of "
            "the grids)") in lines
    study = parse_grid(grid.read_text())
    for cfg in study.analyses[0].members:
        fake_run(cfg, tmp_path / "art")
    lines.clear()
    run_experiment(grid, dry_run=True, emit=lines.append)
    assert "  ready    mri: ensemble (val_loss) of EfficientNetLite0 seed 0, MobileNetV2@0.35 seed 0" in lines


CV_STUDY = STUDY + '''
[[cv]]
datasets = ["mri"]
backbone = "EfficientNetLite0"
methods = ["finetune-head", "knn"]
folds = 5
ungrouped = true

[[cv]]
datasets = ["mri"]
backbone = "EfficientNetLite0"
methods = ["knn"]
fold_study = true
repeats = 3

[[tune]]
datasets = ["mri"]
backbone = "EfficientNetLite0"
trials = 4
'''


@pytest.mark.parametrize("change, message", [
    (("folds = 5\nungrouped", "folds = 5\nfold_study = true\nungrouped"), "either 'folds'"),
    (('methods = ["finetune-head", "knn"]', 'methods = ["svm"]'), "unknown method svm"),
    (("trials = 4", "trials = 0"), "needs 'trials'"),
    (("repeats = 3", "repeats = 3\nmetric = \"auc\""), "'metric' must be one of"),
])
def test_a_mistake_in_a_cv_or_tune_table_is_one_line(change, message):
    with pytest.raises(UserError, match=message):
        parse_grid(CV_STUDY.replace(*change), "study.toml")


@pytest.fixture
def model_selection_calls(tmp_path, monkeypatch):
    """Stand-ins for the CV and tuning work (the CLI's: core.orchestrate.crossval, tune) under ``tmp_path/art``:
    they record their calls and write the records' files, so a second sitting finds them done."""
    from core.artifacts.layout import cv_file, fold_study_file, tuning_file
    from core.artifacts.records import CrossValidationRecord, FoldStudyRecord, TuningRecord
    from core.orchestrate import crossval, tune

    root, calls = tmp_path / "art", []
    folder = root / "mri"

    common = dict(created_at="", dataset={}, backbone="EfficientNetLite0", config={}, grouping={}, procedure="",
                  hyperparameter=None, test={})

    def fake_cv(p, k, repeats, grouped, artifacts, emit):
        assert artifacts == root  # the study's artifacts folder, where is_done looks
        calls.append(("cv", p.method, k, grouped))
        CrossValidationRecord(**common, method=p.method, grouped=grouped, k=k, fold_seeds=list(range(repeats)),
                              folds=[], summary={}, repeats=[], fit_seconds=0.0).save(
                                  cv_file(folder, p.backbone, p.run_id(), k, grouped))

    def fake_study(p, repeats, ungrouped, metric, artifacts, emit):
        assert artifacts == root
        calls.append(("fold_study", p.method, repeats))
        summary = [{"folds": k, "grouped": g, "repeats": repeats} for k in (2, 5) for g in (True, not ungrouped)]
        FoldStudyRecord(**common, method=p.method, metric=metric, rows=[], summary=summary).save(
            fold_study_file(folder, p.backbone, p.run_id()))

    def fake_tune(p, trials, metric, cv, artifacts, emit):
        assert artifacts == root
        calls.append(("tune", trials))
        TuningRecord(created_at="", study="s", storage="", dataset={}, backbone=p.backbone, base_config=p.to_dict(),
                     objective={"metric": metric, "source": "validation"}, search_space={}, best=None,
                     trials=[{"state": "COMPLETE"}] * trials, importances={}, importance_note="").save(
                         tuning_file(folder, "s"))

    monkeypatch.setattr(crossval, "prepare", lambda config, emit: config)
    monkeypatch.setattr(crossval, "run_cv", fake_cv)
    monkeypatch.setattr(crossval, "fold_study", fake_study)
    monkeypatch.setattr(tune, "tune", lambda p, trials, metric, cv, artifacts, emit: fake_tune(p, trials, metric, cv,
                                                                                              artifacts, emit))
    return root, calls


ALL_MODEL_SELECTION = [("cv", "finetune", 5, True), ("cv", "finetune", 5, False), ("cv", "knn", 5, True),
                       ("cv", "knn", 5, False), ("fold_study", "knn", 3), ("tune", 4)]


def test_cv_and_tuning_run_after_the_grids_once_and_not_again(tmp_path, model_selection_calls):
    study = parse_grid(CV_STUDY)
    cv = [a for a in study.analyses if a.kind in ("cv", "tune")]
    assert [a.describe() for a in cv] == [
        "mri: 5-fold CV (and ungrouped) of finetune-head on EfficientNetLite0",
        "mri: 5-fold CV (and ungrouped) of knn on EfficientNetLite0",
        "mri: fold-count study (3 repeats) of knn on EfficientNetLite0",
        "mri: tuning of the head on EfficientNetLite0, 4 trials of balanced_accuracy"]
    root, calls = model_selection_calls
    assert run_analyses(cv, root, print) == ([], [])  # no run changed: the comparisons stand
    assert calls == ALL_MODEL_SELECTION
    calls.clear()
    assert run_analyses(cv, root, print) == ([], []) and calls == []  # all stored: nothing redone
    more = parse_grid(CV_STUDY.replace("trials = 4", "trials = 6"))
    run_analyses([a for a in more.analyses if a.kind == "tune"], root, print)
    assert calls == [("tune", 6)]  # the study holds 4 of the 6 trials asked for: it goes on
    calls.clear()  # another fold count, repeats or data root: what is stored is not that
    for change in (("folds = 5", "folds = 10"), ("repeats = 3", "repeats = 2"), ("trials = 4", "trials = 4\ncv = 3")):
        other = parse_grid(CV_STUDY.replace(*change))
        run_analyses([a for a in other.analyses if a.kind in ("cv", "tune")], root, print)
    assert ("cv", "finetune", 10, True) in calls and ("fold_study", "knn", 2) in calls and ("tune", 4) in calls
    calls.clear()
    moved = parse_grid(CV_STUDY, data_root=str(tmp_path / "moved"))  # the same settings under another data root
    assert [is_done(a, root) for a in moved.analyses if a.kind == "tune"] == [True]


def test_analyses_only_carries_out_what_is_ready_and_trains_no_run(tmp_path, monkeypatch, model_selection_calls):
    """`experiment --analyses-only`: CV and tuning on cached features before a long grid; the ensembles and the
    operating point wait for their runs, and no run folder is made."""
    from core.cli import main as cli_main
    from core.orchestrate import experiment

    root, calls = model_selection_calls
    path = tmp_path / "study.toml"
    path.write_text(f'artifacts = "{root}"\n' + CV_STUDY)
    monkeypatch.setattr(experiment, "execute", lambda *a, **k: pytest.fail("a run was trained"))
    monkeypatch.setattr(experiment, "audit_if_needed", lambda *a, **k: False)
    monkeypatch.setattr(experiment, "compare_if_needed", lambda *a, **k: False)
    lines = []
    assert experiment.run_experiment(path, emit=lines.append, analyses_only=True) == 0
    assert calls == ALL_MODEL_SELECTION
    text = "\n".join(lines)
    assert "analyses only: no run is trained" in text and "waits for 2 run(s)" in text
    assert not any(RunFolder.for_config(p.config, root).path.exists() for p in parse_grid(CV_STUDY).runs)
    calls.clear()
    assert experiment.run_experiment(path, emit=lines.append, analyses_only=True) == 0 and calls == []
    for other in ("--deploy", "--dry-run", "--retire"):
        assert cli_main(["experiment", str(path), "--analyses-only", other]) == 2
