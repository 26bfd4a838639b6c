"""Running and timing models: LiteRT inference, batch-1 latency, LiteRT's matmul peak.

* :class:`LiteModel` runs a TFLite flatbuffer through the LiteRT interpreter
  (``ai_edge_litert.interpreter.Interpreter``, never ``tf.lite.Interpreter``): it
  quantises float inputs for int8/uint8 input tensors with the tensor's scale and zero
  point, dequantises quantised outputs, predicts a whole test set at batch 1 and times
  ``invoke()`` at batch 1.
* :func:`keras_latency` times the Keras model at batch 1 (a ``tf.function``, TensorFlow's
  default thread pools, i.e. all cores).
* :func:`litert_matmul_peak` measures the float32 and int8 matmul throughput of LiteRT itself
  (one FullyConnected layer), the ceiling int8 variants are compared with; the model's FLOPs
  and the machine's NumPy matmul peak come from :mod:`core.models.compute`.

Latency is wall time of ``invoke()`` alone, input set beforehand: ``warmup`` untimed
runs, then ``runs`` timed ones; median and 90th percentile are reported. Timings on a
shared machine are noisy: the 1-minute load average is recorded next to each figure.
"""

from __future__ import annotations

import time
import warnings
from typing import Callable

import numpy as np

from core.models.compute import all_cores, load_average


def summarise(times_s: list[float], warmup: int, threads: int | None = None) -> dict:
    """Median, p90, mean, min (milliseconds) of timed runs."""
    ms = np.asarray(times_s, dtype=np.float64) * 1000.0
    out = {"median_ms": round(float(np.median(ms)), 3), "p90_ms": round(float(np.percentile(ms, 90)), 3),
           "mean_ms": round(float(ms.mean()), 3), "min_ms": round(float(ms.min()), 3),
           "runs": int(ms.size), "warmup": int(warmup), "load_average_1min": load_average()}
    if threads is not None:
        out["threads"] = int(threads)
    return out


# --- LiteRT ----------------------------------------------------------------------

