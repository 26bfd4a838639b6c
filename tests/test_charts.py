"""The data behind the report's charts (core.artifacts.charts, core.artifacts.naming.short_labels) and the chart pages on a
30-class artifacts folder written directly with the record classes (no training, no TensorFlow)."""

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from core.artifacts import charts, naming
from core.artifacts.config import RunConfig
from core.artifacts.records import CompleteRecord, MetricsRecord, Predictions, ProvenanceRecord, SplitRecord
from core.evaluate.metrics import evaluate

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parent.parent
N_CLASSES = 30


def _metrics(y, probs, names):
    return evaluate(np.asarray(y), np.asarray(probs, dtype=float), names, n_bootstrap=0)


def _probs_for(pred, k, confidence=0.8):
    """Class probabilities whose most probable class is ``pred`` (with ``confidence``)."""
    p = np.full((len(pred), k), (1 - confidence) / (k - 1))
    p[np.arange(len(pred)), pred] = confidence
    return p


# --- tables ---------------------------------------------------------------------------


def test_most_confused_pairs_rank_off_diagonal_cells_by_count_with_the_share_of_the_true_class():
    names = ["cat", "dog", "fox"]
    m = {"classes": names, "confusion_matrix": {"counts": [[5, 3, 2], [1, 9, 0], [0, 4, 0]]}}
    pairs = charts.most_confused_pairs(m)
    assert pairs[["true", "predicted", "count"]].values.tolist() == [
        ["fox", "dog", 4], ["cat", "dog", 3], ["cat", "fox", 2], ["dog", "cat", 1]]
    assert pairs["share of true class"].tolist() == [1.0, 0.3, 0.2, 0.1]
    assert len(charts.most_confused_pairs(m, top=2)) == 2
    perfect = {"classes": names, "confusion_matrix": {"counts": [[2, 0, 0], [0, 2, 0], [0, 0, 2]]}}
    assert charts.most_confused_pairs(perfect).empty  # no misclassification: no pair, no error


def test_short_labels_are_short_unique_and_name_only_what_differs():
    from core.train import config as config_mod

    def cfg(backbone="EfficientNetLite0", preset="full", **kw):
        return config_mod.resolve("data", backbone, preset, kw).to_dict()

    configs = [cfg(seed=0), cfg(seed=1), cfg(method="logreg"), cfg(weights="none"), cfg("MobileNetV2@0.35"),
               cfg(preset="quick"), cfg(stage1={"epochs": 5}), cfg(seed=0)]
    labels = naming.short_labels(configs)
    assert labels[:6] == ["Lite0 s0 · stage1.epochs=40", "Lite0 s1", "Lite0 logreg s0", "Lite0 scratch s0",
                          "MNetV2@0.35 s0", "Lite0 quick s0"]
    assert labels[6] == "Lite0 s0 · stage1.epochs=5" and labels[7] == "Lite0 s0 · stage1.epochs=40 · #2"
    assert len(set(labels)) == len(labels) and max(map(len, labels[1:6])) <= 16
    assert naming.short_labels([cfg(preset="quick"), cfg(preset="quick", seed=1)]) == ["Lite0 s0", "Lite0 s1"]
    assert naming.short_labels([]) == []


def test_pr_steps_run_in_threshold_order_with_recall_never_rising():
    # Positives scored 0.9, 0.8, 0.4; negatives 0.7, 0.3, 0.2: precision falls, then recovers at recall 1.
    y = [1, 1, 1, 0, 0, 0]
    scores = np.array([0.9, 0.8, 0.4, 0.7, 0.3, 0.2])
    m = _metrics(y, np.column_stack([1 - scores, scores]), ["no", "yes"])
    stored = m["pr"]["per_class"][1]["recall"]
    assert stored == sorted(stored, reverse=True)  # metrics.json keeps the curve in threshold order
    long = evaluate(np.repeat([0, 1], 300), np.random.default_rng(0).dirichlet([1, 1], 600), ["no", "yes"],
                    n_bootstrap=0, max_curve_points=20)["pr"]["per_class"][1]["recall"]
    assert len(long) <= 20 and long == sorted(long, reverse=True)  # downsampling keeps that order
    steps = charts.pr_steps(m["pr"]["per_class"][1])
    assert steps["step"].tolist() == list(range(len(steps)))
    assert (steps["recall"].diff().dropna() < 0).all()  # one point per recall, in threshold order
    assert steps["recall"].iloc[0] == 1.0 and steps["recall"].iloc[-1] == 0.0
    # The step function's area is the stored average precision (scikit-learn's definition).
    area = float((-steps["recall"].diff().shift(-1).fillna(0) * steps["precision"]).sum())
    assert area == pytest.approx(m["pr"]["per_class"][1]["average_precision"])

    perfect = _metrics([1, 1, 0, 0, 0], np.column_stack([[0.1, 0.2, 0.7, 0.8, 0.9], [0.9, 0.8, 0.3, 0.2, 0.1]]),
                       ["no", "yes"])
    flat = charts.pr_steps(perfect["pr"]["per_class"][1])
    assert perfect["pr"]["per_class"][1]["average_precision"] == 1.0
    assert (flat["precision"] == 1.0).all()  # no cliff at recall 1: a flat line at precision 1
    stored_backwards = {"recall": [0.0, 0.5, 1.0], "precision": [1.0, 1.0, 0.5]}
    assert charts.pr_steps(stored_backwards)["recall"].tolist() == [1.0, 0.5, 0.0]


