"""BatchNorm re-estimation ("precise BN"): the one implementation in core.models.batchnorm."""

import numpy as np
import pytest

from core.models import batchnorm

pytestmark = pytest.mark.integration


def _model(dropout_rate: float, stochastic_depth: bool = False):
    """Dense -> Dropout -> BatchNorm -> Dense, with fixed weights (the same for every rate).

    The dropout sits before the BatchNorm, so in a training-mode pass with dropout active
    the batch statistics are those of the dropped activations.
    """
    from core.models.tfkeras import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    x = keras.layers.Dense(8, name="dense")(inputs)
    noise_shape = (None, 1) if stochastic_depth else None  # one draw per sample, as stochastic depth
    x = keras.layers.Dropout(dropout_rate, noise_shape=noise_shape, name="drop")(x)
    x = keras.layers.BatchNormalization(momentum=0.99, name="bn")(x)
    outputs = keras.layers.Dense(3, name="out")(x)
    return keras.Model(inputs, outputs)


def _batches():
    rng = np.random.default_rng(1)
    return [rng.normal(loc=k, scale=1 + k, size=(16, 6)).astype("float32") for k in range(4)]


def _statistics(model):
    bn = model.get_layer("bn")
    return bn.moving_mean.numpy().copy(), bn.moving_variance.numpy().copy()


@pytest.mark.parametrize("stochastic_depth", [False, True])
def test_reestimation_ignores_dropout_and_restores_the_layers(stochastic_depth):
    from core.models.tfkeras import keras

    reference = _model(0.0, stochastic_depth)
    assert batchnorm.reestimate_batchnorm_statistics(reference, _batches()) == 4
    expected = _statistics(reference)

    results = []
    for seed in (123, 456):  # other dropout draws would change the result if dropout ran
        model = _model(0.9, stochastic_depth)
        bn, drop = model.get_layer("bn"), model.get_layer("drop")
        bn.trainable = False  # frozen, as in a transfer run: re-estimation must still reach it
        keras.utils.set_random_seed(seed)
        assert batchnorm.reestimate_batchnorm_statistics(model, _batches()) == 4
        assert drop.rate == 0.9 and bn.momentum == 0.99 and bn.trainable is False  # restored
        results.append(_statistics(model))
        for got, want in zip(results[-1], expected):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    for first, second in zip(*results):
        np.testing.assert_array_equal(first, second)  # deterministic

    # Once more on the same model: the old statistics are replaced, not averaged in.
    keras.utils.set_random_seed(789)
    batchnorm.reestimate_batchnorm_statistics(model, _batches())
    for got, want in zip(_statistics(model), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_reestimated_statistics_are_the_average_of_the_batch_statistics():
    from core.models.tfkeras import keras

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.BatchNormalization(momentum=0.99)(inputs))
    bn = model.layers[-1]
    batches = _batches()
    batches = [b[:, :3] for b in batches]
    assert batchnorm.reestimate_batchnorm_statistics(model, iter(batches)) == 4  # any iterable
    np.testing.assert_allclose(bn.moving_mean.numpy(), np.mean([b.mean(0) for b in batches], axis=0), rtol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), np.mean([b.var(0) for b in batches], axis=0), rtol=1e-4)


def test_layers_are_restored_when_a_pass_fails():
    model = _model(0.5)
    bn, drop = model.get_layer("bn"), model.get_layer("drop")
    bn.trainable = False

    def batches():
        yield _batches()[0]
        raise RuntimeError("reading the images failed")

    with pytest.raises(RuntimeError, match="reading the images failed"):
        batchnorm.reestimate_batchnorm_statistics(model, batches())
    assert drop.rate == 0.5 and bn.momentum == 0.99 and bn.trainable is False


def test_a_model_without_batchnorm_is_left_alone():
    from core.models.tfkeras import keras

    inputs = keras.Input((6,))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Dropout(0.5)(inputs)))
    assert batchnorm.reestimate_batchnorm_statistics(model, _batches()) == 0


def test_layers_are_found_inside_tfmot_wrappers_and_nested_models():
    import tensorflow_model_optimization as tfmot

    from core.models.tfkeras import keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)  # tfmot quantises BatchNorm only after a convolution
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Dropout(0.5, name="drop")(keras.layers.ReLU()(x))
    conv = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x)))
    qat = tfmot.quantization.keras.quantize_model(conv)
    assert any(type(layer).__name__ != "BatchNormalization" and batchnorm.is_batchnorm(layer)
               for layer in qat.layers)  # the quantisation wrapper around the BatchNorm
    assert [type(layer).__name__ for layer in batchnorm.batchnorm_layers(qat)] == ["BatchNormalization"]
    assert [layer.rate for layer in batchnorm.dropout_layers(qat)] == [0.5]

    model = _model(0.5)
    inputs = keras.Input((6,))
    nested = keras.Model(inputs, keras.layers.Dense(2)(model(inputs)))
    assert batchnorm.set_batchnorm_momentum(nested, 0.9) == 1
    assert model.get_layer("bn").momentum == 0.9
    with batchnorm.dropout_off(nested) as drops:
        assert [d.rate for d in drops] == [0.0]
    assert model.get_layer("drop").rate == 0.5


def test_compression_recalibration_uses_the_same_reestimation():
    from core.deploy import compression

    model, reference = _model(0.9), _model(0.0)
    x = np.concatenate(_batches())
    assert compression.recalibrate_batchnorm(model, x, batch_size=16) == {"batchnorm_recalibrated": True,
                                                                           "recalibration_images": 64}
    batchnorm.reestimate_batchnorm_statistics(reference, _batches())
    for got, want in zip(_statistics(model), _statistics(reference)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert compression.recalibrate_batchnorm(model, None) == {"batchnorm_recalibrated": False}
