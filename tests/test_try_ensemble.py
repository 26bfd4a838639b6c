"""A stored ensemble run on one image with its members' TFLite variants (core.deploy.ensemble_predict) and on the
Try page: fake runs, the LiteRT call replaced by fixed probabilities (no model file is run)."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_ensembles import CLASSES, write_run, write_split

from core.deploy import ensemble_predict, predict
from core.errors import UserError
from core.evaluate import ensemble

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parent.parent
MEMBERS = ["EfficientNetLite0/full-imagenet-s0-x", "MobileNetV2@0.35/full-imagenet-s0-x"]
# What each member's TFLite variant "predicts" for the image, by backbone.
FIXED = {"EfficientNetLite0": (np.array([0.7, 0.2, 0.1]), 5.0), "MobileNetV2@0.35": (np.array([0.1, 0.3, 0.6]), 2.5)}
IMAGE = np.zeros((40, 40, 3), dtype=np.uint8)


def _deploy_files(run: Path, *names: str) -> None:
    """The TFLite files the deployment record names (their content is never read: the call is replaced)."""
    for name in names:
        (run / "deploy" / f"{name}.tflite").write_bytes(b"not run")


@pytest.fixture
def art(tmp_path, monkeypatch):
    """Two deployed fake runs of ``pets`` (the second without float32) and LiteRT replaced by :data:`FIXED`."""
    root = tmp_path / "artifacts"
    ds = root / "pets"
    write_split(ds)
    a = write_run(ds, "EfficientNetLite0", 0, 3.0, deploy={"tflite_int8_full": (4.0, 10.0), "tflite_float32": (12, 20)})
    b = write_run(ds, "MobileNetV2@0.35", 0, 1.0, deploy={"tflite_int8_full": (0.6, 2.0)})
    _deploy_files(a, "tflite_int8_full", "tflite_float32")
    _deploy_files(b, "tflite_int8_full")
    monkeypatch.setattr(predict, "predict_lite", lambda model, image: FIXED[model.backbone])
    return root


def _built(root: Path, method: str) -> Path:
    return ensemble.build_ensemble(root / "pets", MEMBERS, method, name=method, emit=lambda line: None)


@pytest.mark.parametrize("method", ["uniform", "val_loss"])
def test_a_soft_vote_is_the_stored_weights_average_of_the_members_tflite_probabilities(art, method):
    folder = _built(art, method)
    weights = ensemble.load_ensemble(folder).weights()
    result = ensemble_predict.predict_ensemble(folder, IMAGE)
    (pa, ma), (pb, mb) = FIXED["EfficientNetLite0"], FIXED["MobileNetV2@0.35"]
    expected = weights[0] * pa + weights[1] * pb
    np.testing.assert_allclose(result.probs, expected)
    if method == "uniform":
        np.testing.assert_allclose(result.probs, (pa + pb) / 2)
    else:  # the stored loss weights, not 1/n
        assert abs(weights[0] - 0.5) > 0.01
    assert result.missing == [] and result.total_ms == ma + mb
    assert result.predicted == CLASSES[int(expected.argmax())]
    assert [r["class"] for r in result.top(2)] == [CLASSES[i] for i in np.argsort(-expected)[:2]]
    assert [(r["member"], r["prediction"]) for r in result.member_rows()] == [(MEMBERS[0], "cat"), (MEMBERS[1], "owl")]


def test_a_stacked_ensemble_applies_its_stored_coefficients(art):
    folder = _built(art, "stacked")
    record = ensemble.load_ensemble(folder)
    result = ensemble_predict.predict_ensemble(folder, IMAGE)
    expected = ensemble.stacked_probs(record.stacked, [FIXED["EfficientNetLite0"][0], FIXED["MobileNetV2@0.35"][0]])
    np.testing.assert_allclose(result.probs, expected[0])
    assert not np.allclose(result.probs, np.average([FIXED[b][0] for b in FIXED], axis=0, weights=record.weights()))


def test_a_member_without_the_variant_is_one_line_and_there_is_no_combined_result(art):
    folder = _built(art, "uniform")
    result = ensemble_predict.predict_ensemble(folder, IMAGE, variant="tflite_float32")
    [line] = result.missing
    assert line.startswith(f"{MEMBERS[1]} has no measured tflite_float32: python -m core deploy ")
    assert line.endswith("--only tflite_float32") and "\n" not in line
    assert result.probs is None and result.predicted is None and result.top() == []
    assert [m.run for m in result.members] == [MEMBERS[0]]  # the other member still shown


def test_a_member_gone_or_a_stacked_record_without_coefficients_is_one_line(art):
    folder = _built(art, "stacked")
    config = folder / "config.json"
    config.write_text(config.read_text().replace('"stacked": {', '"stacked_was": {'))
    with pytest.raises(UserError, match="a stacked ensemble without its stored coefficients"):
        ensemble_predict.predict_ensemble(folder, IMAGE)
    folder = _built(art, "uniform")
    (art / "pets" / MEMBERS[1] / "complete.json").unlink()  # no longer a complete run: not among the stored models
    result = ensemble_predict.predict_ensemble(folder, IMAGE)
    assert result.probs is None and len(result.missing) == 1 and result.missing[0].startswith(MEMBERS[1])


def _try_page(root: Path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("STUDY_ARTIFACTS", str(root))
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=120).run()
    at.switch_page("pages/try.py").run()
    assert not at.exception, [e.value for e in at.exception]
    png = io.BytesIO()
    Image.fromarray(np.full((40, 40, 3), (200, 40, 40), dtype=np.uint8)).save(png, format="PNG")
    at.file_uploader[0].set_value([("red.png", png.getvalue(), "image/png")]).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_try_page_runs_a_stored_ensemble_on_an_upload(art, monkeypatch):
    _built(art, "uniform")
    at = _try_page(art, monkeypatch)
    box = next(s for s in at.selectbox if s.label.startswith("Ensembles"))
    assert box.value == "uniform · uniform of 2"
    shown = " ".join(m.value for m in at.markdown)
    assert "**Ensemble uniform**" in shown and "members' latencies summed: 7.50 ms" in shown
    top = next(d.value for d in at.dataframe if "class" in d.value.columns)
    assert list(top["class"]) == ["cat", "owl", "dog"]  # (0.7 + 0.1) / 2, (0.1 + 0.6) / 2, (0.2 + 0.3) / 2
    np.testing.assert_allclose(top["probability"], [0.4, 0.35, 0.25])
    members = next(d.value for d in at.dataframe if "member" in d.value.columns)
    assert list(members["prediction"]) == ["cat", "owl"] and list(members["latency ms"]) == [5.0, 2.5]
    next(r for r in at.radio if r.label == "Members' variant").set_value("tflite_float32").run()
    assert not at.exception
    assert any(w.value.startswith(f"{MEMBERS[1]} has no measured tflite_float32") for w in at.warning)
    assert any(i.value.startswith("No ensemble result: 1 of 2 members") for i in at.info)
    assert not any("class" in d.value.columns for d in at.dataframe)
