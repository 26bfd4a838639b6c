"""The training core on tiny generated data: runs, resume after kill -9, cache reuse, BatchNorm, refusals."""

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import make_image_dataset

from core.artifacts.records import Predictions
from core.artifacts.runs import RunFolder
from core.models.backbones import build_backbone, get_spec
from core.models.batchnorm import is_batchnorm, reestimate_batchnorm_statistics
from core.models.classifier import build_classifier, build_head_layers
from core.orchestrate.run import execute
from core.train import config as config_mod
from core.train import features
from core.train import stages as training

pytestmark = pytest.mark.integration


REPO = Path(__file__).resolve().parent.parent
TINY = {"input_size": 64, "augment": {"views": 1}, "max_train_per_class": None, "max_eval_per_class": None,
        "stage1": {"epochs": 3}, "stage2": {"epochs": 1}, "scratch": {"epochs": 1}, "batch_size": 16}


def tiny_config(dataset, **extra):
    overrides = json.loads(json.dumps(TINY))
    for key, value in extra.items():
        if isinstance(value, dict):
            overrides.setdefault(key, {}).update(value)
        else:
            overrides[key] = value
    return config_mod.resolve(str(dataset), "EfficientNetLite0", "quick", overrides)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    # Its own pixels (seed), so no other test module has warmed the feature cache for it.
    return make_image_dataset(tmp_path_factory.mktemp("data") / "colours", per_class=12, seed=11)