def test_calibration_points_are_one_curve_per_run_with_counts_and_small_bins_flagged():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    confident = _metrics(y, _probs_for(y, 3, 0.9), list("abc"))
    probs = _probs_for(rng.integers(0, 3, 200), 3, 0.6)
    probs[0] = [0.98, 0.01, 0.01]  # one image alone in the top bin
    lonely = _metrics(y, probs, list("abc"))
    runs = [("A s0", "A · transfer · full · seed 0", confident), ("B s0", "B · transfer · full · seed 0", lonely)]
    points = charts.calibration_points(runs)
    assert points.groupby("run").size().to_dict() == {"A s0": 1, "B s0": 2}
    assert points.groupby("run")["count"].sum().to_dict() == {"A s0": 200, "B s0": 200}
    assert points.loc[points["count"] == 1, "enough"].tolist() == [False]
    summary = charts.calibration_summary(runs).set_index("run")
    assert summary.loc["B s0", "images in the MCE bin"] == 1 and summary.loc["B s0", "MCE from a small bin"]
    assert not summary.loc["A s0", "MCE from a small bin"]


def test_auc_table_is_long_form_worst_first_and_the_default_curves_are_the_worst_classes():
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(5), 20)
    probs = rng.dirichlet(np.ones(5), size=100)
    probs[y < 3] = _probs_for(y[y < 3], 5, 0.9)  # classes a, b, c are easy
    m = _metrics(y, probs, list("abcde"))
    table = charts.auc_table(m)
    assert list(table.columns) == ["class", "AUC", "AP", "support"] and len(table) == 5
    assert table["AUC"].is_monotonic_increasing and set(table["support"]) == {20}
    assert set(charts.worst_classes(m, 2)) == {"d", "e"}
    binary = _metrics([0, 1, 1, 0], _probs_for([0, 1, 0, 0], 2), ["no", "yes"])
    assert charts.worst_classes(binary) == ["yes"]


def test_class_order_and_class_balance():
    m = {"classes": ["b", "a", "c"], "per_class": [{"class": "b", "recall": 0.5, "support": 4},
                                                  {"class": "a", "recall": 0.9, "support": 10},
                                                  {"class": "c", "recall": 0.1, "support": 2}]}
    assert charts.class_order(m, "name") == ["a", "b", "c"]
    assert charts.class_order(m, "recall, worst first") == ["c", "b", "a"]
    assert charts.class_order(m, "test images, most first") == ["a", "b", "c"]
    with pytest.raises(ValueError, match="unknown class order"):
        charts.class_order(m, "colour")
    counts = pd.DataFrame({"split": ["test", "train", "train", "val"], "label": ["x", "x", "y", "y"],
                           "images": [1, 2, 9, 1]})
    table = charts.class_balance(counts)
    assert list(table.columns) == ["train", "val", "test", "total"] and list(table.index) == ["y", "x"]
    assert table.loc["x"].tolist() == [2, 0, 1, 3]


# --- pages on many classes -------------------------------------------------------------


