"""Run settings: presets, ``--set`` overrides, their checks, and the command that reproduces a run.

A :class:`~core.artifacts.config.RunConfig` is resolved once here (defaults, then the
preset, then explicit overrides) and stored by the run as ``config.json``.
"""

from __future__ import annotations

import difflib
import json
import shlex
from dataclasses import dataclass
from typing import Any

from core.artifacts.config import (
    ABSENT_MEANS,
    ADDED_SETTINGS,
    CALIBRATION_FOLD_CHOICES,
    METHODS,
    SEED_LIMIT,
    STAGE2_VIEWS,
    RunConfig,
    flatten,
    is_prior_corrected,
)
from core.data.dataset import VAL_FOLDER_CHOICES, default_val_folder, split_folders
from core.data.groups import parse_grouping
from core.data.splits import POLICIES
from core.errors import UserError
from core.models.backbones import MAX_INPUT_SIZE, MIN_INPUT_SIZE, get_spec

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
    if not isinstance(preset, str) or preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    # One spelling per backbone ("efficientnetlite0", "MobileNetV2@1" -> the registry's name), so
    # the same model always lands in the same run folder.
    data = RunConfig(dataset=dataset, backbone=get_spec(backbone).name, preset=preset).to_dict()
    # A lone val/ folder beside train/ is the held-out test split unless --set val_folder says otherwise.
    data["val_folder"] = default_val_folder(split_folders(dataset))
    for layer in (PRESETS[preset], overrides or {}):
        _merge(data, layer)
    if is_prior_corrected(data["method"]) and "calibration_folds" not in (overrides or {}):
        data["calibration_folds"] = "groups"  # new calibrated baselines: no calibration image copies a trained one
    _check_values(data)
    config = RunConfig.from_dict(data)
    _check_input_size(config)
    return config


# Settings with their own flag (or grid key): --set may not change them behind the run's name.
IDENTITY_KEYS = {"dataset": "--data", "backbone": "--backbone", "preset": "--preset", "seed": "--seed",
                 "weights": "--weights", "method": "--method", "schema_version": None}
_OPTIONAL_INTS = {"max_train_per_class", "max_eval_per_class", "input_size"}
_OPTIONAL_FLOATS = {"bn_momentum"}
GROUPS = ("augment", "stage1", "stage2", "scratch")
# The network's regularisation settings (0: off): kernel penalties and label smoothing.
PENALTIES = ("head_l1", "head_l2", "unfrozen_l2", "label_smoothing")

# The names a name-valued setting may take.
WEIGHTS = ("imagenet", "none")
OPTIMIZERS = {"adam": "Adam", "sgd": "SGD", "rmsprop": "RMSprop"}  # name -> keras.optimizers class
CHOICES = {"weights": WEIGHTS, "method": METHODS, "split_policy": POLICIES, "val_folder": VAL_FOLDER_CHOICES,
           "stage2_views": STAGE2_VIEWS, "calibration_folds": CALIBRATION_FOLD_CHOICES,
           **{f"{g}.optimizer": OPTIMIZERS for g in GROUPS[1:]}}


