"""The backbone registry: names, specs, input sizes, preprocessing, the `backbones` command (no TensorFlow).

Building the models (parameter counts, ImageNet weights) is tested in test_backbone_models.py.
"""

import numpy as np
import pytest

from core.cli import main as cli_main
from core.errors import UnknownBackboneError
from core.models import backbones

pytestmark = pytest.mark.unit

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
