"""The report app on real (tiny) results made by the product's own training: pages, exports, README.

Integration: the tiny_artifacts fixture trains, audits, compares and deploys with TensorFlow. The
pages themselves must still render without it (checked in a fresh interpreter by test_app.render).
"""

import json

import pytest
from test_app import REPO, render

pytestmark = pytest.mark.integration


def test_every_page_renders_real_results_without_tensorflow(tiny_artifacts):
    result = render(tiny_artifacts)
    assert result["tensorflow_loaded"] is False
    assert result["datasets"] == ["colours", "shades"]
    for page, content in result["pages"].items():
        assert content["exception"] == [], (page, content["exception"])
        assert content["error"] == [], (page, content["error"])
    overview = result["pages"]["overview"]
    leaderboard = overview["dataframes"][0]
    # The leaderboard lists configurations: the network (2 seeds pooled) and the baseline (one seed, marked).
    seeds = dict(zip(leaderboard["Configuration"], leaderboard["Seeds"]))
    assert seeds == {"EfficientNetLite0 · transfer · quick": "0, 1",
                     "EfficientNetLite0 · logreg · quick": "0 (one seed)"}
    assert all("[" in cell for cell in leaderboard["Accuracy"])  # value [low, high]
    assert any("chosen by validation balanced accuracy" in text for text in overview["success"])
    # The audit's verdict and the split mapping are stated above the scores.
    assert any(text.startswith("Audit:") for kind in ("warning", "success") for text in overview[kind])
    assert any(text.startswith("Splits: train ← ") for text in overview["caption"])
    spread = next(df for df in overview["dataframes"] if "SD across seeds" in df)
    assert spread["Seeds"] == ["0, 1"]
    waiting = next(df for df in overview["dataframes"] if "Fill in with" in df)
    assert waiting["Backbone"] == ["MobileNetV3Small"] and "not measured" in waiting["Accuracy"][0]
    assert "--backbone MobileNetV3Small" in waiting["Fill in with"][0]
    deployment = result["pages"]["deployment"]
    arch = next(df for df in deployment["dataframes"] if "GFLOPs" in df)
    assert arch["Backbone"] == ["MobileNetV3Small"] and float(arch["TFLite f32 (MB)"][0]) > 0
    audit = result["pages"]["data"]
    assert not any("No audit" in text for text in audit["info"])
    significance = result["pages"]["significance"]
    # Planned family: transfer against its baseline (also the recommended one against the other): one pair.
    planned = significance["dataframes"][0]
    assert len(planned["A"]) == 1 and "transfer vs baseline" in planned["Comparison"][0]
    assert any(c.startswith("python -m core run") for c in result["pages"]["methods"]["code"])
    # Switching the dataset shows the other dataset's runs.
    switched = result["switched"]
    assert switched["exception"] == [], switched
    assert "Leaderboard: shades" in switched["subheaders"]
    assert len(switched["dataframes"][0]["Configuration"]) == 2


def test_static_html_report_is_self_contained(tiny_artifacts, monkeypatch):
    import re

    from core.artifacts import html_report, report
    from core.train.config import reproduce_command

    monkeypatch.setenv("STUDY_ARTIFACTS", str(tiny_artifacts))
    html = html_report.static_html("colours", reproduce=reproduce_command)
    assert html.startswith("<!doctype html>") and "<svg" in html
    assert not re.findall(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html) and "<script" not in html
    assert "EfficientNetLite0" in html and "Most-confused pairs" in html and "python -m core run" in html
    assert "No run has deployment measurements" in html  # the tiny study measured architectures only
    # The export follows the sidebar filters: only the rows it is given.
    runs = report.runs_table("colours")
    baseline = runs[runs["method"] == "logreg"]
    assert "logreg" in html and "transfer" in html
    filtered = html_report.static_html("colours", runs=baseline)
    assert "logreg" in filtered and "· transfer ·" not in filtered and "· transfer ·" in html
    assert len(report.all_metrics("colours", runs=baseline)["runs"]) == 1 < len(report.all_metrics("colours")["runs"])


def test_readme_results_are_generated_from_the_runs(tiny_artifacts, tmp_path, capsys):
    from core.artifacts import readme as results_section
    from core.cli import main

    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{results_section.README_BEGIN}\nstale\n{results_section.README_END}\noutro\n")
    assert main(["report", "--readme", str(readme), "--artifacts", str(tiny_artifacts)]) == 0
    text = readme.read_text()
    assert "stale" not in text and text.startswith("intro\n") and text.endswith("outro\n")
    assert "### colours" in text and "### shades" in text
    assert "| EfficientNetLite0 · transfer · quick | 0, 1 |" in text and "logreg" in text  # a configuration
    assert "| EfficientNetLite0 · transfer · quick · seed 1 |" in text  # and its single runs
    assert text.count("Recommendation: **") == 2
    # The edge-device line says why it chooses nothing: the tiny study measured no deployment.
    assert text.count("On a small edge device") == 2 and "No run has deployment measurements yet" in text
    assert "SD across seeds" in text and "not measured: ImageNet weights were not available" in text
    assert main(["report", "--readme", str(readme), "--artifacts", str(tiny_artifacts)]) == 0
    assert "already current" in capsys.readouterr().out