@dataclass(frozen=True)
class Range:
    """The values a numeric setting may take: ``low`` to ``high``, either end open or absent."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself excluded
    high_open: bool = False  # high itself excluded

    def __contains__(self, value: float) -> bool:
        # Written so that NaN is outside every range.
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return bool(above and below)

    def __str__(self) -> str:
        def num(x: float) -> str:
            return "2**32" if x == SEED_LIMIT else f"{x:g}"

        low = None if self.low is None else f"{'above' if self.low_open else 'at least'} {num(self.low)}"
        high = None if self.high is None else f"{'below' if self.high_open else 'at most'} {num(self.high)}"
        if low and high and not (self.low_open or self.high_open):
            return f"{num(self.low)} to {num(self.high)}"
        return " and ".join(x for x in (low, high) if x)


_SEED = Range(0, SEED_LIMIT, high_open=True)
_FRACTION = Range(0, 1, high_open=True)
_STAGE = {"epochs": Range(0, 1000), "learning_rate": Range(0, 1, low_open=True), "patience": Range(0, 1000),
          "reduce_lr_patience": Range(0, 1000), "reduce_lr_factor": Range(0, 1, low_open=True, high_open=True)}
# Every numeric setting's allowed values (docs/ARTIFACTS.md, config.json): checked before any work.
RANGES: dict[str, Range] = {
    "seed": _SEED, "split_seed": _SEED, "augment.seed": _SEED,
    "val_fraction": _FRACTION, "test_fraction": _FRACTION,
    "max_train_per_class": Range(1), "max_eval_per_class": Range(1),
    "input_size": Range(MIN_INPUT_SIZE, MAX_INPUT_SIZE),  # and the backbone's own minimum
    # Training batches only: evaluation and feature extraction batch apart (core.train.pipeline.inference_batch).
    "batch_size": Range(1, 1024),
    "augment.views": Range(0, 32),  # each view is one more cached pass over the training images
    "augment.rotation_deg": Range(0, 180),
    "augment.zoom": _FRACTION,  # a factor 1 +- zoom: 1 could shrink the image to nothing
    "augment.brightness": Range(0, 1),  # fraction of 255
    "augment.contrast": Range(0, 1),  # a factor 1 +- contrast: above 1 it would invert the image
    "head_hidden_units": Range(0, 8192),
    "head_dropout": _FRACTION,
    "head_l1": Range(0, 1), "head_l2": Range(0, 1), "unfrozen_l2": Range(0, 1),
    "label_smoothing": _FRACTION,
    "unfreeze_layers": Range(0),
    "bn_momentum": _FRACTION,
    "duplicate_threshold": Range(0, 255),  # pHash bits of 256
    **{f"{g}.{key}": r for g in GROUPS[1:] for key, r in _STAGE.items()},
}


def _check_values(data: dict[str, Any]) -> None:
    """Every setting has its default's type and its allowed values: a clear error now, not deep in training."""
    parse_grouping(data.get("grouping", "duplicates"))
    defaults = flatten(RunConfig(dataset="", backbone="").to_dict())
    for key, value in flatten(data).items():
        if key not in defaults:
            raise UserError(f"'{key}' is a group of settings, not a value: set its fields, e.g. {key}.epochs=5"
                            if key in GROUPS else f"unknown setting '{key}'")
        _check_type(key, value, defaults[key])
        if key in RANGES and value is not None and value not in RANGES[key]:
            raise UserError(f"setting '{key}' is {value}; allowed: {RANGES[key]}")
        if key in CHOICES and value not in CHOICES[key]:
            raise UserError(f"setting '{key}' is '{value}'; allowed: {', '.join(CHOICES[key])}")
    if data["method"] != "finetune" and data["weights"] != "imagenet":
        raise UserError("baselines on frozen embeddings need ImageNet weights (--weights imagenet)")
    _check_epochs(data)
    for stage in GROUPS[1:]:
        settings, default = data.get(stage, {}), ADDED_SETTINGS[f"{stage}.reduce_lr_factor"]
        if not settings.get("reduce_lr_patience", 0) and settings.get("reduce_lr_factor", default) != default:
            # The factor alone changes nothing, but it would give the same training a second run id.
            raise UserError(f"setting '{stage}.reduce_lr_factor' takes effect only with '{stage}.reduce_lr_patience' "
                            "above 0 (the epochs without a validation-loss improvement before the rate falls)")
    if data.get("bn_momentum") is not None:
        if data.get("weights") != "none" or data.get("method", "finetune") != "finetune":
            raise UserError("setting 'bn_momentum' applies only to training from scratch (--weights none, "
                            "--method finetune): transfer learning keeps BatchNorm frozen")
        data["bn_momentum"] = float(data["bn_momentum"])  # 0 and 0.0 are the same run
    for key in PENALTIES:
        data[key] = float(data.get(key, 0.0))  # 0 and 0.0, 1 and 1.0 are the same run
        if data[key] and data["method"] != "finetune":
            raise UserError(f"setting '{key}' applies only to the network (--method finetune); "
                            "the baselines have their own regularisation grid")
    if data.get("calibration_folds", "images") != "images" and not is_prior_corrected(data["method"]):
        raise UserError("setting 'calibration_folds' applies only to the calibrated baselines (linear_svm and the "
                        "ovr_, ovo_ and ecoc_ reductions)")
    if data["val_fraction"] + data["test_fraction"] >= 1:
        raise UserError("val_fraction + test_fraction must leave some images for training (sum below 1)")


