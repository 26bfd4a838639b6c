"""What a model costs and what the machine can do: FLOPs from layer shapes, the matmul peak.

* :func:`count_flops` counts the multiply-accumulates of every Conv/DepthwiseConv/
  SeparableConv/Dense layer analytically from the layer shapes (FLOPs = 2 x MACs; bias
  additions, BatchNorm, activations, pooling and element-wise ops are not counted:
  they are a few percent of the total for these networks).
* :func:`training_flops` estimates one training sample's forward plus backward FLOPs from
  the same counts and which layers are trainable (see :data:`TRAINING_FLOPS_METHOD`).
* :func:`matmul_peak` measures the machine's dense float32 matrix-multiply throughput
  (NumPy ``matmul``, i.e. its BLAS) with one thread and with all of them;
  :func:`training_peak` measures it once per process with the thread count TensorFlow uses.
* :func:`stage_compute` puts them together for one training stage: FLOPs per epoch, achieved
  GFLOP/s over the median epoch, and its fraction of the peak.

Keras models are read through their layers' attributes only: TensorFlow itself is imported
(through :mod:`core.models.tfkeras`) only to ask for its thread count.
"""

from __future__ import annotations

import functools
import os
import time

import numpy as np

FLOPS_METHOD = ("analytic: multiply-accumulates of Conv/DepthwiseConv/SeparableConv/Dense layers from their "
                "kernel and output shapes, FLOPs = 2 x MACs; biases, BatchNorm, activations, pooling and "
                "element-wise ops not counted")
TRAINING_FLOPS_METHOD = ("forward FLOPs as counted for inference (Conv/Dense layers, 2 x MACs) plus backward: "
                         "2 x forward for layers with trainable weights (input and weight gradients), 1 x forward "
                         "for frozen layers above the first trainable one (input gradients only), none below it; "
                         "validation samples forward only; achieved = FLOPs per epoch / median epoch seconds")


