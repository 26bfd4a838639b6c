"""The Train and Try pages driven through AppTest: a real quick job, uploads, Grad-CAM."""

import io
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
    assert list(art.glob("colours/EfficientNetLite0/*/complete.json"))
