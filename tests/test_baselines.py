"""The classical baselines on hand-made embeddings: each k-NN tie-break rule, each multi-class
reduction strategy and each tree measure gives its documented result (README: Classical baselines)."""

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from core.artifacts.config import BASELINES, METHODS
from core.cli import main as cli_main
from core.train import baselines
from core.train.baselines import GRIDS, TIE_NUDGE, make_model

pytestmark = pytest.mark.unit

# One dimension: a query at 0 whose two nearest training points (k=2) are class 1 at 1 and class 0 at 2.
TIE_X = np.array([[1.0], [2.0], [9.0], [10.0]])
TIE_Y = np.array([1, 0, 2, 2])
QUERY = np.array([[0.0]])


@pytest.mark.parametrize("method, k, expected", [
    ("knn_uniform", 2, 0),  # one vote each, 1:1 -> the smallest class index (scikit-learn's rule)
    ("knn_nearest", 2, 1),  # one vote each, 1:1 -> the tied class owning the nearest neighbour
    ("knn", 2, 1),  # votes 1/1 against 1/2 (distance-weighted): no tie
    ("nn1", 1, 1),  # the nearest training point alone
])
def test_each_knn_rule_breaks_the_hand_made_tie_as_documented(method, k, expected):
    model = make_model(method, k, seed=0).fit(TIE_X, TIE_Y)
    probs = model.predict_proba(QUERY)[0]
    assert probs.argmax() == expected and model.predict(QUERY)[0] == expected
    if method in ("knn_uniform", "knn_nearest"):  # the vote shares stay 1/2 each, up to the nudge
        assert probs[:2] == pytest.approx([0.5, 0.5], abs=2 * TIE_NUDGE) and probs[2] == 0
    stored = np.array([float(f"{p:.6g}") for p in probs])  # as predictions.csv writes them
    assert stored.argmax() == expected


def test_knn_random_draws_among_the_tied_classes_only_and_repeats_with_its_seed():
    # Query at 0, k=3: one vote each for classes 0, 1 and 2 (class 3, further away, gets none).
    x = np.array([[1.0], [2.0], [3.0], [20.0]])
    y = np.array([2, 1, 0, 3])
    winners = {int(make_model("knn_random", 3, seed=s).fit(x, y).predict(QUERY)[0]) for s in range(20)}
    assert winners == {0, 1, 2}  # every tied class wins for some seed, the untied one never
    again = [make_model("knn_random", 3, seed=7).fit(x, y).predict_proba(QUERY) for _ in range(2)]
    assert (again[0] == again[1]).all()


def test_knn_nearest_without_a_tie_is_the_plain_majority():
    x = np.array([[1.0], [2.0], [3.0], [9.0]])
    model = make_model("knn_nearest", 3, seed=0).fit(x, np.array([1, 0, 0, 1]))
    assert model.predict(QUERY)[0] == 0  # 2 votes to 1, although class 1 owns the nearest point
    assert model.predict_proba(QUERY)[0] == pytest.approx([2 / 3, 1 / 3])


def _clusters(seed=0, per_class=12, k=4):
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], dtype=float)[:k]
    x = np.concatenate([c + rng.normal(0, 0.5, (per_class, 2)) for c in centres])
    return x, np.repeat(np.arange(k), per_class), centres


@pytest.mark.parametrize("method, value, binary_models", [
    ("ovr_logreg", 1.0, 4), ("ovr_svm", 0.1, 4),  # one per class
    ("ovo_logreg", 1.0, 6), ("ovo_svm", 0.1, 6),  # one per pair of classes: 4*3/2
    ("ecoc_logreg", 2.0, 8), ("ecoc_svm", 1.5, 6),  # code_size times the classes
])
def test_each_reduction_strategy_fits_its_binary_models_and_separates_the_clusters(method, value, binary_models):
    x, y, centres = _clusters()
    model = make_model(method, value, seed=1).fit(x, y)
    reduction = model[-1].estimator_.calibrated_classifiers_[0].estimator
    assert len(reduction.estimators_) == binary_models
    assert list(model.predict(centres)) == [0, 1, 2, 3]
    assert model.predict_proba(centres).sum(1) == pytest.approx(np.ones(4))


def test_a_random_code_book_can_give_two_classes_one_code_word():
    # Seed 0's 6-bit code book repeats class 0's word for class 3: ECOC cannot tell them apart, which is
    # why the code size is chosen on validation (longer codes make a repeat unlikely).
    x, y, centres = _clusters()
    model = make_model("ecoc_logreg", 1.5, seed=0).fit(x, y)
    reduction = model[-1].estimator_.calibrated_classifiers_[0].estimator
    assert (reduction.code_book_[0] == reduction.code_book_[3]).all()
    scores = reduction.decision_function(model[:-1].transform(centres))
    assert (scores[:, 0] == scores[:, 3]).all()  # every image scores the two classes alike


