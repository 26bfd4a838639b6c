"""Run settings: every choice the original study tuned by hand, with defaults and presets.

A :class:`RunConfig` is resolved once (preset, then explicit overrides) and stored
in the run folder as ``config.json``; the run id is a hash of it, so the same
settings always land in the same folder and an interrupted run is found again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shlex
from dataclasses import dataclass, field
from typing import Any, Sequence

SCHEMA_VERSION = 1


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


@dataclass
class RunConfig:
    """Everything that determines a run's result."""

    dataset: str  # dataset folder
    backbone: str  # registry name, optionally Name@alpha
    weights: str = "imagenet"  # "imagenet" or "none" (train the same architecture from scratch)
    method: str = "finetune"  # "finetune" (network) or a classical baseline on frozen embeddings:
    #                           "logreg", "linear_svm", "knn"
    seed: int = 0
    preset: str = "full"
    # data
    split_seed: int = 42  # fixed across training seeds, so every run of a dataset shares its test set
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    max_train_per_class: int | None = None  # subsampling (quick preset)
    max_eval_per_class: int | None = None
    input_size: int | None = None  # None: the backbone's native size
    batch_size: int = 32
    class_weights: bool = True  # "balanced" weights against class imbalance
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # head on the pooled backbone output
    head_hidden_units: int = 0  # 0: a single softmax layer after dropout
    head_dropout: float = 0.2
    # stage 1: new head on the frozen backbone, trained from cached backbone outputs
    stage1: StageConfig = field(default_factory=lambda: StageConfig(epochs=40, learning_rate=1e-3, patience=5))
    # stage 2: fine-tune the top of the backbone (BatchNorm stays frozen)
    stage2: StageConfig = field(default_factory=lambda: StageConfig(epochs=15, learning_rate=1e-4, patience=3))
    unfreeze_layers: int = 20  # layers counted from the top of the backbone
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
        nested = {"augment": AugmentConfig, "stage1": StageConfig, "stage2": StageConfig, "scratch": StageConfig}
        for key, kind in nested.items():
            if key in data and isinstance(data[key], dict):
                data[key] = kind(**data[key])
        return cls(**data)

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
        if out.get(key, default) == default:
            out.pop(key, None)
    return out


PRESETS: dict[str, dict[str, Any]] = {
    # A few minutes on a 2-core CPU: subsampled data, few epochs.
    "quick": {
        "max_train_per_class": 40,
        "max_eval_per_class": 20,
        "augment": {"views": 1},
        "stage1": {"epochs": 10, "learning_rate": 1e-3, "patience": 3},
        "stage2": {"epochs": 2, "learning_rate": 1e-4, "patience": 2},
        "scratch": {"epochs": 3, "learning_rate": 1e-3, "patience": 3},
    },
    "full": {},
}


def resolve(dataset: str, backbone: str, preset: str = "full", overrides: dict[str, Any] | None = None) -> RunConfig:
    """Defaults, then the preset, then explicit overrides (nested dicts merge)."""
    if preset not in PRESETS:
        from core.errors import UserError

        raise UserError(f"unknown preset '{preset}'; choose one of: {', '.join(PRESETS)}")
    from core.backbones import get_spec

    # One spelling per backbone ("efficientnetlite0", "MobileNetV2@1" -> the registry's name), so
    # the same model always lands in the same run folder.
    data = RunConfig(dataset=dataset, backbone=get_spec(backbone).name, preset=preset).to_dict()
    for layer in (PRESETS[preset], overrides or {}):
        _merge(data, layer)
    _check_values(data)
    return RunConfig.from_dict(data)


# Settings with their own flag (or grid key): --set may not change them behind the run's name.
IDENTITY_KEYS = {"dataset": "--data", "backbone": "--backbone", "preset": "--preset", "seed": "--seed",
                 "weights": "--weights", "method": "--method", "schema_version": None}
_OPTIONAL_INTS = {"max_train_per_class", "max_eval_per_class", "input_size"}
_OPTIONAL_FLOATS = {"bn_momentum"}
# Settings added after runs were committed, with the default that reproduces those runs:
# left out of the run id while at that default, so existing run folders keep their names.
ADDED_SETTINGS: dict[str, Any] = {"bn_momentum": None}
_MINIMUM = {"batch_size": 1, "augment.views": 0, "unfreeze_layers": 0, "head_hidden_units": 0,
            "max_train_per_class": 1, "max_eval_per_class": 1, "input_size": 32}
SEED_LIMIT = 2**32  # numpy and Keras accept seeds in [0, 2**32)


