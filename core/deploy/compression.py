"""Compressed forms of a trained Keras classifier: TFLite conversions and tfmot compression.

TFLite (``tf.lite.TFLiteConverter.from_keras_model``):

* ``float32``: plain conversion (BatchNorm folded into the convolutions);
* ``float16``: weights stored as float16 (dequantised to float32 at load on a CPU);
* ``int8_dynamic``: dynamic-range quantisation, int8 weights, float activations;
* ``int8_full``: full-integer quantisation with int8 input and output, activation ranges
  calibrated on a representative dataset; only int8 builtin ops are allowed, so a model
  that cannot be fully quantised fails to convert instead of silently keeping float ops;
* ``int8_full_per_tensor``: the same with one scale per weight tensor instead of one per
  output channel: smaller (per-channel scales and int64 zero points of a few tens of
  thousands of channels cost about 0.5 MB for EfficientNet-Lite0), usually less accurate;
* ``qat_int8``: the conversion of a quantisation-aware-trained model, int8 input/output.

tensorflow-model-optimization (tfmot; needs Keras 2, i.e. ``tf_keras``, arranged by
:mod:`core.models.tfkeras`):

* :func:`prune`: magnitude pruning of every Conv/Dense kernel to a target
  sparsity (``PolynomialDecay`` from 0 over the first half of a short fine-tune, or in one
  step without fine-tune), then ``strip_pruning``;
* :func:`cluster`: weight clustering (k-means++ centroids) of the same kernels, short
  fine-tune, ``strip_clustering``;
* :func:`quantize_aware`: ``quantize_model`` on the whole model, activation ranges
  calibrated on the fine-tune images (:func:`calibrate_quantizers`), short fine-tune.

Only the layers tfmot has registered weights for are wrapped (``clone_model`` with a
``clone_function``, the pattern of the tfmot guides); the rest of the model is untouched.
When tfmot itself refuses an architecture the functions raise :class:`Unsupported` with
the reason, and the caller records the variant as unsupported.

Every layer is trainable during a fine-tune (training froze most of the backbone; tfmot
wraps only trainable weights). BatchNorm either stays frozen or trains along and is
recalibrated afterwards (:data:`BATCHNORM_MODES`). This project's classifiers keep
ImageNet's BatchNorm statistics (BatchNorm stays frozen in transfer learning) and their
upper layers were trained against them, so recalibrating on the target data alone hurts;
it pays off only after a fine-tune that trained with batch statistics, as pruning needs:
magnitude pruning changes activations too much for frozen statistics. On EfficientNet-
Lite0 / flower_photos (512 images, 2 epochs) 50% pruning kept 0.835 accuracy with
frozen BatchNorm and 0.880 with recalibration; 32-cluster clustering kept 0.918 frozen
and 0.81-0.82 recalibrated. Hence the defaults: pruning recalibrates, clustering and QAT
keep BatchNorm frozen.
"""

from __future__ import annotations

import gzip
import math
import re
import time
import warnings
from typing import Callable, Iterable

import numpy as np

from core.models.batchnorm import dropout_off, is_batchnorm, reestimate_batchnorm_statistics
from core.progress import Emit, format_seconds

TFLITE_MODES = ("float32", "float16", "int8_dynamic", "int8_full", "int8_full_per_tensor", "qat_int8")
# The weight tfmot prunes / clusters in each layer type (its PruneRegistry and ClusteringRegistry).
# DepthwiseConv2D is registered with no such weight: tfmot leaves depthwise kernels dense.
COMPRESSED_WEIGHTS = {"Conv1D": "kernel", "Conv2D": "kernel", "Conv3D": "kernel", "Conv2DTranspose": "kernel",
                      "Dense": "kernel", "SeparableConv2D": "pointwise_kernel"}
COVERAGE = ("the kernels of every Conv/Dense layer (pointwise kernels of separable convolutions); depthwise "
            "kernels, biases and BatchNorm are left as they are (tfmot does not prune or cluster them)")


class Unsupported(Exception):
    """tfmot cannot apply a technique to this architecture; the message says why."""


