"""Tuning's validation objective: only validation images in no group with a training image count."""

from types import SimpleNamespace

import pytest

from core.data.groups import Grouping
from core.errors import UserError
from core.orchestrate import tune


@pytest.mark.unit
def test_the_validation_objective_scores_only_validation_images_in_no_group_with_a_training_image(monkeypatch):
    # train a-d (groups 0-3) and z (group 5), left out of this quick run's subsample but still a training image
    group = {"a": "g0", "b": "g1", "c": "g2", "d": "g3", "z": "g5", "e": "g0", "f": "g5", "g": "g6", "h": "g3", "i": "g7"}
    items = [(p, "x", "train") for p in "abcdz"] + [(p, "x", "val") for p in "efghi"]
    prepared = SimpleNamespace(feats=SimpleNamespace(n_train=4, ids=list("abcdefghi")),
                               data=SimpleNamespace(measured_groups=Grouping("csv", "test", group),
                                                    split=SimpleNamespace(items=items)))
    monkeypatch.setattr(tune, "MIN_LEAK_FREE_VALIDATION", 2)
    assert tune.leak_free_validation(prepared).tolist() == [6, 8]  # g and i; e, f and h share a training group
    assert "the 2 of 5 images" in tune._validation_source(prepared)
    monkeypatch.setattr(tune, "MIN_LEAK_FREE_VALIDATION", 3)
    with pytest.raises(UserError, match="only 2 of 5 validation images share no group.*--cv K"):
        tune.leak_free_validation(prepared)


@pytest.mark.unit
def test_a_study_of_other_images_or_settings_is_not_continued(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.sqlite3'}"
    study = tune.open_study("shared", storage)
    tune._claim(study, {"fingerprint": "aaaa", "metric": "balanced_accuracy"})
    tune._claim(tune.open_study("shared", storage), {"fingerprint": "aaaa", "metric": "balanced_accuracy"})  # same
    with pytest.raises(UserError, match="study 'shared' holds trials of another fingerprint.*own --study name"):
        tune._claim(tune.open_study("shared", storage), {"fingerprint": "bbbb", "metric": "balanced_accuracy"})


@pytest.mark.unit
def test_default_study_names_differ_by_dataset_and_images():
    from core.train.config import resolve

    flowers = resolve("/x/flower_photos", "EfficientNetLite0", "full")
    mri = resolve("/x/alzheimer_mri", "EfficientNetLite0", "full")
    names = {tune.study_name(flowers, "f" * 16, "balanced_accuracy", None),
             tune.study_name(mri, "f" * 16, "balanced_accuracy", None),
             tune.study_name(flowers, "e" * 16, "balanced_accuracy", None),
             tune.study_name(flowers, "f" * 16, "balanced_accuracy", 5)}
    assert len(names) == 4
