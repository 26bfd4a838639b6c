"""Run settings: presets, ``--set`` overrides, their checks, and the command that reproduces a run.

A :class:`~core.artifacts.config.RunConfig` is resolved once here (defaults, then the
preset, then explicit overrides) and stored by the run as ``config.json``.
"""

from __future__ import annotations

import difflib
import json
import shlex
from typing import Any

from core.artifacts.config import SEED_LIMIT, RunConfig, flatten
from core.errors import UserError
from core.models.backbones import get_spec

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
        raise UserError(f"unknown preset '{preset}'; choose one of: {', '.join(PRESETS)}")
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
_MINIMUM = {"batch_size": 1, "augment.views": 0, "unfreeze_layers": 0, "head_hidden_units": 0,
            "max_train_per_class": 1, "max_eval_per_class": 1, "input_size": 32}


def _check_values(data: dict[str, Any]) -> None:
    """Every setting has its default's type and a sensible range: a clear error now, not deep in training."""
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
