"""The backbones built in Keras: parameter counts as published, ImageNet weights, the Keras cache.

Integration: every test builds a model in TensorFlow. The registry itself is tested in test_backbones.py.
"""

from pathlib import Path

import numpy as np
import pytest
from test_backbones import KERAS_DOCS_WITH_TOP_M, KERAS_NO_TOP, LITE_WITH_TOP_M

from core.errors import WeightsUnavailableError
from core.models import backbones

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parent / "fixtures"
DAISY_CLASS = 985  # ImageNet class "daisy"


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
