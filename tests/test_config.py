"""Run settings: every setting checked when a run is configured, --set overrides, stored configs, data checks."""

import json
import re
from pathlib import Path

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
    ({"augment": {"views": -3}}, "'augment.views' is -3; allowed: 0 to 32"),
    ({"batch_size": 0}, "'batch_size' is 0; allowed: 1 to 1024"),
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


# Each bad value is refused when the run is configured, in one line naming the setting, the value and the range.
BAD_VALUES = [
    ({"batch_size": 100000}, "setting 'batch_size' is 100000; allowed: 1 to 1024"),
    ({"batch_size": -8}, "setting 'batch_size' is -8; allowed: 1 to 1024"),
    ({"head_dropout": 1.5}, "setting 'head_dropout' is 1.5; allowed: at least 0 and below 1"),
    ({"head_dropout": 1}, "setting 'head_dropout' is 1; allowed: at least 0 and below 1"),
    ({"head_dropout": -0.1}, "setting 'head_dropout' is -0.1; allowed: at least 0 and below 1"),
    ({"head_dropout": float("nan")}, "setting 'head_dropout' is nan; allowed: at least 0 and below 1"),
    ({"head_hidden_units": -1}, "setting 'head_hidden_units' is -1; allowed: 0 to 8192"),
    ({"head_hidden_units": 10**6}, "setting 'head_hidden_units' is 1000000; allowed: 0 to 8192"),
    ({"input_size": 16}, "setting 'input_size' is 16; allowed: 32 to 1024"),
    ({"input_size": 5000}, "setting 'input_size' is 5000; allowed: 32 to 1024"),
    ({"stage1": {"learning_rate": 0}}, "setting 'stage1.learning_rate' is 0; allowed: above 0 and at most 1"),
    ({"stage2": {"learning_rate": -1e-4}}, "setting 'stage2.learning_rate' is -0.0001; allowed: above 0"),
    ({"scratch": {"learning_rate": float("inf")}}, "setting 'scratch.learning_rate' is inf; allowed: above 0"),
    ({"stage1": {"learning_rate": 10}}, "setting 'stage1.learning_rate' is 10; allowed: above 0 and at most 1"),
    ({"stage1": {"patience": -1}}, "setting 'stage1.patience' is -1; allowed: 0 to 1000"),
    ({"stage1": {"epochs": -1}}, "setting 'stage1.epochs' is -1; allowed: 0 to 1000"),
    ({"stage2": {"epochs": 5000}}, "setting 'stage2.epochs' is 5000; allowed: 0 to 1000"),
    ({"augment": {"views": 1000}}, "setting 'augment.views' is 1000; allowed: 0 to 32"),
    ({"augment": {"zoom": 1.0}}, "setting 'augment.zoom' is 1.0; allowed: at least 0 and below 1"),
    ({"augment": {"rotation_deg": 720}}, "setting 'augment.rotation_deg' is 720; allowed: 0 to 180"),
    ({"augment": {"brightness": 2}}, "setting 'augment.brightness' is 2; allowed: 0 to 1"),
    ({"augment": {"contrast": -0.5}}, "setting 'augment.contrast' is -0.5; allowed: 0 to 1"),
    ({"augment": {"seed": 2**32}}, "setting 'augment.seed' is 4294967296; allowed: at least 0 and below 2**32"),
    ({"unfreeze_layers": -5}, "setting 'unfreeze_layers' is -5; allowed: at least 0"),
    ({"max_train_per_class": 0}, "setting 'max_train_per_class' is 0; allowed: at least 1"),
    ({"val_fraction": 1.2}, "setting 'val_fraction' is 1.2; allowed: at least 0 and below 1"),
    ({"stage1": {"optimizer": "bogus"}}, "setting 'stage1.optimizer' is 'bogus'; allowed: adam, sgd, rmsprop"),
    ({"scratch": {"optimizer": "Adam"}}, "setting 'scratch.optimizer' is 'Adam'; allowed: adam, sgd, rmsprop"),
    ({"weights": "None"}, "setting 'weights' is 'None'; allowed: imagenet, none"),
    ({"val_folder": "val"}, "setting 'val_folder' is 'val'; allowed: validation, test"),
    ({"method": "svm"}, "setting 'method' is 'svm'; allowed: finetune, logreg, linear_svm, knn"),
    ({"method": "logreg", "weights": "none"}, "baselines on frozen embeddings need ImageNet weights"),
    ({"stage1": {"epochs": 0}, "stage2": {"epochs": 0}},
     "settings 'stage1.epochs' and 'stage2.epochs' are both 0; a network run trains at least 1 epoch"),
    ({"weights": "none", "scratch": {"epochs": 0}}, "setting 'scratch.epochs' is 0; allowed: 1 to 1000"),
]