class LiteModel:
    """One TFLite model loaded in the LiteRT interpreter."""

    def __init__(self, content: bytes, threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        self.threads = threads or all_cores()
        self.interpreter = Interpreter(model_content=content, num_threads=self.threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    @property
    def input_dtype(self) -> str:
        return np.dtype(self.input["dtype"]).name

    @property
    def output_dtype(self) -> str:
        return np.dtype(self.output["dtype"]).name

    def quantization(self) -> dict:
        """Scale and zero point of the input and output tensors (0 and 0 for float tensors)."""
        qi, qo = self.input["quantization"], self.output["quantization"]
        return {"input": {"scale": float(qi[0]), "zero_point": int(qi[1])},
                "output": {"scale": float(qo[0]), "zero_point": int(qo[1])}}

    def prepare(self, x: np.ndarray) -> np.ndarray:
        """A float32 preprocessed batch as the input tensor wants it (quantised for integer inputs)."""
        dtype = np.dtype(self.input["dtype"])
        if dtype.kind == "f":
            return x.astype(dtype)
        scale, zero_point = self.input["quantization"]
        if not scale:
            raise ValueError("integer input tensor without quantisation parameters")
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)

    def _result(self) -> np.ndarray:
        y = self.interpreter.get_tensor(self.output["index"])
        if np.dtype(self.output["dtype"]).kind in "iu":
            scale, zero_point = self.output["quantization"]
            y = (y.astype(np.float32) - zero_point) * scale
        return y.astype(np.float32)

    def predict(self, x: np.ndarray, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Outputs (dequantised) for every row of ``x``, one image at a time (batch 1)."""
        q = self.prepare(x)
        out = []
        idx = self.input["index"]
        for i in range(len(q)):
            self.interpreter.set_tensor(idx, q[i:i + 1])
            self.interpreter.invoke()
            out.append(self._result()[0])
            if progress:
                progress(i + 1, len(q))
        return np.stack(out)

    def latency(self, sample: np.ndarray, runs: int, warmup: int) -> dict:
        """Batch-1 latency of ``invoke()`` on ``sample`` (one preprocessed float32 image)."""
        self.interpreter.set_tensor(self.input["index"], self.prepare(sample[None] if sample.ndim == 3 else sample))
        for _ in range(warmup):
            self.interpreter.invoke()
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            self.interpreter.invoke()
            times.append(time.perf_counter() - t)
        return summarise(times, warmup, self.threads)


def paired_latency(models: dict[str, "LiteModel"], sample: np.ndarray, runs: int, warmup: int) -> dict[str, dict]:
    """Batch-1 latency of several models timed alternately, one ``invoke()`` each in turn.

    On a shared machine the load changes from minute to minute; alternating makes every
    model see the same load, so their ratio is fair even when the absolute figures drift.
    """
    batch = sample[None] if sample.ndim == 3 else sample
    for m in models.values():
        m.interpreter.set_tensor(m.input["index"], m.prepare(batch))
        for _ in range(warmup):
            m.interpreter.invoke()
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(runs):
        for name, m in models.items():
            t = time.perf_counter()
            m.interpreter.invoke()
            times[name].append(time.perf_counter() - t)
    return {name: summarise(times[name], warmup, models[name].threads) for name in models}


def keras_latency(model, sample: np.ndarray, runs: int, warmup: int) -> dict:
    """Batch-1 latency of the Keras model (``tf.function``, inference mode, default thread pools)."""
    from core.models.tfkeras import tf

    fn = tf.function(lambda x: model(x, training=False))
    x = tf.constant(sample[None] if sample.ndim == 3 else sample, dtype=tf.float32)
    for _ in range(max(warmup, 1)):  # the first call traces the graph
        fn(x).numpy()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn(x).numpy()
        times.append(time.perf_counter() - t)
    out = summarise(times, warmup)
    out.update(threads="TensorFlow default (all cores)", how="tf.function of model(x, training=False), batch 1")
    return out


# --- the machine's matmul peak in LiteRT ---------------------------------------------

def litert_matmul_peak(n: int = 512, runs: int = 20, threads: int | None = None) -> dict:
    """Dense ``n x n`` by ``n x n`` matmul throughput in LiteRT, float32 and int8 (GOP/s).

    One FullyConnected layer (batch ``n``) converted to TFLite as float32 and as
    full-integer int8, timed with 1 thread and with ``threads``: the ceiling of the same
    runtime the variants run in. int8 variants are compared with the int8 figure (int8
    dot-product instructions do several times the float32 work per cycle).
    """
    from core.models.tfkeras import keras, tf

    threads = threads or all_cores()
    inputs = keras.Input((n,), batch_size=n)
    model = keras.Model(inputs, keras.layers.Dense(n, use_bias=False)(inputs))
    rng = np.random.default_rng(0)
    flops = 2.0 * n ** 3
    out: dict = {"n": n, "op": "FullyConnected (n x n input, n x n weights), XNNPACK",
                 "flops_per_matmul": int(flops)}
    for dtype in ("float32", "int8"):
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        if dtype == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([rng.standard_normal((n, n)).astype(np.float32)]
                                                        for _ in range(2))
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
            content = converter.convert()
        out[dtype] = {}
        for key, limit in (("threads_1", 1), ("threads_all", threads)):
            lm = LiteModel(content, limit)
            stats = lm.latency(rng.standard_normal((n, n)).astype(np.float32) if dtype == "float32"
                               else np.zeros((n, n), np.float32), runs, 3)
            out[dtype][key] = {"threads": limit, "peak_gflops_per_s": round(flops / stats["min_ms"] / 1e6, 2),
                               "median_gflops_per_s": round(flops / stats["median_ms"] / 1e6, 2),
                               "repetitions": runs, "load_average_1min": stats["load_average_1min"]}
    keras.backend.clear_session()
    return out


def efficiency(gflops: float | None, latency: dict | None, peak: dict | None, peak_kind: str = "") -> dict | None:
    """Achieved GFLOP/s (model FLOPs / median latency) and its fraction of the matmul peak."""
    if not gflops or not latency or not latency.get("median_ms") or not peak:
        return None
    achieved = gflops / (latency["median_ms"] / 1000.0)
    return {"achieved_gflops_per_s": round(achieved, 3), "peak_gflops_per_s": peak["peak_gflops_per_s"],
            "peak": peak_kind, "fraction_of_peak": round(achieved / peak["peak_gflops_per_s"], 4)}