def _write_run(art: Path, dataset: str, names: list[str], seed: int, y: np.ndarray, probs: np.ndarray,
               split_file: Path) -> None:
    cfg = RunConfig(dataset=dataset, backbone="EfficientNetLite0", preset="quick", seed=seed)
    run = art / dataset / cfg.backbone / f"quick-imagenet-s{seed}-x"
    run.mkdir(parents=True)
    cfg.save(run / "config.json")
    ids = [f"{names[c]}/{i}.png" for i, c in enumerate(y)]
    MetricsRecord.from_dict(evaluate(y, probs, names, n_bootstrap=0)).save(run / "metrics.json")
    Predictions.from_probs(ids, y, probs, names).save(run / "predictions.csv")
    ProvenanceRecord(code={}, libraries={}, machine={},
                     dataset={"classes": names, "split_file": os.path.relpath(split_file, run)},
                     details={"stage2": {"epochs_run": 2, "best_epoch": 2}, "stage1": {"epochs_run": 3}}).save(
        run / "provenance.json")
    history = "stage,epoch,loss,accuracy,val_loss,val_accuracy,learning_rate,seconds\n" + "".join(
        f"{stage},{e},{1 / (i + 1):.3f},{0.5 + i / 20:.3f},{1.2 / (i + 1):.3f},{0.45 + i / 20:.3f},0.001,1.0\n"
        for i, (stage, e) in enumerate([("stage1", 1), ("stage1", 2), ("stage1", 3), ("stage2", 1), ("stage2", 2)]))
    (run / "history.csv").write_text(history)
    CompleteRecord(completed_at="2026-11-30T00:00:00Z").save(run / "complete.json")


@pytest.fixture(scope="module")
def many_classes(tmp_path_factory):
    """Artifacts of a 30-class dataset: two runs (seeds 0 and 1) of noisy predictions on 300 test images."""
    art = tmp_path_factory.mktemp("many") / "artifacts"
    names = [f"class {i:02d}" for i in range(N_CLASSES)]
    rng = np.random.default_rng(7)
    y = np.repeat(np.arange(N_CLASSES), 10)
    items = [{"path": f"{names[c]}/{i}.png", "label": names[c], "split": split}
             for split, n in (("train", 3), ("test", 1)) for i, c in enumerate(np.repeat(np.arange(N_CLASSES), n))]
    split_file = art / "many" / "splits" / "split-seed42-abc.json"
    SplitRecord(seed=42, val_fraction=0.0, test_fraction=0.25, layout="class_folders", items=items).save(split_file)
    for seed in (0, 1):
        logits = rng.normal(size=(y.size, N_CLASSES)) + 3.0 * np.eye(N_CLASSES)[y]
        logits[y == 0, 1] += 4.0  # class 00 mostly mistaken for class 01: the most confused pair
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        _write_run(art, "many", names, seed, y, probs, split_file)
    return art


def _page(art: Path, monkeypatch, page: str):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("STUDY_ARTIFACTS", str(art))
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=120).run()
    at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _charts(at) -> list[tuple[dict, dict[str, pd.DataFrame]]]:
    """Every Vega-Lite chart of a page: its spec and its datasets by name."""
    return [(json.loads(el.proto.spec), {d.name: pa.ipc.open_stream(d.data.data).read_pandas()
                                         for d in el.proto.datasets}) for el in at.get("vega_lite_chart")]


def _marks(spec: dict) -> list[str]:
    layers = spec.get("layer", [spec])
    return [(layer["mark"]["type"] if isinstance(layer["mark"], dict) else layer["mark"]) for layer in layers]


def test_per_class_page_with_30_classes_has_colour_only_matrices_and_the_most_confused_pairs(many_classes,
                                                                                              monkeypatch):
    at = _page(many_classes, monkeypatch, "per_class")
    drawn = _charts(at)
    assert len(drawn) == 2 and all(_marks(spec) == ["rect"] for spec, _ in drawn)  # no text layer
    [pairs] = [d.value for d in at.dataframe if "share of true class" in d.value]
    assert list(pairs.columns) == ["true", "predicted", "count", "share of true class"]
    assert tuple(pairs.iloc[0][["true", "predicted"]]) == ("class 00", "class 01")
    # The gallery opens on the most confused pair.
    assert [s.value for s in at.selectbox if s.label in ("True class", "Predicted as")] == ["class 00", "class 01"]
    # Another true class picked: the second box follows to the class it is most often mistaken for.
    at.selectbox(key="gallery_true").set_value("class 05").run()
    wrong = pd.read_csv(next(many_classes.glob("many/*/*s0-x/predictions.csv")))
    wrong = wrong[(wrong["true"] == "class 05") & (wrong["pred"] != "class 05")]
    assert at.selectbox(key="gallery_pred").value == wrong["pred"].value_counts().index[0]
    shown = next(m for m in at.multiselect if m.label.startswith("Classes shown"))
    shown.set_value(["class 00", "class 01", "class 02"]).run()
    spec, data = _charts(at)[0]
    [cells] = data.values()
    assert set(cells["true"]) == {"class 00", "class 01", "class 02"} and len(cells) == 9
    assert _marks(spec) == ["rect", "text"]  # few classes picked: values written in the cells again


