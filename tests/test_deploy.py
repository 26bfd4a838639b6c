"""Deployment-size evaluation on a tiny real run folder: every variant, gzip sizes, unsupported, resume, errors.

The run folder is made by the project's own runner (``core.orchestrate.run.execute``: data
discovery, split, evaluation, predictions, provenance, completion marker), with the
network swapped for a tiny EfficientNet-Lite-like model (Conv, DepthwiseConv,
BatchNorm, ReLU6, Add, Dropout, pooling, Dense) so that the ten conversions take
seconds, not minutes.
"""

import csv
import json
import shutil
import time

import numpy as np
import pytest
from conftest import make_image_dataset

from core.cli import main as cli_main
from core.deploy import compression
from core.deploy import measure as deploy
from core.deploy import variants
from core.errors import UserError

pytestmark = pytest.mark.integration

SIZE = 32
FAST = deploy.DeployOptions(runs=3, warmup=1, representative_images=8, finetune_images=12, finetune_batch_size=4,
                            prune_epochs=1, cluster_epochs=1, qat_epochs=1, matmul_n=128, matmul_seconds=0.05)
ALL_VARIANTS = ["keras", "tflite_float32", "tflite_float16", "tflite_int8_dynamic", "tflite_int8_full",
                "tflite_int8_per_tensor", "pruned_50", "pruned_80", "clustered_16", "clustered_32", "qat_int8"]


