"""The Deployment page's numbers for readers, its paired intervals, and the exported HTML report (no TensorFlow)."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.artifacts import deployment_view, html_report, ranking, record_view, report
from core.artifacts.layout import AUDIT_FILE
from core.artifacts.records import RecordError
from core.cli import main
from core.evaluate.variant_change import CHANGE_FIELD, add_to_stored, variant_change
from core.train.config import reproduce_command

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "artifacts"
RUN = ARTIFACTS / "alzheimer_mri" / "EfficientNetLite0" / "full-imagenet-s0-a9f4b40e"  # the deployed reference run


def _variant(name, status="ok", **fields):
    base = {"name": name, "status": status, "reason": None, "bytes": None, "gzip_bytes": None, "metrics": None,
            "delta_vs_parent": None, "agreement_with_parent": None, "latency": {"threads_1": None,
                                                                                "threads_all": None},
            "fraction_of_peak": None}
    return {**base, **fields}


HAND_MADE = {"variants": [
    _variant("keras", bytes=14_172_001, gzip_bytes=12_680_000, metrics={"accuracy": 0.9}, agreement_with_parent=1.0,
             latency={"threads_1": None, "threads_all": {"median_ms": 27.64}}),
    _variant("tflite_int8_full", bytes=3_455_192, gzip_bytes=2_560_000, metrics={"accuracy": 0.927},
             delta_vs_parent={"accuracy": 0.027}, agreement_with_parent=0.95,
             accuracy_change_vs_parent={"difference": 0.027, "low": -0.011, "high": 0.054, "unit": "image"},
             latency={"threads_1": {"median_ms": 4.24}, "threads_all": {"median_ms": 5.05}}, fraction_of_peak=0.4321),
    _variant("pruned_50", delta_vs_parent={"accuracy": -0.0671}, metrics={"accuracy": 0.833}, bytes=1e7,
             gzip_bytes=5e6),  # measured before intervals were stored
    _variant("qat_int8", status="unsupported", reason="tfmot cannot quantise this layer"),
]}


def test_the_variant_table_formats_numbers_for_people_and_never_shows_none():
    table = deployment_view.variant_table(deployment_view.variant_rows([("run A", HAND_MADE)]))
    cells = [str(c) for c in table.to_numpy().ravel()]
    assert not any(c in ("None", "nan", "NaN", "<NA>") for c in cells)
    rows = table.set_index("Variant")
    assert rows.loc["tflite_int8_full", "Size (MB)"] == "3.46" and rows.loc["keras", "gzip (MB)"] == "12.68"
    assert rows.loc["tflite_int8_full", deployment_view.CHANGE_COLUMN] == "+2.7 [-1.1, +5.4]"  # pp, not a fraction
    assert rows.loc["pruned_50", deployment_view.CHANGE_COLUMN] == "-6.7"  # no interval stored: the bare change
    assert rows.loc["keras", deployment_view.CHANGE_COLUMN] == "reference"
    assert rows.loc["tflite_int8_full", "Agrees with Keras"] == "95.0%"
    assert rows.loc["tflite_int8_full", "Latency, 1 thread (ms)"] == "4.2"
    assert rows.loc["keras", "Latency, 1 thread (ms)"] == "" and rows.loc["keras", "Latency, all cores (ms)"] == "27.6"
    assert rows.loc["qat_int8", "Size (MB)"] == "" and rows.loc["qat_int8", "Status"].startswith("unsupported: tfmot")
    assert deployment_view.fmt_pp(0.0) == "±0.0" and deployment_view.fmt_pp(None) == ""
    assert deployment_view.fmt_pp(float("nan")) == "" and deployment_view.fmt_mb(0) == ""
    assert "paired bootstrap" in deployment_view.change_caption(deployment_view.variant_rows([("r", HAND_MADE)]))


def test_every_chart_gives_a_variant_the_same_colour():
    rows = deployment_view.variant_rows([("run A", HAND_MADE)])
    # The latency chart lacks pruned_50 (no 1-thread latency): its colours must not shift.
    charts = [deployment_view.pareto_chart(rows, x, title).to_dict() for x, title in deployment_view.PARETO_AXES]

    def scale(spec):
        return spec["layer"][0]["encoding"]["color"]["scale"]

    assert scale(charts[0]) == scale(charts[1])
    colours = dict(zip(scale(charts[0])["domain"], scale(charts[0])["range"]))
    assert colours["keras"] == deployment_view.PALETTE[0] and len(set(colours.values())) == len(colours)
    assert deployment_view.variant_colors(["qat_int8"])["qat_int8"] == colours["qat_int8"]
    assert deployment_view.variant_colors(["made_up"])["made_up"] not in {colours[n] for n in
                                                                           deployment_view.VARIANT_ORDER}
    # Padded domains: the best point is inside the chart, not on its top edge.
    y = charts[0]["layer"][0]["encoding"]["y"]["scale"]["domain"]
    assert y[1] > rows["accuracy"].max() and y[0] < rows["accuracy"].min()


def test_the_paired_change_of_a_hand_made_variant():
    true = ["a"] * 6 + ["b"] * 4
    parent = ["a", "a", "a", "a", "b", "b", "b", "b", "b", "a"]  # right on 4 + 3 = 7
    variant = ["a", "a", "a", "a", "a", "b", "b", "b", "b", "a"]  # fixes image 4: right on 8
    out = variant_change(true, parent, variant)
    change = out[CHANGE_FIELD]
    assert change["difference"] == pytest.approx(0.1) and out["agreement_with_parent"] == 0.9
    # Never worse than the parent: no resample goes below 0; a third of them miss the one fixed image.
    assert change["low"] == 0.0 and change["high"] >= 0.1 and change["unit"] == "image" and change["n"] == 10
    same = variant_change(true, parent, parent)
    assert same["agreement_with_parent"] == 1.0 and same[CHANGE_FIELD]["low"] == same[CHANGE_FIELD]["high"] == 0.0
    grouped = variant_change(true, parent, variant, groups=np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4]))
    assert grouped[CHANGE_FIELD]["unit"] == "group" and grouped[CHANGE_FIELD]["units"] == 5
    with pytest.raises(ValueError, match="differ in length"):
        variant_change(true, parent, variant[:3])


def _run_copy(tmp_path: Path) -> Path:
    """The committed run's result files (no model) and its dataset's audit, under tmp_path."""
    run = tmp_path / "alzheimer_mri" / RUN.parent.name / RUN.name
    shutil.copytree(RUN, run, ignore=shutil.ignore_patterns("*.tflite", "*.keras", ".lock"))
    shutil.copy(RUN.parent.parent / AUDIT_FILE, run.parent.parent / AUDIT_FILE)
    return run


def test_a_deployment_counts_as_measured_without_its_files_but_not_with_a_variant_left_to_retry(tmp_path):
    from core.deploy.measure import is_measured

    deploy = _run_copy(tmp_path) / "deploy"
    assert not list(deploy.glob("*.tflite")) and is_measured(deploy)  # a clone: measurements, no files
    doc = json.loads((deploy / "deployment.json").read_text())
    doc["variants"][-1].update(status="unsupported", reason="tfmot cannot quantise this layer")
    (deploy / "deployment.json").write_text(json.dumps(doc))
    assert is_measured(deploy)  # trying again would not change that
    doc["variants"][-1].update(status="failed", reason="killed")
    (deploy / "deployment.json").write_text(json.dumps(doc))
    assert not is_measured(deploy)  # a study tries the failed variant again
    assert is_measured(deploy, [v["name"] for v in doc["variants"][:-1]])
    (deploy / "deployment.json").write_text("{")
    assert not is_measured(deploy) and not is_measured(tmp_path / "nowhere")


def test_the_committed_intervals_are_recomputed_from_the_stored_predictions(tmp_path, capsys):
    run = _run_copy(tmp_path)
    path = run / "deploy" / "deployment.json"
    committed = json.loads(path.read_text())
    stripped = json.loads(path.read_text())
    for v in stripped["variants"]:
        v.pop(CHANGE_FIELD, None)
    path.write_text(json.dumps(stripped))
    assert main(["deploy", "--paired-only", str(run)]) == 0
    assert json.loads(path.read_text()) == committed  # nothing else changed, and the committed fields reproduce
    int8 = next(v for v in committed["variants"] if v["name"] == "tflite_int8_full")
    change = int8[CHANGE_FIELD]
    assert change["difference"] == pytest.approx(int8["delta_vs_parent"]["accuracy"], abs=1e-6)
    assert change["unit"] == "group" and change["low"] <= change["difference"] <= change["high"]
    assert "bootstrap over" in capsys.readouterr().out


def test_paired_only_refuses_what_it_cannot_use_in_one_line(tmp_path, capsys):
    run = _run_copy(tmp_path)
    predictions = run / "deploy" / "predictions.csv"
    lines = predictions.read_text().splitlines(keepends=True)
    predictions.write_text(lines[0] + "".join(reversed(lines[1:])))  # other order: not the run's test images
    with pytest.raises(RecordError, match="not those of"):
        add_to_stored(run)
    predictions.write_text(lines[0] + lines[1][:10])  # cut short
    with pytest.raises(RecordError, match="incomplete"):
        add_to_stored(run)
    (run / "deploy" / "deployment.json").unlink()
    for argv in (["deploy", "--paired-only", str(run)], ["deploy", "--paired-only"],
                 ["deploy", "--paired-only", "--architecture", "MobileNet", str(run)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


def _external_references(page: str) -> list[str]:
    return re.findall(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, flags=re.IGNORECASE)


@pytest.mark.parametrize("dataset", ["alzheimer_mri", "flower_photos"])
def test_the_html_report_of_the_committed_results_stands_on_its_own(dataset):
    page = html_report.static_html(dataset, ARTIFACTS, reproduce=reproduce_command)
    assert page.startswith("<!doctype html>") and page.endswith("</html>")
    sections = re.findall(r"<h2>(.*?)</h2>", page)
    assert sections == ["Data", "Data audit", "Configurations", "Single runs", "Per-class results", "Calibration",
                        "Deployment", "Significance", "Methods and reproduction"]
    assert page.count("<svg") >= 3  # interval, calibration and Pareto charts, inline
    assert not _external_references(page) and "<script" not in page and "<link" not in page
    assert "Report generated 20" in page and "Verdict:" in page and "Most-confused pairs" in page
    runs = report.runs_table(dataset, ARTIFACTS)
    assert ("Leak-free" in page) == report.leak_free_differs(runs)  # a split by group leaves no test image leaking
    assert "[" in page and "python -m core run --data" in page
    assert "pp, 95% CI" in page and ">None<" not in page and ">nan<" not in page
    # The planned comparisons, wherever the ranked split has a recommended configuration and another to test it against.
    family = ranking.planned_family(runs, record_view.mcnemar(dataset, ARTIFACTS))
    planned = not family.empty and (family["comparison"].str.contains("against the recommended")).any()
    assert ("Holm-corrected within the planned family" in page) == (not family.empty)
    assert (page.count("against the recommended") >= 2) == planned  # the caption names it; a row of the table too


def test_the_html_report_of_a_dataset_without_results_says_so(tmp_path):
    page = html_report.static_html("nothing_here", tmp_path)
    assert "No audit" in page and "No complete runs" in page and not _external_references(page)
    runs = report.runs_table("alzheimer_mri", ARTIFACTS)
    one = html_report.static_html("alzheimer_mri", ARTIFACTS, runs=runs[runs["kind"] != ranking.ENSEMBLE].iloc[:1])
    assert "A comparison needs two runs" in one and "(not given)" in one


def test_the_deployment_page_shows_readable_numbers_for_the_committed_runs(monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("STUDY_ARTIFACTS", str(ARTIFACTS))
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=120).run()
    at.switch_page("pages/deployment.py").run()
    assert not at.exception
    table = at.dataframe[0].value
    assert deployment_view.CHANGE_COLUMN in table and "Agrees with Keras" in table
    assert all(re.fullmatch(r"\d+\.\d\d", cell) for cell in table["Size (MB)"])
    assert all(cell == "reference" or re.fullmatch(r"[+-±]\d+\.\d \[[+-±]\d+\.\d, [+-±]\d+\.\d\]", cell)
               for cell in table[deployment_view.CHANGE_COLUMN])
    assert not any(str(c) in ("None", "nan") for c in table.to_numpy().ravel())
    assert isinstance(table, pd.DataFrame)
