from pathlib import Path

import numpy as np
import pytest

from core.cli import main as cli_main
from core.errors import UnknownBackboneError, WeightsUnavailableError
from core.models import backbones

FIXTURES = Path(__file__).parent / "fixtures"
DAISY_CLASS = 985  # ImageNet class "daisy"

# Keras' published no-top parameter counts (model.count_params() of the keras.applications
# models with include_top=False at their default input size), and the with-top sizes from
# the keras.applications documentation table, in millions.
KERAS_NO_TOP = {
    "MobileNet": 3_228_864,
    "MobileNetV2": 2_257_984,
    "MobileNetV3Small": 939_120,
    "MobileNetV3Large": 2_996_352,
    "InceptionV3": 21_802_784,
    "ResNet101": 42_658_176,
    "VGG19": 20_024_384,
}
KERAS_DOCS_WITH_TOP_M = {"MobileNet": 4.3, "MobileNetV2": 3.5, "InceptionV3": 23.9, "ResNet101": 44.7, "VGG19": 143.7}
# TensorFlow's EfficientNet-Lite README: 4.7M, 5.4M, 6.1M parameters (with the ImageNet top).
LITE_WITH_TOP_M = {"EfficientNetLite0": 4.7, "EfficientNetLite1": 5.4, "EfficientNetLite2": 6.1}


def test_registry_holds_the_study_backbones():
    expected = set(KERAS_NO_TOP) | set(LITE_WITH_TOP_M)
    assert expected == set(backbones.names())
    assert backbones.get_spec("MobileNetV3Small").entry.preprocessing == "raw"
    assert backbones.get_spec("InceptionV3").input_size == 299
    assert backbones.get_spec("EfficientNetLite2").input_size == 260
    assert backbones.get_spec("VGG19").entry.preprocessing == "caffe"


@pytest.mark.parametrize("name", sorted(KERAS_NO_TOP))
def test_keras_no_top_param_counts_match_published(name):
    spec = backbones.get_spec(name)
    model = backbones.build_backbone(spec, weights=None)
    assert model.count_params() == KERAS_NO_TOP[name] == spec.param_count()


@pytest.mark.parametrize("name", sorted(KERAS_DOCS_WITH_TOP_M))
def test_keras_with_top_param_counts_match_docs_table(name):
    from core.models.tfkeras import keras

    model = getattr(keras.applications, name)(weights=None)
    assert round(model.count_params() / 1e6, 1) == KERAS_DOCS_WITH_TOP_M[name]


@pytest.mark.parametrize("name", sorted(LITE_WITH_TOP_M))
def test_efficientnet_lite_param_counts(name):
    from core.models import efficientnet_lite

    with_top = efficientnet_lite.build(name, include_top=True).count_params()
    assert abs(with_top / 1e6 - LITE_WITH_TOP_M[name]) <= 0.1  # the table rounds loosely
    spec = backbones.get_spec(name)
    assert backbones.build_backbone(spec, weights=None).count_params() == spec.param_count() == with_top - 1_281_000


def test_efficientnet_lite0_classifies_daisies_as_imagenet_daisy(keras_home):
    from core.data.dataset import load_image
    from core.models import efficientnet_lite
    from core.models.preprocess import preprocess

    weights = efficientnet_lite.convert_weights("EfficientNetLite0", keras_home)
    assert weights.parent == keras_home and weights.stat().st_size > 10_000_000
    model = efficientnet_lite.build("EfficientNetLite0", include_top=True)
    model.load_weights(str(weights))
    photos = sorted(FIXTURES.glob("daisy/*.jpg"))
    assert len(photos) >= 3
    batch = np.stack([load_image(p, size=(224, 224)) for p in photos]).astype(np.float32)
    probs = model.predict(preprocess(batch, "lite"), verbose=0)
    assert probs.argmax(axis=1).tolist() == [DAISY_CLASS] * len(photos)
    assert probs[:, DAISY_CLASS].mean() > 0.5

    # The no-top backbone loads the same converted weights through the registry.
    spec = backbones.get_spec("EfficientNetLite0")
    assert spec.weights_available()
    backbone = backbones.build_backbone(spec, weights="imagenet")
    np.testing.assert_array_equal(backbone.get_layer("stem_conv").get_weights()[0],
                                  model.get_layer("stem_conv").get_weights()[0])


def test_missing_imagenet_weights_give_one_clear_sentence(keras_home, monkeypatch):
    from tf_keras.src.utils import data_utils

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(data_utils, "get_file", offline)
    spec = backbones.get_spec("MobileNetV3Small")
    assert not spec.weights_available()
    with pytest.raises(WeightsUnavailableError) as err:
        backbones.build_backbone(spec, weights="imagenet")
    message = str(err.value)
    assert "MobileNetV3Small" in message
    assert "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5" in message
    assert str(keras_home) in message
    assert "\n" not in message


def test_weights_none_is_random_and_never_touches_the_cache(keras_home):
    model = backbones.build_backbone("MobileNetV3Small", weights=None)
    assert model.count_params() == KERAS_NO_TOP["MobileNetV3Small"]
    assert list(keras_home.iterdir()) == []


def test_alpha_weights_load_from_keras_home_cache(keras_home):
    spec = backbones.get_spec("MobileNetV2@0.35")
    assert spec.weights_filename() == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"
    assert not spec.weights_available()
    reference = backbones.build_backbone(spec, weights=None)
    reference.save_weights(str(keras_home / spec.weights_filename()))
    assert spec.weights_available()
    assert spec in backbones.listed_specs()
    loaded = backbones.build_backbone(spec, weights="imagenet")
    for a, b in zip(reference.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_spec_names_and_errors():
    assert backbones.get_spec("mobilenetv2@0.35").name == "MobileNetV2@0.35"
    assert backbones.get_spec("MobileNetV2").name == "MobileNetV2"
    assert backbones.get_spec("MobileNet@0.25").weights_filename() == "mobilenet_2_5_224_tf_no_top.h5"
    with pytest.raises(UnknownBackboneError, match="known backbones: .*EfficientNetLite0"):
        backbones.get_spec("ResNet9000")
    with pytest.raises(UnknownBackboneError, match="alpha"):
        backbones.get_spec("MobileNetV2@0.33")
    with pytest.raises(UnknownBackboneError, match="no width multiplier"):
        backbones.get_spec("VGG19@0.5")


def test_backbones_command_prints_the_registry(keras_home, capsys):
    assert cli_main(["backbones"]) == 0
    out = capsys.readouterr().out
    for name in backbones.names():
        assert name in out
    vgg = next(line for line in out.splitlines() if line.startswith("VGG19"))
    assert "20,024,384" in vgg and vgg.rstrip().endswith("no")
    lite = next(line for line in out.splitlines() if line.startswith("EfficientNetLite0"))
    assert lite.rstrip().endswith("yes")  # the PyPI package is installed


def test_preprocessing_modes_do_not_scale_twice():
    from core.models.preprocess import preprocess

    x = np.array([[[0.0, 127.5, 255.0]]], dtype=np.float32)
    np.testing.assert_allclose(preprocess(x, "tf"), [[[-1.0, 0.0, 1.0]]])
    np.testing.assert_array_equal(preprocess(x, "raw"), x)  # MobileNetV3 rescales inside
    np.testing.assert_allclose(preprocess(x, "caffe"), [[[255.0 - 103.939, 127.5 - 116.779, 0.0 - 123.68]]], rtol=1e-6)
    with pytest.raises(ValueError):
        preprocess(x, "imagenet")