def tiny_model(num_classes: int, size: int = SIZE):
    from core.models.tfkeras import keras

    layers = keras.layers
    inputs = keras.Input((size, size, 3))
    x = layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_relu")(x)
    shortcut = x
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dwconv")(x)
    x = layers.BatchNormalization(name="dw_bn")(x)
    x = layers.ReLU(6.0, name="dw_relu")(x)
    x = layers.Conv2D(16, 1, padding="same", use_bias=False, name="project_conv")(x)
    x = layers.BatchNormalization(name="project_bn")(x)
    x = layers.Add(name="add")([x, shortcut])
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dropout(0.1, name="head_dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="classifier")


def _fake_train_and_predict(config, spec, data, run, emit):
    """Stands in for core.train.transfer.train_and_predict: trains the tiny model, saves model.keras."""
    from core.artifacts.storage import atomic_save
    from core.data.dataset import load_image
    from core.models.preprocess import preprocess
    from core.models.tfkeras import keras

    def images(split):
        return preprocess(np.stack([load_image(p, size=(SIZE, SIZE)) for p in data.abs_paths(split)])
                          .astype(np.float32), spec.entry.preprocessing)

    keras.utils.set_random_seed(0)
    model = tiny_model(len(data.classes))
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(images("train"), data.labels["train"], epochs=25, batch_size=16, verbose=0)
    probs = np.asarray(model.predict(images("test"), verbose=0), dtype=np.float64)
    for layer in model.layers[:-1]:  # saved as transfer learning leaves it: the backbone frozen
        layer.trainable = False
    atomic_save(run.file("model.keras"), model.save)
    val_probs = np.asarray(model.predict(images("val"), verbose=0), dtype=np.float64)
    return {"test_probs": probs, "val_probs": val_probs, "timings": {}, "details": {"network": "tiny test model"}}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A complete run folder of the tiny model on a 3-colour dataset (made once per module)."""
    from core.orchestrate.run import execute
    from core.train import config as config_mod
    from core.train import transfer

    data = make_image_dataset(tmp_path_factory.mktemp("data") / "colours", per_class=20, size=40)
    cfg = config_mod.resolve(str(data), "EfficientNetLite0", "quick",
                             {"input_size": SIZE, "weights": "none", "max_train_per_class": None,
                              "max_eval_per_class": None})
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(transfer, "train_and_predict", _fake_train_and_predict)
        run = execute(cfg, tmp_path_factory.mktemp("art"), emit=lambda line: None)
    assert run.is_complete() and run.file("model.keras").is_file()
    return run.path


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    """A fresh copy of the tiny run (same depth, so the relative split file still resolves)."""
    src_art = tiny_run.parent.parent.parent
    dst_art = tmp_path / "art"
    shutil.copytree(src_art, dst_art, ignore=shutil.ignore_patterns(".lock", "deploy"))
    return dst_art / tiny_run.relative_to(src_art)


def _by_name(doc):
    return {v["name"]: v for v in doc["variants"]}


def test_every_variant_is_converted_evaluated_timed_then_resumed(run_copy, monkeypatch):
    lines = []
    doc = deploy.deploy_run(run_copy, emit=lines.append, options=FAST)
    out = run_copy / "deploy"
    stored = json.loads((out / "deployment.json").read_text())
    assert stored["schema_version"] == 1 and stored == json.loads(json.dumps(doc))
    v = _by_name(doc)
    assert list(v) == ALL_VARIANTS
    assert {r["status"] for r in doc["variants"]} == {"ok"}, [(r["name"], r["reason"]) for r in doc["variants"]]
    parent = json.loads((run_copy / "metrics.json").read_text())
    with open(run_copy / "predictions.csv", newline="") as fh:
        test_ids = [row["id"] for row in csv.DictReader(fh)]

    for r in doc["variants"]:
        assert r["family"] in variants.FAMILIES and (out / r["file"]).is_file()
        assert r["bytes"] == (out / r["file"]).stat().st_size > 0
        assert r["gzip_bytes"] == compression.gzip_size((out / r["file"]).read_bytes())
        assert r["ratio_to_keras"] == pytest.approx(r["bytes"] / v["keras"]["bytes"], abs=1e-4)
        assert r["ratio_to_tflite_float32"] == pytest.approx(r["bytes"] / v["tflite_float32"]["bytes"], abs=1e-4)
        assert set(r["metrics"]) == {"accuracy", "balanced_accuracy", "macro_f1"}
        assert r["machine"]["cores"] >= 1 and r["gflops"] > 0
        if r["family"] != "keras":
            for key in ("threads_1", "threads_all"):
                assert r["latency"][key]["runs"] == FAST.runs and r["latency"][key]["median_ms"] > 0
                assert r["latency"][key]["p90_ms"] >= r["latency"][key]["median_ms"]
            assert r["latency"]["threads_1"]["threads"] == 1
            assert 0 < r["fraction_of_peak"] and r["achieved_gflops_per_s"] > 0
            assert r["delta_vs_parent"]["accuracy"] == pytest.approx(r["metrics"]["accuracy"] - parent["accuracy"])

    # The float32 conversion is the parent, to rounding: same predictions, same metrics.
    assert v["tflite_float32"]["agreement_with_parent"] == 1.0
    # Each variant's change against the parent, with its paired interval (images: the tiny run has no audit).
    for r in doc["variants"]:
        change = r["accuracy_change_vs_parent"]
        assert change["low"] <= change["difference"] <= change["high"] and change["n"] == len(test_ids)
        assert change["difference"] == pytest.approx(r["delta_vs_parent"]["accuracy"], abs=1e-6)
    assert v["tflite_float32"]["metrics"]["accuracy"] == pytest.approx(parent["accuracy"])
    assert v["keras"]["metrics"]["accuracy"] == parent["accuracy"] and v["keras"]["latency"]["threads_all"]["runs"] == 3
    # Input and output types as stated.
    assert (v["tflite_float32"]["input_dtype"], v["tflite_float32"]["output_dtype"]) == ("float32", "float32")
    for name in ("tflite_int8_full", "tflite_int8_per_tensor", "qat_int8"):
        assert (v[name]["input_dtype"], v[name]["output_dtype"]) == ("int8", "int8")
        assert v[name]["quantization"]["input"]["scale"] > 0
    assert v["tflite_int8_per_tensor"]["bytes"] < v["tflite_int8_full"]["bytes"] < v["tflite_float32"]["bytes"]
    assert v["tflite_int8_full"]["metrics"]["accuracy"] >= 0.6  # int8 input quantised correctly: colours still work
    # Pruning reaches its sparsity and pays off gzipped; clustering leaves at most k values per kernel.
    for name, target in (("pruned_50", 0.5), ("pruned_80", 0.8)):
        assert v[name]["settings"]["achieved_sparsity"] == pytest.approx(target, abs=0.05)
        assert v[name]["settings"]["fine_tune"]["images"] == 12 and v[name]["settings"]["fine_tune"]["epochs"] == 1
    assert v["pruned_80"]["gzip_bytes"] < v["pruned_50"]["gzip_bytes"] < v["tflite_float32"]["gzip_bytes"]
    for name, k in (("clustered_16", 16), ("clustered_32", 32)):
        assert v[name]["settings"]["max_unique_values_per_kernel"] <= k
        assert v[name]["settings"]["layers_clustered"] == 3  # frozen layers are unfrozen, not skipped
    for name in ("pruned_50", "pruned_80"):
        assert v[name]["settings"]["batchnorm_recalibrated"] is True
    for name in ("clustered_16", "clustered_32"):
        assert v[name]["settings"]["batchnorm_recalibrated"] is False
    assert v["qat_int8"]["settings"]["quantizer_ranges"].startswith("calibrated on the 12 fine-tune images")
    # The representative and fine-tune images come from the run's training split, recorded.
    split = json.loads((run_copy / json.loads((run_copy / "provenance.json").read_text())["dataset"]["split_file"])
                       .read_text())
    train = {item["path"] for item in split["items"] if item["split"] == "train"}
    assert doc["representative_dataset"]["n"] == 8 and set(doc["representative_dataset"]["ids"]) <= train
    assert doc["fine_tune_data"]["n"] == 12 and set(doc["fine_tune_data"]["ids"]) <= train
    assert doc["test_set"]["n"] == len(test_ids)
    assert doc["matmul_peak"]["threads_1"]["peak_gflops_per_s"] > 0 and doc["flops"]["macs"] > 0
    assert doc["matmul_peak"]["litert"]["int8"]["threads_1"]["peak_gflops_per_s"] > 0
    assert v["tflite_int8_full"]["efficiency"]["threads_1"]["peak"].startswith("int8")
    assert v["tflite_float32"]["efficiency"]["threads_1"]["peak"].startswith("float32")
    with open(out / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["id"] for r in rows] == test_ids and set(ALL_VARIANTS[1:]) <= set(rows[0])
    assert any("evaluating on" in line for line in lines) and any("fine-tune epoch" in line for line in lines)

    # Resumption: a second call measures nothing again and keeps every record as it was.
    calls = []
    monkeypatch.setattr(compression, "to_tflite", lambda *a, **k: calls.append(a[1]))
    monkeypatch.setattr(deploy.compute, "matmul_peak", lambda *a, **k: calls.append("matmul"))
    again = deploy.deploy_run(run_copy, emit=lines.append, options=FAST)
    assert calls == [] and again["variants"] == doc["variants"]
    assert "nothing to measure" in lines[-1]


def test_a_variant_tfmot_cannot_make_is_recorded_as_unsupported(run_copy, monkeypatch):
    calls = []

    def refuse(model):
        calls.append(model.name)
        raise RuntimeError("Layer tf.__operators__.add (TFOpLambda)\n  is not supported.   You can quantize it "
                           "by passing a `QuantizeConfig`")

    monkeypatch.setattr(compression, "_quantize_model", refuse)
    doc = deploy.deploy_run(run_copy, emit=lambda line: None, options=FAST, only=["qat_int8"])
    record = _by_name(doc)["qat_int8"]
    assert record["status"] == "unsupported" and record["family"] == "qat"
    assert record["reason"].startswith("tfmot quantize_model: RuntimeError: Layer tf.__operators__.add")
    assert "\n" not in record["reason"] and record["bytes"] is None and record["metrics"] is None
    assert [r["name"] for r in doc["variants"]] == ["qat_int8"]
    # Not counted as done: a later call tries again.
    deploy.deploy_run(run_copy, emit=lambda line: None, options=FAST, only=["qat_int8"])
    assert len(calls) == 2


def test_tfmot_really_refuses_to_quantise_tf_op_layers():
    """MobileNetV3's hard-swish is written with TF ops (TFOpLambda layers) that quantize_model cannot wrap."""
    from core.models.tfkeras import keras, tf

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = x * tf.nn.relu6(x + 3.0) / 6.0
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(x)))
    tune = compression.FineTune(None, None, 0, 4, 1e-4)
    with pytest.raises(compression.Unsupported, match="tfmot quantize_model"):
        compression.quantize_aware(model, tune, "qat_int8", lambda line: None)


