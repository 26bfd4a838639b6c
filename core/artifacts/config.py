"""The run configuration record: every setting that determines a run's result.

A :class:`RunConfig` is stored in the run folder as ``config.json``; the run id is a
hash of it, so the same settings always land in the same folder and an interrupted run
is found again. Resolving one from presets and ``--set`` overrides is
:mod:`core.train.config`'s job; this module is only the data and its identity.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from core.artifacts.records import RecordError, read_record_json
from core.artifacts.storage import atomic_write_json

SCHEMA_VERSION = 1
SEED_LIMIT = 2**32  # numpy and Keras accept seeds in [0, 2**32)


# The classical baselines on frozen embeddings (core.train.baselines.GRIDS), in the order the CLI lists them.
BASELINES = ("logreg", "linear_svm", "knn", "knn_uniform", "knn_nearest", "knn_random", "nn1",
             "ovr_logreg", "ovo_logreg", "ecoc_logreg", "ovr_svm", "ovo_svm", "ecoc_svm",
             "tree_gini", "tree_entropy", "tree_log_loss", "forest")
METHODS = ("finetune", *BASELINES)
# How a calibrated baseline's inner calibration folds are cut: image by image (the first runs) or by group of
# near-copies (new runs), so no calibration image has a copy in the model it calibrates.
CALIBRATION_FOLD_CHOICES = ("images", "groups")


def is_prior_corrected(method: str) -> bool:
    """Whether a baseline's probabilities are sigmoid-calibrated on inner folds and moved to a uniform prior
    (core.train.baselines.PriorCorrected): the linear SVM and every reduction (one-vs-rest, one-vs-one, codes)."""
    return method == "linear_svm" or method.startswith(("ovr_", "ovo_", "ecoc_"))
STAGE2_VIEWS = ("one", "all")
# How an ensemble of stored runs weighs its members (core.evaluate.ensemble).
ENSEMBLE_WEIGHTS = ("uniform", "val_loss", "stacked")


@dataclass
class AugmentConfig:
    """Input augmentation as a fixed number of cached augmented views per training image."""

    views: int = 2  # augmented copies per training image (0 = none), computed once and cached
    flip: bool = True  # random horizontal flip
    rotation_deg: float = 10.0
    zoom: float = 0.1  # random zoom in/out up to this fraction
    brightness: float = 0.1  # random brightness change up to this fraction of 255
    contrast: float = 0.1
    seed: int = 1234  # the views are data, not training randomness: fixed across training seeds


@dataclass
class StageConfig:
    """One training stage."""

    epochs: int
    learning_rate: float
    optimizer: str = "adam"
    patience: int = 5  # early stopping on validation loss, best weights restored
    # The learning rate times ``reduce_lr_factor`` after this many epochs without a validation-loss improvement,
    # never below 1% of ``learning_rate`` (core.train.stages; 0: a constant rate, as every run before this setting).
    reduce_lr_patience: int = 0
    reduce_lr_factor: float = 0.3


@dataclass
class RunConfig:
    """Everything that determines a run's result."""

    dataset: str  # dataset folder
    backbone: str  # registry name, optionally Name@alpha
    weights: str = "imagenet"  # "imagenet" or "none" (train the same architecture from scratch)
    method: str = "finetune"  # "finetune" (network) or a classical baseline on frozen embeddings (BASELINES)
    seed: int = 0
    preset: str = "full"
    # data
    split_seed: int = 42  # fixed across training seeds, so every run of a dataset shares its test set
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    # Images that must stay on one side of every split (core.data.groups): "duplicates" (connected
    # near-copies), "csv:PATH" (path,group file), "regex:PATTERN" (group id from the path) or "none"
    # (image by image, as the first runs were split).
    grouping: str = "duplicates"
    duplicate_threshold: int = 24  # pHash bits of 256 (core.data.duplicates.DEFAULT_THRESHOLD)
    split_policy: str = "keep"  # "keep" predefined split folders, or "regroup" the whole dataset by group
    # What a val/ folder beside train/ becomes: "validation", or "test" when there is no test/ folder
    # (validation then carved from train). New runs default to "test" for such a dataset (core.train.config).
    val_folder: str = "validation"
    max_train_per_class: int | None = None  # subsampling (quick preset)
    max_eval_per_class: int | None = None
    input_size: int | None = None  # None: the backbone's native size
    batch_size: int = 32
    class_weights: bool = True  # "balanced" weights against class imbalance
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # head on the pooled backbone output
    head_hidden_units: int = 0  # 0: a single softmax layer after dropout
    head_dropout: float = 0.2
    # Kernel penalties (0: none): L1/L2 on the head's dense layers, L2 on the backbone layers stage 2 unfreezes.
    head_l1: float = 0.0
    head_l2: float = 0.0
    unfrozen_l2: float = 0.0
    label_smoothing: float = 0.0  # the cross-entropy's targets smoothed towards uniform by this much
    # "<study>#<trial>": the settings came from that trial of `python -m core tune` ("" for hand-set settings).
    tuned_from: str = ""
    # stage 1: new head on the frozen backbone, trained from cached backbone outputs
    stage1: StageConfig = field(default_factory=lambda: StageConfig(epochs=40, learning_rate=1e-3, patience=5))
    # stage 2: fine-tune the top of the backbone (BatchNorm stays frozen)
    stage2: StageConfig = field(default_factory=lambda: StageConfig(epochs=15, learning_rate=1e-4, patience=3))
    unfreeze_layers: int = 20  # layers counted from the top of the backbone
    # What a stage-2 epoch shows: "one" view of each training image (drawn per epoch; as many samples
    # as images, like a pipeline augmenting on the fly) or "all" its cached views (the first runs).
    stage2_views: str = "all"
    # A calibrated baseline's inner calibration folds (CALIBRATION_FOLD_CHOICES): new runs of those methods
    # cut them by "groups" (core.train.config.resolve); "images" for every other method, where it means nothing.
    calibration_folds: str = "images"
    # from scratch (weights="none"): one stage, every layer trainable
    scratch: StageConfig = field(default_factory=lambda: StageConfig(epochs=20, learning_rate=1e-3, patience=5))
    # BatchNorm momentum while training from scratch (None: the backbone's own, 0.99 for most).
    # Early in a scratch run the weights move fast and moving statistics at 0.99 lag them, so
    # validation in inference mode can collapse to one class (README: the from-scratch baseline).
    bn_momentum: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data, with the schema version."""
        return {"schema_version": SCHEMA_VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        """Inverse of :meth:`to_dict` (unknown keys are an error)."""
        data = {k: v for k, v in data.items() if k != "schema_version"}
        for key, value in ABSENT_MEANS.items():
            data.setdefault(key, value)
        nested = {"augment": AugmentConfig, "stage1": StageConfig, "stage2": StageConfig, "scratch": StageConfig}
        for key, kind in nested.items():
            if key in data and isinstance(data[key], dict):
                data[key] = kind(**data[key])
        return cls(**data)

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``config.json`` atomically."""
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "RunConfig":
        """Read a stored ``config.json``; one :class:`~core.artifacts.records.RecordError` line if unusable."""
        data = read_record_json(path, "run config")
        if not isinstance(data, dict):
            raise RecordError(f"{path}: not a run config (expected a JSON object)")
        version = data.get("schema_version", 1)
        if isinstance(version, int) and version > SCHEMA_VERSION:
            raise RecordError(f"{path}: a run config of schema {version}, newer than this code reads ({SCHEMA_VERSION})")
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError) as exc:
            raise RecordError(f"{path}: not a run config this version can read ({exc})") from None

    def run_id(self) -> str:
        """Short, stable id derived from every setting that changes the result."""
        # The folder may move, so the dataset is left out; its fingerprint is recorded separately.
        text = json.dumps(identity_settings(self.to_dict(), ["dataset"]), sort_keys=True)
        tag = "scratch" if self.weights == "none" else "imagenet"
        if self.method != "finetune":
            tag = f"{tag}-{self.method}"
        return f"{self.preset}-{tag}-s{self.seed}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def identity_settings(cfg: dict[str, Any], leave_out: Sequence[str] = ()) -> dict[str, Any]:
    """A stored config's settings as they identify a run: ``leave_out`` keys dropped, and settings
    added after earlier runs (:data:`ADDED_SETTINGS`) dropped while at their default or absent,
    so an old config.json and a new one with the same settings compare equal."""
    out = {k: v for k, v in cfg.items() if k not in leave_out}
    for key, default in ADDED_SETTINGS.items():
        group, _, name = key.rpartition(".")
        if not group:
            if out.get(key, default) == default:
                out.pop(key, None)
        elif isinstance(out.get(group), dict) and out[group].get(name, default) == default:
            out[group] = {k: v for k, v in out[group].items() if k != name}  # a copy: cfg stays as it was
    return out


