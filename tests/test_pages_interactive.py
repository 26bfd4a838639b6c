"""The Train and Try pages driven through AppTest: a real quick job, uploads, Grad-CAM."""

import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import make_image_dataset
from PIL import Image
from streamlit.testing.v1 import AppTest

pytestmark = pytest.mark.integration

APP = str(Path(__file__).resolve().parent.parent / "streamlit_app.py")


def png_bytes(colour=(200, 40, 40)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((80, 80, 3), colour, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_try_page_predicts_and_explains_an_upload_and_rejects_a_non_image(tiny_artifacts, monkeypatch):
    monkeypatch.setenv("STUDY_ARTIFACTS", str(tiny_artifacts))
    at = AppTest.from_file(APP, default_timeout=180).run()
    at.switch_page("pages/try.py").run()
    assert not at.exception
    at.file_uploader[0].set_value([("red.png", png_bytes(), "image/png"),
                                   ("notes.jpg", b"this is not an image", "image/jpeg")]).run()
    assert not at.exception, at.exception
    assert any("notes.jpg is not an image" in e.value for e in at.error)
    captions = [c.value for c in at.caption]
    assert any("gradients at layer" in c for c in captions), captions
    tables = [d.value for d in at.dataframe]
    if tables:  # TFLite variants exist once the run is deployed
        assert {"model", "prediction", "probability", "latency ms"} <= set(tables[0].columns)


def test_train_page_runs_a_quick_job_to_completion(lite0_home, tmp_path, monkeypatch):
    data_root = tmp_path / "data"
    make_image_dataset(data_root / "colours", per_class=8)
    art = tmp_path / "artifacts"
    monkeypatch.setenv("STUDY_DATA_ROOTS", str(data_root))
    monkeypatch.setenv("STUDY_ARTIFACTS", str(art))
    monkeypatch.setenv("STUDY_JOBS", str(tmp_path / "jobs"))
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/train.py").run()
    assert not at.exception
    box = next(s for s in at.selectbox if s.label == "Dataset folder")
    box.select(next(o for o in box.options if o.endswith("colours"))).run()
    assert any("images" in c.value for c in at.caption)
    next(r for r in at.radio if r.label == "Preset").set_value("quick").run()
    next(c for c in at.checkbox if "deployment variants" in c.label).uncheck().run()  # kept fast here
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception, at.exception
    deadline = time.time() + 240
    while time.time() < deadline:
        at.run()
        if any("Last job" in s.value and "succeeded" in s.value for s in at.success):
            break
        time.sleep(1)
    else:
        pytest.fail("the job did not finish: " + " ".join(c.value for c in at.code))
    summary = next(s.value for s in at.success if "Last job" in s.value)
    assert "EfficientNetLite0 on colours: test accuracy " in summary  # what finished, with its headline metric
    # The page asks the sidebar to show what was just trained (AppTest runs no sidebar after switch_page; the
    # browser test sees the switch itself).
    assert "colours" in (at.session_state["switch_dataset"] if "switch_dataset" in at.session_state
                         else at.session_state["dataset"])
    assert next(r for r in at.radio if r.label == "Preset").value == "quick"  # the chosen settings are kept
    assert not next(c for c in at.checkbox if "deployment variants" in c.label).value
    assert (art / "colours" / "audit.json").is_file()  # the job audited the dataset first
    (done,) = art.glob("colours/EfficientNetLite0/*/complete.json")
    assert json.loads((done.parent / "config.json").read_text())["grouping"] == "duplicates"  # the page's default
    assert (done.parent / "leakage.json").is_file()


@pytest.fixture
def deployed_run(tmp_path):
    """A complete run of 'pets' made in seconds: a tiny Keras classifier, its TFLite variant, stored predictions
    of two test images; the dataset folder beside it."""
    from core.artifacts.config import RunConfig
    from core.artifacts.records import CompleteRecord, DeploymentRecord, Predictions, ProvenanceRecord
    from core.models.tfkeras import keras, tf

    data = make_image_dataset(tmp_path / "data" / "pets", classes=("blue", "red"), per_class=2)
    run = tmp_path / "artifacts" / "pets" / "EfficientNetLite0" / "quick-imagenet-s0-tiny"
    (run / "deploy").mkdir(parents=True)
    RunConfig(dataset=str(data), backbone="EfficientNetLite0", preset="quick", input_size=32).save(
        run / "config.json")
    ProvenanceRecord(code={}, libraries={}, machine={}, dataset={"classes": ["blue", "red"]}).save(
        run / "provenance.json")
    inputs = keras.Input((32, 32, 3))
    features = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D(name="avg_pool")(features)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(pooled))
    model.save(run / "model.keras")
    (run / "deploy" / "tflite_float32.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    DeploymentRecord(kind="run", variants=[{"name": "tflite_float32", "status": "ok"}]).save(
        run / "deploy" / "deployment.json")
    ids = ["blue/blue_0.png", "red/red_0.png"]
    Predictions.from_probs(ids, np.array([0, 1]), np.array([[0.9, 0.1], [0.2, 0.8]]), ["blue", "red"]).save(
        run / "predictions.csv")
    CompleteRecord(completed_at="2026-11-30T00:00:00Z").save(run / "complete.json")
    return run


def _try_page(run, monkeypatch):
    monkeypatch.setenv("STUDY_ARTIFACTS", str(run.parents[2]))
    at = AppTest.from_file(APP, default_timeout=180).run()
    at.switch_page("pages/try.py").run()
    assert not at.exception, at.exception
    return at


def _another_model(path):
    """A valid archive of a model with no pooling layer to explain: replaced after the run."""
    from core.models.tfkeras import keras

    inputs = keras.Input((32, 32, 3))
    keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(inputs))).save(path)