def test_architecture_without_weights_gets_sizes_and_latency_but_no_accuracy(tmp_path, monkeypatch):
    from core.models.tfkeras import keras

    def tiny_backbone(spec, weights, input_shape):
        assert weights is None
        body = tiny_model(2, input_shape[0])
        return keras.Model(body.input, body.get_layer("add").output)

    monkeypatch.setattr(deploy, "build_backbone", tiny_backbone)  # the name measure.py builds with
    only = ["keras", "tflite_int8_full", "pruned_80"]
    doc = deploy.deploy_architecture("MobileNetV3Small", 4, tmp_path / "arch", emit=lambda line: None,
                                     input_size=SIZE, options=FAST, only=only)
    v = _by_name(doc)
    assert list(v) == only and {r["status"] for r in doc["variants"]} == {"ok"}
    assert doc["kind"] == "architecture" and doc["test_set"] is None
    assert doc["representative_dataset"]["selection"].startswith("synthetic")
    for r in doc["variants"]:
        assert r["metrics"] is None and r["metrics_reason"]
        assert r["bytes"] > 0
    assert v["tflite_int8_full"]["latency"]["threads_1"]["runs"] == 3
    assert v["pruned_80"]["settings"]["achieved_sparsity"] == pytest.approx(0.8, abs=0.05)
    assert v["pruned_80"]["settings"]["fine_tune"]["epochs"] == 0


