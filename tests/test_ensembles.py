"""Ensembles of stored runs (core.evaluate.ensemble) on fake runs written with the record classes: no training."""

import os
from pathlib import Path

import numpy as np
import pytest

from core.artifacts import report
from core.artifacts.config import RunConfig
from core.artifacts.records import (
    ComparisonRecord,
    CompleteRecord,
    DeploymentRecord,
    EnsembleRecord,
    MetricsRecord,
    Predictions,
    ProvenanceRecord,
    SplitRecord,
)
from core.cli import main
from core.errors import UserError
from core.evaluate import ensemble
from core.evaluate.compare import compare_dataset
from core.evaluate.metrics import evaluate

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parent.parent
CLASSES = ["cat", "dog", "owl"]
N_TEST, N_VAL = 30, 24


def _probs(rng, y, strength):
    logits = rng.normal(size=(len(y), len(CLASSES))) + strength * np.eye(len(CLASSES))[y]
    return np.exp(logits) / np.exp(logits).sum(1, keepdims=True)


def _ids(split, n):
    return [f"{CLASSES[i % 3]}/{split}{i}.png" for i in range(n)]


def _labels(n):
    return np.arange(n) % 3


def write_run(dataset_dir: Path, backbone: str, seed: int, strength: float, *, fingerprint="fp1", classes=CLASSES,
              split_name="split-seed42-fp1.json", val=True, deploy=None, best_val_loss=0.5):
    """A complete fake network run of ``dataset_dir`` with test (and validation) probabilities."""
    rng = np.random.default_rng(seed * 31 + int(strength * 10))
    cfg = RunConfig(dataset=str(dataset_dir.name), backbone=backbone, preset="full", seed=seed)
    run = dataset_dir / backbone / f"full-imagenet-s{seed}-x"
    run.mkdir(parents=True)
    cfg.save(run / "config.json")
    y, ids = _labels(N_TEST), _ids("t", N_TEST)
    probs = _probs(rng, y, strength)
    MetricsRecord.from_dict(evaluate(y, probs, classes, n_bootstrap=50)).save(run / "metrics.json")
    Predictions.from_probs(ids, y, probs, classes).save(run / "predictions.csv")
    if val:
        yv = _labels(N_VAL)
        Predictions.from_probs(_ids("v", N_VAL), yv, _probs(rng, yv, strength), classes).save(
            run / "val_predictions.csv")
    split_file = dataset_dir / "splits" / split_name
    ProvenanceRecord(code={}, libraries={}, machine={},
                     dataset={"classes": classes, "fingerprint": fingerprint,
                              "split_file": os.path.relpath(split_file, run), "counts": {"val": N_VAL}},
                     details={"stage2": {"best_epoch": 2, "best_val_loss": best_val_loss}}).save(
        run / "provenance.json")
    if deploy:
        DeploymentRecord(kind="run", variants=[
            {"name": name, "status": "ok", "bytes": mb * 1e6, "file": f"{name}.tflite",
             "latency": {"threads_1": {"median_ms": ms}}} for name, (mb, ms) in deploy.items()]).save(
            run / "deploy" / "deployment.json")
    CompleteRecord(completed_at="2026-11-30T00:00:00Z").save(run / "complete.json")
    return run


def write_split(dataset_dir: Path, name="split-seed42-fp1.json"):
    items = [{"path": p, "label": p.split("/")[0], "split": s}
             for s, ids in (("train", _ids("r", 12)), ("val", _ids("v", N_VAL)), ("test", _ids("t", N_TEST)))
             for p in ids]
    SplitRecord(seed=42, val_fraction=0.3, test_fraction=0.3, layout="class_folders", items=items,
                dataset_fingerprint="fp1").save(dataset_dir / "splits" / name)


@pytest.fixture
def art(tmp_path):
    """Artifacts with two compatible deployed runs (a strong and a weak one) of dataset ``pets``."""
    root = tmp_path / "artifacts"
    ds = root / "pets"
    write_split(ds)
    write_run(ds, "EfficientNetLite0", 0, 3.0, deploy={"tflite_int8_full": (4.0, 10.0), "tflite_float32": (12, 20)})
    write_run(ds, "MobileNetV2@0.35", 0, 1.0, deploy={"tflite_int8_full": (0.6, 2.0)})
    return root


def _stored(folder):
    return Predictions.load(folder / "predictions.csv")


def _members(root):
    ds = root / "pets"
    return [Predictions.load(ds / m / "full-imagenet-s0-x" / name) for m in ("EfficientNetLite0", "MobileNetV2@0.35")
            for name in ("predictions.csv", "val_predictions.csv")]


