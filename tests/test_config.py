"""Run settings: every setting checked when a run is configured, --set overrides, stored configs, data checks."""

import json

import numpy as np
import pytest
from conftest import make_image_dataset

from core.artifacts.runs import RunFolder
from core.train import config as config_mod

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("override, message", [
    ({"augment": {"flip": "False"}}, "must be true or false"),
    ({"stage1": 5}, "group of settings"),
    ({"stage1": {"epochs": "abc"}}, "must be a whole number"),
    ({"augment": {"views": -3}}, "at least 0"),
    ({"batch_size": 0}, "at least 1"),
    ({"split_seed": -1}, "at least 0"),
    ({"seed": 2**32}, "below 2\\*\\*32"),
    ({"stage1": {"epoch": 5}}, "did you mean 'stage1.epochs'"),
    ({"val_fraction": 0.5, "test_fraction": 0.5}, "sum below 1"),
    ({"bn_momentum": 1.0}, "below 1"),
    ({"bn_momentum": "fast"}, "a number or null"),
    ({"bn_momentum": 0.9}, "only to training from scratch"),
])
def test_settings_are_checked_when_the_run_is_configured(override, message):
    from core.errors import UserError

    with pytest.raises(UserError, match=message):
        config_mod.resolve("data", "EfficientNetLite0", "quick", override)


def test_set_cannot_change_what_names_the_run_and_reads_python_booleans():
    from core.errors import UserError

    assert config_mod.parse_overrides(["augment.flip=False"]) == {"augment": {"flip": False}}
    for item, flag in (("seed=3", "--seed"), ("preset=full", "--preset"), ("dataset=/etc", "--data")):
        with pytest.raises(UserError, match=flag):
            config_mod.parse_overrides([item])
    # One spelling per backbone, so the same model always lands in the same folder.
    assert config_mod.resolve("d", " efficientnetlite0").backbone == "EfficientNetLite0"
    assert config_mod.resolve("d", "MobileNetV2@1").backbone == "MobileNetV2"


def test_a_run_folder_with_a_config_this_version_cannot_read_is_refused_clearly(tmp_path):
    from core.errors import UserError

    cfg = config_mod.resolve(str(tmp_path), "EfficientNetLite0", "quick", {})
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    (folder.path / "config.json").write_text(json.dumps({**cfg.to_dict(), "from_a_newer_version": 1}))
    with pytest.raises(UserError, match="holds a run with other settings"):
        folder.start(cfg)


def test_a_class_without_training_images_is_refused_and_data_notes_are_shown(tmp_path):
    from core.data.prepare import prepare_data
    from core.errors import DatasetError

    root = make_image_dataset(tmp_path / "pred", per_class=12, layout="predefined")
    make_image_dataset(root / "test", classes=("bird",), per_class=2)
    lines = []
    with pytest.raises(DatasetError, match="bird .*no training images"):
        prepare_data(config_mod.resolve(str(root), "EfficientNetLite0", "quick"), lines.append)
    assert any(line.startswith("data: note:") and "bird" in line for line in lines)


def test_class_weights_balance_the_classes():
    from core.train.stages import class_weights

    w = class_weights(np.array([0] * 90 + [1] * 10), 3)
    assert set(w) == {0, 1} and w[1] == pytest.approx(9 * w[0])
