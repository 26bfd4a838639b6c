"""Deployment-size evaluation: every compressed variant of a trained classifier, its accuracy and latency.

The question it answers: which model, in which form, fits a device, and what does that
cost in accuracy? :func:`deploy_run` takes a complete run folder and measures these
variants of its classifier (backbone + head):

============================  ==========  ==============================================
variant                       family      what
============================  ==========  ==============================================
``keras``                     keras       ``model.keras`` as trained (the parent)
``tflite_float32``            tflite      plain TFLite conversion
``tflite_float16``            tflite      float16 weights
``tflite_int8_dynamic``       tflite      dynamic-range quantisation (int8 weights)
``tflite_int8_full``          tflite      full-integer int8, int8 input and output,
                                          calibrated on training images (recorded)
``tflite_int8_per_tensor``    tflite      the same with per-tensor weight scales
``pruned_50``, ``pruned_80``  pruned      tfmot magnitude pruning + short fine-tune,
                                          stripped, float32 TFLite (pays off gzipped)
``clustered_16``, ``_32``     clustered   tfmot weight clustering + short fine-tune,
                                          stripped, float32 TFLite
``qat_int8``                  qat         tfmot quantisation-aware training, short
                                          fine-tune, int8 TFLite (int8 input/output)
============================  ==========  ==============================================

Every TFLite variant is evaluated on the parent's test split (the ids and labels of the
run's ``predictions.csv``, images from the dataset folder in ``config.json``) through the
LiteRT interpreter at batch 1, with the backbone's own preprocessing
(:func:`core.models.preprocess.preprocess`; for int8 inputs the preprocessed image is quantised
with the input tensor's scale and zero point). A variant tfmot cannot build for an
architecture is recorded ``unsupported`` with the reason; one that breaks for another
reason is ``failed`` with the reason; nothing is dropped. A conversion that works but
loses accuracy shows it in ``delta_vs_parent`` and ``warnings``.

Results go to ``<run>/deploy/deployment.json`` (schema below) with the ``.tflite`` files
and ``predictions.csv`` (each variant's predicted class per test image, for McNemar)
beside it, written atomically after every variant. Resumable: a variant recorded ``ok``
whose file exists is not measured again; a changed ``model.keras`` starts afresh.

:func:`deploy_architecture` measures the same variants for a backbone without trained
weights (random initialisation, no data): sizes, latency and FLOPs, accuracy ``null``
with the reason.

``deployment.json`` (schema 1)::

    schema_version, kind ("run" | "architecture"), backbone, input_size, classes,
    parent        {model, model_sha256, bytes, metrics {accuracy, balanced_accuracy, macro_f1}, source}
    test_set      {source, n, image_root, preprocessing} or null
    representative_dataset {split, n, selection, preprocessing, ids}
    fine_tune_data {split, n, selection, ids}
    machine, libraries, matmul_peak {threads_1, threads_all: {peak_gflops_per_s, ...}, n, library,
                                     litert {float32, int8: {threads_1, threads_all}}},
    flops {macs, flops, gflops, method}, keras_latency {median_ms, p90_ms, ...},
    settings, timings_s, updated_at,
    variants: [{name, family, status (ok|unsupported|failed), reason, file (relative to
      deploy/), bytes, gzip_bytes, ratio_to_keras, ratio_to_tflite_float32,
      gzip_ratio_to_tflite_float32, input_dtype, output_dtype, quantization,
      metrics {accuracy, balanced_accuracy, macro_f1} | null, metrics_reason,
      delta_vs_parent {...} | null, agreement_with_parent (share of test images both predict alike),
      accuracy_change_vs_parent {difference, low, high, p_value, n, unit, units, n_resamples, seed} | null
      (variant minus parent, paired bootstrap over images or the audit's groups of near-copies),
      latency {threads_1, threads_all: {median_ms, p90_ms, mean_ms, min_ms, runs, warmup,
      threads, load_average_1min}}, gflops, achieved_gflops_per_s, fraction_of_peak
      (both 1 thread, against the 1-thread peak: the float32 matmul peak, or LiteRT's int8
      matmul peak for int8-input models), efficiency {threads_1, threads_all: {achieved_gflops_per_s,
      peak_gflops_per_s, peak, fraction_of_peak}}, settings, warnings, machine, measured_at, timings_s}]
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import signal
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np

from core.artifacts.config import RunConfig
from core.artifacts.layout import DEPLOY_PREDICTIONS_FILE, DEPLOYMENT_FILE, MODEL_FILE
from core.artifacts.provenance import library_versions, machine
from core.artifacts.records import DeploymentRecord, RecordError, VariantPredictions
from core.artifacts.runs import RunFolder
from core.artifacts.scoring import headline_metrics
from core.artifacts.storage import atomic_save, atomic_write_bytes, atomic_write_text, json_default, utc_timestamp
from core.data.sampling import balanced_sample
from core.deploy import compression
from core.deploy import latency as lat
from core.deploy.source import DeployError, Source, load_images, run_source, synthetic_images
from core.deploy.variants import DeployOptions, Variant, variant_plan
from core.evaluate.variant_change import CHANGE_FIELD, variant_change
from core.models import compute
from core.models.backbones import build_backbone, get_spec
from core.models.classifier import build_classifier, build_head_layers
from core.models.loading import ModelFileError, load_model
from core.progress import Emit, Throughput

# Below this change in accuracy a variant gets a warning (it may not be usable as is).
ACCURACY_WARNING_DROP = 0.05
NO_WEIGHTS_REASON = "ImageNet weights not available here when measured"


# --- metrics --------------------------------------------------------------------------

def _delta(metrics: dict | None, parent: dict | None) -> dict | None:
    if not metrics or not parent:
        return None
    return {k: round(metrics[k] - parent[k], 6) for k in metrics if parent.get(k) is not None}


# --- the measurement ---------------------------------------------------------------------

def _empty_record(v: Variant) -> dict:
    return {"name": v.name, "family": v.family, "status": None, "reason": None, "file": None, "bytes": None,
            "gzip_bytes": None, "ratio_to_keras": None, "ratio_to_tflite_float32": None,
            "gzip_ratio_to_tflite_float32": None, "input_dtype": None, "output_dtype": None, "quantization": None,
            "metrics": None, "metrics_reason": None, "delta_vs_parent": None, "agreement_with_parent": None,
            CHANGE_FIELD: None,
            "latency": {"threads_1": None, "threads_all": None}, "gflops": None, "achieved_gflops_per_s": None,
            "fraction_of_peak": None, "efficiency": None, "settings": {}, "warnings": [], "machine": None,
            "measured_at": None, "timings_s": {}}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class _Deployment:
    def __init__(self, source: Source, options: DeployOptions, emit: Emit):
        self.src, self.opt, self.emit = source, options, emit
        self.threads = options.threads or compute.all_cores()
        self.plan = variant_plan(options)
        self.doc_path = source.out_dir / DEPLOYMENT_FILE
        self._model = None
        self._test_x = None
        self._repr = None
        self._tune = None
        self.predictions: dict[str, list[str]] = {}

    # -- state --------------------------------------------------------------------
    def _load_doc(self, sha: str) -> dict:
        doc = None
        if self.doc_path.is_file():
            try:
                doc = DeploymentRecord.load(self.doc_path).to_dict()
            except RecordError as exc:
                self.emit(f"deploy: {exc}; measuring afresh")
        if doc and (doc.get("parent") or {}).get("model_sha256") == sha:
            self._load_predictions()
            return doc
        if doc:
            self.emit("deploy: the model changed since the stored measurements; measuring every variant afresh")
        return DeploymentRecord(kind=self.src.kind).to_dict()

    def _load_predictions(self) -> None:
        path = self.src.out_dir / DEPLOY_PREDICTIONS_FILE
        if not path.is_file() or not self.src.has_data:
            return
        try:
            table = VariantPredictions.load(path)
        except RecordError:
            return  # measured again, like a variant without predictions
        if table.ids == self.src.test_ids:
            self.predictions.update(table.variants)

    def _write_predictions(self) -> None:
        if not self.src.has_data or not self.predictions:
            return
        names = [v.name for v in self.plan if v.name in self.predictions]
        names += [n for n in self.predictions if n not in names]
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["id", "true", "parent"] + names)
        cls = self.src.classes
        for i, rel in enumerate(self.src.test_ids):
            w.writerow([rel, cls[self.src.test_labels[i]], cls[self.src.parent_pred[i]]]
                       + [self.predictions[n][i] for n in names])
        atomic_write_text(self.src.out_dir / DEPLOY_PREDICTIONS_FILE, buf.getvalue())

    def _is_done(self, record: dict | None) -> bool:
        return bool(record and record.get("status") == "ok" and record.get("file")
                    and (self.src.out_dir / record["file"]).is_file())

    def _on_disk(self, doc: dict) -> bool:
        """True when deployment.json already holds ``doc``, its timestamp aside."""
        try:
            on_disk = DeploymentRecord.load(self.doc_path).to_dict() if self.doc_path.is_file() else None
        except RecordError:
            return False  # unreadable (as _load_doc allows): overwritten
        as_stored = json.loads(json.dumps({k: v for k, v in doc.items() if k != "updated_at"},
                                          default=json_default))  # tuples -> lists, numpy -> plain
        return on_disk is not None and {k: v for k, v in on_disk.items() if k != "updated_at"} == as_stored

    def _write(self, doc: dict, only_if_changed: bool = False) -> None:
        by_name = {r["name"]: r for r in doc["variants"]}
        ordered = [by_name.pop(v.name) for v in self.plan if v.name in by_name]
        doc["variants"] = ordered + list(by_name.values())
        _derive(doc)
        if only_if_changed and self._on_disk(doc):
            return
        doc["updated_at"] = utc_timestamp()
        DeploymentRecord.from_dict(doc, str(self.doc_path)).save(self.doc_path)

    # -- inputs --------------------------------------------------------------------
    def model(self, fresh: bool = False):
        from core.models.tfkeras import keras

        if fresh or self._model is None:
            keras.backend.clear_session()
            self._model = None
            try:
                model = load_model(self.src.model_path)
            except ModelFileError as exc:
                raise DeployError(str(exc)) from None
            if tuple(model.input_shape[1:3]) != (self.src.input_size, self.src.input_size):
                raise DeployError(f"{self.src.model_path} takes {model.input_shape[1:3]} inputs, not "
                                  f"{self.src.input_size} px as the run's config says")
            if fresh:
                return model
            self._model = model
        return self._model

    @property
    def size(self) -> int:
        return self.src.input_size

    @property
    def mode(self) -> str:
        return self.src.spec.entry.preprocessing

    def test_x(self) -> np.ndarray | None:
        if self._test_x is None and self.src.has_data:
            self.emit(f"deploy: loading the {len(self.src.test_ids)} test images ({self.size} px, "
                      f"preprocessing '{self.mode}')")
            self._test_x = load_images(self.src.image_root, self.src.test_ids, self.size, self.mode,
                                        "test images", self.emit)
        return self._test_x

    def sample(self) -> np.ndarray:
        x = self.test_x()
        return x[0] if x is not None else synthetic_images(1, self.size, self.mode, self.opt.seed)[0]

    def representative(self, doc: dict) -> np.ndarray:
        if self._repr is None:
            n = self.opt.representative_images
            if self.src.has_data:
                picked = balanced_sample(self.src.train_pairs, self.opt.seed, total=n)
                self.emit(f"deploy: loading {len(picked)} training images for full-integer calibration")
                self._repr = load_images(self.src.image_root, [p for p, _ in picked], self.size, self.mode,
                                          "representative images", self.emit)
                doc["representative_dataset"] = {
                    "split": "train", "n": len(picked), "preprocessing": self.mode,
                    "selection": f"balanced over classes (classes take turns), shuffled with seed {self.opt.seed}",
                    "ids": [p for p, _ in picked]}
            else:
                n = min(n, 16)
                self._repr = synthetic_images(n, self.size, self.mode, self.opt.seed)
                doc["representative_dataset"] = {
                    "split": None, "n": n, "preprocessing": self.mode, "ids": [],
                    "selection": f"synthetic: uniform random pixels 0..255 (seed {self.opt.seed}), preprocessed; "
                                 "no data (architecture-only measurement)"}
        return self._repr

    def fine_tune(self, doc: dict, epochs: int, lr: float) -> compression.FineTune:
        if not self.src.has_data:
            return compression.FineTune(None, None, 0, self.opt.finetune_batch_size, lr, self.opt.seed)
        if self._tune is None:
            picked = balanced_sample(self.src.train_pairs, self.opt.seed + 1, total=self.opt.finetune_images)
            self.emit(f"deploy: loading {len(picked)} training images for the compression fine-tunes")
            x = load_images(self.src.image_root, [p for p, _ in picked], self.size, self.mode,
                             "fine-tune images", self.emit)
            self._tune = (x, np.asarray([y for _, y in picked], np.int64))
            doc["fine_tune_data"] = {
                "split": "train", "n": len(picked), "preprocessing": self.mode, "augmentation": "none",
                "selection": f"balanced over classes (classes take turns), shuffled with seed {self.opt.seed + 1}",
                "ids": [p for p, _ in picked]}
        return compression.FineTune(self._tune[0], self._tune[1], epochs, self.opt.finetune_batch_size, lr,
                                    self.opt.seed)

    # -- variants ------------------------------------------------------------------
    def run(self, only: Sequence[str] | None) -> dict:
        started = time.monotonic()
        sha = _sha256(self.src.model_path)
        doc = self._load_doc(sha)
        records = {r["name"]: r for r in doc.get("variants", [])}
        names = [v.name for v in self.plan]
        if only:
            unknown = [n for n in only if n not in names]
            if unknown:
                raise DeployError(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(names)}")
        todo = [v for v in self.plan if (not only or v.name in only) and not self._is_done(records.get(v.name))]
        skipped = [v.name for v in self.plan if (not only or v.name in only) and v not in todo]
        if skipped:
            self.emit(f"deploy: already measured, kept: {', '.join(skipped)}")
        self._header(doc, sha)
        if not todo:
            self.emit(f"deploy: nothing to measure; results in {self.doc_path}")
            self._write(doc, only_if_changed=True)  # nothing measured: keep the file and its updated_at
            return doc
        model = self.model()  # a model that cannot be loaded is one line now, not after the machine's peaks
        timings = {}
        t = time.monotonic()
        self.emit(f"deploy: measuring the machine's float32 matmul peak ({self.opt.matmul_n}x{self.opt.matmul_n}, "
                  f"1 and {self.threads} threads)")
        doc["matmul_peak"] = compute.matmul_peak(self.opt.matmul_n, self.opt.matmul_seconds, self.threads)
        doc["matmul_peak"]["litert"] = lat.litert_matmul_peak(min(512, self.opt.matmul_n), threads=self.threads)
        doc["machine"] = self.machine
        timings["matmul_peak"] = round(time.monotonic() - t, 1)
        doc["flops"] = compute.count_flops(model)
        peak = doc["matmul_peak"]
        self.emit(f"deploy: {doc['flops']['gflops']:.3f} GFLOPs per inference "
                  f"({doc['flops']['macs'] / 1e6:.0f}M MACs); "
                  f"float32 matmul peak {peak['threads_1']['peak_gflops_per_s']:.1f} GFLOP/s on 1 thread, "
                  f"{peak['threads_all']['peak_gflops_per_s']:.1f} on {self.threads}; LiteRT int8 matmul "
                  f"{peak['litert']['int8']['threads_1']['peak_gflops_per_s']:.1f} GOP/s on 1 thread")
        self._write(doc)
        for i, v in enumerate(todo, 1):
            self.emit(f"[{i}/{len(todo)}] {v.name}")
            t = time.monotonic()
            with _InterruptGuard() as guard:
                record = self._measure(v, doc)
            if guard.interrupted:
                # Ctrl-C reached a converter callback, which swallowed it: the variant may be
                # half-calibrated, so it is not recorded (the next run measures it again).
                raise KeyboardInterrupt
            record["timings_s"]["total"] = round(time.monotonic() - t, 1)
            timings[v.name] = record["timings_s"]["total"]
            records[v.name] = record
            doc["variants"] = [r for r in doc["variants"] if r["name"] != v.name] + [record]
            self._write(doc)
            self._write_predictions()
            self.emit(_summary_line(record))
        timings["wall"] = round(time.monotonic() - started, 1)
        doc["timings_s"] = {"last_invocation": timings}
        self._write(doc)
        self.emit(f"deploy: results in {self.doc_path}")
        return doc

    @property
    def machine(self) -> dict:
        return machine()

    def _header(self, doc: dict, sha: str) -> None:
        src = self.src
        doc.update({
            "kind": src.kind, "source": src.label, "backbone": src.spec.name,
            "input_size": self.size, "classes": src.classes,
            "parent": {"model": src.rel(src.model_path), "model_sha256": sha,
                       "bytes": src.model_path.stat().st_size, "metrics": src.parent_metrics,
                       "source": "metrics.json of the run" if src.has_data else None,
                       "metrics_reason": src.metrics_reason},
            "test_set": ({"source": "the run's predictions.csv (ids and true labels)", "n": len(src.test_ids),
                          "image_root": str(src.image_root), "preprocessing": self.mode,
                          "inference": "LiteRT interpreter (ai_edge_litert), batch 1, all threads"}
                         if src.has_data else None),
            "libraries": library_versions(),
            "settings": self.opt.to_dict(),
        })
        doc.setdefault("representative_dataset", None)
        doc.setdefault("fine_tune_data", None)

    def _measure(self, v: Variant, doc: dict) -> dict:
        from core.models.tfkeras import keras

        record = _empty_record(v)
        record.update(machine=self.machine, measured_at=utc_timestamp())
        try:
            if v.family == "keras":
                self._measure_keras(record, doc)
            else:
                content = self._build(v, record, doc)
                self._measure_tflite(v, content, record, doc)
            record["status"] = "ok"
        except compression.Unsupported as exc:
            record.update(status="unsupported", reason=str(exc))
        except (KeyboardInterrupt, DeployError):
            raise
        except Exception as exc:  # noqa: BLE001 - recorded, the other variants go on
            record.update(status="failed", reason=compression.condense(exc, 500))
        finally:
            if v.family in ("pruned", "clustered", "qat"):
                keras.backend.clear_session()
                self._model = None
        return record

    def _measure_keras(self, record: dict, doc: dict) -> None:
        data = self.src.model_path.read_bytes()
        record.update(file=self.src.rel(self.src.model_path), bytes=len(data), gzip_bytes=compression.gzip_size(data),
                      input_dtype="float32", output_dtype="float32")
        record["settings"] = {"format": "Keras v3 .keras file (zip) as written by training"}
        if self.src.has_data:
            record["metrics"] = dict(self.src.parent_metrics)
            record["metrics_reason"] = "the parent's own test metrics (metrics.json)"
            record["delta_vs_parent"] = {k: 0.0 for k in record["metrics"]}
            record.update(self._change(self.src.parent_pred))
        else:
            record["metrics_reason"] = self.src.metrics_reason
        self.emit(f"keras: batch-1 latency of the Keras model ({self.opt.runs} runs)")
        t = time.monotonic()
        keras_lat = lat.keras_latency(self.model(), self.sample(), self.opt.runs, self.opt.warmup)
        record["timings_s"]["latency"] = round(time.monotonic() - t, 1)
        doc["keras_latency"] = {**keras_lat, "machine": self.machine}
        record["latency"] = {"threads_1": None, "threads_all": keras_lat,
                             "note": "Keras in TensorFlow with its default thread pools; no 1-thread figure "
                                     "(TensorFlow's thread count is fixed when it starts)"}
        self._efficiency(record, doc)

    def _build(self, v: Variant, record: dict, doc: dict) -> bytes:
        t = time.monotonic()
        if v.family == "tflite":
            representative = None
            if v.param in ("int8_full", "int8_full_per_tensor"):
                images = self.representative(doc)
                representative = lambda: ([images[i:i + 1]] for i in range(len(images)))  # noqa: E731
                record["settings"] = {"representative_images": int(len(images)), "source": "training split"
                                      if self.src.has_data else "synthetic",
                                      "input_output": "int8 (quantised with the tensor's scale and zero point)",
                                      "ops": "TFLITE_BUILTINS_INT8 only",
                                      "weight_scales": "per tensor" if v.param.endswith("per_tensor")
                                      else "per output channel"}
            self.emit(f"{v.name}: converting")
            content = compression.to_tflite(self.model(), v.param, representative)
            record["settings"].setdefault("conversion", v.param)
            record["timings_s"]["convert"] = round(time.monotonic() - t, 1)
            return content
        opt = self.opt
        # family -> fine-tune epochs, learning rate, what is done, how (lazily: v.param differs per family)
        epochs, learning_rate, what, compress = {
            "pruned": (opt.prune_epochs, opt.prune_learning_rate, lambda: f"pruning to {v.param:.0%} sparsity",
                       lambda m, tune: compression.prune(m, v.param, tune, v.name, self.emit, opt.prune_batchnorm)),
            "clustered": (opt.cluster_epochs, opt.cluster_learning_rate,
                          lambda: f"clustering weights into {v.param} clusters",
                          lambda m, tune: compression.cluster(m, v.param, tune, v.name, self.emit,
                                                              opt.cluster_batchnorm)),
            "qat": (opt.qat_epochs, opt.qat_learning_rate, lambda: "quantisation-aware training",
                    lambda m, tune: compression.quantize_aware(m, tune, v.name, self.emit)),
        }[v.family]
        tune = self.fine_tune(doc, epochs, learning_rate)
        self.emit(f"{v.name}: {what()}" + (f", fine-tune {tune.epochs} epoch(s) on {len(tune.x)} training images"
                                           if tune.epochs else ", no fine-tune (no training data)"))
        model, details = compress(self.model(fresh=True), tune)
        record["settings"] = details
        record["timings_s"]["compress"] = round(time.monotonic() - t, 1)
        t = time.monotonic()
        mode = "qat_int8" if v.family == "qat" else "float32"
        self.emit(f"{v.name}: converting to TFLite ({'int8' if v.family == 'qat' else 'float32'})")
        content = compression.to_tflite(model, mode)
        record["settings"]["conversion"] = mode
        record["timings_s"]["convert"] = round(time.monotonic() - t, 1)
        return content

    def _measure_tflite(self, v: Variant, content: bytes, record: dict, doc: dict) -> None:
        path = self.src.out_dir / f"{v.name}.tflite"
        atomic_write_bytes(path, content)
        record.update(file=self.src.rel(path), bytes=len(content), gzip_bytes=compression.gzip_size(content))
        runner = lat.LiteModel(content, self.threads)
        record.update(input_dtype=runner.input_dtype, output_dtype=runner.output_dtype,
                      quantization=runner.quantization())
        x = self.test_x()
        if x is not None:
            t = time.monotonic()
            self.emit(f"{v.name}: evaluating on {len(x)} test images (LiteRT, batch 1, {self.threads} threads)")
            probs = runner.predict(x, Throughput(f"{v.name} evaluation", self.emit, every_s=15.0))
            pred = probs.argmax(axis=1)
            record["metrics"] = headline_metrics(self.src.test_labels, pred)
            record["delta_vs_parent"] = _delta(record["metrics"], self.src.parent_metrics)
            record.update(self._change(pred))
            self.predictions[v.name] = [self.src.classes[int(p)] for p in pred]
            record["warnings"] = _warnings(record, pred, len(self.src.classes), v)
            record["timings_s"]["evaluate"] = round(time.monotonic() - t, 1)
        else:
            record["metrics_reason"] = self.src.metrics_reason
        t = time.monotonic()
        self.emit(f"{v.name}: latency, batch 1, {self.opt.runs} runs with 1 and {self.threads} threads")
        record["latency"] = {"threads_1": lat.LiteModel(content, 1).latency(self.sample(), self.opt.runs,
                                                                           self.opt.warmup),
                             "threads_all": runner.latency(self.sample(), self.opt.runs, self.opt.warmup)}
        record["timings_s"]["latency"] = round(time.monotonic() - t, 1)
        self._efficiency(record, doc)

    def _change(self, pred: np.ndarray) -> dict:
        """Paired accuracy change against the parent on the test images, and the agreement rate."""
        return variant_change(self.src.test_labels, self.src.parent_pred, pred, self.src.test_groups)

    def _efficiency(self, record: dict, doc: dict) -> None:
        """Achieved GFLOP/s against the float32 matmul peak, or LiteRT's int8 one for int8-input models."""
        gflops = (doc.get("flops") or {}).get("gflops")
        peak = doc.get("matmul_peak") or {}
        kind = "float32 matmul (numpy BLAS)"
        if record.get("input_dtype") in ("int8", "uint8") and (peak.get("litert") or {}).get("int8"):
            peak, kind = peak["litert"]["int8"], "int8 matmul (LiteRT)"
        eff = {k: lat.efficiency(gflops, record["latency"].get(k), peak.get(k), kind)
               for k in ("threads_1", "threads_all")}
        record["gflops"] = gflops
        record["efficiency"] = eff
        first = eff["threads_1"] or {}
        record["achieved_gflops_per_s"] = first.get("achieved_gflops_per_s")
        record["fraction_of_peak"] = first.get("fraction_of_peak")