def test_ctrl_c_swallowed_inside_a_conversion_still_stops_and_drops_the_variant(run_copy, monkeypatch):
    """The TFLite converter swallows a KeyboardInterrupt raised in its representative-dataset callback."""
    import os
    import signal

    real = deploy._Deployment._measure

    def swallowing_measure(self, v, doc):
        record = real(self, v, doc)
        try:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C arrives while the converter calls Python...
            time.sleep(1)
        except KeyboardInterrupt:
            pass  # ...and the converter swallows it
        return record

    monkeypatch.setattr(deploy._Deployment, "_measure", swallowing_measure)
    # Python's own Ctrl-C handling, even where the test runner inherited SIGINT as ignored (CI).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            deploy.deploy_run(run_copy, emit=lambda line: None, options=FAST, only=["tflite_float16"])
    finally:
        signal.signal(signal.SIGINT, previous)
    stored = json.loads((run_copy / "deploy" / "deployment.json").read_text())
    assert "tflite_float16" not in _by_name(stored)  # half-done work is not a result
    monkeypatch.setattr(deploy._Deployment, "_measure", real)
    doc = deploy.deploy_run(run_copy, emit=lambda line: None, options=FAST, only=["tflite_float16"])
    assert _by_name(doc)["tflite_float16"]["status"] == "ok"


