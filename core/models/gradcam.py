"""Grad-CAM for a stored Keras classifier: where in the image the chosen class came from.

Uses the last convolutional feature map, the input of the classifier's global average
pooling (``avg_pool``), weights its channels by the mean gradient of the class score,
and keeps the positive part (Selvaraju et al., 2017). Imports TensorFlow: only the Try
page calls it, lazily.
"""

from __future__ import annotations

import time
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from core.models.loading import ModelFileError, load_model


@lru_cache(maxsize=4)
def _models(path: str, mtime_ns: int):
    from core.models.tfkeras import keras

    model = load_model(path)
    try:
        features = model.get_layer("avg_pool").input
    except ValueError:
        raise ModelFileError(f"{path}: no 'avg_pool' layer to explain: not a classifier this product wrote") from None
    layer_name = features.node.layer.name if hasattr(features, "node") else features._keras_history[0].name
    grad_model = keras.Model(model.inputs, [features, model.output])
    return model, grad_model, layer_name


def gradcam(model_path, batch: np.ndarray, class_index: int | None = None) -> tuple[np.ndarray, int, str, np.ndarray]:
    """Heatmap in [0, 1] at feature-map resolution, the class explained, the layer used, and the probabilities.

    ``batch`` is one preprocessed image, shape (1, H, W, 3).
    """
    from core.models.tfkeras import tf

    path = Path(model_path)
    # A file deleted since the page listed it: the loader says so in its own words.
    _, grad_model, layer_name = _models(str(path), path.stat().st_mtime_ns if path.is_file() else -1)
    x = tf.convert_to_tensor(batch)
    with tf.GradientTape() as tape:
        features, probs = grad_model(x, training=False)
        if class_index is None:
            class_index = int(tf.argmax(probs[0]))
        score = probs[:, class_index]
    grads = tape.gradient(score, features)
    weights = tf.reduce_mean(grads, axis=(1, 2))
    cam = tf.nn.relu(tf.reduce_sum(features * weights[:, None, None, :], axis=-1))[0].numpy()
    peak = float(cam.max())
    cam = cam / peak if peak > 0 else cam
    return cam, class_index, layer_name, probs[0].numpy()


def predict(model_path, batch: np.ndarray) -> tuple[np.ndarray, float]:
    """Class probabilities of the Keras model for one preprocessed image (shape (1, H, W, 3)) and the wall time
    (ms) of the call; the model is loaded once (shared with :func:`gradcam`)."""
    path = Path(model_path)
    model, _, _ = _models(str(path), path.stat().st_mtime_ns if path.is_file() else -1)
    started = time.perf_counter()
    probs = model(batch, training=False)
    return np.asarray(probs)[0], (time.perf_counter() - started) * 1000.0


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The heatmap, upsampled to the image and coloured (blue -> red), blended over it."""
    h, w = image.shape[:2]
    up = np.asarray(Image.fromarray((heatmap * 255).astype(np.uint8)).resize((w, h), Image.Resampling.BILINEAR),
                    dtype=np.float32) / 255.0
    colour = np.stack([np.clip(1.5 - np.abs(4 * up - 3), 0, 1), np.clip(1.5 - np.abs(4 * up - 2), 0, 1),
                       np.clip(1.5 - np.abs(4 * up - 1), 0, 1)], axis=-1) * 255.0  # a jet-like map
    return np.clip((1 - alpha) * image.astype(np.float32) + alpha * colour, 0, 255).astype(np.uint8)
