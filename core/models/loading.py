"""The one way the product loads a stored Keras model: nothing in a model file may run code.

tf_keras applies ``safe_mode`` only to zip ``.keras`` archives: a file named
``model.keras`` that is really HDF5 goes through the legacy loader, which unmarshals the
bytecode of ``Lambda`` layers. So :func:`load_model` first checks the file itself, without
TensorFlow: it must be a zip ``.keras`` archive (``config.json`` + ``model.weights.h5``)
whose every layer and initializer is a built-in Keras class this product can build
(no ``Lambda``, no custom or registered classes), and only then loads it with
``safe_mode=True``. Anything else is refused with one :class:`ModelFileError` line.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Iterator

from core.errors import UserError

ARCHIVE_MEMBERS = ("config.json", "model.weights.h5")
MODEL_CLASSES = {"Functional", "Sequential", "Model"}
# Layers made of TensorFlow operations by name (MobileNetV3's hard-swish): no bytecode, only a tf function's name.
TF_OP_LAYERS = {"TFOpLambda", "SlicingOpLambda"}
CODE_LAYERS = {"Lambda"}  # a Lambda layer's function is stored as bytecode


class ModelFileError(UserError):
    """A model file that is missing, damaged, or not one this product would have written."""


def _objects(node, skip: tuple[str, ...] = ("compile_config",)) -> Iterator[dict]:
    """Every serialised object (a dict with a ``class_name``) in a Keras config, depth first."""
    if isinstance(node, dict):
        if "class_name" in node:
            yield node
        for key, value in node.items():
            if key not in skip:
                yield from _objects(value, skip)
    elif isinstance(node, list):
        for value in node:
            yield from _objects(value, skip)


def _builtin(namespace: str) -> set[str]:
    """Class names Keras itself provides in ``keras.<namespace>``."""
    from core.models.tfkeras import keras

    module = getattr(keras, namespace)
    return {name for name, obj in vars(module).items() if isinstance(obj, type)}


def unknown_objects(config: dict) -> list[str]:
    """The serialised objects of a model config that are not built-in Keras classes this product uses."""
    allowed = {"keras.layers": _builtin("layers") - CODE_LAYERS, "keras.initializers": _builtin("initializers"),
               "keras.regularizers": _builtin("regularizers"), "keras.constraints": _builtin("constraints")}
    found = set()
    for obj in _objects(config):
        name, module = obj.get("class_name"), str(obj.get("module") or "")
        registered = str(obj.get("registered_name") or "")
        if registered.startswith("Custom>"):
            found.add(f"{registered} (a custom class)")
        elif module in allowed:
            if name not in allowed[module]:
                found.add(f"{name} ({module})")
        elif module.endswith(("engine.functional", "engine.sequential", "engine.training")) and name in MODEL_CLASSES:
            continue
        elif module.endswith("layers.core.tf_op_layer") and name in TF_OP_LAYERS:
            continue
        else:
            found.add(f"{name} ({module or 'no module'})")
    return sorted(found)


def check_model_file(path: str | os.PathLike) -> dict:
    """The model config of a ``.keras`` archive, after checking the archive (no TensorFlow needed for the format).

    Raises :class:`ModelFileError` for a missing file, anything but a zip ``.keras``
    archive (HDF5, SavedModel, a renamed file) and a damaged or incomplete archive.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no model file here")
    if not zipfile.is_zipfile(path):
        if _starts_like_a_zip(path):  # the start of an archive whose end (its table of contents) is missing
            raise _incomplete(path)
        raise ModelFileError(f"{path}: refused: not a Keras .keras archive (zip); other formats (HDF5, SavedModel) "
                             "can carry code and are never loaded")
    try:
        with zipfile.ZipFile(path) as archive:
            missing = [m for m in ARCHIVE_MEMBERS if m not in archive.namelist()]
            if missing:
                raise ModelFileError(f"{path}: refused: an incomplete .keras archive (no {', '.join(missing)})")
            if archive.testzip() is not None:  # a member whose bytes no longer match its checksum
                raise _incomplete(path)
            config = json.loads(archive.read("config.json"))
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, RuntimeError, EOFError):
        raise _incomplete(path) from None
    if not isinstance(config, dict) or "class_name" not in config:
        raise ModelFileError(f"{path}: refused: its config.json is not a Keras model config")
    return config


def _starts_like_a_zip(path: Path) -> bool:
    """An empty file, or one that begins as a zip archive does (a .keras file cut short)."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    return head in (b"", b"PK\x03\x04")


def _incomplete(path: Path) -> ModelFileError:
    return ModelFileError(f"{path} is not a complete .keras model archive (truncated or corrupt)")


def load_model(path: str | os.PathLike):
    """Load a stored classifier (uncompiled) after checking that nothing in it can run code."""
    from core.models.tfkeras import keras

    config = check_model_file(path)
    unknown = unknown_objects(config)
    if unknown:
        raise ModelFileError(f"{path}: refused: classes this product never writes ({', '.join(unknown[:5])}"
                             f"{', ...' if len(unknown) > 5 else ''}); a model file with them could run code")
    try:
        return keras.models.load_model(str(path), compile=False, safe_mode=True)
    except OSError:  # h5py on a damaged weights file: "file signature not found", "truncated file", ...
        raise _incomplete(Path(path)) from None
    except Exception as exc:  # noqa: BLE001 - a damaged archive raises many types
        message = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise ModelFileError(f"{path}: cannot be loaded: {message}") from None
