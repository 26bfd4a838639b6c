"""A training stage against the machine's limit: training FLOPs from layer shapes, the cached peak, the table."""

import pytest

from core.artifacts import training_compute
from core.models import compute


@pytest.mark.integration
def test_training_flops_of_a_small_conv_dense_model_match_a_hand_count():
    from core.models.tfkeras import keras

    inputs = keras.Input((8, 8, 3))
    frozen_conv = keras.layers.Conv2D(4, 3, padding="same", trainable=False)  # below the first trainable layer
    x = keras.layers.Conv2D(5, 3, padding="valid")(frozen_conv(inputs))  # 6 x 6 x 5, trainable
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(3, trainable=False)(x)  # frozen, above the first trainable layer
    model = keras.Model(inputs, keras.layers.Dense(2)(x))

    macs = {"frozen conv": 8 * 8 * 4 * 3 * 3 * 3, "conv": 6 * 6 * 5 * 3 * 3 * 4, "frozen dense": 5 * 3, "dense": 3 * 2}
    forward = 2 * sum(macs.values())
    backward = 0 + 2 * 2 * macs["conv"] + 2 * macs["frozen dense"] + 2 * 2 * macs["dense"]
    assert compute.count_flops(model)["flops"] == forward
    assert compute.training_flops(model) == {"forward_flops": forward, "backward_flops": backward,
                                             "training_flops": forward + backward}

    peak = {"threads": 2, "peak_gflops_per_s": 10.0, "library": "numpy"}
    block = compute.stage_compute(model, 100_000, 50_000, [1.0, 2.0, 30.0], peak)
    per_epoch = (forward + backward) * 100_000 + forward * 50_000  # validation: forward only
    assert block["training_flops_per_sample"] == forward + backward and block["median_epoch_seconds"] == 2.0
    assert block["gflops_per_epoch"] == pytest.approx(per_epoch / 1e9, rel=1e-3)
    assert block["achieved_gflops_per_s"] == pytest.approx(per_epoch / 2.0 / 1e9, rel=1e-3)
    assert block["fraction_of_peak"] == pytest.approx(per_epoch / 2.0 / 1e9 / 10.0, rel=1e-3)
    assert block["peak_threads"] == 2
    assert compute.stage_compute(model, 10, 0, [], peak)["fraction_of_peak"] is None  # no epoch: no rate


@pytest.mark.unit
def test_the_training_peak_is_measured_once_per_process_and_thread_count(monkeypatch):
    calls = []

    def fake(n, seconds, threads):
        calls.append(threads)
        return {"threads_all": {"threads": threads, "peak_gflops_per_s": 50.0 * threads}, "library": "numpy"}

    monkeypatch.setattr(compute, "matmul_peak", fake)
    compute.training_peak.cache_clear()
    try:
        assert compute.training_peak(2) == {"threads": 2, "peak_gflops_per_s": 100.0, "library": "numpy"}
        compute.training_peak(2)
        compute.training_peak(1)
        assert calls == [2, 1]
    finally:
        compute.training_peak.cache_clear()


@pytest.mark.unit
def test_a_run_without_readable_provenance_or_stages_is_one_not_recorded_row():
    table = training_compute.compute_table([("broken", None), ("old", {"details": {"stage1": {"best_epoch": 2}}})])
    assert list(table["run"]) == ["broken", "old"] and list(table["stage"]) == ["", "stage 1 (head)"]
    assert list(table["note"]) == ["not recorded"] * 2 and set(table["fraction of peak"]) == {""}


@pytest.mark.unit
def test_the_documentation_names_every_field_of_the_compute_block():
    import re
    from pathlib import Path
    from types import SimpleNamespace

    doc = (Path(__file__).resolve().parents[1] / "docs" / "ARTIFACTS.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", doc))
    block = compute.stage_compute(SimpleNamespace(layers=[]), 1, 1, [1.0], {"peak_gflops_per_s": 1.0})
    assert "compute" in named and not [k for k in block if k not in named]