def _check_values(data: dict[str, Any]) -> None:
    """Every setting has its default's type and a sensible range: a clear error now, not deep in training."""
    from core.errors import UserError

    defaults = flatten(RunConfig(dataset="", backbone="").to_dict())
    for key, value in flatten(data).items():
        default = defaults.get(key)
        if key not in defaults:
            raise UserError(f"'{key}' is a group of settings, not a value: set its fields, e.g. {key}.epochs=5"
                            if key in ("augment", "stage1", "stage2", "scratch") else f"unknown setting '{key}'")
        if key in _OPTIONAL_INTS:
            ok = value is None or (isinstance(value, int) and not isinstance(value, bool))
            expected = "a whole number or null"
        elif key in _OPTIONAL_FLOATS:
            ok = value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))
            expected = "a number or null"
        elif isinstance(default, bool):
            ok, expected = isinstance(value, bool), "true or false"
        elif isinstance(default, int):
            ok, expected = isinstance(value, int) and not isinstance(value, bool), "a whole number"
        elif isinstance(default, float):
            ok, expected = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
        else:
            ok, expected = isinstance(value, str), "text"
        if not ok:
            raise UserError(f"setting '{key}' must be {expected}, got {value!r}")
        if value is None:
            continue
        low = _MINIMUM.get(key, 0 if key.endswith(("epochs", "patience", "seed")) else None)
        if low is not None and value < low:
            raise UserError(f"setting '{key}' must be at least {low}, got {value}")
        if key.endswith("seed") and value >= SEED_LIMIT:
            raise UserError(f"setting '{key}' must be below 2**32, got {value}")
        if key.endswith("learning_rate") and not value > 0:
            raise UserError(f"setting '{key}' must be positive, got {value}")
        if key in ("val_fraction", "test_fraction", "bn_momentum") and not 0 <= value < 1:
            raise UserError(f"setting '{key}' must be at least 0 and below 1, got {value}")
    if data.get("bn_momentum") is not None:
        if data.get("weights") != "none" or data.get("method", "finetune") != "finetune":
            raise UserError("setting 'bn_momentum' applies only to training from scratch (--weights none, "
                            "--method finetune): transfer learning keeps BatchNorm frozen")
        data["bn_momentum"] = float(data["bn_momentum"])  # 0 and 0.0 are the same run
    if data["val_fraction"] + data["test_fraction"] >= 1:
        raise UserError("val_fraction + test_fraction must leave some images for training (sum below 1)")


def reject_identity_overrides(overrides: dict[str, Any], where: str) -> None:
    """--set (or a grid's ``set``) may not change what names the run: point to the proper flag."""
    from core.errors import UserError

    for key in overrides:
        if key in IDENTITY_KEYS:
            flag = IDENTITY_KEYS[key]
            raise UserError(f"{where} cannot change '{key}'" + (f": use {flag}" if flag else ""))


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"stage1.epochs": 5}`` -> ``{"stage1": {"epochs": 5}}``."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["stage1.epochs=5", "augment.views=0"]`` -> nested dict (values parsed as JSON when possible)."""
    flat = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            from core.errors import UserError

            raise UserError(f"--set expects KEY=VALUE, got '{item}'")
        try:
            flat[key] = json.loads(raw)
        except json.JSONDecodeError:
            # Python's spellings too: --set augment.flip=False means false, not the text "False".
            flat[key] = {"True": True, "False": False, "None": None}.get(raw.strip(), raw)
    nested = nest(flat)
    reject_identity_overrides(nested, "--set")
    return nested


def _merge(target: dict[str, Any], layer: dict[str, Any], prefix: str = "") -> None:
    for key, value in layer.items():
        if key not in target:
            import difflib

            from core.errors import UserError

            close = difflib.get_close_matches(key, list(target), n=1)
            raise UserError(f"unknown setting '{prefix}{key}'" + (f"; did you mean '{prefix}{close[0]}'?" if close else ""))
        if isinstance(value, dict) and isinstance(target[key], dict):
            _merge(target[key], value, f"{prefix}{key}.")
        else:
            target[key] = value


def reproduce_command(cfg: dict[str, Any], deploy: bool = False, artifacts: str | None = None) -> str:
    """The shell command that recreates a run from its config dict (preset defaults left out)."""
    default = flatten(resolve(cfg["dataset"], cfg["backbone"], cfg["preset"]).to_dict())
    q = shlex.quote
    parts = ["python -m core run", f"--data {q(cfg['dataset'])}", f"--backbone {q(cfg['backbone'])}",
             f"--preset {q(cfg['preset'])}", f"--weights {q(cfg['weights'])}", f"--seed {cfg['seed']}"]
    if cfg.get("method", "finetune") != "finetune":
        parts.append(f"--method {cfg['method']}")
    for key, value in flatten(cfg).items():
        if key in IDENTITY_KEYS:
            continue
        if default.get(key) != value:
            parts.append(f"--set {q(f'{key}={json.dumps(value)}')}")
    if artifacts:
        parts.append(f"--artifacts {q(artifacts)}")
    if deploy:
        parts.append("--deploy")
    return " ".join(parts)


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as dotted keys: ``{'scratch': {'epochs': 20}}`` -> ``{'scratch.epochs': 20}``."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