def test_a_uniform_ensemble_of_two_runs_is_their_hand_computed_average(art):
    folder = ensemble.build_ensemble(art / "pets", ["EfficientNetLite0/full-imagenet-s0-x",
                                                    "MobileNetV2@0.35/full-imagenet-s0-x"], "uniform", emit=print)
    a, _, b, _ = _members(art)
    expected = (a.probs + b.probs) / 2
    assert np.allclose(_stored(folder).probs, expected, atol=1e-5)
    metrics = MetricsRecord.load(folder / "metrics.json")
    assert metrics.accuracy == pytest.approx(float((expected.argmax(1) == _labels(N_TEST)).mean()))
    record = EnsembleRecord.load(folder / "config.json")
    assert record.kind == "ensemble" and record.weights() == [0.5, 0.5]
    assert record.deployment["tflite_int8_full"] == {"label": "int8", "measured": True, "mb": 4.6, "ms": 12.0}
    assert not record.deployment["tflite_float32"]["measured"]
    assert "MobileNetV2@0.35" in record.deployment["tflite_float32"]["reason"]
    for name in ("provenance.json", "leakage.json", "complete.json", "val_predictions.csv"):
        assert (folder / name).is_file(), name


def test_val_loss_weights_are_exp_minus_the_mean_validation_log_loss_normalised(art):
    folder = ensemble.build_ensemble(art / "pets", ["EfficientNetLite0/full-imagenet-s0-x",
                                                    "MobileNetV2@0.35/full-imagenet-s0-x"], "val_loss", emit=print)
    a, va, b, vb = _members(art)
    yv = _labels(N_VAL)
    losses = [-np.mean(np.log(v.probs[np.arange(N_VAL), yv])) for v in (va, vb)]
    weights = np.exp(-np.array(losses)) / np.exp(-np.array(losses)).sum()
    record = EnsembleRecord.load(folder / "config.json")
    assert record.weights() == pytest.approx(weights.tolist(), rel=1e-4)
    assert [m["val_loss"] for m in record.members] == pytest.approx(losses, rel=1e-4)
    assert weights[0] > weights[1]  # the stronger run weighs more
    assert np.allclose(_stored(folder).probs, weights[0] * a.probs + weights[1] * b.probs, atol=1e-5)
    assert "exp(-L_i)" in record.weight_rule


def test_val_loss_falls_back_to_the_recorded_best_validation_loss(tmp_path):
    ds = tmp_path / "pets"
    write_split(ds)
    write_run(ds, "EfficientNetLite0", 0, 3.0, val=False, best_val_loss=0.2)
    write_run(ds, "MobileNetV2@0.35", 0, 1.0, val=False, best_val_loss=0.9)
    folder = ensemble.build_ensemble(ds, ["EfficientNetLite0/full-imagenet-s0-x", "MobileNetV2@0.35/full-imagenet-s0-x"],
                                     "val_loss", emit=print)
    record = EnsembleRecord.load(folder / "config.json")
    assert record.weights() == pytest.approx([np.exp(-0.2) / (np.exp(-0.2) + np.exp(-0.9)),
                                              np.exp(-0.9) / (np.exp(-0.2) + np.exp(-0.9))])
    assert "best_val_loss" in record.members[0]["val_loss_source"]
    assert not (folder / "val_predictions.csv").exists()
    assert main(["ensemble", str(ds), "EfficientNetLite0/full-imagenet-s0-x", "MobileNetV2@0.35/full-imagenet-s0-x",
                 "--weights", "stacked"]) == 2


def test_val_loss_weights_use_one_kind_of_loss_for_every_member(tmp_path):
    ds = tmp_path / "pets"
    write_split(ds)
    write_run(ds, "EfficientNetLite0", 0, 3.0, val=True, best_val_loss=0.2)  # has val_predictions.csv
    smoothed = write_run(ds, "MobileNetV2@0.35", 0, 1.0, val=False, best_val_loss=0.9)
    members = ["EfficientNetLite0/full-imagenet-s0-x", "MobileNetV2@0.35/full-imagenet-s0-x"]
    folder = ensemble.build_ensemble(ds, members, "val_loss", emit=print)
    record = EnsembleRecord.load(folder / "config.json")
    assert all("best_val_loss" in m["val_loss_source"] for m in record.members)  # not one log loss, one recorded
    assert record.weights()[0] == pytest.approx(np.exp(-0.2) / (np.exp(-0.2) + np.exp(-0.9)))
    # the same members named in the other order are the same ensemble
    assert ensemble.build_ensemble(ds, members[::-1], "val_loss", emit=print) == folder
    config = RunConfig.load(smoothed / "config.json")
    config.label_smoothing = 0.1  # its recorded loss now includes smoothing: no longer comparable
    config.save(smoothed / "config.json")
    with pytest.raises(UserError, match="different label smoothing or penalties"):
        ensemble.build_ensemble(ds, members, "val_loss", name="other", emit=print)