class _InterruptGuard:
    """Remembers a SIGINT while it is active, besides raising KeyboardInterrupt as usual.

    The TFLite converter calls Python (the representative dataset) from C++ and swallows
    exceptions raised there, a KeyboardInterrupt included; the flag survives. Outside
    the main thread (no signal handlers there), or where SIGINT is ignored, it does nothing.
    """

    _UNSET = object()

    def __init__(self) -> None:
        self.interrupted = False
        self._previous = self._UNSET

    def _handle(self, signum, frame) -> None:
        self.interrupted = True
        if callable(self._previous):
            self._previous(signum, frame)  # a caller's own handler still runs
        raise KeyboardInterrupt

    def __enter__(self) -> "_InterruptGuard":
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not self._UNSET:
            # None: the previous handler was not installed from Python; the default is the safe choice.
            signal.signal(signal.SIGINT, self._previous if self._previous is not None else signal.SIG_DFL)


def _warnings(record: dict, pred: np.ndarray, k: int, v: Variant) -> list[str]:
    out = []
    delta = (record.get("delta_vs_parent") or {}).get("accuracy")
    if delta is not None and delta < -ACCURACY_WARNING_DROP:
        out.append(f"accuracy {abs(delta) * 100:.1f} percentage points below the parent: not usable as is")
    if k > 1 and np.unique(pred).size == 1:
        out.append("predicts the same class for every test image")
    agreement = record.get("agreement_with_parent")
    if v.param == "float32" and agreement is not None and agreement < 0.99:
        out.append(f"float32 TFLite agrees with the Keras model on only {agreement:.1%} of test images")
    return out