# --- sizes ---------------------------------------------------------------------

def gzip_size(data: bytes) -> int:
    """Bytes of ``data`` after gzip at level 9 (no file name, zero timestamp: reproducible)."""
    return len(gzip.compress(data, compresslevel=9, mtime=0))


def condense(exc: BaseException, limit: int = 300) -> str:
    """``Type: first sentence of the message`` on one line, at most ``limit`` characters."""
    text = re.sub(r"\s+", " ", str(exc)).strip()
    text = text.split(" Call arguments received")[0]  # Keras appends the call's arguments: noise here
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- TFLite conversion ---------------------------------------------------------

def to_tflite(model, mode: str, representative: Callable[[], Iterable[list[np.ndarray]]] | None = None) -> bytes:
    """Convert a Keras model to a TFLite flatbuffer in one of :data:`TFLITE_MODES`.

    ``representative`` (needed for ``int8_full``) returns an iterator of ``[batch]``
    lists, each batch a float32 array of shape ``(1, H, W, 3)`` preprocessed like the
    model's input.
    """
    from core.models.tfkeras import tf

    if mode not in TFLITE_MODES:
        raise ValueError(f"unknown TFLite mode {mode!r}; known: {', '.join(TFLITE_MODES)}")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "int8_dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode in ("int8_full", "int8_full_per_tensor"):
        if representative is None:
            raise ValueError("full-integer quantisation needs a representative dataset")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        if mode == "int8_full_per_tensor":
            converter._experimental_disable_per_channel = True  # the converter's (private) switch
    elif mode == "qat_int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    with warnings.catch_warnings():
        # Full-integer conversions warn that no input statistics were given: the input
        # scale comes from calibration (or from QAT), which is what is wanted here.
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        return bytes(converter.convert())


# --- tfmot ---------------------------------------------------------------------

def is_compressible(layer) -> bool:
    """Whether tfmot prunes / clusters a weight of this layer (see :data:`COMPRESSED_WEIGHTS`)."""
    return type(layer).__name__ in COMPRESSED_WEIGHTS


def _compressed_weights(model) -> list[np.ndarray]:
    out = []
    for layer in model.layers:
        attr = COMPRESSED_WEIGHTS.get(type(layer).__name__)
        for w in layer.weights if attr else ():
            if w.name.split("/")[-1].split(":")[0] == attr:
                out.append(w.numpy())
    return out


def kernel_sparsity(model) -> float:
    """Fraction of exactly-zero values in the weights tfmot compresses."""
    weights = _compressed_weights(model)
    total = sum(w.size for w in weights)
    return sum(int(np.sum(w == 0)) for w in weights) / total if total else 0.0


def compressed_share(model) -> float:
    """The weights tfmot compresses as a fraction of all the model's parameters."""
    total = model.count_params()
    return sum(w.size for w in _compressed_weights(model)) / total if total else 0.0


def max_unique_kernel_values(model) -> int:
    """The largest number of distinct values in any weight tfmot compresses."""
    return max((int(np.unique(w).size) for w in _compressed_weights(model)), default=0)


def _wrap(model, wrap_layer: Callable, what: str):
    """Clone ``model`` with ``wrap_layer`` applied to its compressible layers.

    Any exception tfmot raises while wrapping or cloning means it cannot handle this
    architecture: it becomes :class:`Unsupported`.
    """
    from core.models.tfkeras import keras

    wrapped = []
    # tfmot only wraps trainable weights: unfreeze what training froze (BatchNorm is set later).
    _set_trainable(model, batchnorm=False)

    def clone_function(layer):
        if is_compressible(layer):
            wrapped.append(layer.name)
            return wrap_layer(layer)
        return layer

    try:
        clone = keras.models.clone_model(model, clone_function=clone_function)
    except Exception as exc:  # noqa: BLE001 - tfmot raises ValueError, TypeError, AttributeError, ...
        raise Unsupported(f"tfmot {what}: {condense(exc)}") from exc
    if not wrapped:
        raise Unsupported(f"tfmot {what}: the model has no layer whose weights tfmot can {what} "
                          f"({', '.join(COMPRESSED_WEIGHTS)})")
    return clone, wrapped


