"""Predictions on new images with the stored models (LiteRT; no TensorFlow).

Used by the app's Try page: find every TFLite variant written by ``python -m core
deploy`` for a dataset's runs, check and decode uploaded files, and run each variant
on an image with the backbone's own preprocessing, timing every call.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from core.artifacts.layout import MODEL_FILE, PROVENANCE_FILE, deploy_dir, deployment_file
from core.artifacts.naming import run_labels
from core.artifacts.records import DeploymentRecord, ProvenanceRecord, RecordError
from core.artifacts.report import dataset_runs
from core.data.dataset import open_image
from core.deploy.latency import LiteModel
from core.errors import ImageDecodeError, UserError
from core.models.backbones import get_spec
from core.models.preprocess import preprocess

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 40_000_000


@dataclass(frozen=True)
class StoredModel:
    """One runnable model file of a complete run."""

    run_dir: Path
    run_label: str
    variant: str  # e.g. tflite_int8_full, or "keras"
    path: Path
    backbone: str
    input_size: int
    preprocessing: str
    classes: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.run_label} · {self.variant}"


def stored_models(dataset: str, root: Path | None = None,
                  problems: list[str] | None = None) -> tuple[list[StoredModel], list[StoredModel]]:
    """(TFLite variants, Keras models) of every complete network run of ``dataset``.

    A run whose config, provenance or deployment record cannot be read is left out, its
    one-line reason appended to ``problems`` when given.
    """
    problems = [] if problems is None else problems
    network = [(run, cfg) for run, cfg in dataset_runs(dataset, root, problems)
               if cfg.get("method", "finetune") == "finetune"]
    runs, configs = [r for r, _ in network], [c for _, c in network]
    lite, keras_models = [], []
    for run, cfg, label in zip(runs, configs, run_labels(configs)):
        spec = get_spec(cfg["backbone"])
        backbone, size, mode = cfg["backbone"], cfg.get("input_size") or spec.input_size, spec.entry.preprocessing
        try:
            classes = tuple(ProvenanceRecord.load(run / PROVENANCE_FILE).dataset["classes"])
            measured = _measured_tflite_files(run)
        except RecordError as exc:
            problems.append(str(exc))
            continue
        for path in measured:
            lite.append(StoredModel(run, label, path.stem, path, backbone, size, mode, classes))
        if (run / MODEL_FILE).is_file():
            keras_models.append(StoredModel(run, label, "keras", run / MODEL_FILE, backbone, size, mode, classes))
    return lite, keras_models


def _measured_tflite_files(run: Path) -> list[Path]:
    """The run's kept TFLite files whose deployment measurement succeeded (a failed variant may leave its file)."""
    path = deployment_file(run)
    if not path.is_file():
        return []
    ok = {v["name"] for v in DeploymentRecord.load(path).variants if v.get("status") == "ok"}
    return [f for f in sorted(deploy_dir(run).glob("*.tflite")) if f.stem in ok]


def decode_upload(name: str, content: bytes) -> np.ndarray:
    """Check and decode an uploaded file: an RGB uint8 array, or a clear :class:`UserError`."""
    if not content:
        raise UserError(f"{name} is empty")
    if len(content) > MAX_UPLOAD_BYTES:
        raise UserError(f"{name} is {len(content) / 2**20:.1f} MB; the limit is {MAX_UPLOAD_BYTES / 2**20:.0f} MB")
    try:
        with Image.open(io.BytesIO(content)) as probe:
            w, h = probe.size
    except Image.DecompressionBombError:
        raise UserError(f"{name} is larger than the limit of {MAX_PIXELS / 1e6:.0f} megapixels") from None
    except Exception:  # noqa: BLE001 - Pillow raises many types on non-images
        raise UserError(f"{name} is not an image Pillow can read (JPEG, PNG, WebP, BMP, TIFF, GIF, ...)") from None
    if w * h > MAX_PIXELS:
        raise UserError(f"{name} is {w}x{h} pixels; the limit is {MAX_PIXELS / 1e6:.0f} megapixels")
    try:
        return np.array(open_image(name, content=content), dtype=np.uint8)
    except ImageDecodeError as exc:
        raise UserError(f"{name}: {exc.reason}") from None


def read_test_image(root: Path, image_id: str) -> np.ndarray:
    """Decode a test image of the dataset by its id (path relative to ``root``); one :class:`UserError` line
    if it is gone, unreadable, not an image, or named outside the dataset folder."""
    rel = Path(image_id)
    if rel.is_absolute() or ".." in rel.parts:
        raise UserError(f"{image_id}: not a path inside the dataset folder {root}")
    try:
        content = (root / rel).read_bytes()
    except FileNotFoundError:
        raise UserError(f"{image_id} is no longer in the dataset folder {root}") from None
    except OSError as exc:
        raise UserError(f"{image_id} cannot be read: {exc.strerror or exc}") from None
    return decode_upload(image_id, content)


def model_input(image: np.ndarray, model: StoredModel) -> np.ndarray:
    """Resize (bilinear, like training) and preprocess one image into a float32 batch of 1."""
    resized = Image.fromarray(image).resize((model.input_size, model.input_size), Image.Resampling.BILINEAR)
    return preprocess(np.asarray(resized, dtype=np.float32)[None], model.preprocessing).astype(np.float32)


_LOADED: dict[str, object] = {}


def predict_lite(model: StoredModel, image: np.ndarray, threads: int = 1) -> tuple[np.ndarray, float]:
    """Class probabilities and the wall time (ms) of one LiteRT call."""
    key = f"{model.path}:{model.path.stat().st_mtime_ns}:{threads}"
    if key not in _LOADED:
        _LOADED[key] = LiteModel(model.path.read_bytes(), threads=threads)
    lite = _LOADED[key]
    x = model_input(image, model)
    started = time.perf_counter()
    probs = lite.predict(x)[0]
    return probs, (time.perf_counter() - started) * 1000.0
