"""Classical baselines on frozen ImageNet embeddings (scikit-learn).

Logistic regression, a linear SVM (probabilities by Platt-style calibration, moved to a uniform class prior
like every class-weighted model here: :class:`PriorCorrected`), k-nearest
neighbours with several tie-breaking rules, the three ways of reducing a multi-class
problem to binary ones (one-vs-rest, one-vs-one, error-correcting output codes) around
both linear models, decision trees with each impurity measure and a random forest. All
are trained on the same cached pooled backbone outputs the networks' stage 1 uses
(original training images, no augmented views), with their one hyperparameter chosen on
the validation split (:data:`SELECTION`: every class counts alike), then evaluated on the test
split exactly like a network.

A run's predictions are the argmax of its test probabilities, so every k-NN tie-break
rule is carried by the probabilities (:data:`TIE_NUDGE`).
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.multiclass import OutputCodeClassifier

from core.artifacts.config import RunConfig, is_prior_corrected
from core.models.backbones import BackboneSpec
from core.train import features as feat

_K = [1, 3, 5, 11, 21]
_CODE_SIZES = [1.0, 1.5, 2.0, 3.0]  # binary classifiers per class
_DEPTHS = [2, 4, 8, 16, None]  # None: grow until the leaves are pure
# method -> (the hyperparameter chosen on validation, its grid)
GRIDS = {
    "logreg": ("C", [0.01, 0.1, 1.0, 10.0]),
    "linear_svm": ("C", [0.001, 0.01, 0.1, 1.0]),
    "knn": ("n_neighbors", _K),  # votes weighted by 1/distance
    "knn_uniform": ("n_neighbors", _K),  # one vote each; a tie goes to the smallest class index
    "knn_nearest": ("n_neighbors", _K),  # one vote each; a tie goes to the tied class with the nearest neighbour
    "knn_random": ("n_neighbors", _K),  # one vote each; a tie goes to a tied class drawn with the run's seed
    "nn1": ("n_neighbors", [1]),  # the nearest training image's class
    "ovr_logreg": ("C", [0.01, 0.1, 1.0, 10.0]),
    "ovo_logreg": ("C", [0.01, 0.1, 1.0, 10.0]),
    "ecoc_logreg": ("code_size", _CODE_SIZES),
    "ovr_svm": ("C", [0.001, 0.01, 0.1, 1.0]),
    "ovo_svm": ("C", [0.001, 0.01, 0.1, 1.0]),
    "ecoc_svm": ("code_size", _CODE_SIZES),
    "tree_gini": ("max_depth", _DEPTHS),
    "tree_entropy": ("max_depth", _DEPTHS),
    "tree_log_loss": ("max_depth", _DEPTHS),  # scikit-learn's "log_loss" is the entropy criterion itself
    "forest": ("max_depth", _DEPTHS),
}
SELECTION = ("lowest class-balanced validation log loss (each image weighted by 1/its class's share), ties by "
             "balanced accuracy")
# The binary model's regularisation inside the output-code reductions, whose grid is the code size.
ECOC_C = {"logreg": 1.0, "svm": 0.01}
CALIBRATION_K = 3  # a calibrated baseline's inner folds
FOREST_TREES = 200
# Added to the tie-break winner's vote share (then renormalised) so that the argmax picks it: far below
# the gap between two vote shares (1/k, k at most 21), and still there in predictions.csv's 6 digits.
TIE_NUDGE = 1e-4


class TieBreakKNN(ClassifierMixin, BaseEstimator):
    """k-NN with one vote per neighbour and a named rule for a tied vote: ``nearest`` (the tied class
    owning the nearest of the neighbours) or ``random`` (one of the tied classes, drawn with ``random_state``)."""

    def __init__(self, n_neighbors: int = 5, tie: str = "nearest", random_state: int = 0):
        self.n_neighbors = n_neighbors
        self.tie = tie
        self.random_state = random_state

    def fit(self, x, y):
        """Store the training set (a uniform-vote scikit-learn k-NN)."""
        from sklearn.neighbors import KNeighborsClassifier

        self.knn_ = KNeighborsClassifier(n_neighbors=self.n_neighbors).fit(x, y)
        self.classes_ = self.knn_.classes_
        self.labels_ = np.searchsorted(self.classes_, np.asarray(y))  # column of each training image's class
        return self

    def predict_proba(self, x):
        """Vote shares, the tie-break winner's nudged up by :data:`TIE_NUDGE`."""
        votes = self.knn_.predict_proba(x)
        _, order = self.knn_.kneighbors(x)  # nearest first
        rng = np.random.default_rng(self.random_state)  # the same draws on every call
        for row, neighbours in zip(votes, order):
            tied = np.flatnonzero(row == row.max())
            if len(tied) > 1:
                if self.tie == "random":
                    winner = rng.choice(tied)
                else:
                    winner = next(c for c in self.labels_[neighbours] if c in tied)
                row[winner] += TIE_NUDGE
        return votes / votes.sum(1, keepdims=True)

    def predict(self, x):
        """The class with the largest nudged vote share."""
        return self.classes_[self.predict_proba(x).argmax(1)]


