"""Operating points (core.evaluate.operating_point): thresholds chosen on validation, figures on test, the CLI and
the ROC page's control, on fake run folders written with the record classes (no training, no TensorFlow)."""

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from core.artifacts import screens
from core.artifacts.config import RunConfig
from core.artifacts.layout import OPERATING_POINTS_FILE, VAL_PREDICTIONS_FILE
from core.artifacts.records import (
    AuditRecord,
    CompleteRecord,
    MetricsRecord,
    OperatingPointsRecord,
    Predictions,
    ProvenanceRecord,
    SplitRecord,
)
from core.cli import main
from core.errors import UserError
from core.evaluate import operating_point as op
from core.evaluate.metrics import evaluate

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parent.parent
CLASSES = ["Mild", "Moderate", "Non", "VeryMild"]


# --- choosing the threshold ---------------------------------------------------------------------

def _sensitivity(scores, positive, t):
    return float((scores[positive] >= t).mean())


@pytest.mark.parametrize("target", [0.5, 0.8, 0.9, 0.95, 1.0, 0.333])
def test_the_sensitivity_threshold_reaches_the_target_on_validation_and_is_the_largest_that_does(target):
    rng = np.random.default_rng(3)
    scores = rng.random(200).round(3)  # rounded: ties among the scores
    positive = rng.random(200) < 0.4
    t = op.threshold_for_sensitivity(scores, positive, target)
    assert _sensitivity(scores, positive, t) >= target
    above = scores[scores > t]
    if above.size:  # the next distinct score up: sensitivity falls below the target
        assert _sensitivity(scores, positive, above.min()) < target
    assert _sensitivity(scores, positive, np.nextafter(t, np.inf)) < target


def test_a_target_that_is_a_whole_count_is_not_missed_by_float_rounding():
    scores = np.arange(100) / 100
    positive = np.ones(100, bool)
    assert op.threshold_for_sensitivity(scores, positive, 0.29) == 0.71  # 29 of 100, not 30
    assert op.threshold_for_sensitivity(scores, positive, 0.57) == 0.43  # 0.57 * 100 = 56.99999999999999


def _brute_cost(scores, positive, ratio):
    """Every threshold tried one by one: the cheapest, the larger on a tie."""
    best = None
    for t in sorted(set(scores.tolist())) + [max(scores) + 1e-9]:
        called = scores >= t
        cost = ratio * int((~called & positive).sum()) + int((called & ~positive).sum())
        if best is None or cost <= best[0]:
            best = (cost, t)
    return best


@pytest.mark.parametrize("ratio", [0.2, 1.0, 3.0, 5.0, 50.0])
def test_the_cost_ratio_threshold_matches_a_brute_force_search(ratio):
    rng = np.random.default_rng(int(ratio * 10))
    positive = rng.random(150) < 0.3
    scores = np.clip(rng.normal(0.3 + 0.3 * positive, 0.2), 0, 1).round(2)
    t = op.threshold_for_cost(scores, positive, ratio)
    cost, brute_t = _brute_cost(scores, positive, ratio)
    called = scores >= t
    assert ratio * (~called & positive).sum() + (called & ~positive).sum() == cost
    assert t == pytest.approx(brute_t, abs=1e-8)


def test_a_huge_false_alarm_cost_calls_nothing_positive_and_ties_take_the_larger_threshold():
    scores, positive = np.array([0.1, 0.2, 0.9]), np.array([False, True, False])
    t = op.threshold_for_cost(scores, positive, 0.01)
    assert t > 0.9 and not (scores >= t).any()
    # ratio 1: thresholds 0.2 (FP 1: the 0.9) and above 0.9 (FN 1) cost the same -> the larger one.
    assert op.threshold_for_cost(scores, positive, 1.0) > 0.9


# --- figures on test: a hand computation -----------------------------------------------------------