def _coverage(model) -> dict:
    return {"layers": COVERAGE, "share_of_parameters": round(compressed_share(model), 4)}


class FineTune:
    """How a compressed model is fine-tuned: training images, epochs, optimiser."""

    def __init__(self, x: np.ndarray | None, y: np.ndarray | None, epochs: int, batch_size: int,
                 learning_rate: float, seed: int = 0):
        self.x, self.y = x, y
        self.epochs = epochs if x is not None and len(x) else 0
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.seed = seed

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.x) / self.batch_size) if self.epochs else 0

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    def describe(self, batchnorm: str | None = None) -> dict:
        if not self.epochs:
            return {"images": 0, "epochs": 0, "note": "no fine-tune: compression applied to the weights as they are"}
        return {"images": int(len(self.x)), "epochs": self.epochs, "batch_size": self.batch_size,
                "steps": self.total_steps, "optimizer": "adam", "learning_rate": self.learning_rate,
                "loss": "sparse_categorical_crossentropy", "batchnorm": batchnorm or "frozen (inference mode)",
                "augmentation": "none (original training images)", "layers": "all trainable"}


def _fit(model, tune: FineTune, label: str, emit: Emit, callbacks: list | None = None) -> list[dict]:
    """Fine-tune ``model`` as ``tune`` says, with progress lines; returns per-epoch loss/accuracy."""
    from core.models.tfkeras import keras

    if not tune.epochs:
        return []
    keras.utils.set_random_seed(tune.seed)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=tune.learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history: list[dict] = []

    class Progress(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = self.last = time.monotonic()
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            now = time.monotonic()
            if now - self.last >= 15 and batch + 1 < tune.steps_per_epoch:
                self.last = now
                rate = (batch + 1) / (now - self.started)
                emit(f"{label}: fine-tune epoch {self.epoch + 1}/{tune.epochs}, batch {batch + 1}/"
                     f"{tune.steps_per_epoch}, ETA of the epoch "
                     f"{format_seconds((tune.steps_per_epoch - batch - 1) / rate)}")

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            row = {"epoch": epoch + 1, "loss": float(logs.get("loss", float("nan"))),
                   "accuracy": float(logs.get("accuracy", float("nan"))),
                   "seconds": round(time.monotonic() - self.started, 2)}
            history.append(row)
            emit(f"{label}: fine-tune epoch {epoch + 1}/{tune.epochs} on {len(tune.x)} training images: "
                 f"loss {row['loss']:.4f}, accuracy {row['accuracy']:.3f} ({row['seconds']:.0f}s)")

    model.fit(tune.x, tune.y, batch_size=tune.batch_size, epochs=tune.epochs, shuffle=True, verbose=0,
              callbacks=[Progress()] + list(callbacks or []))
    return history




def _set_trainable(model, batchnorm: bool) -> None:
    """Every layer trainable; BatchNorm too only when ``batchnorm`` (else frozen: inference mode)."""
    model.trainable = True
    for layer in model.layers:
        layer.trainable = batchnorm or not is_batchnorm(layer)


BATCHNORM_MODES = {
    "frozen": "frozen (inference mode, the stored statistics)",
    "recalibrate": "trained (batch statistics), moving statistics recalibrated on the fine-tune images afterwards",
}


def _check_batchnorm_mode(mode: str) -> bool:
    """True for 'recalibrate'; raises on an unknown mode."""
    if mode not in BATCHNORM_MODES:
        raise ValueError(f"batchnorm must be one of {', '.join(BATCHNORM_MODES)}, not {mode!r}")
    return mode == "recalibrate"


def recalibrate_batchnorm(model, x: np.ndarray | None, batch_size: int = 32) -> dict:
    """Re-estimate every BatchNorm's moving mean and variance on ``x`` (weights unchanged).

    Pruning or clustering changes what each BatchNorm sees; its stored statistics, from
    the original weights, no longer fit. One pass over ``x`` in batches of ``batch_size``
    with :func:`core.models.batchnorm.reestimate_batchnorm_statistics` (moving statistics
    = mean of the per-batch ones, dropout off) fixes that; gamma and beta and every other
    weight stay as they are. Returns the details recorded in deployment.json.
    """
    if x is None or not len(x):
        return {"batchnorm_recalibrated": False}
    used = reestimate_batchnorm_statistics(model, (x[i:i + batch_size] for i in range(0, len(x), batch_size)))
    if not used:  # no BatchNorm layer
        return {"batchnorm_recalibrated": False}
    return {"batchnorm_recalibrated": True, "recalibration_images": int(len(x))}


def prune(model, sparsity: float, tune: FineTune, label: str, emit: Emit, batchnorm: str = "recalibrate"):
    """Magnitude-prune ``model`` to ``sparsity``, fine-tune, strip; returns ``(model, details)``.

    With a fine-tune the sparsity rises from 0 to the target over the first half of the
    steps (``PolynomialDecay``) and the second half recovers at the target. ``batchnorm``
    is one of :data:`BATCHNORM_MODES`. Without a fine-tune ``ConstantSparsity`` prunes in
    a single step at learning rate 0.
    """
    import tensorflow_model_optimization as tfmot

    sk = tfmot.sparsity.keras
    if tune.epochs:
        total = tune.total_steps
        end = max(1, total // 2)
        schedule = sk.PolynomialDecay(initial_sparsity=0.0, final_sparsity=sparsity, begin_step=0, end_step=end,
                                      frequency=max(1, end // 4))
        schedule_text = f"PolynomialDecay 0 -> {sparsity:g} over steps 0..{end} (pruning every {max(1, end // 4)}), " \
                        f"then {total - end} steps at the target"
    else:
        schedule = sk.ConstantSparsity(sparsity, begin_step=0, frequency=1)
        schedule_text = f"ConstantSparsity {sparsity:g} applied in one step (learning rate 0)"
    pruned, wrapped = _wrap(model, lambda layer: sk.prune_low_magnitude(layer, pruning_schedule=schedule), "pruning")
    recalibrate = _check_batchnorm_mode(batchnorm) and bool(tune.epochs)
    started = time.monotonic()
    _set_trainable(pruned, batchnorm=recalibrate)
    if tune.epochs:
        history = _fit(pruned, tune, label, emit, [sk.UpdatePruningStep()])
    else:
        history = _one_step(pruned, [sk.UpdatePruningStep()])
    stripped = sk.strip_pruning(pruned)
    recal = recalibrate_batchnorm(stripped, tune.x if recalibrate else None, tune.batch_size)
    seconds = time.monotonic() - started
    return stripped, {"target_sparsity": sparsity, "achieved_sparsity": round(kernel_sparsity(stripped), 4),
                      "schedule": schedule_text, "layers_pruned": len(wrapped),
                      **_coverage(stripped),
                      "fine_tune": tune.describe(batchnorm=BATCHNORM_MODES[batchnorm] if tune.epochs else None),
                      "fine_tune_history": history, **recal, "fine_tune_seconds": round(seconds, 1)}


def _one_step(model, callbacks: list) -> list:
    """One training step at learning rate 0 on a blank image: lets pruning wrappers apply their masks."""
    from core.models.tfkeras import keras

    shape = (1,) + tuple(model.input_shape[1:])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss="sparse_categorical_crossentropy")
    model.fit(np.zeros(shape, np.float32), np.zeros((1,), np.int64), epochs=1, verbose=0, callbacks=callbacks)
    return []


def cluster(model, clusters: int, tune: FineTune, label: str, emit: Emit, batchnorm: str = "frozen"):
    """Cluster every compressible kernel into ``clusters`` shared values, fine-tune, strip.

    ``batchnorm`` is one of :data:`BATCHNORM_MODES`.
    """
    import tensorflow_model_optimization as tfmot

    ck = tfmot.clustering.keras
    init = ck.CentroidInitialization.KMEANS_PLUS_PLUS
    clustered, wrapped = _wrap(
        model, lambda layer: ck.cluster_weights(layer, number_of_clusters=clusters, cluster_centroids_init=init),
        "clustering")
    recalibrate = _check_batchnorm_mode(batchnorm) and bool(tune.epochs)
    _set_trainable(clustered, batchnorm=recalibrate)
    started = time.monotonic()
    history = _fit(clustered, tune, label, emit)
    stripped = ck.strip_clustering(clustered)
    recal = recalibrate_batchnorm(stripped, tune.x if recalibrate else None, tune.batch_size)
    seconds = time.monotonic() - started
    return stripped, {"clusters": clusters, "centroid_init": "kmeans++", "layers_clustered": len(wrapped),
                      **_coverage(stripped),
                      "max_unique_values_per_kernel": max_unique_kernel_values(stripped),
                      "fine_tune": tune.describe(batchnorm=BATCHNORM_MODES[batchnorm] if tune.epochs else None),
                      "fine_tune_history": history, **recal, "fine_tune_seconds": round(seconds, 1)}


def _quantize_model(model):
    """tfmot's default 8-bit quantisation-aware wrapping of the whole model."""
    import tensorflow_model_optimization as tfmot

    return tfmot.quantization.keras.quantize_model(model)


def calibrate_quantizers(qat, x: np.ndarray, batch_size: int = 32) -> dict:
    """Set the activation ranges of a fresh QAT model from ``x`` before it trains.

    tfmot's activation quantizers start at [-6, 6] and follow the observed range with an
    exponential moving average of decay 0.999, which takes thousands of steps to settle;
    a short fine-tune would train, and the converter would quantise, with ranges that
    are still mostly the initial guess. One pass over ``x`` in training mode (dropout
    off, BatchNorm frozen) with the decay set so that each range becomes the mean of
    the per-batch ranges fixes that; the fine-tune then continues with tfmot's own decay.
    """
    if x is None or not len(x):
        return {"quantizer_ranges": "tfmot's initial [-6, 6], not calibrated (no data)"}
    from tensorflow_model_optimization.python.core.quantization.keras import quant_ops

    original = quant_ops.MovingAvgQuantize
    decay = {"value": 0.0}

    def moving_avg_quantize(*args, **kwargs):
        kwargs["ema_decay"] = decay["value"]
        return original(*args, **kwargs)

    quant_ops.MovingAvgQuantize = moving_avg_quantize
    try:
        with dropout_off(qat):
            for i, start in enumerate(range(0, len(x), batch_size)):
                decay["value"] = i / (i + 1)
                qat(x[start:start + batch_size], training=True)  # eager: every call sees the decay set here
    finally:
        quant_ops.MovingAvgQuantize = original
    return {"quantizer_ranges": f"calibrated on the {len(x)} fine-tune images (mean of per-batch ranges) before "
                                "training"}


def quantize_aware(model, tune: FineTune, label: str, emit: Emit):
    """Quantisation-aware training: ``quantize_model``, range calibration, a short fine-tune."""
    _set_trainable(model, batchnorm=False)
    try:
        qat = _quantize_model(model)
    except Exception as exc:  # noqa: BLE001 - tfmot raises many types for layers it cannot quantise
        hint = (" (layers written as raw TensorFlow ops, TFOpLambda, e.g. MobileNetV3's hard-swish, have no "
                "tfmot quantisation config)") if "TFOpLambda" in str(exc) else ""
        raise Unsupported(f"tfmot quantize_model: {condense(exc)}{hint}") from exc
    _set_trainable(qat, batchnorm=False)
    started = time.monotonic()
    calibration = calibrate_quantizers(qat, tune.x if tune.epochs else None, tune.batch_size)
    history = _fit(qat, tune, label, emit)
    seconds = time.monotonic() - started
    return qat, {"scheme": "tfmot default 8-bit (quantize_model on the whole model)", **calibration,
                 "fine_tune": tune.describe(), "fine_tune_history": history, "fine_tune_seconds": round(seconds, 1)}