def test_ecoc_scores_rank_the_nearest_code_word_first():
    x, y, _ = _clusters()
    ecoc = baselines.ScoredOutputCode(make_model("logreg", 1.0, 0)[-1], code_size=2.0, random_state=0).fit(x, y)
    scores = ecoc.decision_function(x)
    assert (ecoc.classes_[scores.argmax(1)] == ecoc.predict(x)).all()
    # minus half the squared distance to each code word, up to the image's own constant
    outputs = np.array([e.decision_function(x) for e in ecoc.estimators_]).T
    half_squared = 0.5 * ((outputs[:, None, :] - ecoc.code_book_[None]) ** 2).sum(2)
    assert np.allclose(scores - scores[:, :1], -(half_squared - half_squared[:, :1]))


def test_calibrated_ecoc_keeps_the_nearest_code_word_when_output_sizes_vary():
    # Four classes along four rays, images from near the origin to far out: the binary models' outputs
    # grow with the radius. Scores that carried each image's distance to every code word were ranked by
    # radius more than by class across images, and calibration then got 0.55 of these right.
    rng = np.random.default_rng(0)
    angle = np.repeat(np.arange(4) * np.pi / 2, 60) + rng.normal(0, 0.15, 240)
    radius = rng.uniform(1, 60, 240)
    x, y = np.stack([radius * np.cos(angle), radius * np.sin(angle)], 1), np.repeat(np.arange(4), 60)
    model = make_model("ecoc_logreg", 2.0, seed=3).fit(x, y)
    assert (model.predict(x) == y).mean() > 0.9


def test_entropy_and_log_loss_trees_are_the_same_tree_and_depth_is_capped():
    x, y, _ = _clusters(per_class=20)
    x = x + np.random.default_rng(1).normal(0, 4, x.shape)  # overlapping: the trees have work to do
    entropy, log_loss = (make_model(m, None, seed=0).fit(x, y) for m in ("tree_entropy", "tree_log_loss"))
    assert (entropy.predict_proba(x) == log_loss.predict_proba(x)).all()
    assert make_model("tree_gini", 2, seed=0).fit(x, y)[-1].get_depth() <= 2
    forest = make_model("forest", 4, seed=0).fit(x, y)[-1]
    assert len(forest.estimators_) == baselines.FOREST_TREES and max(t.get_depth() for t in forest.estimators_) <= 4