@pytest.mark.parametrize("override, message", BAD_VALUES)
def test_each_bad_value_is_one_line_naming_the_setting_the_value_and_the_range(override, message):
    from core.errors import UserError

    with pytest.raises(UserError) as caught:
        config_mod.resolve("data", "EfficientNetLite0", "quick", override)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


@pytest.mark.parametrize("override", [
    {"stage1": {"epochs": 0}, "stage2": {"epochs": 3}},  # fine-tuning alone trains the network
    {"method": "logreg", "stage1": {"epochs": 0}, "stage2": {"epochs": 0}},  # baselines have no epochs
    {"batch_size": 1024, "input_size": 32, "head_dropout": 0, "stage1": {"learning_rate": 1}},
    {"augment": {"zoom": 0.99, "contrast": 1, "brightness": 0, "views": 32, "rotation_deg": 180}},
])
def test_values_at_the_ends_of_their_ranges_are_accepted(override):
    config_mod.resolve("data", "EfficientNetLite0", "quick", override)


def test_every_numeric_setting_has_a_documented_range_that_holds_its_defaults():
    from core.artifacts.config import RunConfig, flatten

    numeric = {k for k, v in flatten(RunConfig(dataset="", backbone="").to_dict()).items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "schema_version"}
    numeric |= config_mod._OPTIONAL_INTS | config_mod._OPTIONAL_FLOATS  # None by default
    assert numeric == set(config_mod.RANGES)
    for preset in config_mod.PRESETS:  # every preset's values lie inside the ranges
        for weights in ("imagenet", "none"):
            config_mod.resolve("d", "EfficientNetLite0", preset, {"weights": weights})
    docs = (Path(__file__).resolve().parent.parent / "docs" / "ARTIFACTS.md").read_text(encoding="utf-8")
    text = " ".join(docs.split())
    for key, allowed in config_mod.RANGES.items():
        key = re.sub(r"^(stage1|stage2|scratch)\.", "<stage>.", key)
        assert f"`{key}`: {allowed}" in text, key
    assert list(config_mod.OPTIMIZERS) == ["adam", "sgd", "rmsprop"]
    assert "`<stage>.optimizer`: `adam`, `sgd` or `rmsprop`" in text


def test_an_input_size_below_the_backbones_minimum_is_refused():
    from core.errors import UserError

    with pytest.raises(UserError, match="setting 'input_size' is 40; InceptionV3 takes 75 to 1024 pixels"):
        config_mod.resolve("data", "InceptionV3", "quick", {"input_size": 40})
    assert config_mod.resolve("data", "InceptionV3", "quick", {"input_size": 75}).input_size == 75


@pytest.mark.parametrize("items, message", [
    (["stage1=5", "stage1.epochs=3"], "'stage1' is set both as a value and as a group of settings"),
    (["augment.views=2", "augment.views.x=1"], "'views' is set both as a value and as a group of settings"),
])
def test_a_setting_given_as_both_a_value_and_a_group_is_one_line(items, message):
    from core.errors import UserError

    with pytest.raises(UserError, match=message):
        config_mod.parse_overrides(items)


def test_a_config_built_in_code_is_checked_before_any_folder_is_made(tmp_path):
    from core.artifacts.config import RunConfig
    from core.errors import UserError
    from core.orchestrate.run import execute

    data = make_image_dataset(tmp_path / "colours", per_class=6)
    for bad in (RunConfig(dataset=str(data), backbone="EfficientNetLite0", weights="none", head_dropout=2.0),
                RunConfig(dataset=str(data), backbone="EfficientNetLite0", weights="none", batch_size=100000)):
        with pytest.raises(UserError, match="allowed"):
            execute(bad, tmp_path / "art", emit=lambda line: None)
    assert not (tmp_path / "art").exists()


def test_prediction_batches_apart_from_the_training_batch(monkeypatch):
    """A training batch of 1024 cached features must not become 1024 full images at test time."""
    from core.models.backbones import get_spec
    from core.train import transfer
    from core.train.pipeline import INFERENCE_BATCH, inference_batch

    batches = []

    def make_dataset(paths, labels, spec, batch_size=32, **kwargs):
        batches.append(batch_size)
        return "dataset"

    class Model:
        def predict(self, ds, verbose=0):
            return np.zeros((1, 3))

    monkeypatch.setattr(transfer, "make_dataset", make_dataset)
    for batch_size in (1024, 16):
        cfg = config_mod.resolve("d", "EfficientNetLite0", "quick", {"batch_size": batch_size})
        transfer.predict_images(Model(), get_spec("EfficientNetLite0"), cfg, ["a.png"])
    assert batches == [INFERENCE_BATCH, 16] and INFERENCE_BATCH == 64
    assert inference_batch(32) == 32  # runs at the default batch predict exactly as before


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


