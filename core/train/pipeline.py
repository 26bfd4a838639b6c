"""The ``tf.data`` input pipeline of image-level training (stage 2 without a cut layer, from scratch, prediction)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from core.data.augment import apply_view, view_params
from core.data.dataset import load_image
from core.models.backbones import BackboneSpec
from core.models.preprocess import preprocess

INFERENCE_BATCH = 64


def inference_batch(batch_size: int) -> int:
    """Images per batch when a run only predicts (validation, test, feature extraction).

    The training batch, at most :data:`INFERENCE_BATCH`: a training batch chosen for cached
    features (hundreds) need not fit in memory as full images, and predicting gains nothing
    from it. At the default 32 a run predicts exactly as before.
    """
    return min(batch_size, INFERENCE_BATCH)


def epoch_views(n_images: int, n_views: int, seed: int, epoch: int) -> np.ndarray:
    """The view each training image is shown as in one epoch (view 0 = the original), drawn per seed and epoch."""
    if n_views <= 1:
        return np.zeros(n_images, dtype=np.int64)
    return np.random.default_rng(seed * 7919 + epoch).integers(0, n_views, size=n_images)


def training_order(n_images: int, n_views: int, seed: int, epoch: int, views: str) -> np.ndarray:
    """One epoch's ``(view, image)`` pairs in shuffled order.

    ``views="all"`` shows every image as each of its ``n_views`` cached views; ``"one"`` shows
    every image once, as the view :func:`epoch_views` draws for it (an epoch as long as the dataset).
    """
    if views == "all":
        pairs = np.stack(np.meshgrid(np.arange(n_views), np.arange(n_images), indexing="ij"), -1).reshape(-1, 2)
    else:
        pairs = np.stack([epoch_views(n_images, n_views, seed, epoch), np.arange(n_images)], 1)
    return pairs[np.random.default_rng([seed, epoch]).permutation(len(pairs))]


def cached_dataset(views: Sequence, labels: np.ndarray, batch_size: int, order: np.ndarray | None = None):
    """A ``tf.data.Dataset`` of ``(x, y)`` batches gathered from cached arrays, one per view.

    ``views`` are arrays or :class:`~core.train.features.CachedRows` (memory-mapped): only the
    rows of the batch being built are read, so memory stays at a few batches whatever the
    dataset's size. ``order`` lists ``(view, image)`` pairs (:func:`training_order`); by default
    every image of view 0 in order.
    """
    from core.models.tfkeras import tf

    labels = np.asarray(labels, dtype=np.int32)
    if order is None:
        order = np.stack([np.zeros(len(labels), dtype=np.int64), np.arange(len(labels))], 1)
    sample_shape = tuple(views[0].shape[1:])

    def batches():
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            x = np.empty((len(chunk), *sample_shape), dtype=np.float32)
            for view in np.unique(chunk[:, 0]):
                chosen = chunk[:, 0] == view
                x[chosen] = _rows(views[view], chunk[chosen, 1])
            yield x, labels[chunk[:, 1]]

    signature = (tf.TensorSpec((None, *sample_shape), tf.float32), tf.TensorSpec((None,), tf.int32))
    n_batches = -(-len(order) // batch_size)
    ds = tf.data.Dataset.from_generator(batches, output_signature=signature)
    return ds.apply(tf.data.experimental.assert_cardinality(n_batches)).prefetch(2)


def _rows(source, index: np.ndarray) -> np.ndarray:
    """Rows of an array, or of :class:`~core.train.features.CachedRows` (read from its file)."""
    return np.asarray(source[index]) if isinstance(source, np.ndarray) else source.take(index)


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
    :class:`~core.artifacts.config.AugmentConfig`, and ``ids``, the relative paths the views
    are derived from) applies those deterministic augmented views of
    :mod:`core.data.augment`; view 0 is the original image.
    """
    from core.models.tfkeras import tf

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
