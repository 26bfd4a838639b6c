"""Classical baselines on frozen ImageNet embeddings (scikit-learn).

Logistic regression, a linear SVM (probabilities by Platt-style calibration) and
k-nearest neighbours, trained on the same cached pooled backbone outputs the
networks' stage 1 uses (original training images, no augmented views), with their
one hyperparameter chosen on the validation split, then evaluated on the test split
exactly like a network.
"""

from __future__ import annotations

import numpy as np

from core.artifacts.config import RunConfig
from core.models.backbones import BackboneSpec, build_backbone
from core.progress import Throughput
from core.train import features as feat
from core.train.pipeline import inference_batch

GRIDS = {
    "logreg": ("C", [0.01, 0.1, 1.0, 10.0]),
    "linear_svm": ("C", [0.001, 0.01, 0.1, 1.0]),
    "knn": ("n_neighbors", [1, 3, 5, 11, 21]),
}


def make_model(method: str, value, seed: int):
    """An unfitted scikit-learn pipeline for ``method`` with its hyperparameter set."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    if method == "logreg":
        model = LogisticRegression(C=value, max_iter=3000, class_weight="balanced", random_state=seed)
    elif method == "linear_svm":
        model = CalibratedClassifierCV(LinearSVC(C=value, class_weight="balanced", random_state=seed, max_iter=5000),
                                       cv=3)
    elif method == "knn":
        model = KNeighborsClassifier(n_neighbors=value, weights="distance")
    else:
        raise ValueError(f"unknown baseline {method!r}")
    return make_pipeline(StandardScaler(), model)


def full_probs(model, x: np.ndarray, num_classes: int) -> np.ndarray:
    """predict_proba with a column for every class, also classes unseen in training."""
    probs = np.zeros((len(x), num_classes))
    probs[:, model.classes_] = model.predict_proba(x)
    return probs


def pooled_features(config: RunConfig, spec: BackboneSpec, data, emit) -> dict[str, np.ndarray]:
    """Cached pooled backbone outputs (view 0) for train, val and test."""
    from core.models.tfkeras import keras

    size = config.input_size or spec.input_size
    keras.backend.clear_session()
    base = build_backbone(spec, "imagenet", (size, size, 3))
    extractor = feat.FeatureExtractor(base, spec, size, None)
    out = {}
    for split in ("train", "val", "test"):
        key = feat.FeatureKey(data.fingerprint, spec.name, "imagenet", size, spec.entry.preprocessing, None, 0)
        out[split] = feat.compute(extractor, key, data.root, data.ids[split], config.augment,
                                  inference_batch(config.batch_size),
                                  Throughput(f"features {split}", emit))["pooled"]
    keras.backend.clear_session()
    return out


def train_and_predict(config: RunConfig, spec: BackboneSpec, data, run, emit) -> dict:
    """Fit the baseline, choose its hyperparameter on val, return test probabilities (phases timed as run events)."""
    with run.phase("features"):
        x = pooled_features(config, spec, data, emit)
    with run.phase("fit"):
        best, scores, probs = _choose_and_fit(config, data, x, emit)
    name = GRIDS[config.method][0]
    run.event("baseline", method=config.method, chosen={name: best[name]})
    return {"test_probs": probs,
            "details": {"method": config.method, "hyperparameter": name, "grid": scores, "chosen": best[name],
                        "inputs": "pooled ImageNet backbone outputs of the original training images, standardised"}}


def _choose_and_fit(config: RunConfig, data, x: dict, emit) -> tuple[dict, list[dict], np.ndarray]:
    """Fit every grid value on train, choose the best on val, refit it; return it, the grid and test probabilities."""
    from sklearn.metrics import log_loss

    name, values = GRIDS[config.method]
    k = len(data.classes)
    scores = []
    for value in values:
        if config.method == "knn" and value > len(data.ids["train"]):
            continue
        model = make_model(config.method, value, config.seed).fit(x["train"], data.labels["train"])
        probs = np.clip(full_probs(model, x["val"], k), 1e-7, 1.0)
        loss = log_loss(data.labels["val"], probs / probs.sum(1, keepdims=True), labels=list(range(k)))
        acc = float((probs.argmax(1) == data.labels["val"]).mean())
        scores.append({name: value, "val_loss": float(loss), "val_accuracy": acc})
        emit(f"{config.method} {name}={value}: val_loss {loss:.4f} val_acc {acc:.3f}")
    best = min(scores, key=lambda s: (s["val_loss"], -s["val_accuracy"]))
    model = make_model(config.method, best[name], config.seed).fit(x["train"], data.labels["train"])
    return best, scores, full_probs(model, x["test"], k)