class ScoredOutputCode(OutputCodeClassifier):
    """Error-correcting output codes with a score per class: ``o·c - |c|²/2`` for the binary classifiers'
    outputs ``o`` and the class's code word ``c``, which is minus half the squared Euclidean distance
    ``|o - c|²`` plus ``|o|²/2``: the same nearest code word that scikit-learn predicts, without the
    image's own ``|o|²``. Calibration reads each class's score across images, and a distance carries that
    term (large logits, far from every code word): calibrated on distances, one class took nearly every
    image (flower_photos: validation accuracy 0.33 where the nearest code word gets 0.74-0.89)."""

    def decision_function(self, x):
        """Each class's score; the argmax is :meth:`predict`'s class."""
        outputs = np.array([e.decision_function(x) for e in self.estimators_]).T
        return outputs @ self.code_book_.T - 0.5 * (self.code_book_ ** 2).sum(1)


class PriorCorrected(ClassifierMixin, BaseEstimator):
    """A calibrated classifier's probabilities moved from the training split's class prior to a uniform one:
    each class's probability divided by its training share, renormalised.

    The networks, the logistic regression, the trees and the forest weight classes by their inverse frequency
    (``class_weight = "balanced"``), and so do the binary models inside the calibrated ones. Sigmoid calibration
    is fitted on unweighted held-out labels, so it re-learns the training prior: weak scores map back onto the
    imbalanced prior and the argmax becomes the majority class (on alzheimer_mri every calibrated reduction had a
    balanced accuracy of 0.25-0.28, the multinomial logistic regression 0.48). Dividing the posterior by the prior
    is the standard prior-shift correction to a uniform prior, the question the class weights ask. It multiplies a
    rare class's calibration error by 1/its share."""

    def __init__(self, estimator=None):
        self.estimator = estimator

    def fit(self, x, y):
        """Fit the wrapped estimator and note each class's share of ``y``."""
        self.estimator_ = clone(self.estimator).fit(x, y)
        self.classes_ = self.estimator_.classes_
        counts = np.array([(np.asarray(y) == c).sum() for c in self.classes_], dtype=np.float64)
        self.prior_ = counts / counts.sum()
        return self

    def predict_proba(self, x):
        """The wrapped probabilities divided by the training prior, rows summing to 1."""
        probs = self.estimator_.predict_proba(x) / self.prior_
        return probs / probs.sum(1, keepdims=True)

    def predict(self, x):
        """The class of highest prior-corrected probability."""
        return self.classes_[self.predict_proba(x).argmax(1)]