# Settings added after runs were committed, with the default that reproduces those runs:
# left out of the run id while at that default, so existing run folders keep their names
# (a dotted key is a field of a group: "scratch.reduce_lr_patience").
ADDED_SETTINGS: dict[str, Any] = {"bn_momentum": None, "grouping": "none", "duplicate_threshold": 24,
                                  "split_policy": "keep", "val_folder": "validation", "stage2_views": "all",
                                  "head_l1": 0.0, "head_l2": 0.0, "unfrozen_l2": 0.0, "label_smoothing": 0.0,
                                  "tuned_from": "", "calibration_folds": "images",
                                  **{f"{stage}.{key}": value for stage in ("stage1", "stage2", "scratch")
                                     for key, value in (("reduce_lr_patience", 0), ("reduce_lr_factor", 0.3))}}
# What a stored config without the key meant: runs made before groups existed split image by image.
ABSENT_MEANS: dict[str, Any] = {"grouping": "none"}


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as dotted keys: ``{'scratch': {'epochs': 20}}`` -> ``{'scratch.epochs': 20}``."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def settings_key(cfg: dict[str, Any]) -> str:
    """Identifies a run's settings apart from its seed (and dataset folder): runs sharing it differ only by seed."""
    rest = identity_settings(cfg, ["seed", "dataset"])
    return hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()[:12]