def test_test_figures_match_a_hand_computation_with_group_intervals():
    scores = np.array([0.9, 0.8, 0.4, 0.7, 0.2, 0.1, 0.6, 0.3])
    positive = np.array([1, 1, 1, 0, 0, 0, 1, 0], bool)
    # threshold 0.5: called 0.9 0.8 0.7 0.6 -> tp 3 (0.9 0.8 0.6), fn 1 (0.4), fp 1 (0.7), tn 3.
    out = op.figures_with_intervals(scores, positive, 0.5, groups=[0, 0, 1, 1, 2, 2, 3, 3], n_bootstrap=200)
    assert {c: out["matrix"][c]["estimate"] for c in op.CELLS} == {"tp": 3, "fn": 1, "fp": 1, "tn": 3}
    f = {k: v["estimate"] for k, v in out["figures"].items()}
    assert f == pytest.approx({"sensitivity": 3 / 4, "specificity": 3 / 4, "ppv": 3 / 4, "npv": 3 / 4})
    assert out["bootstrap"]["unit"] == "group" and out["bootstrap"]["units"] == 4
    for v in out["figures"].values():
        assert 0 <= v["low"] <= v["estimate"] <= v["high"] <= 1
    none_called = op.point_figures(scores, positive, 0.95)
    assert none_called["ppv"] is None and none_called["sensitivity"] == 0.0  # undefined, not a division error


# --- a fake run ---------------------------------------------------------------------------------------

def _probs(rng, y, strength=2.5):
    logits = rng.normal(size=(len(y), len(CLASSES))) + strength * np.eye(len(CLASSES))[y]
    return np.exp(logits) / np.exp(logits).sum(1, keepdims=True)


def write_run(art: Path, dataset="mri", seed=0, val=True, n_val=240, n_test=200, leak_share=0.0,
              method="finetune", audit=False) -> Path:
    """A complete run folder with test (and validation) probabilities and a split with groups."""
    rng = np.random.default_rng(seed)
    cfg = RunConfig(dataset=dataset, backbone="EfficientNetLite0", preset="full", seed=seed, method=method)
    run = art / dataset / cfg.backbone / f"full-imagenet-{method}-s{seed}-x"
    run.mkdir(parents=True)
    cfg.save(run / "config.json")
    y = {"val": rng.integers(0, 4, n_val), "test": rng.integers(0, 4, n_test), "train": rng.integers(0, 4, 100)}
    ids = {s: [f"{s}/{CLASSES[c]}/{i}.png" for i, c in enumerate(y[s])] for s in y}
    groups = {p: p for s in ids for p in ids[s]}
    n_leak = int(leak_share * n_val)
    for i in range(n_leak):  # these validation images share a group with a training image
        groups[ids["val"][i]] = groups[ids["train"][i % 100]]
    for i in range(0, n_test - 1, 2):  # test images come in pairs (two slices of one scan)
        groups[ids["test"][i + 1]] = ids["test"][i]
    items = [{"path": p, "label": CLASSES[c], "split": s, "group": groups[p]}
             for s in y for p, c in zip(ids[s], y[s])]
    split_file = art / dataset / "splits" / "split-seed42-abc.json"
    if not split_file.is_file():
        SplitRecord(seed=42, val_fraction=0.15, test_fraction=0.15, layout="class_folders", items=items,
                    grouping={"source": "csv"}).save(split_file)
    test_probs = _probs(rng, y["test"])
    MetricsRecord.from_dict(evaluate(y["test"], test_probs, CLASSES, n_bootstrap=0)).save(run / "metrics.json")
    Predictions.from_probs(ids["test"], y["test"], test_probs, CLASSES).save(run / "predictions.csv")
    if val:
        Predictions.from_probs(ids["val"], y["val"], _probs(rng, y["val"]), CLASSES).save(run / VAL_PREDICTIONS_FILE)
    ProvenanceRecord(code={}, libraries={}, machine={},
                     dataset={"classes": CLASSES, "split_file": os.path.relpath(split_file, run), "fingerprint": "f"},
                     details={}).save(run / "provenance.json")
    CompleteRecord(completed_at="2026-11-30T00:00:00Z").save(run / "complete.json")
    return run


POSITIVES = ["Mild", "Moderate", "VeryMild"]