@pytest.mark.parametrize("damage, expected", [
    (lambda p: p.write_bytes(p.read_bytes()[:200]), "is not a complete .keras model archive (truncated or corrupt)"),
    (lambda p: p.unlink(), "no model file here"),
    (_another_model, "no 'avg_pool' layer to explain"),
], ids=["truncated", "deleted", "replaced"])
def test_a_broken_keras_model_costs_only_its_grad_cam(deployed_run, monkeypatch, damage, expected):
    at = _try_page(deployed_run, monkeypatch)
    damage(deployed_run / "model.keras")  # after the page listed it
    at.file_uploader[0].set_value([("red.png", png_bytes(), "image/png")]).run()
    assert not at.exception, at.exception
    [error] = [e.value for e in at.error]
    assert error.startswith("No Grad-CAM from EfficientNetLite0") and expected in error and "\n" not in error
    [table] = [d.value for d in at.dataframe]  # the TFLite prediction stands
    assert list(table["model"]) == ["EfficientNetLite0 · transfer · quick · seed 0 · tflite_float32"]


def test_picked_test_images_that_are_gone_or_not_images_are_one_warning_each(deployed_run, monkeypatch):
    data = deployed_run.parents[3] / "data" / "pets"
    at = _try_page(deployed_run, monkeypatch)
    box = next(m for m in at.multiselect if m.label.startswith("…or pick test images"))
    assert box.options == ["blue/blue_0.png", "red/red_0.png"]
    (data / "blue" / "blue_0.png").unlink()
    (data / "red" / "red_0.png").write_text("replaced by a text file")
    box.set_value(["blue/blue_0.png", "red/red_0.png"]).run()
    assert not at.exception, at.exception
    warnings = [w.value for w in at.warning]
    assert any("blue/blue_0.png is no longer in the dataset folder" in w for w in warnings), warnings
    assert any("red/red_0.png is not an image" in w for w in warnings), warnings
    at.file_uploader[0].set_value([("red.png", png_bytes(), "image/png")]).run()  # an upload still predicts
    assert not at.exception and len(at.dataframe) == 1
    assert any("gradients at layer 'conv'" in c.value for c in at.caption)