def test_roc_pr_page_with_30_classes_has_a_long_auc_table_and_curves_for_the_worst_classes(many_classes,
                                                                                          monkeypatch):
    at = _page(many_classes, monkeypatch, "roc_pr")
    [long] = [d.value for d in at.dataframe if "class" in d.value]
    assert list(long.columns) == ["run", "class", "AUC", "AP", "support"] and len(long) == 2 * N_CLASSES
    [picked] = [m.value for m in at.multiselect if m.label.startswith("Classes")]
    first = long[long["run"] == long["run"].iloc[0]]
    assert picked == first.nsmallest(3, "AUC")["class"].tolist()
    pr_spec, pr_data = next((s, d) for s, d in _charts(at) if s.get("title") == "Precision–recall")
    assert pr_spec["mark"]["interpolate"] == "step-after" and pr_spec["encoding"]["order"]["field"] == "step"
    [curves] = pr_data.values()
    assert curves.groupby(["run", "class"]).ngroups == 2 * 3
    for _, curve in curves.groupby(["run", "class"]):
        assert (curve.sort_values("step")["recall"].diff().dropna() < 0).all()


def test_calibration_page_draws_one_curve_per_run_with_its_short_label(many_classes, monkeypatch):
    at = _page(many_classes, monkeypatch, "calibration")
    [(spec, data)] = _charts(at)
    points = data[spec["layer"][1]["data"]["name"]]
    assert sorted(points["run"].unique()) == ["Lite0 s0", "Lite0 s1"]
    assert spec["layer"][1]["encoding"]["color"]["field"] == "run"
    assert "size" not in spec["layer"][1]["encoding"]  # the line is not split by bin size
    assert set(points["name"]) == {"EfficientNetLite0 · transfer · quick · seed 0",
                                   "EfficientNetLite0 · transfer · quick · seed 1"}


def test_data_and_training_pages_with_30_classes(many_classes, monkeypatch):
    at = _page(many_classes, monkeypatch, "data")
    [(spec, _)] = _charts(at)
    assert spec["mark"]["type"] == "bar" and spec["encoding"]["x"]["bin"]  # a histogram of class sizes
    [table] = [d.value for d in at.dataframe if "total" in d.value]
    assert len(table) == N_CLASSES and list(table.columns)[-1] == "total"
    at = _page(many_classes, monkeypatch, "training")
    [(spec, data)] = _charts(at)
    lines = next(layer for layer in spec["layer"] if layer["mark"]["type"] == "line")
    assert lines["encoding"]["x"]["axis"]["tickMinStep"] == 1
    rules = next(data[layer["data"]["name"]] for layer in spec["layer"] if layer["mark"]["type"] == "rule")
    assert rules["epoch"].tolist() == [3.5, 3.5]  # stage 2 begins after three stage-1 epochs


def test_learning_curves_name_the_splits_and_stage_two_starts_between_epochs():
    history = pd.DataFrame({"stage": ["stage1", "stage1", "stage1", "stage2", "stage2"], "epoch": [1, 2, 3, 1, 2],
                            "step": [1, 2, 3, 4, 5], "loss": [1.0, 0.8, 0.7, 0.6, 0.5],
                            "val_loss": [1.1, 0.9, 0.8, 0.7, 0.65]})
    curves = charts.learning_curves([("Lite0 s0", "EfficientNetLite0 · transfer · full · seed 0", history),
                                     ("empty", "no epochs yet", history.iloc[:0])], "loss")
    assert set(curves["split"]) == {"training", "validation"} and set(curves["run"]) == {"Lite0 s0"}
    assert curves[curves["split"] == "validation"]["value"].tolist() == [1.1, 0.9, 0.8, 0.7, 0.65]
    starts = charts.stage_starts(curves)
    assert starts[["stage", "epoch"]].values.tolist() == [["stage 2: fine-tuning", 3.5]]
    assert charts.stage_starts(charts.learning_curves([], "loss")).empty
