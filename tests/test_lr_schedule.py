"""The learning rate reduced on a validation-loss plateau (a stage's reduce_lr_patience): off by default (committed
run ids unchanged), followed epoch by epoch, recorded in the history and kept across a resume."""

import json

import numpy as np
import pytest
from conftest import make_image_dataset

from core.artifacts.config import RunConfig, StageConfig
from core.errors import UserError
from core.train import config as config_mod


@pytest.mark.unit
def test_the_rate_falls_after_patience_epochs_without_improvement_and_stops_at_its_floor():
    from core.train.stages import MIN_LR_FRACTION, reduced_learning_rate

    stage = StageConfig(epochs=20, learning_rate=1e-3, reduce_lr_patience=2, reduce_lr_factor=0.1)
    rate, wait, rates = stage.learning_rate, 0, []
    for improved in [True, False, False, False, True, False, False, False, False, False, False]:
        step = reduced_learning_rate(stage, rate, improved, wait)
        rate, wait = step["learning_rate"], step["lr_wait"]
        rates.append(rate)
    # Two epochs without improvement: x0.1; an improvement restarts the count; never below 1% of 1e-3.
    floor = 1e-3 * MIN_LR_FRACTION
    assert rates == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4, 1e-4, 1e-4, floor, floor, floor, floor, floor])
    constant = StageConfig(epochs=20, learning_rate=1e-3)  # reduce_lr_patience 0: as every earlier run
    assert reduced_learning_rate(constant, 1e-3, False, 50) == {"learning_rate": 1e-3, "lr_wait": 51}


@pytest.mark.unit
def test_the_setting_names_a_run_only_when_set_and_is_checked(tmp_path):
    data = str(make_image_dataset(tmp_path / "d", per_class=2))
    plain = config_mod.resolve(data, "EfficientNetLite0", "full", {"weights": "none"})
    stored = plain.to_dict()
    for stage in ("stage1", "stage2", "scratch"):  # a config.json written before the setting existed
        stored[stage] = {k: v for k, v in stored[stage].items() if not k.startswith("reduce_lr")}
    assert RunConfig.from_dict(stored).run_id() == plain.run_id()
    assert "reduce_lr" not in config_mod.reproduce_command(stored)
    scheduled = config_mod.resolve(data, "EfficientNetLite0", "full",
                                   {"weights": "none", "scratch": {"reduce_lr_patience": 3}})
    assert scheduled.run_id() != plain.run_id()
    assert "--set scratch.reduce_lr_patience=3" in config_mod.reproduce_command(scheduled.to_dict())
    with pytest.raises(UserError, match="reduce_lr_factor"):
        config_mod.resolve(data, "EfficientNetLite0", "full", {"scratch": {"reduce_lr_factor": 1.0}})
    # The factor without a patience would train exactly as the plain run under another run id.
    with pytest.raises(UserError, match="'scratch.reduce_lr_factor' takes effect only with"):
        config_mod.resolve(data, "EfficientNetLite0", "full", {"weights": "none", "scratch": {"reduce_lr_factor": 0.5}})
    halved = config_mod.resolve(data, "EfficientNetLite0", "full",
                                {"weights": "none", "scratch": {"reduce_lr_patience": 3, "reduce_lr_factor": 0.5}})
    assert halved.run_id() not in (plain.run_id(), scheduled.run_id())


def _contradicting_data(seed: int = 0):
    """Validation labels opposite to the training rule: every epoch of training makes validation loss worse."""
    rng = np.random.default_rng(seed)
    x = np.sign(rng.normal(size=(64, 1))).astype(np.float32) + rng.normal(scale=0.05, size=(64, 1)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    return (x, y), (x.copy(), 1 - y)


def _train(run, on_epoch=None):
    from core.models.tfkeras import keras
    from core.train import stages

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(2, activation="softmax")])
    stage = StageConfig(epochs=6, learning_rate=0.1, patience=10, reduce_lr_patience=1, reduce_lr_factor=0.5)
    stages.compile_model(model, stage)
    train, val = _contradicting_data()
    used = []

    def record(epoch, m):
        used.append(float(keras.backend.get_value(m.optimizer.learning_rate)))
        if on_epoch:
            on_epoch(epoch, m)

    result = stages.train_stage(model, "stage1", stage, lambda epoch: train, val, run,
                                RunConfig(dataset="", backbone="EfficientNetLite0"), lambda line: None, None, record)
    return result, used


@pytest.mark.integration
def test_training_follows_the_schedule_and_a_resumed_stage_keeps_it(tmp_path):
    from core.artifacts.runs import RunFolder

    whole, used = _train(None)
    rates = [row["learning_rate"] for row in whole.rows]
    assert rates == pytest.approx(used)  # the recorded rate is the one the optimiser trained with
    # No epoch improved after the first: from epoch 2 on, each one halves the next epoch's rate.
    assert rates == pytest.approx([0.1, 0.1, 0.05, 0.025, 0.0125, 0.00625])
    assert whole.best_epoch == 1

    class Killed(Exception):
        pass

    def kill_after_third(epoch, model):
        if epoch == 3:
            raise Killed

    run = RunFolder(tmp_path / "run")
    with pytest.raises(Killed):
        _train(run, kill_after_third)
    state = json.loads((run.state_dir / "stage1.json").read_text())
    assert state["epoch"] == 3 and state["learning_rate"] == pytest.approx(0.025)
    resumed, used = _train(run)  # a fresh process would build the model and call the stage again
    assert [row["learning_rate"] for row in resumed.rows] == pytest.approx(rates)
    assert used == pytest.approx(rates[3:])
    finished = json.loads((run.state_dir / "stage1.json").read_text())
    assert finished["learning_rate"] == pytest.approx(0.00625)  # the last epoch's rate: no unused cut after it