def _check_type(key: str, value: Any, default: Any) -> None:
    """One line if ``value`` does not have the type of the setting's default."""
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


def _check_epochs(data: dict[str, Any]) -> None:
    """A network run trains at least one epoch: otherwise an untrained head would be stored as a result."""
    if data["method"] != "finetune":
        return  # the baselines fit on embeddings; they have no epochs
    stages = ["scratch"] if data["weights"] == "none" else ["stage1", "stage2"]
    if all(data[s]["epochs"] == 0 for s in stages):
        if len(stages) == 1:
            raise UserError(f"setting '{stages[0]}.epochs' is 0; allowed: 1 to {RANGES['scratch.epochs'].high} "
                            "(a network run trains at least 1 epoch)")
        raise UserError("settings 'stage1.epochs' and 'stage2.epochs' are both 0; a network run trains at least "
                        "1 epoch in one of them")


def check_config(config: RunConfig) -> None:
    """The checks of :func:`resolve` for a config made another way (read from a file, built in code)."""
    _check_values(config.to_dict())
    _check_input_size(config)


def with_overrides(config: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """``config`` with nested ``overrides`` merged in (an unknown key is one line), checked as :func:`resolve` checks."""
    data = config.to_dict()
    _merge(data, overrides)
    _check_values(data)
    config = RunConfig.from_dict(data)
    _check_input_size(config)
    return config


def _check_input_size(config: RunConfig) -> None:
    if config.input_size is not None:
        get_spec(config.backbone).check_input_size(config.input_size, "setting 'input_size'")


def reject_identity_overrides(overrides: dict[str, Any], where: str) -> None:
    """--set (or a grid's ``set``) may not change what names the run: point to the proper flag."""
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
            if not isinstance(node, dict):
                raise UserError(f"'{part}' is set both as a value and as a group of settings (in '{key}')")
        node[parts[-1]] = value
    return out


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["stage1.epochs=5", "augment.views=0"]`` -> nested dict (values parsed as JSON when possible)."""
    flat = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
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
            close = difflib.get_close_matches(key, list(target), n=1)
            raise UserError(f"unknown setting '{prefix}{key}'" + (f"; did you mean '{prefix}{close[0]}'?" if close else ""))
        if isinstance(value, dict) and isinstance(target[key], dict):
            _merge(target[key], value, f"{prefix}{key}.")
        else:
            target[key] = value


def _with_absent(cfg: dict[str, Any]) -> dict[str, Any]:
    """A stored config with the settings added after it was written filled in as it ran (ABSENT_MEANS, else
    the value that reproduces earlier runs), so they are compared with today's defaults too."""
    out = {**{key: ABSENT_MEANS.get(key, value) for key, value in ADDED_SETTINGS.items() if "." not in key}, **cfg}
    for key, value in ADDED_SETTINGS.items():
        group, _, name = key.rpartition(".")
        if group and isinstance(out.get(group), dict) and name not in out[group]:
            out[group] = {**out[group], name: value}
    return out


def _defaults(cfg: dict[str, Any]) -> dict[str, Any]:
    """What ``resolve`` gives a run of ``cfg``'s dataset, backbone, preset and method (some defaults follow the
    method), flattened."""
    method = {"method": cfg["method"]} if cfg.get("method", "finetune") != "finetune" else {}
    return flatten(resolve(cfg["dataset"], cfg["backbone"], cfg["preset"], method).to_dict())


def settings_rows(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """A stored config as readable rows: setting, value, and whether it is the preset's default for its dataset
    (what ``--set`` would have to change); identity settings first."""
    default, cfg = _defaults(cfg), _with_absent(cfg)
    rows = []
    for key, value in flatten(cfg).items():
        if key == "schema_version":
            continue
        shown = "none" if value is None else json.dumps(value) if isinstance(value, (bool, list, dict)) else str(value)
        origin = "names the run" if key in IDENTITY_KEYS else ("default" if default.get(key) == value else
                                                                 f"changed (default {default.get(key)})")
        rows.append({"setting": key, "value": shown, "origin": origin})
    return sorted(rows, key=lambda r: r["origin"] != "names the run")


def reproduce_command(cfg: dict[str, Any], deploy: bool = False, artifacts: str | None = None) -> str:
    """The shell command that recreates a run from its config dict (preset defaults left out)."""
    default, cfg = _defaults(cfg), _with_absent(cfg)
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