def test_a_run_screen_chooses_on_validation_scores_test_and_is_stored_once_per_key(tmp_path):
    run = write_run(tmp_path / "art")
    inputs = op.load_run(run)
    point = op.operating_point(inputs, ["VeryMild", "Mild", "Moderate"], op.make_target(sensitivity=0.9),
                               n_bootstrap=100)
    assert point["positives"] == POSITIVES and point["negatives"] == ["Non"]  # the run's class order
    val_scores = inputs.scores(inputs.val, POSITIVES)
    val_pos = inputs.val.positive(POSITIVES)
    assert point["threshold"] == op.threshold_for_sensitivity(val_scores, val_pos, 0.9)
    assert point["validation"]["at_threshold"]["sensitivity"] >= 0.9
    assert point["chosen_on"] == "validation" and point["validation"]["leaking"] == 0
    # The test figures are those of the chosen threshold on the test probabilities.
    test_scores = inputs.scores(inputs.test, POSITIVES)
    by_hand = op.point_figures(test_scores, inputs.test.positive(POSITIVES), point["threshold"])
    assert {k: v["estimate"] for k, v in point["test"]["figures"].items()} == \
        pytest.approx({k: by_hand[k] for k in op.FIGURES})
    assert point["test"]["bootstrap"]["unit"] == "group" and point["test"]["bootstrap"]["units"] == 100
    json.dumps(point, allow_nan=False)
    op.store(run, point)
    op.store(run, {**point, "threshold": 0.5})  # the same key replaces
    op.store(run, op.operating_point(inputs, POSITIVES, op.make_target(cost_ratio=5), n_bootstrap=10))
    stored = OperatingPointsRecord.load(run / OPERATING_POINTS_FILE).points
    assert [p["key"] for p in stored] == ["Mild + Moderate + VeryMild | sensitivity 0.9",
                                          "Mild + Moderate + VeryMild | cost ratio 5"]
    assert stored[0]["threshold"] == 0.5


def test_leaking_validation_images_are_counted_and_left_out_of_the_choice_when_enough_remain(tmp_path):
    run = write_run(tmp_path / "art", leak_share=0.5)
    point = op.operating_point(op.load_run(run), POSITIVES, op.make_target(sensitivity=0.95), n_bootstrap=10)
    val = point["validation"]
    assert val["leaking"] == 120 and val["leak_free_positives"] + val["leak_free_negatives"] == 120
    assert point["chosen_on"] == "leak_free_validation"
    assert point["threshold"] == point["thresholds"]["leak_free_validation"]
    assert val["at_threshold"]["sensitivity"] >= 0.95  # on the leak-free images it was chosen on
    assert val["at_threshold"]["images"] == 120 and val["all_at_threshold"]["images"] == 240
    assert "chosen on them" in screens.leak_text(point)
    few = write_run(tmp_path / "art2", leak_share=0.95)
    point = op.operating_point(op.load_run(few), POSITIVES, op.make_target(sensitivity=0.95), n_bootstrap=10)
    assert point["chosen_on"] == "validation" and point["thresholds"]["leak_free_validation"] is None
    assert "too few leak-free validation images" in point["validation"]["leak_free_note"]
    assert f"{op.MIN_LEAK_FREE} of each needed" in screens.leak_text(point)


def test_a_split_without_groups_takes_the_audit_groups_of_the_same_images(tmp_path):
    run = write_run(tmp_path / "art")
    split_file = next((tmp_path / "art" / "mri" / "splits").glob("*.json"))
    data = json.loads(split_file.read_text())
    data["items"] = [{k: v for k, v in item.items() if k != "group"} for item in data["items"]]
    data.pop("grouping")
    split_file.write_text(json.dumps(data))
    inputs = op.load_run(run)
    assert inputs.grouping is None and "no groups" in inputs.grouping_note
    point = op.operating_point(inputs, POSITIVES, op.make_target(sensitivity=0.9), n_bootstrap=10)
    assert point["validation"]["leaking"] is None and point["test"]["bootstrap"]["unit"] == "image"
    val_path = data["items"][[i["split"] for i in data["items"]].index("val")]["path"]
    train_path = next(i["path"] for i in data["items"] if i["split"] == "train")
    audit = {"tool": "t", "created_at": "now", "dataset": {"fingerprint": "f"}, "split": {},
             "hash": {"threshold": 24, "bits": 256}, "counts": {}, "corrupt": [], "skipped": [], "imbalance": {},
             "timings_s": {}, "verdict": {},
             "duplicates": {"clusters": [{"members": [{"path": val_path}, {"path": train_path}]}], "pairs": []}}
    AuditRecord.from_dict(audit).save(tmp_path / "art" / "mri" / "audit.json")
    inputs = op.load_run(run)
    assert "audit.json" in inputs.grouping_note and int(inputs.val_leaking().sum()) == 1