def _derive(doc: dict) -> None:
    """Ratios against the Keras model and the float32 TFLite model (recomputed at every write)."""
    by_name = {r["name"]: r for r in doc["variants"]}

    def ok_bytes(name: str, key: str = "bytes"):
        r = by_name.get(name)
        return r[key] if r and r.get("status") == "ok" and r.get(key) else None

    keras_b, f32_b, f32_gz = ok_bytes("keras"), ok_bytes("tflite_float32"), ok_bytes("tflite_float32", "gzip_bytes")
    for r in doc["variants"]:
        b, gz = r.get("bytes"), r.get("gzip_bytes")
        r["ratio_to_keras"] = round(b / keras_b, 4) if b and keras_b else None
        r["ratio_to_tflite_float32"] = round(b / f32_b, 4) if b and f32_b else None
        r["gzip_ratio_to_tflite_float32"] = round(gz / f32_gz, 4) if gz and f32_gz else None


def _summary_line(r: dict) -> str:
    if r["status"] != "ok":
        return f"{r['name']}: {r['status']}: {r['reason']}"
    parts = [f"{r['name']}: {r['bytes'] / 1e6:.2f} MB (gzip {r['gzip_bytes'] / 1e6:.2f} MB)"]
    if r.get("metrics"):
        d = (r.get("delta_vs_parent") or {}).get("accuracy")
        parts.append(f"accuracy {r['metrics']['accuracy']:.4f}" + (f" ({d * 100:+.1f} pp)" if d is not None else ""))
    one = (r["latency"].get("threads_1") or r["latency"].get("threads_all") or {}).get("median_ms")
    if one is not None:
        parts.append(f"median {one:.1f} ms")
    return ", ".join(parts) + "".join(f"; WARNING: {w}" for w in r.get("warnings") or [])