def test_a_class_with_few_validation_images_is_warned_about(tmp_path):
    from core.data.prepare import prepare_data, sparse_validation_message

    message = sparse_validation_message(np.array([0] * 40 + [1] * 2 + [2] * 9 + [3] * 30), ["a", "b", "c", "d"])
    assert message.startswith("the validation split holds few images of some classes (b 2, c 9): one image of b moves "
                              "a validation balanced accuracy by 0.125")
    assert sparse_validation_message(np.array([0] * 10 + [1] * 10), ["a", "b", "never"]) is None
    grouped = sparse_validation_message(np.array([0] * 40 + [1] * 3), ["a", "b"], ["g1"] * 40 + ["x", "x", "y"])
    assert "(b 3 in 2 groups): one image of b moves a validation balanced accuracy by 0.167" in grouped
    assert "scripts/validation_carve.py" in grouped
    root = make_image_dataset(tmp_path / "few", per_class=12)  # 15% of 12 per class: about 2 validation images each
    lines = []
    prepare_data(config_mod.resolve(str(root), "EfficientNetLite0", "quick"), lines.append)
    assert any(line.startswith("data: WARNING: the validation split holds few images") for line in lines)


def test_class_weights_balance_the_classes():
    from core.train.stages import class_weights

    w = class_weights(np.array([0] * 90 + [1] * 10), 3)
    assert set(w) == {0, 1} and w[1] == pytest.approx(9 * w[0])


def test_a_lone_val_folder_makes_new_runs_test_on_it_while_stored_configs_keep_their_ids(tmp_path):
    from core.artifacts.config import RunConfig

    trainval = make_image_dataset(tmp_path / "tv", per_class=8, layout="trainval")
    new = config_mod.resolve(str(trainval), "EfficientNetLite0", "quick")
    assert new.val_folder == "test"
    old = config_mod.resolve(str(trainval), "EfficientNetLite0", "quick", {"val_folder": "validation"})
    stored = {k: v for k, v in old.to_dict().items() if k != "val_folder"}  # a config.json from before the setting
    assert RunConfig.from_dict(stored).run_id() == old.run_id() != new.run_id()
    assert "--set val_folder" not in config_mod.reproduce_command(new.to_dict())  # its dataset's default
    assert 'val_folder="validation"' in config_mod.reproduce_command(old.to_dict())
    flat = make_image_dataset(tmp_path / "flat", per_class=4)
    assert config_mod.resolve(str(flat), "EfficientNetLite0").val_folder == "validation"


def test_the_methods_page_settings_table_marks_what_differs_from_the_preset():
    cfg = config_mod.resolve("data", "EfficientNetLite0", "quick", {"stage1": {"epochs": 7}}).to_dict()
    rows = {r["setting"]: r for r in config_mod.settings_rows(cfg)}
    assert rows["stage1.epochs"]["origin"] == "changed (default 10)" and rows["stage1.epochs"]["value"] == "7"
    assert rows["stage2.epochs"]["origin"] == "default" and rows["input_size"]["value"] == "none"
    assert config_mod.settings_rows(cfg)[0]["origin"] == "names the run" and "schema_version" not in rows


def test_new_calibrated_baselines_cut_calibration_folds_by_group_while_stored_runs_keep_their_ids(tmp_path):
    from core.artifacts.config import RunConfig, identity_settings
    from core.errors import UserError

    data = str(make_image_dataset(tmp_path / "d", per_class=4))
    new = config_mod.resolve(data, "EfficientNetLite0", "full", {"method": "ovr_svm"})
    assert new.calibration_folds == "groups"
    for method in ("finetune", "logreg", "knn"):  # nothing to calibrate: the setting stays out of their ids
        settings = {} if method == "finetune" else {"method": method}
        other = config_mod.resolve(data, "EfficientNetLite0", "full", settings)
        assert other.calibration_folds == "images" and "calibration_folds" not in identity_settings(other.to_dict())
    # A run made before the setting (no key in its config.json) calibrated image by image, and keeps its id.
    old = config_mod.resolve(data, "EfficientNetLite0", "full", {"method": "ovr_svm", "calibration_folds": "images"})
    stored = {k: v for k, v in old.to_dict().items() if k != "calibration_folds"}
    assert RunConfig.from_dict(stored).calibration_folds == "images"
    assert RunConfig.from_dict(stored).run_id() == old.run_id() != new.run_id()
    # Its command says so, and running it gives that run again.
    command = config_mod.reproduce_command(stored)
    assert "--set 'calibration_folds=\"images\"'" in command
    assert "calibration_folds" not in config_mod.reproduce_command(new.to_dict())
    with pytest.raises(UserError, match="applies only to the calibrated baselines"):
        config_mod.resolve(data, "EfficientNetLite0", "full", {"method": "logreg", "calibration_folds": "groups"})
    with pytest.raises(UserError, match="'calibration_folds' is 'folds'"):
        config_mod.resolve(data, "EfficientNetLite0", "full", {"method": "ovr_svm", "calibration_folds": "folds"})
