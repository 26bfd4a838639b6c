"""The classifier: a backbone, global average pooling and a new head (dropout, optional hidden layer, softmax)."""

from __future__ import annotations

from core.artifacts.config import RunConfig


def build_head_layers(num_classes: int, config: RunConfig) -> list:
    """The new classification head applied to the pooled backbone output."""
    from core.models.tfkeras import keras

    penalty = keras.regularizers.L1L2(l1=config.head_l1, l2=config.head_l2) if config.head_l1 or config.head_l2 \
        else None
    layers = [keras.layers.Dropout(config.head_dropout, name="head_dropout")]
    if config.head_hidden_units:
        layers += [keras.layers.Dense(config.head_hidden_units, activation="relu", kernel_regularizer=penalty,
                                      name="head_hidden"),
                   keras.layers.Dropout(config.head_dropout, name="head_hidden_dropout")]
    layers.append(keras.layers.Dense(num_classes, activation="softmax", kernel_regularizer=penalty,
                                     name="predictions"))
    return layers


def penalise_kernels(layers: list, l2: float) -> int:
    """Add an L2 penalty on the kernels of already built ``layers`` (stage 2's unfrozen backbone layers) to the
    losses of every model holding them; returns how many kernels are penalised."""
    from core.models.tfkeras import tf

    count = 0
    for layer in layers:
        for name in ("kernel", "depthwise_kernel", "pointwise_kernel"):
            kernel = getattr(layer, name, None)
            if kernel is not None:
                layer.add_loss(lambda w=kernel: l2 * tf.reduce_sum(tf.square(w)))
                count += 1
    return count


def apply_layers(x, layers: list):
    for layer in layers:
        x = layer(x)
    return x


def build_classifier(base, head_layers: list):
    """Backbone + global average pooling + head, as one flat functional model."""
    from core.models.tfkeras import keras

    pooled = keras.layers.GlobalAveragePooling2D(name="avg_pool")(base.output)
    return keras.Model(base.input, apply_layers(pooled, head_layers), name="classifier")


def build_head_model(feature_dim: int, head_layers: list):
    """The head alone on pooled features; shares its layers (and weights) with the classifier."""
    from core.models.tfkeras import keras

    inputs = keras.Input(shape=(feature_dim,), name="pooled_features")
    return keras.Model(inputs, apply_layers(inputs, head_layers), name="head")