# --- public API ---------------------------------------------------------------------------

def is_measured(out_dir: str | os.PathLike, names: Sequence[str] | None = None) -> bool:
    """Whether ``out_dir``'s deployment.json stores a measurement ("ok", or "unsupported": that does not change)
    of every variant in ``names`` (default: the whole plan), whether or not the variant's file is still there.
    A "failed" one is tried again.

    A study does not measure such a run or architecture again: the artifact budget drops variant files and model
    files are not committed, so on a fresh clone measuring again would fail for want of the model, or replace
    committed numbers with new ones. ``python -m core deploy`` still makes a missing file again when asked.
    """
    path = Path(out_dir) / DEPLOYMENT_FILE
    if not path.is_file():
        return False
    try:
        stored = {v.get("name"): v.get("status") for v in DeploymentRecord.load(path).variants}
    except RecordError:
        return False  # unreadable: measured afresh, as _load_doc does
    return all(stored.get(name) in ("ok", "unsupported") for name in (names or [v.name for v in variant_plan()]))


def deploy_run(run_dir: str | os.PathLike, emit: Emit = print, threads: int | None = None, runs: int | None = None,
               only: Sequence[str] | None = None, options: DeployOptions | None = None) -> dict:
    """Measure every variant of a complete run's classifier; returns deployment.json's content.

    ``threads`` and ``runs`` override the same fields of ``options``; ``only`` limits the
    variants measured in this call (the others keep what is stored). Raises
    :class:`DeployError` (a :class:`~core.errors.UserError`) for a folder that is not a
    complete run with a ``model.keras``.
    """
    options = _options(options, threads, runs)
    source = run_source(Path(run_dir), emit)
    try:
        return _Deployment(source, options, emit).run(only)
    finally:
        source.lock.unlock()
        _clear()