def make_model(method: str, value, seed: int, calibration_cv=CALIBRATION_K):
    """An unfitted scikit-learn pipeline for ``method`` with its hyperparameter set. ``calibration_cv``: a calibrated
    method's inner folds, a count or the (train, held-out) index pairs of :func:`calibration_folds`."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), _estimator(method, value, seed, calibration_cv))


def calibration_folds(config: RunConfig, labels: np.ndarray, groups: np.ndarray | None):
    """The inner calibration folds of ``config``'s method on training images with ``labels``: stratified and, with
    ``calibration_folds = "groups"``, never cutting a group of near-copies (``groups``, one id per image; None:
    each image its own), so the sigmoid is not fitted on scores of images whose copies trained the model. Image by
    image (:data:`CALIBRATION_K`, as the first runs) otherwise."""
    if not is_prior_corrected(config.method) or config.calibration_folds != "groups":
        return CALIBRATION_K
    from sklearn.model_selection import StratifiedGroupKFold

    labels = np.asarray(labels)
    groups = np.arange(len(labels)) if groups is None else np.asarray(groups)
    folds = StratifiedGroupKFold(n_splits=min(CALIBRATION_K, len(np.unique(groups))), shuffle=True,
                                 random_state=config.seed)
    return list(folds.split(np.zeros(len(labels)), labels, groups))


def _estimator(method: str, value, seed: int, calibration_cv=CALIBRATION_K):
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsOneClassifier, OneVsRestClassifier
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import LinearSVC
    from sklearn.tree import DecisionTreeClassifier

    def binary(kind: str, c: float):
        if kind == "logreg":
            return LogisticRegression(C=c, max_iter=3000, class_weight="balanced", random_state=seed)
        return LinearSVC(C=c, class_weight="balanced", random_state=seed, max_iter=5000)

    if method in ("logreg", "linear_svm"):
        model = binary("logreg" if method == "logreg" else "svm", value)
        if not is_prior_corrected(method):
            return model
        return PriorCorrected(CalibratedClassifierCV(model, cv=calibration_cv))
    if method in ("knn", "knn_uniform", "nn1"):
        return KNeighborsClassifier(n_neighbors=value, weights="distance" if method == "knn" else "uniform")
    if method in ("knn_nearest", "knn_random"):
        return TieBreakKNN(n_neighbors=value, tie=method.removeprefix("knn_"), random_state=seed)
    if method.startswith(("ovr_", "ovo_", "ecoc_")):
        strategy, kind = method.split("_")
        if strategy == "ovr":
            reduction = OneVsRestClassifier(binary(kind, value))
        elif strategy == "ovo":
            reduction = OneVsOneClassifier(binary(kind, value))
        else:
            reduction = ScoredOutputCode(binary(kind, ECOC_C[kind]), code_size=value, random_state=seed)
        # Every strategy's class scores calibrated the same way (sigmoid, inner folds) into probabilities, so
        # they compare on log loss too (OvO and ECOC have none of their own); the fit time includes this.
        return PriorCorrected(CalibratedClassifierCV(reduction, cv=calibration_cv))  # is_prior_corrected(method)
    if method.startswith("tree_"):
        return DecisionTreeClassifier(criterion=method.removeprefix("tree_"), max_depth=value,
                                      class_weight="balanced", random_state=seed)
    if method == "forest":
        return RandomForestClassifier(n_estimators=FOREST_TREES, max_depth=value, class_weight="balanced",
                                      random_state=seed)
    raise ValueError(f"unknown baseline {method!r}")


def full_probs(model, x: np.ndarray, num_classes: int) -> np.ndarray:
    """predict_proba with a column for every class, also classes unseen in training."""
    probs = np.zeros((len(x), num_classes))
    probs[:, model.classes_] = model.predict_proba(x)
    return probs


def train_and_predict(config: RunConfig, spec: BackboneSpec, data, run, emit) -> dict:
    """Fit the baseline, choose its hyperparameter on val, return test and validation probabilities (phases timed
    as run events)."""
    with run.phase("features"):
        pooled = feat.pooled_outputs(config, spec, data, [(split, 0) for split in ("train", "val", "test")], emit)
        x = {split: pooled[(split, 0)] for split in ("train", "val", "test")}
    with run.phase("fit"):
        best, scores, model = _choose_and_fit(config, data, x, emit)
    name = GRIDS[config.method][0]
    run.event("baseline", method=config.method, chosen={name: best[name]})
    k = len(data.classes)
    return {"test_probs": full_probs(model, x["test"], k), "val_probs": full_probs(model, x["val"], k),
            "details": {"method": config.method, "hyperparameter": name, "grid": scores, "chosen": best[name],
                        "chosen_by": SELECTION, "prior_corrected": is_prior_corrected(config.method),
                        "calibration_folds": (f"{CALIBRATION_K}, stratified, cut by {config.calibration_folds}"
                                              if is_prior_corrected(config.method) else None),
                        "fit_seconds": best["fit_seconds"],
                        "inputs": "pooled ImageNet backbone outputs of the original training images, standardised"}}


def choose_on_validation(config: RunConfig, data, x: dict, emit) -> tuple[str, object]:
    """The baseline's hyperparameter (name, value) as a run chooses it: the grid fitted on train, scored on val."""
    best, _, _ = _choose_and_fit(config, data, x, emit)
    name = GRIDS[config.method][0]
    return name, best[name]


