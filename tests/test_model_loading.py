"""Loading a stored model never runs code from the file: one loader, zip .keras archives of known classes only."""

from __future__ import annotations

import shutil
import zipfile

import numpy as np
import pytest

from core.models.loading import ModelFileError, check_model_file, load_model

pytestmark = [pytest.mark.integration,
              pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file")]


def _lambda_model(marker):
    """A model whose Lambda layer touches ``marker`` when it is built: what a crafted file would carry."""
    from core.models.tfkeras import keras

    target = str(marker)  # a closure the file stores with the bytecode
    inputs = keras.Input((4,))
    touch = keras.layers.Lambda(lambda t: (open(target, "w").close(), t)[1], name="payload")
    return keras.Model(inputs, keras.layers.Dense(2)(touch(inputs)))


def test_an_hdf5_file_named_model_keras_is_refused_before_it_can_run_code(tmp_path):
    from core.models.tfkeras import keras

    marker = tmp_path / "MARKER"
    _lambda_model(marker).save(tmp_path / "crafted.h5", save_format="h5")
    marker.unlink()
    crafted = tmp_path / "model.keras"
    shutil.copy(tmp_path / "crafted.h5", crafted)
    keras.models.load_model(str(crafted), compile=False)  # the attack: Keras' own loader runs the payload...
    assert marker.exists()
    marker.unlink()
    with pytest.raises(ModelFileError, match="not a Keras .keras archive") as info:  # ...the product's does not
        load_model(crafted)
    assert not marker.exists() and str(crafted) in str(info.value) and "\n" not in str(info.value)


def test_a_keras_archive_with_a_lambda_or_custom_class_is_refused(tmp_path):
    marker = tmp_path / "MARKER"
    _lambda_model(marker).save(tmp_path / "lambda.keras")
    marker.unlink()
    with pytest.raises(ModelFileError, match=r"Lambda \(keras.layers\)"):
        load_model(tmp_path / "lambda.keras")
    assert not marker.exists()


def _flip_bytes_inside(path):
    """Damage the weights member in place: the archive's table of contents stays intact."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        start = archive.getinfo("model.weights.h5").header_offset + 60
    data[start:start + 16] = bytes(b ^ 0xFF for b in data[start:start + 16])
    path.write_bytes(bytes(data))


def _junk_weights(path):
    """A well-formed archive whose weights file is not HDF5 (h5py: "file signature not found")."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, b"x" * 5000 if name == "model.weights.h5" else content)


INCOMPLETE = "is not a complete .keras model archive \\(truncated or corrupt\\)$"


@pytest.mark.parametrize("damage, expected", [
    (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), INCOMPLETE),
    (lambda p: p.write_bytes(p.read_bytes()[:100]), INCOMPLETE),
    (lambda p: p.write_bytes(p.read_bytes()[:-1]), INCOMPLETE),
    (lambda p: p.write_bytes(b""), INCOMPLETE),
    (_flip_bytes_inside, INCOMPLETE),
    (_junk_weights, INCOMPLETE),
    (lambda p: p.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100), "not a Keras .keras archive"),
    (lambda p: p.unlink(), "no model file here"),
], ids=["half", "first-100-bytes", "last-byte-cut", "empty", "flipped-bytes", "junk-weights", "hdf5", "missing"])
def test_a_damaged_model_file_is_one_line(tmp_path, damage, expected):
    from core.models.tfkeras import keras

    path = tmp_path / "model.keras"
    inputs = keras.Input((4,))
    keras.Model(inputs, keras.layers.Dense(2)(inputs)).save(path)
    damage(path)
    with pytest.raises(ModelFileError, match=expected) as info:
        load_model(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "signature" not in message


def test_an_archive_without_its_weights_is_refused(tmp_path):
    path = tmp_path / "model.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", '{"class_name": "Functional", "config": {}}')
    with pytest.raises(ModelFileError, match="no model.weights.h5"):
        check_model_file(path)


@pytest.mark.parametrize("backbone", ["EfficientNetLite0", "MobileNetV3Small", "MobileNetV2@0.35"])
def test_the_classifiers_the_product_writes_load_and_predict_the_same(tmp_path, backbone):
    from core.artifacts.config import RunConfig
    from core.models.backbones import build_backbone
    from core.models.classifier import build_classifier, build_head_layers

    model = build_classifier(build_backbone(backbone, None, (64, 64, 3)),
                             build_head_layers(3, RunConfig(dataset="", backbone=backbone)))
    model.save(tmp_path / "model.keras")
    loaded = load_model(tmp_path / "model.keras")
    x = np.random.default_rng(0).uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)
