"""BatchNorm layers: finding them, their momentum, and re-estimating their moving statistics."""

from __future__ import annotations


def is_batchnorm(layer) -> bool:
    return "BatchNormalization" in type(layer).__name__


def set_batchnorm_momentum(model, momentum: float) -> int:
    """Set the moving-statistics momentum of every BatchNorm layer in ``model``; returns how many."""
    layers = [layer for layer in model.submodules if is_batchnorm(layer)]
    for layer in layers:
        layer.momentum = momentum
    return len(layers)


def reestimate_batchnorm_statistics(model, batches) -> int:
    """Replace every BatchNorm layer's moving mean and variance by their average over ``batches``.

    Each batch runs through ``model`` in training mode with the momentum set so that the
    moving statistics become the running average of the batch statistics ("precise BN");
    the layers' momenta are restored afterwards. Frozen BatchNorm layers (transfer runs) run in
    inference mode even with ``training=True``, so each is made trainable for the passes and
    frozen again after. Returns the number of batches used.
    """
    layers = [layer for layer in model.submodules if is_batchnorm(layer)]
    saved = [(layer.momentum, layer.trainable) for layer in layers]
    used = 0
    try:
        for layer in layers:
            layer.trainable = True
        for batch in batches:
            for layer in layers:
                layer.momentum = used / (used + 1)  # 0 first: the first batch replaces the old values
            model(batch, training=True)
            used += 1
    finally:
        for layer, (momentum, trainable) in zip(layers, saved):
            layer.momentum, layer.trainable = momentum, trainable
    return used
