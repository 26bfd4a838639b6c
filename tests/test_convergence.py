"""Did training converge (core.artifacts.convergence): read from hand-made histories and predictions."""

import numpy as np
import pandas as pd
import pytest

from core.artifacts import convergence
from core.artifacts.records import Predictions

pytestmark = pytest.mark.unit

CONFIG = {"stage1": {"epochs": 40, "patience": 5}, "stage2": {"epochs": 15, "patience": 3},
          "scratch": {"epochs": 40, "patience": 10}}


def _history(stage, losses):
    return pd.DataFrame({"stage": stage, "epoch": range(1, len(losses) + 1), "val_loss": losses})


def test_early_stopping_a_run_out_of_epochs_and_one_still_improving_are_told_apart():
    stopped = _history("stage1", [1.0, 0.8, 0.7, 0.75, 0.76, 0.77, 0.78, 0.79])  # best 3, then 5 without gain
    falling = _history("stage2", list(np.linspace(1.0, 0.5, 15)))  # the best is the last of the 15 allowed
    flat = _history("stage2", [1.0, 0.6] + [0.7] * 13)  # the limit, but the best was long before
    (s1,), (s2,), (s3,) = (convergence.stage_checks(h, CONFIG) for h in (stopped, falling, flat))
    assert (s1["ended_by"], s1["best_epoch"], s1["still_improving"]) == ("early stopping", 3, False)
    assert (s2["ended_by"], s2["best_epoch"], s2["still_improving"]) == ("epoch limit", 15, True)
    assert (s3["ended_by"], s3["still_improving"]) == ("epoch limit", False)
    both = convergence.stage_checks(pd.concat([stopped, falling]), CONFIG)
    assert [s["stage"] for s in both] == ["stage1", "stage2"]
    assert convergence.verdict(both, None) == convergence.AT_LIMIT
    assert convergence.verdict([s1], None) == convergence.CONVERGED
    assert convergence.verdict([], None) == convergence.UNKNOWN
    assert convergence.describe(both, None) == ("stage1 stopped early after 8 of 40 epochs (best 3); stage2 ran all 15 "
                                                "of 15 epochs (best 15, still improving)")


def test_learning_rate_cuts_on_a_plateau_are_read_from_the_history():
    history = _history("scratch", [1.0, 0.8, 0.85, 0.9, 0.7] + [0.75] * 10)
    history["learning_rate"] = [1e-3] * 4 + [3e-4] * 4 + [9e-5] * 7
    (stage,) = convergence.stage_checks(history, CONFIG)
    assert (stage["learning_rate_cuts"], stage["last_learning_rate"]) == (2, 9e-5)
    assert convergence.describe([stage], None) == ("scratch stopped early after 15 of 40 epochs (best 5; learning "
                                                   "rate cut 2 times, to 9e-05)")
    history["learning_rate"] = 1e-3  # a constant rate says nothing about it
    (stage,) = convergence.stage_checks(history, CONFIG)
    assert stage["learning_rate_cuts"] == 0 and "learning rate" not in convergence.describe([stage], None)


def test_a_run_predicting_one_class_for_most_images_is_collapsed_whatever_its_history(tmp_path):
    classes = ["daisy", "roses", "tulips"]
    true = np.repeat([0, 1, 2], 20)
    collapsed = np.zeros((60, 3))
    collapsed[:55, 1] = 1
    collapsed[55:, 0] = 1  # 55 of 60 predicted roses, whose true share is a third
    Predictions.from_probs([f"i{i}" for i in range(60)], true, collapsed, classes).save(tmp_path / "predictions.csv")
    found = convergence.collapse(tmp_path)
    assert found["class"] == "roses" and found["collapsed"]
    assert found["predicted_share"] == pytest.approx(55 / 60) and found["true_share"] == pytest.approx(1 / 3)
    stages = convergence.stage_checks(_history("scratch", [1.0, 0.9, 0.95] + [1.0] * 10), CONFIG)
    assert convergence.verdict(stages, found) == convergence.COLLAPSED
    assert "COLLAPSED: predicts roses for 92% of test images (true share 33%)" in convergence.describe(stages, found)
    # A majority class predicted at its own share is no collapse.
    majority = np.zeros((60, 3))
    majority[np.arange(60), np.r_[np.zeros(50, int), np.ones(10, int)]] = 1
    Predictions.from_probs([f"i{i}" for i in range(60)], np.r_[np.zeros(50, int), np.ones(10, int)], majority,
                           classes).save(tmp_path / "predictions.csv")
    assert not convergence.collapse(tmp_path)["collapsed"]
    assert convergence.collapse(tmp_path / "missing") is None


def test_a_stage_without_a_schedule_or_with_a_missing_loss_is_not_judged_and_one_class_everywhere_is_collapse(tmp_path):
    nan = _history("stage2", [1.0, float("nan"), 0.8])
    (checked,) = convergence.stage_checks(nan, CONFIG)
    assert checked["ended_by"] == "unknown" and convergence.verdict([checked], None) == convergence.UNKNOWN
    (unscheduled,) = convergence.stage_checks(_history("stage1", [1.0, 0.9]), {})
    assert unscheduled["ended_by"] == "unknown" and "not judged" in convergence.describe([unscheduled], None)
    # Two classes, 75% of one: a network that calls everything that class is collapsed, though 100% - 75% < 30%.
    true = np.r_[np.zeros(45, int), np.ones(15, int)]
    probs = np.zeros((60, 2))
    probs[:, 0] = 1
    Predictions.from_probs([f"i{i}" for i in range(60)], true, probs, ["a", "b"]).save(tmp_path / "predictions.csv")
    assert convergence.collapse(tmp_path)["collapsed"]