def _choose_and_fit(config: RunConfig, data, x: dict, emit) -> tuple[dict, list[dict], object]:
    """Fit every grid value on train (timed), choose the best on val, refit it; return it, the grid and the
    fitted model."""
    from sklearn.metrics import balanced_accuracy_score, log_loss
    from sklearn.utils.class_weight import compute_sample_weight

    name, values = GRIDS[config.method]
    k = len(data.classes)
    calibration = calibration_folds(config, data.labels["train"], data.split.groups_of(data.ids["train"]))
    y_val = data.labels["val"]
    balanced = compute_sample_weight("balanced", y_val)
    scores = []
    for value in values:
        if name == "n_neighbors" and value > len(data.ids["train"]):
            continue
        model, seconds = _timed_fit(config, value, x["train"], data.labels["train"], calibration)
        probs = np.clip(full_probs(model, x["val"], k), 1e-7, 1.0)
        probs /= probs.sum(1, keepdims=True)
        loss = log_loss(y_val, probs, labels=list(range(k)))
        loss_balanced = log_loss(y_val, probs, labels=list(range(k)), sample_weight=balanced)
        acc = float((probs.argmax(1) == y_val).mean())
        acc_balanced = float(balanced_accuracy_score(y_val, probs.argmax(1)))
        scores.append({name: value, "val_loss": float(loss), "val_loss_balanced": float(loss_balanced),
                       "val_accuracy": acc, "val_balanced_accuracy": acc_balanced, "fit_seconds": seconds})
        emit(f"{config.method} {name}={value}: balanced val_loss {loss_balanced:.4f} val_acc {acc:.3f} "
             f"balanced {acc_balanced:.3f}")
    # Chosen for the question the report ranks by: every class counts alike (the log loss with each image weighted
    # by 1/its class's share), so an imbalanced validation split cannot favour the majority class.
    best = min(scores, key=lambda s: (s["val_loss_balanced"], -s["val_balanced_accuracy"]))
    model, _ = _timed_fit(config, best[name], x["train"], data.labels["train"], calibration)
    return best, scores, model


def _timed_fit(config: RunConfig, value, x: np.ndarray, y: np.ndarray, calibration_cv=CALIBRATION_K):
    """The fitted model and its fit's wall-clock seconds."""
    started = time.perf_counter()
    model = make_model(config.method, value, config.seed, calibration_cv).fit(x, y)
    return model, round(time.perf_counter() - started, 4)