def test_the_stacked_ensemble_never_sees_test_labels(art, tmp_path):
    from sklearn.linear_model import LogisticRegression

    members = ["EfficientNetLite0/full-imagenet-s0-x", "MobileNetV2@0.35/full-imagenet-s0-x"]
    first = ensemble.build_ensemble(art / "pets", members, "stacked", name="s1", emit=print)
    # The same runs with their test labels shuffled and their test labels' probabilities untouched.
    rng = np.random.default_rng(0)
    for member in members:
        path = art / "pets" / member / "predictions.csv"
        table = Predictions.load(path)
        table.true = list(rng.permutation(table.true))
        table.save(path)
    second = ensemble.build_ensemble(art / "pets", members, "stacked", name="s2", emit=print)
    assert np.array_equal(_stored(first).probs, _stored(second).probs)
    # The stored coefficients are sklearn's fit on validation probabilities, applied by hand.
    a, va, b, vb = _members(art)
    model = LogisticRegression(C=1.0, max_iter=5000).fit(np.hstack([va.probs, vb.probs]), _labels(N_VAL))
    record = EnsembleRecord.load(first / "config.json")
    assert np.allclose(ensemble.stacked_probs(record.stacked, [a.probs, b.probs]),
                       model.predict_proba(np.hstack([a.probs, b.probs])), atol=1e-6)
    assert np.allclose(_stored(first).probs, model.predict_proba(np.hstack([a.probs, b.probs])), atol=1e-5)


def _refused(capsys, args, text):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and text in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("kind, text", [
    ("fingerprint", "other images"), ("split", "another split"), ("classes", "other classes"),
])
def test_runs_of_other_images_splits_or_classes_are_refused(tmp_path, capsys, kind, text):
    ds = tmp_path / "pets"
    write_split(ds)
    write_split(ds, "split-seed7-fp1.json")
    write_run(ds, "EfficientNetLite0", 0, 3.0)
    other = {"fingerprint": {"fingerprint": "fp2"}, "split": {"split_name": "split-seed7-fp1.json"},
             "classes": {"classes": ["owl", "dog", "cat"]}}[kind]
    write_run(ds, "MobileNetV2@0.35", 0, 1.0, **other)
    _refused(capsys, ["ensemble", str(ds), "EfficientNetLite0/full-imagenet-s0-x",
                      "MobileNetV2@0.35/full-imagenet-s0-x"], text)
    assert not (ds / "ensembles").exists()


def test_bad_member_lists_are_refused_in_one_line(art, capsys):
    ds = str(art / "pets")
    lite0 = "EfficientNetLite0/full-imagenet-s0-x"
    _refused(capsys, ["ensemble", ds, lite0], "at least 2")
    _refused(capsys, ["ensemble", ds, lite0, lite0], "given twice")
    _refused(capsys, ["ensemble", ds, lite0, "Nope/run"], "no complete run")
    _refused(capsys, ["ensemble", ds, lite0, "full-imagenet-s0-x"], "matches several runs")
    _refused(capsys, ["ensemble", "nowhere", lite0, lite0, "--artifacts", str(art)], "no results for 'nowhere'")
    mobile = art / "pets" / "MobileNetV2@0.35" / "full-imagenet-s0-x"
    (mobile / "predictions.csv").write_text("id,true,pred,p_cat\nx,cat,cat,0.")  # cut short
    _refused(capsys, ["ensemble", ds, lite0, str(mobile)], "predictions.csv")
    (mobile / "complete.json").unlink()
    _refused(capsys, ["ensemble", ds, lite0, str(mobile)], "not a complete run")
    _refused(capsys, ["ensemble", ds, lite0, lite0, "--name", "../x"], "")
    assert not (art / "pets" / "ensembles").exists()


def test_the_same_ensemble_again_is_kept_and_another_under_its_name_refused(art, capsys):
    members = ["EfficientNetLite0/full-imagenet-s0-x", "MobileNetV2@0.35/full-imagenet-s0-x"]
    assert main(["ensemble", str(art / "pets"), *members, "--name", "e"]) == 0
    assert main(["ensemble", str(art / "pets"), *members, "--name", "e"]) == 0
    assert "complete already" in capsys.readouterr().out
    _refused(capsys, ["ensemble", str(art / "pets"), *members, "--name", "e", "--weights", "val_loss"],
             "holds another ensemble")