def test_two_stage_run_writes_a_complete_run_folder(lite0_home, dataset, tmp_path):
    run = execute(tiny_config(dataset), tmp_path / "art", emit=lambda line: None)
    assert run.is_complete() and not run.state_dir.exists()
    for name in ("config.json", "provenance.json", "history.csv", "events.jsonl", "metrics.json",
                 "predictions.csv", "model.keras"):
        assert run.file(name).is_file(), name
    history = run.read_history()
    assert [(r["stage"], r["epoch"]) for r in history] == [("stage1", "1"), ("stage1", "2"), ("stage1", "3"),
                                                            ("stage2", "1")]
    metrics = json.loads(run.file("metrics.json").read_text())
    assert metrics["accuracy"] > 0.5  # colours are easy, even at 64 px
    prov = json.loads(run.file("provenance.json").read_text())
    assert prov["dataset"]["fingerprint"] and prov["machine"]["cores"] >= 1
    assert "tf-keras" in prov["libraries"] and "git_commit" in prov["code"]
    assert prov["invocations"][-1]["peak_rss_mb"] > 100  # this process's peak, TensorFlow loaded
    assert prov["details"]["feature_cut_layer"]  # stage 2 ran on cached activations
    assert prov["schema_version"] == 2 and len(prov["invocations"]) == 1
    assert set(prov["timings_s"]) == {"features", "stage1", "stage2", "val_inference", "test_inference"}
    assert prov["invocations"][0]["timings_s"] == prov["timings_s"]
    with open(run.file("predictions.csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == metrics["n"] and set(rows[0]) >= {"id", "true", "pred", "p_red", "p_green", "p_blue"}
    split_file = run.path / prov["dataset"]["split_file"]
    assert split_file.resolve().is_file()
    _check_compute(prov, history)
    _check_val_predictions(run, prov)


def _check_compute(prov, history):
    """Each stage's compute block: the samples it showed, training FLOPs from the trained model's layers, the rate
    over the median epoch of history.csv against a measured peak."""
    counts, details = prov["dataset"]["counts"], prov["details"]
    s1, s2 = details["stage1"]["compute"], details["stage2"]["compute"]
    # views=1: the original and one augmented view of each training image, both stages; validation forward only.
    assert (s1["train_samples_per_epoch"], s1["val_samples_per_epoch"]) == (2 * counts["train"], counts["val"])
    assert (s2["train_samples_per_epoch"], s2["val_samples_per_epoch"]) == (2 * counts["train"], counts["val"])
    assert s1["training_flops_per_sample"] == 3 * s1["forward_flops_per_sample"]  # the head: every layer trainable
    # Above the cut some layers are frozen (BatchNorm, layers below the first unfrozen one): less than 3x.
    assert s2["forward_flops_per_sample"] < s2["training_flops_per_sample"] < 3 * s2["forward_flops_per_sample"]
    stage1_seconds = [float(r["seconds"]) for r in history if r["stage"] == "stage1"]
    assert s1["median_epoch_seconds"] == round(float(np.median(stage1_seconds)), 3)
    for block in (s1, s2):
        per_epoch = block["training_flops_per_sample"] * block["train_samples_per_epoch"] \
            + block["forward_flops_per_sample"] * block["val_samples_per_epoch"]
        assert block["gflops_per_epoch"] == pytest.approx(per_epoch / 1e9, rel=1e-3)
        assert block["achieved_gflops_per_s"] == pytest.approx(
            per_epoch / 1e9 / block["median_epoch_seconds"], rel=2e-3)
        assert block["peak_gflops_per_s"] > 0 and block["peak_threads"] >= 1
        assert 0 < block["fraction_of_peak"] == pytest.approx(
            block["achieved_gflops_per_s"] / block["peak_gflops_per_s"], rel=2e-3)


def _check_val_predictions(run, prov):
    """val_predictions.csv (the layers above the cut on cached float16 activations) equals the whole classifier on
    the validation images, and the back-fill through model.keras writes the same table."""
    from core.models.loading import load_model
    from core.orchestrate.val_predictions import add_val_predictions
    from core.train.transfer import predict_images

    stored = Predictions.load(run.file("val_predictions.csv"))
    assert len(stored.ids) == prov["dataset"]["counts"]["val"] and stored.classes == prov["dataset"]["classes"]
    config = run.read_config()
    full = predict_images(load_model(run.file("model.keras")), get_spec(config.backbone), config,
                          [str(Path(config.dataset) / i) for i in stored.ids])
    assert np.allclose(stored.probs, full, atol=2e-3)
    run.file("val_predictions.csv").unlink()
    (outcome,) = add_val_predictions([run.path], emit=lambda line: None).values()
    assert "written" in outcome
    backfilled = Predictions.load(run.file("val_predictions.csv"))
    assert backfilled.ids == stored.ids and backfilled.true == stored.true
    assert np.allclose(backfilled.probs, full, atol=1e-5)


def test_cached_features_are_reused_by_other_seeds_and_baselines(lite0_home, dataset, tmp_path, monkeypatch):
    first = execute(tiny_config(dataset, seed=0), tmp_path / "art", emit=lambda line: None)
    calls = []
    original = features.FeatureExtractor.__call__

    def counting(self, batch):
        calls.append(len(batch))
        return original(self, batch)

    monkeypatch.setattr(features.FeatureExtractor, "__call__", counting)
    execute(tiny_config(dataset, seed=1), tmp_path / "art", emit=lambda line: None)
    assert calls == []  # another seed: every backbone output comes from the cache
    execute(tiny_config(dataset, method="logreg"), tmp_path / "art", emit=lambda line: None)
    # The baseline also needs the test split's pooled outputs, which training never extracts.
    n_test = json.loads(first.file("provenance.json").read_text())["dataset"]["counts"]["test"]
    assert sum(calls) == n_test


def test_stage2_shows_one_view_of_each_image_per_epoch_when_asked(lite0_home, dataset, tmp_path, monkeypatch):
    from core.train import transfer

    shown = []
    original = transfer.cached_dataset

    def recording(views, labels, batch_size, order=None):
        if order is not None:
            shown.append(len(order))
        return original(views, labels, batch_size, order)

    monkeypatch.setattr(transfer, "cached_dataset", recording)
    every = execute(tiny_config(dataset), tmp_path / "art", emit=lambda line: None)
    one = execute(tiny_config(dataset, stage2_views="one"), tmp_path / "art", emit=lambda line: None)
    n_train = json.loads(one.file("provenance.json").read_text())["dataset"]["counts"]["train"]
    assert shown == [2 * n_train, n_train]  # one epoch each; views=1 caches the original and one augmented view
    assert one.path != every.path and one.is_complete()
    mode = json.loads(one.file("provenance.json").read_text())["details"]["stage2"]["mode"]
    assert "one cached view" in mode


def test_scratch_run_trains_the_same_architecture(lite0_home, dataset, tmp_path):
    from core.models.tfkeras import keras

    default = tiny_config(dataset, weights="none")
    # Without bn_momentum the backbone keeps its own (Keras' 0.99); the setting makes another run.
    assert {layer.momentum for layer in build_backbone(get_spec("EfficientNetLite0"), None, (32, 32, 3)).submodules
            if is_batchnorm(layer)} == {0.99}
    lines = []
    run = execute(tiny_config(dataset, weights="none", bn_momentum=0.9), tmp_path / "art", emit=lines.append)
    assert run.is_complete() and run.path != RunFolder.for_config(default, tmp_path / "art").path
    assert {r["stage"] for r in run.read_history()} == {"scratch"}
    assert "scratch" in run.path.name
    block = json.loads(run.file("provenance.json").read_text())["details"]["scratch"]["compute"]
    # Every layer trains, but the stem's input gradient is counted too: exactly 3x forward (an upper bound).
    assert block["training_flops_per_sample"] == 3 * block["forward_flops_per_sample"] > 0
    assert block["fraction_of_peak"] > 0
    momenta = {layer.momentum for layer in keras.models.load_model(run.file("model.keras")).submodules
               if is_batchnorm(layer)}
    assert momenta == {0.9} and any("BatchNorm momentum 0.9" in line for line in lines)


def test_kill_minus_nine_then_rerun_resumes_and_finishes(lite0_home, dataset, tmp_path):
    art = tmp_path / "art"
    cmd = [sys.executable, "-m", "core", "run", "--data", str(dataset), "--backbone", "EfficientNetLite0",
           "--preset", "quick", "--artifacts", str(art), "--set", "input_size=64", "--set", "augment.views=0",
           "--set", "stage1.epochs=60", "--set", "stage1.patience=60", "--set", "stage2.epochs=0",
           "--set", "max_train_per_class=null", "--set", "max_eval_per_class=null"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    events = None
    while time.time() < deadline:
        found = list(art.glob("*/*/*/events.jsonl"))
        if found and sum('"epoch"' in line for line in found[0].read_text().splitlines()) >= 3:
            events = found[0]
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert events is not None, "the run never reached epoch 3"
    run = RunFolder(events.parent)
    assert not run.is_complete() and not run.file("metrics.json").exists()
    assert run.state_dir.is_dir()

    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "resuming" in out.stdout
    assert run.is_complete()
    epochs = [int(r["epoch"]) for r in run.read_history() if r["stage"] == "stage1"]
    assert epochs == list(range(1, len(epochs) + 1))  # no gap, no duplicate after the resume
    kinds = [json.loads(line)["event"] for line in run.file("events.jsonl").read_text().splitlines()]
    assert kinds[0] == "started" and "resumed" in kinds and kinds[-1] == "complete"
    # Both invocations' time is on record: the killed one up to its last event, its finished phases by name.
    killed, resumed = json.loads(run.file("provenance.json").read_text())["invocations"]
    assert killed["outcome"] is None and "features" in killed["timings_s"] and killed["wall_time_s"] > 0
    assert resumed["outcome"] == "complete" and resumed["resumed"] is True


def test_cut_layer_model_matches_the_full_classifier(lite0_home):
    from core.models.backbones import build_backbone
    from core.models.tfkeras import keras

    base = build_backbone("EfficientNetLite0", None, (64, 64, 3))
    classifier = build_classifier(base, build_head_layers(3, tiny_config("x")))
    unfrozen = training.unfreeze_top(base, 20)
    assert unfrozen and not any(is_batchnorm(base.get_layer(n)) for n in unfrozen)
    assert all(not layer.trainable for layer in base.layers if is_batchnorm(layer))
    cut = training.find_cut_layer(base, unfrozen[0])
    names = [layer.name for layer in base.layers]
    assert names.index(cut) < names.index(unfrozen[0])
    x = np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype("float32")
    lower = keras.Model(base.input, base.get_layer(cut).output)
    upper = keras.Model(base.get_layer(cut).output, classifier.output)
    np.testing.assert_allclose(upper(lower(x)), classifier(x), rtol=1e-4, atol=1e-5)


def test_batchnorm_statistics_are_reestimated_as_the_average_over_batches():
    from core.models.tfkeras import keras

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.BatchNormalization(momentum=0.99)(inputs))
    bn = model.layers[-1]
    bn.trainable = False  # frozen, as in a transfer run: re-estimation must still reach it
    rng = np.random.default_rng(0)
    batches = [rng.normal(loc=k, scale=1 + k, size=(16, 3)).astype("float32") for k in range(4)]
    assert reestimate_batchnorm_statistics(model, batches) == 4
    assert bn.momentum == 0.99 and bn.trainable is False  # restored
    np.testing.assert_allclose(bn.moving_mean.numpy(), np.mean([b.mean(0) for b in batches], axis=0), rtol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), np.mean([b.var(0) for b in batches], axis=0), rtol=1e-4)


def test_a_complete_run_of_other_images_with_the_same_folder_name_is_not_reused(lite0_home, tmp_path):
    from core.artifacts.records import CompleteRecord, ProvenanceRecord
    from core.errors import UserError

    first = make_image_dataset(tmp_path / "a" / "data", per_class=8)
    cfg = config_mod.resolve(str(first), "EfficientNetLite0", "quick", TINY)
    run = RunFolder.for_config(cfg, tmp_path / "art")
    run.path.mkdir(parents=True)
    ProvenanceRecord(code={}, libraries={}, machine={}, dataset={"fingerprint": "0" * 64}).save(
        run.path / "provenance.json")
    CompleteRecord(completed_at="2026-11-30T00:00:00Z").save(run.path / "complete.json")
    with pytest.raises(UserError, match="other images than"):
        execute(cfg, tmp_path / "art", emit=lambda line: None)
