"""L1/L2 kernel penalties and label smoothing as run settings: off by default (committed run ids unchanged),
recorded in the run id when set, and reaching the model's losses."""

import numpy as np
import pytest
from conftest import make_image_dataset

from core.artifacts.config import RunConfig
from core.errors import UserError
from core.train import config as config_mod


@pytest.mark.unit
@pytest.mark.parametrize("key", ["head_l1", "head_l2", "unfrozen_l2", "label_smoothing"])
def test_a_penalty_changes_the_run_id_only_when_set(tmp_path, key):
    data = str(make_image_dataset(tmp_path / "d", per_class=2))
    plain = config_mod.resolve(data, "EfficientNetLite0", "quick")
    stored = {k: v for k, v in plain.to_dict().items() if k not in config_mod.PENALTIES + ("tuned_from",)}
    assert RunConfig.from_dict(stored).run_id() == plain.run_id()  # a config.json from before the settings
    assert config_mod.resolve(data, "EfficientNetLite0", "quick", {key: 0}).run_id() == plain.run_id()
    penalised = config_mod.resolve(data, "EfficientNetLite0", "quick", {key: 0.01})
    assert penalised.run_id() != plain.run_id()
    assert config_mod.resolve(data, "EfficientNetLite0", "quick", {key: 0.5 if key == "label_smoothing" else 1}).run_id() == \
        config_mod.resolve(data, "EfficientNetLite0", "quick", {key: 0.5 if key == "label_smoothing" else 1.0}).run_id()
    assert f"{key}=0.01" in config_mod.reproduce_command(penalised.to_dict())


@pytest.mark.unit
def test_nonsense_penalties_are_one_clear_line(tmp_path):
    data = str(make_image_dataset(tmp_path / "d", per_class=2))
    with pytest.raises(UserError, match="setting 'head_l2' is -0.1; allowed: 0 to 1"):
        config_mod.resolve(data, "EfficientNetLite0", "quick", {"head_l2": -0.1})
    with pytest.raises(UserError, match="'label_smoothing' must be a number"):
        config_mod.resolve(data, "EfficientNetLite0", "quick", {"label_smoothing": "lots"})
    with pytest.raises(UserError, match="'head_l1' applies only to the network"):
        config_mod.resolve(data, "EfficientNetLite0", "quick", {"head_l1": 0.1, "method": "logreg"})


@pytest.mark.integration
def test_head_and_unfrozen_penalties_reach_the_models_losses():
    from core.models.classifier import build_head_layers, build_head_model, penalise_kernels
    from core.models.tfkeras import keras

    def losses(**settings):
        cfg = RunConfig(dataset="d", backbone="EfficientNetLite0", head_hidden_units=4, **settings)
        head = build_head_model(6, build_head_layers(3, cfg))
        head(np.ones((1, 6), np.float32))
        return [float(x) for x in head.losses]

    assert losses() == []
    assert len(losses(head_l2=0.1)) == 2 and all(x > 0 for x in losses(head_l2=0.1))  # hidden and output kernels
    assert sum(losses(head_l1=0.1, head_l2=0.1)) > sum(losses(head_l2=0.1))
    base = keras.Sequential([keras.Input((5, 5, 3)), keras.layers.Conv2D(2, 3, name="c1"),
                             keras.layers.DepthwiseConv2D(3, name="c2")])
    assert penalise_kernels([base.get_layer("c2")], 0.5) == 1
    upper = keras.Model(base.input, base.output)  # a model made after the penalty carries it too
    assert len(upper.losses) == 1 and float(upper.losses[0]) > 0
