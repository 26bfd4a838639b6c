"""Input pipelines: decode, resize, preprocess for a backbone, batch, prefetch.

Images are decoded by :func:`core.data.load_image` (Pillow), the same decoder the
audit uses, so every format the dataset layer accepts (greyscale, CMYK, 16-bit,
EXIF-rotated, ...) reaches the model the same way. Preprocessing is one function
that works on NumPy arrays and TensorFlow tensors alike, so LiteRT inference (no
TensorFlow) and training apply exactly the same arithmetic.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from core.backbones import PREPROCESSING, BackboneSpec

_CAFFE_BGR_MEAN = np.array([103.939, 116.779, 123.68], dtype=np.float32)


def preprocess(images, mode: str):
    """Map float pixels in 0..255 (RGB, channels last) to what a backbone expects.

    ``mode`` is the registry entry's ``preprocessing``: 'tf', 'caffe', 'raw' or
    'lite' (see :data:`core.backbones.PREPROCESSING`). Works on NumPy arrays and
    TensorFlow tensors.
    """
    if mode == "tf":
        return images / 127.5 - 1.0
    if mode == "caffe":
        return images[..., ::-1] - _CAFFE_BGR_MEAN
    if mode == "raw":
        return images
    if mode == "lite":
        return (images - 127.0) / 128.0
    raise ValueError(f"unknown preprocessing mode {mode!r}; known: {', '.join(PREPROCESSING)}")


def load_batch(paths: Sequence[str], spec: BackboneSpec, input_size: int | None = None) -> np.ndarray:
    """Decode, resize (to ``input_size``, default the backbone's) and preprocess images into one
    float32 NumPy batch (no TensorFlow)."""
    from core.data import load_image

    size = (input_size or spec.input_size, input_size or spec.input_size)
    batch = np.stack([load_image(p, size=size) for p in paths]).astype(np.float32)
    return preprocess(batch, spec.entry.preprocessing).astype(np.float32)


def make_dataset(
    paths: Sequence[str],
    labels: Sequence[int] | None,
    spec: BackboneSpec,
    batch_size: int = 32,
    shuffle: bool = False,
    seed: int = 0,
    preprocess_inputs: bool = True,
    input_size: int | None = None,
    views: Sequence[int] | None = None,
    augment=None,
    ids: Sequence[str] | None = None,
):
    """A ``tf.data.Dataset`` of ``(images, labels)`` batches (or images alone without labels).

    ``paths`` are absolute file paths. With ``preprocess_inputs=False`` the batches
    hold resized 0..255 pixels. ``views`` (one per image, with ``augment``, an
    :class:`~core.config.AugmentConfig`, and ``ids``, the relative paths the views
    are derived from) applies those deterministic augmented views of
    :mod:`core.augment`; view 0 is the original image.
    """
    from core.augment import apply_view, view_params
    from core.data import load_image
    from core.tfkeras import tf

    side = input_size or spec.input_size
    size = (side, side)
    paths = [str(p) for p in paths]
    if views is None:
        keys = paths
    else:
        if ids is None or augment is None or len(views) != len(paths) or len(ids) != len(paths):
            raise ValueError("views need one view, one id per path and an augment config")
        keys = [f"{int(v)}|{i}" for v, i in zip(views, ids)]
    by_key = dict(zip(keys, paths))

    def _decode(key: bytes) -> np.ndarray:
        key = key.decode("utf-8")
        image = load_image(by_key[key], size=size).astype(np.float32)
        if views is not None:
            view, rel = key.split("|", 1)
            image = apply_view(image, view_params(rel, int(view), augment)).astype(np.float32)
        return image

    def _load(key):
        image = tf.numpy_function(_decode, [key], tf.float32, stateful=False)
        image.set_shape((size[0], size[1], 3))
        return image

    if labels is None:
        ds = tf.data.Dataset.from_tensor_slices(keys)
    else:
        if len(labels) != len(paths):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
        ds = tf.data.Dataset.from_tensor_slices((keys, np.asarray(labels, dtype=np.int32)))
    if shuffle:
        ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    if labels is None:
        ds = ds.map(_load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    else:
        ds = ds.map(lambda p, y: (_load(p), y), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size)
    if preprocess_inputs:
        mode = spec.entry.preprocessing
        if labels is None:
            ds = ds.map(lambda x: preprocess(x, mode))
        else:
            ds = ds.map(lambda x, y: (preprocess(x, mode), y))
    return ds.prefetch(tf.data.AUTOTUNE)
