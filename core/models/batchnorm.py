"""BatchNorm layers: finding them, their momentum, and re-estimating their moving statistics.

The one implementation of "precise BN" in the project: the BatchNorm diagnosis
(``scripts/diagnose_batchnorm.py``) and the recalibration after pruning or clustering
(:func:`core.deploy.compression.recalibrate_batchnorm`) both call
:func:`reestimate_batchnorm_statistics`.

Layers are found wherever they sit: in nested models and inside wrappers (tfmot's
pruning, clustering and quantisation wrappers keep the wrapped layer in ``.layer``).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator


def unwrap(layer):
    """The layer a wrapper (tfmot's, Keras' ``Wrapper``) wraps, or the layer itself."""
    return getattr(layer, "layer", layer)


def is_batchnorm(layer) -> bool:
    """Whether ``layer`` is a BatchNorm layer or a wrapper around one."""
    return "BatchNormalization" in type(unwrap(layer)).__name__


def _is_dropout(layer) -> bool:
    inner = unwrap(layer)
    return "Dropout" in type(inner).__name__ and hasattr(inner, "rate")


def _layers(model, keep) -> list:
    """The (unwrapped) layers of ``model`` and everything below it that ``keep`` accepts, each once."""
    found, seen = [], set()
    for layer in [model, *model.submodules]:
        if keep(layer):
            inner = unwrap(layer)
            if id(inner) not in seen:
                seen.add(id(inner))
                found.append(inner)
    return found


def batchnorm_layers(model) -> list:
    """Every BatchNorm layer of ``model`` (nested models and wrappers included), unwrapped, each once."""
    return _layers(model, is_batchnorm)


def dropout_layers(model) -> list:
    """Every Dropout-type layer of ``model`` (stochastic depth included), unwrapped, each once."""
    return _layers(model, _is_dropout)


@contextmanager
def dropout_off(model) -> Iterator[list]:
    """Every Dropout layer's rate set to 0 inside the block, restored after (also on an exception).

    Training-mode passes that only estimate statistics (BatchNorm moving statistics,
    quantiser ranges) must not see dropout's noise: EfficientNet-Lite's stochastic depth
    drops whole residual branches, and statistics gathered under it describe a network
    that inference never runs.
    """
    drops = dropout_layers(model)
    rates = [d.rate for d in drops]
    try:
        for d in drops:
            d.rate = 0.0
        yield drops
    finally:
        for d, rate in zip(drops, rates):
            d.rate = rate


def set_batchnorm_momentum(model, momentum: float) -> int:
    """Set the moving-statistics momentum of every BatchNorm layer in ``model``; returns how many."""
    layers = batchnorm_layers(model)
    for layer in layers:
        layer.momentum = momentum
    return len(layers)


def reestimate_batchnorm_statistics(model, batches: Iterable) -> int:
    """Replace every BatchNorm layer's moving mean and variance by their average over ``batches``.

    Each batch runs through ``model`` in training mode with the momentum set so that the
    moving statistics become the mean of the per-batch statistics ("precise BN"; the
    first batch replaces the old values). Every Dropout layer's rate is 0 during the
    passes, so the statistics are those of the network inference runs and the result is
    deterministic. Frozen BatchNorm layers (transfer runs) run in inference mode even with
    ``training=True``, so each is made trainable for the passes. Momenta, trainable flags
    and dropout rates are restored afterwards, also when a pass fails. No other weight
    changes.

    Returns the number of batches used; 0 (and ``batches`` is not read) when the model
    has no BatchNorm layer.
    """
    layers = batchnorm_layers(model)
    if not layers:
        return 0
    saved = [(layer.momentum, layer.trainable) for layer in layers]
    used = 0
    try:
        with dropout_off(model):
            for layer in layers:
                layer.trainable = True
            for batch in batches:
                for layer in layers:
                    layer.momentum = used / (used + 1)
                model(batch, training=True)
                used += 1
    finally:
        for layer, (momentum, trainable) in zip(layers, saved):
            layer.momentum, layer.trainable = momentum, trainable
    return used