def deploy_architecture(backbone: str, num_classes: int, out_dir: str | os.PathLike, emit: Emit = print,
                        input_size: int | None = None, threads: int | None = None, runs: int | None = None,
                        only: Sequence[str] | None = None, options: DeployOptions | None = None,
                        seed: int = 0) -> dict:
    """Sizes, latency and FLOPs of every variant of ``backbone`` + head with random weights.

    For backbones without trained weights here: nothing depends on data except accuracy,
    which is ``null`` with the reason. Pruning and clustering are applied without
    fine-tune, QAT converts its untrained wrapper, full-integer calibration uses synthetic
    images (all recorded). ``out_dir`` receives deployment.json, ``model.keras`` (built
    once, reused when resuming) and the TFLite files. Raises
    :class:`~core.artifacts.runs.RunLockedError` while another process measures the same folder.
    """

    options = _options(options, threads, runs)
    spec = get_spec(backbone)
    if num_classes < 2:
        raise DeployError("a classifier needs at least 2 classes")
    size = input_size or spec.input_size
    spec.check_input_size(size)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lock = RunFolder(out)
    lock.lock()  # one measurement at a time; staging skips a folder being measured
    try:
        return _measure_architecture(spec, num_classes, out, size=size, seed=seed,
                                     options=options, emit=emit, only=only)
    finally:
        lock.unlock()