# --- bad inputs: one line each ----------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--positive", ",", "--sensitivity", "0.9"], "name at least one positive class"),
    (["--positive", "Mild,Moderate,Non,VeryMild", "--sensitivity", "0.9"], "every class is positive"),
    (["--positive", "Mild,Severe", "--sensitivity", "0.9"], "unknown class 'Severe'; the run's classes: Mild"),
    (["--positive", "Mild", "--sensitivity", "0"], "target sensitivity must lie in (0, 1], got 0.0"),
    (["--positive", "Mild", "--sensitivity", "1.5"], "target sensitivity must lie in (0, 1]"),
    (["--positive", "Mild", "--cost-ratio", "-2"], "cost ratio (FN cost / FP cost) must be a number above 0"),
    (["--positive", "Mild", "--cost-ratio", "inf"], "cost ratio (FN cost / FP cost) must be a number above 0"),
])
def test_bad_screens_give_one_line_and_store_nothing(tmp_path, capsys, args, message):
    run = write_run(tmp_path / "art")
    assert main(["operating-point", str(run), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not (run / OPERATING_POINTS_FILE).exists()


def test_no_validation_probabilities_or_no_validation_positive_give_one_line(tmp_path, capsys):
    run = write_run(tmp_path / "art", val=False)
    assert main(["operating-point", str(run), "--positive", "Mild", "--sensitivity", "0.9"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"python -m core val-predictions {run}" in err and "never chosen on test" in err and "\n" not in err
    run = write_run(tmp_path / "art2")
    preds = Predictions.load(run / VAL_PREDICTIONS_FILE)
    preds.true = ["Non"] * len(preds.true)
    preds.save(run / VAL_PREDICTIONS_FILE)
    assert main(["operating-point", str(run), "--positive", "Mild", "--sensitivity", "0.9"]) == 2
    err = capsys.readouterr().err.strip()
    assert "the validation split has no image of Mild" in err and "\n" not in err
    assert main(["operating-point", str(tmp_path / "nowhere"), "--positive", "Mild", "--sensitivity", "0.9"]) == 2
    assert "is not a complete run folder" in capsys.readouterr().err
    assert not list(tmp_path.rglob(OPERATING_POINTS_FILE))


def test_make_target_refuses_both_or_neither():
    with pytest.raises(UserError, match="either a target sensitivity or a cost ratio"):
        op.make_target(0.9, 5)
    with pytest.raises(UserError, match="either a target sensitivity or a cost ratio"):
        op.make_target()
    assert op.make_target(sensitivity=1).label() == "sensitivity 1"


def test_the_cli_prints_the_threshold_the_figures_with_intervals_and_stores_the_record(tmp_path, capsys):
    run = write_run(tmp_path / "art", leak_share=0.5)
    assert main(["operating-point", str(run), "--positive", "Mild,Moderate,VeryMild", "--sensitivity", "0.95",
                 "--bootstrap", "50"]) == 0
    out = capsys.readouterr().out
    [point] = op.stored(run)
    assert f"threshold {point['threshold']:.4f}" in out and "chosen on leak-free validation images" in out
    spec = point["test"]["figures"]["specificity"]
    assert "Specificity" in out and f"{spec['estimate']:.3f} [{spec['low']:.3f}, {spec['high']:.3f}]" in out
    assert "120 of 240 validation images are in a group with training images" in out
    assert str(run / OPERATING_POINTS_FILE) in out
    assert not math.isnan(point["threshold"])


# --- the ROC page's control -----------------------------------------------------------------------------

def _page(art: Path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("STUDY_ARTIFACTS", str(art))
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=120).run()
    at.switch_page("pages/roc_pr.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _figures(at) -> dict:
    [table] = [d.value for d in at.dataframe if "Figure" in d.value]
    return dict(zip(table["Figure"], table["Test [95% CI]"]))


def test_the_roc_page_screen_follows_the_positives_and_the_target(tmp_path, monkeypatch):
    art = tmp_path / "art"
    run = write_run(art)
    at = _page(art, monkeypatch)
    assert at.multiselect(key="screen_positives").value == POSITIVES  # "Non" reads as the negative side
    first = _figures(at)
    inputs = op.load_run(run)
    expected = op.operating_point(inputs, POSITIVES, op.make_target(sensitivity=0.95))
    assert f"threshold {expected['threshold']:.4f}" in at.success[0].value
    spec = expected["test"]["figures"]["specificity"]
    assert first["Specificity"] == f"{spec['estimate']:.3f} [{spec['low']:.3f}, {spec['high']:.3f}]"
    [matrix] = [d.value for d in at.dataframe if "Called positive" in d.value]
    assert matrix["Called positive"][0].startswith(f"{expected['test']['matrix']['tp']['estimate']:.0f} [")
    charts = [json.loads(el.proto.spec) for el in at.get("vega_lite_chart")]
    assert any(c.get("title") == "ROC of the screen, chosen threshold marked" for c in charts)

    at.slider(key="screen_sensitivity").set_value(0.7).run()
    assert _figures(at)["Sensitivity"] != first["Sensitivity"]
    at.multiselect(key="screen_positives").set_value(["Mild"]).run()
    assert "Mild vs Moderate + Non + VeryMild" in at.success[0].value
    at.radio(key="screen_kind").set_value("cost ratio").run()
    at.number_input(key="screen_cost").set_value(20.0).run()
    cost = op.operating_point(inputs, ["Mild"], op.make_target(cost_ratio=20.0))
    assert f"threshold {cost['threshold']:.4f}" in at.success[0].value
    at.multiselect(key="screen_positives").set_value([]).run()
    assert any("name at least one positive class" in i.value for i in at.info)
    assert not at.exception


def test_the_roc_page_without_validation_probabilities_says_how_to_make_them(tmp_path, monkeypatch):
    art = tmp_path / "art"
    run = write_run(art, val=False)
    at = _page(art, monkeypatch)
    assert any(f"python -m core val-predictions {run}" in i.value for i in at.info)
    assert not [d for d in at.dataframe if "Figure" in d.value]  # no threshold picked on test instead


def test_the_roc_page_lists_the_stored_operating_points(tmp_path, monkeypatch):
    art = tmp_path / "art"
    run = write_run(art)
    assert main(["operating-point", str(run), "--positive", "Mild,Moderate,VeryMild", "--cost-ratio", "5",
                 "--bootstrap", "20"]) == 0
    at = _page(art, monkeypatch)
    [stored] = [d.value for d in at.dataframe if "Positive classes" in d.value]
    assert stored["Target"].tolist() == ["cost ratio 5"]
    assert stored["Positive classes"].tolist() == ["Mild + Moderate + VeryMild"]


def test_an_ensemble_without_validation_probabilities_is_not_sent_to_val_predictions(tmp_path):
    folder = tmp_path / "pets" / "ensembles" / "stacked-2runs-abc"
    line = op.val_predictions_missing(folder)
    assert "this ensemble has no validation probabilities" in line and "val-predictions" not in line


def test_the_screen_offers_runs_with_validation_probabilities_first(tmp_path):
    import pandas as pd

    from core.artifacts import screens

    paths = [tmp_path / name for name in ("a", "b", "c")]
    for p in paths:
        p.mkdir()
    (paths[2] / "val_predictions.csv").write_text("id,true,pred\n")
    runs = pd.DataFrame({"label": ["A", "B", "C"], "path": [str(p) for p in paths]})
    assert screens.screen_candidates(runs)["label"].tolist() == ["C", "A", "B"]


def test_a_screen_of_many_classes_names_a_few_and_counts_the_rest():
    from core.artifacts import screens

    many = [f"class {i:03d}" for i in range(99)]
    assert screens.class_list(many) == "99 classes (class 000, class 001, class 002, ..., class 098)"
    assert screens.class_list(["cats"]) == "cats" and screens.class_list(list("abcd")) == "a + b + c + d"