def test_an_ensemble_is_a_leaderboard_row_and_is_compared_with_its_best_member(art):
    members = ["EfficientNetLite0/full-imagenet-s0-x", "MobileNetV2@0.35/full-imagenet-s0-x"]
    ensemble.build_ensemble(art / "pets", members, "uniform", name="e", emit=print)
    runs = report.runs_table("pets", art)
    row = runs[runs["kind"] == "ensemble"].iloc[0]
    assert row["backbone"] == "ensembles" and row["run_id"] == "e" and row["label"].startswith("Ensemble · uniform")
    assert row["int8_mb"] == pytest.approx(4.6) and row["int8_latency_ms"] == pytest.approx(12.0)
    assert np.isnan(row["tflite_f32_mb"])
    assert len(runs) == 3 and not report.unreadable(runs)
    result = compare_dataset(art / "pets")
    assert {p["a"] for p in result["pairs"]} | {p["b"] for p in result["pairs"]} == set(members)
    (entry,) = result["ensembles"]
    accuracies = {m: MetricsRecord.load(art / "pets" / m / "metrics.json").accuracy for m in members}
    assert entry["ensemble"] == "ensembles/e" and entry["best_member"] == max(accuracies, key=accuracies.get)
    assert entry["paired_bootstrap"]["difference"] == pytest.approx(entry["accuracy"] - entry["member_accuracy"])
    assert ComparisonRecord.load(art / "pets" / "mcnemar.json").ensembles[0]["ensemble"] == "ensembles/e"
    # Configurations (here one run each, and the ensemble) compared pairwise on balanced accuracy, as the
    # recommendation reads them: the observed difference is the difference of the runs' own scores.
    configurations = ComparisonRecord.load(art / "pets" / "mcnemar.json").configurations
    assert configurations["metric"] == "balanced_accuracy" and len(configurations["pairs"]) == 3
    balanced = {m: MetricsRecord.load(art / "pets" / m / "metrics.json").balanced_accuracy
                for m in members + ["ensembles/e"]}
    for pair in configurations["pairs"]:
        (a,), (b,) = pair["a"], pair["b"]
        assert pair["difference"] == pytest.approx(balanced[a] - balanced[b])
        assert pair["low"] <= pair["difference"] <= pair["high"] and pair["n"] == entry["n_common"]


def test_val_predictions_says_why_a_run_gets_none_and_refuses_an_incomplete_one(art, capsys):
    run = art / "pets" / "MobileNetV2@0.35" / "full-imagenet-s0-x"
    (run / "val_predictions.csv").unlink()
    assert main(["val-predictions", str(run)]) == 0
    assert "no model.keras" in capsys.readouterr().out and not (run / "val_predictions.csv").exists()
    other = art / "pets" / "EfficientNetLite0" / "full-imagenet-s0-x"
    assert main(["val-predictions", str(other)]) == 0
    assert "present already" in capsys.readouterr().out
    cfg = RunConfig.load(run / "config.json").to_dict()
    RunConfig.from_dict({**cfg, "method": "logreg"}).save(run / "config.json")
    assert main(["val-predictions", str(run)]) == 0
    assert "baseline keeps no model" in capsys.readouterr().out
    (run / "complete.json").unlink()
    _refused(capsys, ["val-predictions", str(run)], "not a complete run")


def _page(art: Path, monkeypatch, page: str):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("STUDY_ARTIFACTS", str(art))
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=120).run()
    at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_leaderboard_and_significance_pages_show_an_ensemble(art, monkeypatch):
    members = ["EfficientNetLite0/full-imagenet-s0-x", "MobileNetV2@0.35/full-imagenet-s0-x"]
    ensemble.build_ensemble(art / "pets", members, "val_loss", name="e", emit=print)
    compare_dataset(art / "pets")
    overview = _page(art, monkeypatch, "overview")
    shown = " ".join(str(df.value.to_dict()) for df in overview.dataframe)
    assert "Ensemble · val_loss" in shown
    significance = _page(art, monkeypatch, "significance")
    assert "Ensembles against their best member" in [h.value for h in significance.subheader]
    table = significance.dataframe[-1].value
    assert list(table["Weights"]) == ["val_loss"] and "int8: 4.60 MB" in table["Cost (members summed)"].iloc[0]
    methods = _page(art, monkeypatch, "methods")
    methods.selectbox[0].select(next(o for o in methods.selectbox[0].options if o.startswith("Ensemble"))).run()
    assert not methods.exception and "python -m core ensemble pets" in methods.code[0].value