def _measure_architecture(spec, num_classes: int, out: Path, size: int, seed: int, options: DeployOptions,
                          emit: Emit, only: Sequence[str] | None) -> dict:
    from core.models.tfkeras import keras

    model_path = out / MODEL_FILE
    if not model_path.is_file() or _stored_shape(out) not in (None, (size, num_classes)):
        emit(f"deploy: building {spec.name} + head ({num_classes} classes, {size} px) with random weights")
        keras.backend.clear_session()
        keras.utils.set_random_seed(seed)
        base = build_backbone(spec, None, (size, size, 3))
        head = build_head_layers(num_classes, RunConfig(dataset="", backbone=spec.name))
        model = build_classifier(base, head)
        atomic_save(model_path, model.save)
        keras.backend.clear_session()
    reason = NO_WEIGHTS_REASON if not spec.weights_available() else \
        "architecture measured with random weights (no trained classifier): accuracy not measured"
    source = Source("architecture", out, model_path, spec, [f"class_{i}" for i in range(num_classes)],
                     f"{spec.name} (random weights)", size, metrics_reason=reason)
    try:
        return _Deployment(source, options, emit).run(only)
    finally:
        _clear()


def _stored_shape(out: Path) -> tuple[int, int] | None:
    """(input size, classes) of a stored architecture measurement, if any."""
    path = out / DEPLOYMENT_FILE
    if not path.is_file():
        return None
    try:
        doc = DeploymentRecord.load(path)
    except RecordError:
        return None
    return doc.input_size, len(doc.classes or [])


def _options(options: DeployOptions | None, threads: int | None, runs: int | None) -> DeployOptions:
    options = DeployOptions(**asdict(options)) if options else DeployOptions()
    if threads is not None:
        if threads < 1:
            raise DeployError("--threads must be at least 1")
        options.threads = threads
    if runs is not None:
        if runs < 1:
            raise DeployError("--runs must be at least 1")
        options.runs = runs
    return options


def _clear() -> None:
    from core.models.tfkeras import keras

    keras.backend.clear_session()