def test_the_app_opens_on_a_dataset_with_results_not_the_first_name(tiny_artifacts, tmp_path, monkeypatch):
    import shutil

    from streamlit.testing.v1 import AppTest

    art = tmp_path / "artifacts"
    shutil.copytree(tiny_artifacts, art)
    (art / "aaa").mkdir()  # sorts first; only a (now empty) record of runs waiting for weights
    (art / "aaa" / "unavailable.json").write_text(json.dumps({"runs": []}))
    monkeypatch.setenv("STUDY_ARTIFACTS", str(art))
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=120).run()
    assert not at.exception
    assert at.sidebar.selectbox[0].options[0] == "aaa" and at.sidebar.selectbox[0].value == "colours"
    assert "Leaderboard: colours" in [h.value for h in at.subheader]
    at.sidebar.selectbox[0].select("aaa").run()
    assert any("No complete run of **aaa** yet" in i.value for i in at.info)


def test_the_test_split_size_comes_from_the_split_file_not_from_the_runs(tiny_artifacts):
    import pandas as pd

    from core.artifacts import report

    runs = report.runs_table("colours", tiny_artifacts)
    split = json.loads(next((tiny_artifacts / "colours" / "splits").glob("split-*.json")).read_text())
    assert set(runs["test_split"]) == {sum(1 for item in split["items"] if item["split"] == "test")}
    mixed = pd.DataFrame({"n_test": [551, 100], "test_split": [551, 551]})
    assert report.test_split_caption(mixed) == ("2 complete runs; the test split has 551 images; 1 run(s) were "
                                                "evaluated on a subsample of it (quick preset): compare like with like")


def test_training_page_explains_that_baselines_have_no_curves(tiny_artifacts, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("STUDY_ARTIFACTS", str(tiny_artifacts))
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=120)
    # The sidebar's Method filter (AppTest drops the sidebar after a widget rerun under st.navigation,
    # so the filter is set the way the widget stores it; a real browser was checked by hand).
    at.session_state["f_method"] = ["logreg"]
    at.switch_page("pages/training.py").run()
    assert not at.exception
    assert any("classical baselines on frozen embeddings" in i.value for i in at.info)


def test_a_batchnorm_diagnosis_is_stored_and_shown_beside_the_curves(tiny_artifacts, tmp_path, monkeypatch):
    import runpy
    import shutil

    from streamlit.testing.v1 import AppTest

    art = tmp_path / "artifacts"
    shutil.copytree(tiny_artifacts, art)
    run = next(p.parent for p in sorted((art / "colours").glob("*/*/complete.json"))
               if json.loads((p.parent / "config.json").read_text())["method"] == "finetune")
    diagnose = runpy.run_path(str(REPO / "scripts" / "diagnose_batchnorm.py"), run_name="diagnose")["main"]
    assert diagnose([str(run), "--train-images", "8"]) == 0
    stored = json.loads(next((art / "colours" / "diagnostics").glob("batchnorm-*.json")).read_text())
    results = stored["results"]
    assert stored["run"] == run.name and results["reestimated"]["train_images"] == 8
    assert results["reestimated"]["batches"] == 1 and stored["provenance"]["code"]["git_commit"]
    n_val = stored["val_images"]
    assert all(sum(r["predicted_per_class"]) == n_val for r in results.values())

    monkeypatch.setenv("STUDY_ARTIFACTS", str(art))
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=120)
    at.switch_page("pages/training.py").run()
    assert not at.exception
    assert "BatchNorm diagnosis" in [h.value for h in at.subheader]
    table = next(d.value for d in at.dataframe if "re-estimated" in d.value)
    assert list(table["re-estimated"]) == [results["reestimated"]["accuracy"]]
    assert list(table["as validated"]) == [results["inference"]["accuracy"]]


def test_single_runs_and_all_pairs_stay_one_click_away(tiny_artifacts, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("STUDY_ARTIFACTS", str(tiny_artifacts))
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=120)
    at.session_state["single_runs"] = True  # the Overview's toggle, set the way the widget stores it
    at.session_state["significance_view"] = "All pairs of runs"
    at.run()
    assert not at.exception
    runs = at.dataframe[0].value
    assert len(runs["Run"]) == 3 and any(run.endswith("seed 1") for run in runs["Run"])
    at.switch_page("pages/significance.py").run()
    assert not at.exception
    assert len(at.dataframe[0].value["A"]) == 3  # 3 runs: 3 pairs, Holm over all of them