def test_every_baseline_has_a_grid_and_the_cli_lists_it(capsys):
    assert set(GRIDS) == set(BASELINES) and METHODS == ("finetune", *BASELINES)
    with pytest.raises(SystemExit):
        cli_main(["run", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert all(method in help_text for method in BASELINES)


def test_a_bad_method_name_is_one_line_before_any_work(tmp_path, capsys):
    assert cli_main(["run", "--data", str(tmp_path / "nowhere"), "--backbone", "EfficientNetLite0",
                     "--method", "knn_unifrom", "--artifacts", str(tmp_path / "art")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown method 'knn_unifrom'; did you mean 'knn_uniform'?")
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "art").exists()


def test_the_artifacts_doc_names_every_method():
    doc = " ".join((Path(__file__).parents[1] / "docs" / "ARTIFACTS.md").read_text(encoding="utf-8").split())
    assert all(f"`{method}`" in doc for method in METHODS)


@pytest.mark.parametrize("method, value", [("linear_svm", 0.01), ("ovr_svm", 0.01), ("ovo_svm", 0.01),
                                           ("ecoc_svm", 1.5), ("ovr_logreg", 0.1)])
def test_calibrated_baselines_answer_under_a_uniform_prior_not_the_majority_class(method, value):
    # alzheimer_mri's shape: four classes at 50/35/14/1 %, each image a weak push towards its class. Calibrated
    # on the imbalanced prior, the reductions predicted the majority class (balanced accuracy 0.25-0.28 there).
    rng = np.random.default_rng(0)

    def draw(n):
        y = rng.choice(4, n, p=[0.5, 0.35, 0.14, 0.01])
        x = rng.normal(size=(n, 64))
        x[np.arange(n), y] += 0.6
        return x, y

    (x, y), (x_val, y_val) = draw(3000), draw(1500)
    model = make_model(method, value, seed=0).fit(x, y)
    corrected = model.predict_proba(x_val)
    calibrated = model[-1].estimator_.predict_proba(model[:-1].transform(x_val))
    assert corrected.sum(1) == pytest.approx(np.ones(len(x_val)))
    assert (model.predict(x_val) == corrected.argmax(1)).all()
    prior = np.bincount(y, minlength=4) / len(y)
    assert np.allclose(corrected, calibrated / prior / (calibrated / prior).sum(1, keepdims=True))
    assert (calibrated.argmax(1) == 0).mean() > 0.65  # the majority class takes most images before the correction
    before, after = (balanced_accuracy_score(y_val, p.argmax(1)) for p in (calibrated, corrected))
    assert after > before + 0.04


def test_the_hyperparameter_is_chosen_with_every_class_counting_alike():
    """On an imbalanced validation split the plain log loss rewards probabilities near the majority class's prior;
    the baselines choose by the class-balanced one (and record both)."""
    from types import SimpleNamespace

    rng = np.random.default_rng(2)

    def draw(n):
        y = rng.choice(3, n, p=[0.8, 0.15, 0.05])
        x = rng.normal(size=(n, 16))
        x[np.arange(n), y] += 1.0
        return x, y

    (x_train, y_train), (x_val, y_val) = draw(600), draw(400)
    data = SimpleNamespace(classes=["a", "b", "c"], labels={"train": y_train, "val": y_val},
                           ids={"train": [str(i) for i in range(len(y_train))]},
                           split=SimpleNamespace(groups_of=lambda paths: None))
    config = SimpleNamespace(method="logreg", seed=0)
    best, grid, _ = baselines._choose_and_fit(config, data, {"train": x_train, "val": x_val}, lambda line: None)
    assert best == min(grid, key=lambda row: (row["val_loss_balanced"], -row["val_balanced_accuracy"]))
    plain = min(grid, key=lambda row: (row["val_loss"], -row["val_accuracy"]))
    assert plain["C"] == 0.1 and best["C"] == 0.01  # the two rules disagree here: the balanced one decides
    assert best["val_balanced_accuracy"] > plain["val_balanced_accuracy"]


def test_a_calibrated_baseline_cuts_its_calibration_folds_by_group(monkeypatch):
    """The sigmoid of a calibrated baseline is fitted on held-out training images; cut image by image, those held
    out have near-copies in the model being calibrated, and their scores look surer than a new image's."""
    from types import SimpleNamespace

    rng = np.random.default_rng(3)
    y = np.repeat(rng.choice(3, 60, p=[0.6, 0.3, 0.1]), 4)  # 60 images, each with 3 near-copies: 240 rows
    groups = np.repeat([f"g{i}" for i in range(60)], 4)
    grouped = SimpleNamespace(method="ovr_svm", seed=0, calibration_folds="groups")
    folds = baselines.calibration_folds(grouped, y, groups)
    assert len(folds) == baselines.CALIBRATION_K
    assert sorted(np.concatenate([held for _, held in folds]).tolist()) == list(range(len(y)))  # each row once
    for fit, held in folds:
        assert not set(groups[fit]) & set(groups[held]) and set(y[held]) == {0, 1, 2}
    # The first runs' behaviour, and the methods that calibrate nothing: scikit-learn's own stratified folds.
    for config in (SimpleNamespace(method="ovr_svm", seed=0, calibration_folds="images"),
                   SimpleNamespace(method="logreg", seed=0, calibration_folds="groups")):
        assert baselines.calibration_folds(config, y, groups) == baselines.CALIBRATION_K
    alone = baselines.calibration_folds(grouped, y, None)  # no groups known: every image its own
    assert sorted(np.concatenate([held for _, held in alone]).tolist()) == list(range(len(y)))

    # A run hands the folds of its training images' groups to every fit of its grid.
    x = rng.normal(size=(len(y), 8)) + y[:, None]
    seen = []
    real = baselines.make_model
    monkeypatch.setattr(baselines, "make_model", lambda method, value, seed, cv=3: seen.append(cv) or real(
        method, value, seed, cv))
    paths = [f"img{i}" for i in range(len(y))]
    data = SimpleNamespace(classes=["a", "b", "c"], labels={"train": y, "val": y}, ids={"train": paths},
                           split=SimpleNamespace(groups_of=lambda ps: [dict(zip(paths, groups))[p] for p in ps]))
    baselines._choose_and_fit(grouped, data, {"train": x, "val": x}, lambda line: None)
    assert len(seen) == len(GRIDS["ovr_svm"][1]) + 1 and all(isinstance(cv, list) for cv in seen)
    for fit, held in seen[0]:
        assert not set(groups[fit]) & set(groups[held])
