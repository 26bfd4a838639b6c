"""What the deployment variants are made from and evaluated on: a complete run folder, or a bare architecture.

For a run: its ``model.keras``, its test split (the ids and labels of ``predictions.csv``,
images from the dataset folder in ``config.json``) and its training split (for int8
calibration and the compression fine-tunes). Everything is checked before any work, and
a folder that is not usable is one :class:`DeployError` line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from core.artifacts.config import RunConfig
from core.artifacts.layout import (
    COMPLETE_MARKER,
    CONFIG_FILE,
    DEPLOY_DIR,
    METRICS_FILE,
    MODEL_FILE,
    PREDICTIONS_FILE,
    PROVENANCE_FILE,
    find_dataset,
)
from core.artifacts.records import MetricsRecord, Predictions, ProvenanceRecord, RecordError, SplitRecord
from core.artifacts.runs import RunFolder
from core.data.dataset import load_image, map_parallel
from core.data.prepare import prepare_data
from core.data.sampling import balanced_sample
from core.data.splits import SplitAssignment
from core.errors import UserError
from core.evaluate.variant_change import groups_of_test_images
from core.models.backbones import get_spec
from core.models.preprocess import preprocess
from core.progress import Emit, Throughput


class DeployError(UserError):
    """The input of ``deploy`` is not usable (not a complete run, no model, no test images)."""


@dataclass
class Source:
    """What the variants are made from and evaluated on."""

    kind: str  # "run" | "architecture"
    out_dir: Path  # the deploy folder
    model_path: Path
    spec: object  # BackboneSpec
    classes: list[str]
    label: str
    input_size: int
    parent_metrics: dict | None = None
    metrics_reason: str | None = None
    image_root: Path | None = None
    test_ids: list[str] = field(default_factory=list)
    test_labels: np.ndarray | None = None
    parent_pred: np.ndarray | None = None
    test_groups: np.ndarray | None = None  # groups of near-copies (audit) for the paired intervals
    train_pairs: list[tuple[str, int]] = field(default_factory=list)
    lock: object = None

    @property
    def has_data(self) -> bool:
        return self.kind == "run"

    def rel(self, path: Path) -> str:
        return os.path.relpath(path, self.out_dir)


def _read_predictions(path: Path, classes: list[str], n: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    try:
        table = Predictions.load(path, expected_rows=n)
    except RecordError as exc:
        raise DeployError(str(exc)) from None
    index = {c: i for i, c in enumerate(classes)}
    for i, true, pred in zip(table.ids, table.true, table.pred):
        if true not in index or pred not in index:
            raise DeployError(f"{path}: row for '{i}' names a class that metrics.json does not list")
    if not table.ids:
        raise DeployError(f"{path} lists no test images")
    return (table.ids, np.asarray([index[c] for c in table.true], np.int64),
            np.asarray([index[c] for c in table.pred], np.int64))


def _train_pairs(run_dir: Path, config: RunConfig, prov: ProvenanceRecord, classes: list[str],
                 emit: Emit) -> list[tuple[str, int]]:
    """The run's training ids and labels: its split file, subsampled as the run did."""

    index = {c: i for i, c in enumerate(classes)}
    split_file = (run_dir / prov.split_file) if prov.split_file else None
    if split_file is not None and split_file.is_file():
        split = SplitAssignment.from_dict(SplitRecord.load(split_file).to_dict())
        pairs = split.labelled("train")
        if config.max_train_per_class:
            pairs = balanced_sample(pairs, config.split_seed, per_class=config.max_train_per_class)
        return [(p, index[lab]) for p, lab in pairs if lab in index]
    emit("deploy: the run's split file is missing; rebuilding the split from the dataset")
    data = prepare_data(config, emit)
    return [(p, int(y)) for p, y in zip(data.ids["train"], data.labels["train"])]


def run_source(run_dir: Path, emit: Emit) -> Source:
    """Check a complete run folder and gather what its variants are made from; locks the folder."""
    if not run_dir.is_dir():
        raise DeployError(f"run folder not found: {run_dir}")
    if not (run_dir / CONFIG_FILE).is_file():
        raise DeployError(f"{run_dir} is not a run folder (no {CONFIG_FILE})")
    if not (run_dir / COMPLETE_MARKER).is_file():
        raise DeployError(f"{run_dir} is not a complete run (no {COMPLETE_MARKER}); finish it first by running "
                          "the same `python -m core run` command again")
    config = RunConfig.load(run_dir / CONFIG_FILE)
    if config.method != "finetune":
        raise DeployError(f"{run_dir} is a '{config.method}' baseline on frozen embeddings: "
                          "it has no network to deploy")
    model_path = run_dir / MODEL_FILE
    if not model_path.is_file():
        raise DeployError(f"{run_dir} has no model.keras (model files are not committed); rebuild it by running the "
                          "run's `python -m core run` command in a fresh artifacts folder")
    for name in (METRICS_FILE, PREDICTIONS_FILE, PROVENANCE_FILE):
        if not (run_dir / name).is_file():
            raise DeployError(f"{run_dir} has no {name}: not a complete run")
    metrics = MetricsRecord.load(run_dir / METRICS_FILE)
    prov = ProvenanceRecord.load(run_dir / PROVENANCE_FILE)
    classes = list(metrics.classes or (prov.dataset or {}).get("classes") or [])
    if len(classes) < 2:
        raise DeployError(f"{run_dir / METRICS_FILE} lists no classes")
    root = find_dataset(config.dataset, run_dir)
    if root is None:
        raise DeployError(f"the run's dataset folder '{config.dataset}' (config.json) is not found from "
                          f"{Path.cwd()} or the repository root; run deploy from where the run was trained")
    ids, labels, parent_pred = _read_predictions(run_dir / PREDICTIONS_FILE, classes, metrics.n)
    missing = [i for i in ids if not (root / i).is_file()]
    if missing:
        raise DeployError(f"{len(missing)} of the {len(ids)} test images of the run are missing from {root} "
                          f"(e.g. {missing[0]}): is it the same dataset?")
    spec = get_spec(config.backbone)
    parent = metrics.headline()
    train_pairs = _train_pairs(run_dir, config, prov, classes, emit)
    lock = RunFolder(run_dir)
    lock.lock()  # neither training nor another deploy works on this folder meanwhile
    return Source("run", run_dir / DEPLOY_DIR, model_path, spec, classes, run_dir.name,
                   config.input_size or spec.input_size, parent_metrics=parent, image_root=root, test_ids=ids,
                   test_labels=labels, parent_pred=parent_pred,
                   test_groups=groups_of_test_images(run_dir, ids), train_pairs=train_pairs, lock=lock)


# --- images ------------------------------------------------------------------------

def load_images(root: Path, ids: Sequence[str], size: int, mode: str, label: str, emit: Emit) -> np.ndarray:
    """Decoded, resized, preprocessed float32 images (the backbone's own preprocessing)."""

    images = map_parallel(lambda i: load_image(root / i, size=(size, size)), list(ids),
                          progress=Throughput(label, emit, every_s=10.0))
    return preprocess(np.stack(images).astype(np.float32), mode).astype(np.float32)


def synthetic_images(n: int, size: int, mode: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return preprocess(rng.uniform(0, 255, (n, size, size, 3)).astype(np.float32), mode).astype(np.float32)
