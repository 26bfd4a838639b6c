"""Preprocessing for a backbone: decode, resize and map pixels to what the backbone expects.

Images are decoded by :func:`core.data.dataset.load_image` (Pillow), the same decoder the
audit uses, so every format the dataset layer accepts (greyscale, CMYK, 16-bit,
EXIF-rotated, ...) reaches the model the same way. Preprocessing is one function
that works on NumPy arrays and TensorFlow tensors alike, so LiteRT inference (no
TensorFlow) and training apply exactly the same arithmetic.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from core.data.dataset import load_image
from core.models.backbones import PREPROCESSING, BackboneSpec

_CAFFE_BGR_MEAN = np.array([103.939, 116.779, 123.68], dtype=np.float32)


def preprocess(images, mode: str):
    """Map float pixels in 0..255 (RGB, channels last) to what a backbone expects.

    ``mode`` is the registry entry's ``preprocessing``: 'tf', 'caffe', 'raw' or
    'lite' (see :data:`core.models.backbones.PREPROCESSING`). Works on NumPy arrays and
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
    size = (input_size or spec.input_size, input_size or spec.input_size)
    batch = np.stack([load_image(p, size=size) for p in paths]).astype(np.float32)
    return preprocess(batch, spec.entry.preprocessing).astype(np.float32)