def all_cores() -> int:
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def load_average() -> float | None:
    """The machine's 1-minute load average (None where the system does not tell)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


# --- FLOPs ----------------------------------------------------------------------------

def _flat_layers(model):
    for layer in model.layers:
        inner = getattr(layer, "layer", None)  # tfmot wrappers
        if hasattr(layer, "layers") and not inner:
            yield from _flat_layers(layer)
        else:
            yield inner or layer


def _shape(shape) -> tuple:
    if isinstance(shape, list):  # a layer called once has one output shape
        shape = shape[0]
    return tuple(shape)


def layer_macs(layer) -> tuple[str, int] | None:
    """``(layer type, multiply-accumulates of one sample)`` of a Conv/Dense layer; None for any other layer."""
    kind = type(layer).__name__
    try:
        out = _shape(layer.output_shape)
        inp = _shape(layer.input_shape)
    except (AttributeError, RuntimeError):
        return None
    spatial_out = int(np.prod([d for d in out[1:-1]])) if len(out) > 2 else 1
    if kind == "DepthwiseConv2D":
        macs = spatial_out * out[-1] * int(np.prod(layer.kernel_size))
    elif kind == "SeparableConv2D":
        cin = inp[-1]
        macs = spatial_out * cin * layer.depth_multiplier * int(np.prod(layer.kernel_size)) \
            + spatial_out * cin * layer.depth_multiplier * out[-1]
    elif kind in ("Conv1D", "Conv2D", "Conv3D", "Conv2DTranspose"):
        groups = getattr(layer, "groups", 1) or 1
        spatial = spatial_out if kind != "Conv2DTranspose" else int(np.prod(inp[1:-1]))
        macs = spatial * out[-1] * int(np.prod(layer.kernel_size)) * inp[-1] // groups
    elif kind == "Dense":
        macs = int(np.prod(inp[1:-1])) * inp[-1] * out[-1] if len(inp) > 2 else inp[-1] * out[-1]
    else:
        return None
    return kind, int(macs)


def count_flops(model) -> dict:
    """Multiply-accumulates and FLOPs of one inference (batch 1); see :data:`FLOPS_METHOD`."""
    macs_by_type: dict[str, int] = {}
    for layer in _flat_layers(model):
        counted = layer_macs(layer)
        if counted is not None:
            macs_by_type[counted[0]] = macs_by_type.get(counted[0], 0) + counted[1]
    macs = sum(macs_by_type.values())
    return {"macs": int(macs), "flops": int(2 * macs), "gflops": round(2 * macs / 1e9, 4),
            "macs_by_layer_type": macs_by_type, "method": FLOPS_METHOD}


def training_flops(model) -> dict:
    """Forward and backward FLOPs of one training sample of ``model``; see :data:`TRAINING_FLOPS_METHOD`.

    Layers are taken in the model's (topological) order: the backward pass starts at the loss
    and stops at the first layer with trainable weights, so frozen layers below it cost nothing.
    """
    forward = backward = 0
    above_first_trainable = False
    for layer in _flat_layers(model):
        trainable = bool(layer.trainable_weights)
        above_first_trainable = above_first_trainable or trainable
        counted = layer_macs(layer)
        if counted is None:
            continue
        flops = 2 * counted[1]
        forward += flops
        backward += 2 * flops if trainable else (flops if above_first_trainable else 0)
    return {"forward_flops": int(forward), "backward_flops": int(backward), "training_flops": int(forward + backward)}


# --- the machine's matmul peak ------------------------------------------------------

def matmul_peak(n: int = 1024, seconds: float = 1.0, threads: int | None = None) -> dict:
    """Dense float32 ``n x n`` matmul throughput (GFLOP/s) with 1 thread and with ``threads``.

    Each setting multiplies two random matrices repeatedly for about ``seconds``; the peak
    is the fastest repetition (2 n^3 FLOPs each), the median is given too.
    """
    from threadpoolctl import threadpool_info, threadpool_limits

    threads = threads or all_cores()
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    flops = 2.0 * n ** 3
    out: dict = {"n": n, "dtype": "float32", "flops_per_matmul": int(flops)}
    for key, limit in (("threads_1", 1), ("threads_all", threads)):
        with threadpool_limits(limits=limit, user_api="blas"):
            np.matmul(a, b)  # warm-up
            times = []
            started = time.perf_counter()
            while time.perf_counter() - started < seconds or len(times) < 3:
                t = time.perf_counter()
                np.matmul(a, b)
                times.append(time.perf_counter() - t)
        out[key] = {"threads": limit, "peak_gflops_per_s": round(flops / min(times) / 1e9, 2),
                    "median_gflops_per_s": round(flops / float(np.median(times)) / 1e9, 2),
                    "repetitions": len(times), "load_average_1min": load_average()}
    blas = [f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')})"
            for i in threadpool_info() if i.get("user_api") == "blas"]
    out["library"] = f"numpy {np.__version__} matmul, BLAS: {', '.join(blas) or 'unknown'}"
    return out


def tensorflow_threads() -> int:
    """The intra-op thread count TensorFlow runs ops with (its default, 0, means every core)."""
    from core.models.tfkeras import tf

    return tf.config.threading.get_intra_op_parallelism_threads() or all_cores()


@functools.lru_cache(maxsize=None)
def training_peak(threads: int) -> dict:
    """The float32 matmul peak with ``threads`` threads, measured once per process (about a second)."""
    peak = matmul_peak(1024, 0.5, threads)
    return {**peak["threads_all"], "library": peak["library"]}


def stage_compute(model, train_samples: int, val_samples: int, epoch_seconds: list[float], peak: dict) -> dict:
    """A training stage against the machine's limit: FLOPs per epoch, achieved GFLOP/s, fraction of ``peak``.

    ``model`` is what the stage trained (trainable flags as in training), ``train_samples`` the samples one
    epoch shows it, ``val_samples`` the samples validated after each epoch (forward only), ``epoch_seconds``
    the stage's epoch times (the median is used) and ``peak`` an entry of :func:`training_peak`.
    """
    flops = training_flops(model)
    per_epoch = flops["training_flops"] * train_samples + flops["forward_flops"] * val_samples
    seconds = float(np.median(epoch_seconds)) if epoch_seconds else None
    achieved = per_epoch / seconds / 1e9 if seconds else None
    peak_rate = peak.get("peak_gflops_per_s")
    return {"forward_flops_per_sample": flops["forward_flops"], "training_flops_per_sample": flops["training_flops"],
            "train_samples_per_epoch": int(train_samples), "val_samples_per_epoch": int(val_samples),
            "gflops_per_epoch": _significant(per_epoch / 1e9),
            "median_epoch_seconds": round(seconds, 3) if seconds else None,
            "achieved_gflops_per_s": _significant(achieved),
            "peak_gflops_per_s": peak_rate, "peak_threads": peak.get("threads"), "peak_library": peak.get("library"),
            "fraction_of_peak": _significant(achieved / peak_rate) if achieved is not None and peak_rate else None,
            "method": TRAINING_FLOPS_METHOD}


def _significant(value: float | None, digits: int = 4) -> float | None:
    """``value`` to ``digits`` significant digits (a tiny head's GFLOPs keep theirs; None stays None)."""
    return None if value is None else float(f"{value:.{digits}g}")