def test_cli_errors_are_one_line(tmp_path, run_copy, capsys):
    # --runs 0 is refused for itself, before any work: the run folder is complete and usable here (the same
    # folder is measured by test_cli_prints_the_table), and nothing in it is written, locked or replaced.
    def files():
        return {p.relative_to(run_copy): (p.stat().st_mtime_ns, p.stat().st_size) for p in run_copy.rglob("*")}

    assert (run_copy / "complete.json").is_file() and (run_copy / "model.keras").is_file()
    before = files()
    assert cli_main(["deploy", str(run_copy), "--runs", "0"]) == 2
    out, err = capsys.readouterr()
    assert err.splitlines() == ["error: --runs must be at least 1"] and out == ""
    assert files() == before and not (run_copy / "deploy").exists()
    earlier = run_copy / "deploy" / "deployment.json"  # an earlier measurement stays as it was
    earlier.parent.mkdir()
    earlier.write_text('{"schema_version": 1, "variants": []}')
    before = files()
    assert cli_main(["deploy", str(run_copy), "--runs", "0", "--only", "keras"]) == 2
    out, err = capsys.readouterr()
    assert err.splitlines() == ["error: --runs must be at least 1"] and out == ""
    assert files() == before and earlier.read_text() == '{"schema_version": 1, "variants": []}'
    shutil.rmtree(earlier.parent)

    for target, message in ((tmp_path / "nothing", "not found"), (run_copy.parent, "not a run folder")):
        assert cli_main(["deploy", str(target)]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    (run_copy / "model.keras").unlink()
    assert cli_main(["deploy", str(run_copy)]) == 2
    err = capsys.readouterr().err
    assert "model.keras" in err and len(err.strip().splitlines()) == 1
    (run_copy / "complete.json").unlink()
    assert cli_main(["deploy", str(run_copy)]) == 2
    assert "not a complete run" in capsys.readouterr().err


def test_a_model_that_does_not_load_is_refused_before_the_matmul_peaks(run_copy, capsys, monkeypatch):
    """Latency calibration takes seconds per variant plan; a damaged model.keras is one line before it."""
    def peak(*args, **kwargs):
        raise AssertionError("the matmul peak was measured before the model was loaded")

    monkeypatch.setattr(deploy.compute, "matmul_peak", peak)
    monkeypatch.setattr(deploy.lat, "litert_matmul_peak", peak)
    (run_copy / "model.keras").write_bytes(b"not a model")
    assert cli_main(["deploy", str(run_copy), "--only", "keras"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "model.keras" in err and len(err.strip().splitlines()) == 1


def test_cli_prints_the_table(run_copy, capsys, monkeypatch):
    quick_peak = deploy.compute.matmul_peak
    quick_litert = deploy.lat.litert_matmul_peak
    monkeypatch.setattr(deploy.compute, "matmul_peak", lambda n, seconds, threads: quick_peak(64, 0.01, threads))
    monkeypatch.setattr(deploy.lat, "litert_matmul_peak", lambda n, threads: quick_litert(32, 3, threads))
    assert cli_main(["deploy", str(run_copy), "--runs", "3", "--threads", "1", "--only", "keras"]) == 0
    out = capsys.readouterr().out
    assert "x tflite f32" in out and "keras" in out and "deployment.json" in out
    stored = json.loads((run_copy / "deploy" / "deployment.json").read_text())
    assert stored["settings"]["threads"] == 1 and stored["keras_latency"]["runs"] == 3
    assert cli_main(["deploy", str(run_copy), "--only", "nonsense"]) == 2
    assert "unknown variant" in capsys.readouterr().err


@pytest.mark.slow
def test_mobilenet_v3_small_records_its_unsupported_variants(tmp_path):
    doc = deploy.deploy_architecture("MobileNetV3Small", 5, tmp_path / "v3", emit=print, input_size=96,
                                     options=FAST, only=["tflite_float32", "qat_int8"])
    qat = _by_name(doc)["qat_int8"]
    assert qat["status"] == "unsupported" and "quantize_model" in qat["reason"]
    assert _by_name(doc)["tflite_float32"]["status"] == "ok"


@pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file")
def test_deploy_and_gradcam_refuse_a_crafted_model_file_without_running_it(run_copy, tmp_path, capsys):
    """The reported attack: an HDF5 model with a Lambda payload copied over a complete run's model.keras."""
    from core.models import gradcam
    from core.models.tfkeras import keras

    marker = tmp_path / "MARKER"
    target = str(marker)
    inputs = keras.Input((SIZE, SIZE, 3))
    payload = keras.layers.Lambda(lambda t: (open(target, "w").close(), t)[1])
    keras.Model(inputs, payload(inputs)).save(tmp_path / "crafted.h5", save_format="h5")
    marker.unlink()
    shutil.copy(tmp_path / "crafted.h5", run_copy / "model.keras")
    assert cli_main(["deploy", str(run_copy), "--only", "tflite_float32"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "not a Keras .keras archive" in err and "\n" not in err
    with pytest.raises(UserError, match="not a Keras .keras archive"):
        gradcam.gradcam(run_copy / "model.keras", np.zeros((1, SIZE, SIZE, 3), np.float32))
    assert not marker.exists()
