"""Grouped K-fold cross-validation: folds keep groups whole and class ratios, baselines match scikit-learn's own
cross_val_score, and ``python -m core cv`` stores its records (tiny data, cached Lite0 weights)."""

import json

import numpy as np
import pytest
from conftest import TINY_RUN, make_image_dataset

from core.artifacts.config import RunConfig, flatten
from core.cli import main as cli_main
from core.data.folds import inner_validation, leave_one_group_out, make_folds
from core.errors import UserError
from core.train import crossval
from core.train.baselines import make_model
from core.train.features import PooledFeatures


def _grouped_labels(seed=0, n_groups=60):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 5, n_groups)
    groups = np.repeat(np.arange(n_groups), sizes)
    labels = np.repeat(rng.integers(0, 3, n_groups), sizes)  # a group holds one class (near-copies of one image)
    return labels, groups


@pytest.mark.unit
@pytest.mark.parametrize("k", [2, 3, 5, 10])
def test_folds_never_cut_a_group_and_keep_class_ratios(k):
    labels, groups = _grouped_labels()
    folds = make_folds(labels, groups, k, seed=3)
    assert len(folds) == k
    held = np.concatenate([h for _, h in folds])
    assert sorted(held) == list(range(len(labels)))  # every image held out exactly once
    overall = np.bincount(labels, minlength=3) / len(labels)
    for train, heldout in folds:
        assert not set(groups[train]) & set(groups[heldout])
        share = np.bincount(labels[heldout], minlength=3) / len(heldout)
        assert np.abs(share - overall).max() < 0.2
    assert [h.tolist() for _, h in make_folds(labels, groups, k, seed=3)] == [h.tolist() for _, h in folds]
    ungrouped = make_folds(labels, groups, k, seed=3, grouped=False)
    assert any(set(groups[t]) & set(groups[h]) for t, h in ungrouped)  # the leaky comparison does cut groups


@pytest.mark.unit
def test_impossible_fold_counts_are_one_clear_line():
    labels, groups = _grouped_labels(n_groups=4)
    with pytest.raises(UserError, match="--folds 5: only 4 groups"):
        make_folds(labels, groups, 5, seed=0)
    with pytest.raises(UserError, match="at least 2 folds"):
        make_folds(labels, groups, 1, seed=0)
    assert len(leave_one_group_out(groups)) == 4
    rows = np.arange(len(labels))
    train, val = inner_validation(labels, groups, rows, 0.15, seed=0)
    assert not set(groups[train]) & set(groups[val]) and len(train) + len(val) == len(rows)


@pytest.mark.unit
def test_cv_of_a_baseline_equals_scikit_learns_cross_val_score_with_the_same_folds():
    from sklearn.model_selection import cross_val_score

    labels, groups = _grouped_labels(seed=1)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(len(labels), 8)) + labels[:, None] * 0.7
    feats = PooledFeatures(ids=[str(i) for i in range(len(labels))], labels=labels, views=[x], n_train=len(labels),
                           test_ids=[], test_labels=np.array([], int), test=np.zeros((0, 8)))
    cfg = RunConfig(dataset="d", backbone="EfficientNetLite0", method="logreg")
    folds = make_folds(labels, groups, 5, seed=0)
    rows, oof = crossval.cross_validate(cfg, feats, groups, folds, 3, hyper=0.1)
    expected = cross_val_score(make_model("logreg", 0.1, 0), x, labels, cv=folds, scoring="balanced_accuracy")
    assert np.allclose([r["balanced_accuracy"] for r in rows], expected)
    assert oof.shape == (len(labels), 3) and np.allclose(oof.sum(1), 1)
    summary = crossval.t_summary(expected)
    assert summary["low"] < summary["mean"] < summary["high"] and summary["mean"] == pytest.approx(expected.mean())
    assert crossval.t_summary([0.5])["sd"] is None


def _argv(command, data, art, *extra):
    sets = [f"{key}={json.dumps(value)}" for key, value in flatten(TINY_RUN).items()]
    return [command, "--data", str(data), "--backbone", "EfficientNetLite0", "--preset", "quick", "--artifacts",
            str(art), *extra] + [x for item in sets for x in ("--set", item)]


@pytest.mark.integration
def test_cv_of_the_head_and_a_baseline_fold_study_are_stored_with_provenance(lite0_home, tmp_path, capsys):
    from core.artifacts import layout
    from core.artifacts.records import CrossValidationRecord, FoldStudyRecord

    data = make_image_dataset(tmp_path / "colours", per_class=12, seed=5)
    art = tmp_path / "art"
    assert cli_main(_argv("cv", data, art, "--folds", "3")) == 0
    folder = art / "colours"
    [cv_path] = layout.model_selection_dir(folder).glob("cv-EfficientNetLite0-*-k3-grouped.json")
    record = CrossValidationRecord.load(cv_path)
    assert record.k == 3 and len(record.folds) == 3 and record.grouped and record.hyperparameter is None
    assert record.dataset["counts"]["non_test"] == sum(f["n_heldout"] for f in record.folds)
    assert record.summary["balanced_accuracy"]["low"] <= record.summary["balanced_accuracy"]["mean"]
    assert 0 <= record.test["balanced_accuracy"] <= 1 and record.dataset["fingerprint"]
    assert "95% t-interval" in capsys.readouterr().out
    assert cli_main(_argv("cv", data, art, "--method", "knn", "--fold-study", "--repeats", "2", "--ungrouped")) == 0
    [study_path] = layout.model_selection_dir(folder).glob("fold_study-EfficientNetLite0-*-knn-*.json")
    study = FoldStudyRecord.load(study_path)
    keys = {(s["folds"], s["grouped"]) for s in study.summary}
    assert {(2, True), (10, True), (2, False), (0, True)} <= keys  # 0: leave one group out
    assert all(s["repeats"] == 2 and s["spread_sd"] is not None for s in study.summary if s["folds"])
    assert study.hyperparameter["name"] == "n_neighbors"


@pytest.mark.unit
def test_cv_with_bad_options_is_one_line(tmp_path, capsys):
    data = make_image_dataset(tmp_path / "colours", per_class=4)
    assert cli_main(["cv", "--data", str(data), "--backbone", "EfficientNetLite0", "--method", "logreggg",
                     "--folds", "3"]) == 2
    assert "did you mean 'logreg'" in capsys.readouterr().err
    assert cli_main(["cv", "--data", str(data), "--backbone", "EfficientNetLite0"]) == 2
    assert "give --folds K" in capsys.readouterr().err
    assert cli_main(["cv", "--data", str(data), "--backbone", "EfficientNetLite0", "--folds", "3",
                     "--metric", "auc"]) == 2
    assert "unknown metric 'auc'" in capsys.readouterr().err
