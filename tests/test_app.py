"""The report app without TensorFlow: every page with no results, the report helpers, the Train page switched off.

Pages on real (tiny) results made by training are in test_app_results.py; ``render`` is shared.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parent.parent
PAGES = ["overview", "data", "training", "per_class", "roc_pr", "calibration", "deployment", "significance",
         "baselines", "model_selection", "methods", "export"]

_PROBE = """
import json, sys
from streamlit.testing.v1 import AppTest
pages = %r
at = AppTest.from_file("streamlit_app.py", default_timeout=120).run()
out = {"datasets": [o for s in at.sidebar.selectbox if s.label == "Dataset" for o in s.options], "pages": {}}
def grab(at):
    return {"exception": [str(e.value) for e in at.exception], "error": [str(e.value) for e in at.error],
            "info": [i.value for i in at.info], "markdown": [m.value for m in at.markdown],
            "success": [s.value for s in at.success], "dataframes": [d.value.to_dict("list") for d in at.dataframe],
            "titles": [t.value for t in at.title], "code": [c.value for c in at.code],
            "warning": [w.value for w in at.warning], "caption": [c.value for c in at.caption],
            "subheaders": [h.value for h in at.subheader]}
for page in pages:
    at.switch_page(f"pages/{page}.py").run()
    out["pages"][page] = grab(at)
if len(out["datasets"]) > 1:
    at = AppTest.from_file("streamlit_app.py", default_timeout=120).run()
    at.sidebar.selectbox[0].select(out["datasets"][1]).run()
    out["switched"] = grab(at)
out["tensorflow_loaded"] = "tensorflow" in sys.modules
print(json.dumps(out, default=str))
"""


def render(artifacts: Path) -> dict:
    """Render every page in a fresh interpreter (so TensorFlow imported by other tests cannot hide one)."""
    env = dict(os.environ, STUDY_ARTIFACTS=str(artifacts))
    out = subprocess.run([sys.executable, "-c", _PROBE % PAGES], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_page_shows_an_empty_state_without_results(tmp_path):
    result = render(tmp_path / "no-artifacts")
    assert result["tensorflow_loaded"] is False
    for page, content in result["pages"].items():
        assert content["exception"] == [], page
        assert any("No " in text for text in content["info"]), page


def test_seed_spread_pools_only_runs_that_differ_by_seed():
    import pandas as pd

    from core.artifacts import report

    def row(seed, acc, key):
        return {"backbone": "B", "method": "finetune", "weights": "imagenet", "preset": "full", "seed": seed,
                "settings_key": key, "accuracy": acc, "accuracy_low": acc - 0.02, "accuracy_high": acc + 0.02}

    df = pd.DataFrame([row(0, 0.90, "a"), row(1, 0.92, "a"), row(2, 0.94, "a"), row(0, 0.50, "other settings")])
    spread = report.seed_spread(df)
    assert len(spread) == 1 and spread["Seeds"].iloc[0] == "0, 1, 2"
    assert spread["Mean accuracy"].iloc[0] == "0.920" and spread["SD across seeds"].iloc[0] == "0.020"
    assert spread["Mean 95% CI width"].iloc[0] == "0.040"

    # A run made before bn_momentum existed and one made after, same settings: one group.
    from core.artifacts.config import settings_key
    from core.train import config as config_mod

    new = config_mod.resolve("data", "EfficientNetLite0", "full", {"weights": "none", "seed": 1}).to_dict()
    old = {k: v for k, v in new.items() if k != "bn_momentum"} | {"seed": 0}
    tuned = config_mod.resolve("data", "EfficientNetLite0", "full", {"weights": "none", "bn_momentum": 0.9}).to_dict()
    assert settings_key(old) == settings_key(new) != settings_key(tuned)


def test_run_labels_tell_apart_runs_that_differ_only_in_settings():
    from core.artifacts import naming
    from core.train import config as config_mod

    base = config_mod.resolve("data", "EfficientNetLite0", "full", {"weights": "none"}).to_dict()
    longer = config_mod.resolve("data", "EfficientNetLite0", "full",
                                {"weights": "none", "scratch": {"epochs": 40}}).to_dict()
    other_seed = config_mod.resolve("data", "EfficientNetLite0", "full", {"weights": "none", "seed": 1}).to_dict()
    moved = {**base, "dataset": "/elsewhere/data"}  # the same settings read from another path
    labels = naming.run_labels([base, longer, other_seed])
    assert labels[0] == "EfficientNetLite0 · scratch · full · seed 0 · scratch.epochs=20"
    assert labels[1] == "EfficientNetLite0 · scratch · full · seed 0 · scratch.epochs=40"
    assert labels[2] == "EfficientNetLite0 · scratch · full · seed 1"
    assert naming.run_labels([base, moved]) == ["EfficientNetLite0 · scratch · full · seed 0",
                                                "EfficientNetLite0 · scratch · full · seed 0 · #2"]
    older = {k: v for k, v in base.items() if k != "bn_momentum"}  # a run made before the setting existed
    tuned = config_mod.resolve("data", "EfficientNetLite0", "full", {"weights": "none", "bn_momentum": 0.9}).to_dict()
    assert naming.run_labels([older, tuned]) == ["EfficientNetLite0 · scratch · full · seed 0 · bn_momentum=default",
                                                 "EfficientNetLite0 · scratch · full · seed 0 · bn_momentum=0.9"]
    # Four settings changed (the Train page's four knobs): every difference is named, so labels stay unique.
    knobs = [{"augment": {"views": v}, "stage1": {"epochs": e1}, "stage2": {"epochs": e2}, "unfreeze_layers": u}
             for v, e1, e2, u in [(1, 10, 2, 20), (1, 10, 2, 40), (2, 20, 5, 20)]]
    four = naming.run_labels([config_mod.resolve("data", "EfficientNetLite0", "quick", k).to_dict() for k in knobs])
    assert len(set(four)) == 3 and "unfreeze_layers=40" in four[1]


def test_machine_time_keeps_the_last_entry_of_each_sitting_and_skips_a_cut_line(tmp_path):
    from core.artifacts import timing

    lines = [{"sitting": "s1", "wall_time_s": 100.0}, {"sitting": "s1", "wall_time_s": 250.0},
             {"sitting": "s2", "wall_time_s": 50.0}]
    (tmp_path / "experiment_log.jsonl").write_text(
        "".join(json.dumps(e) + "\n" for e in lines) + '{"sitting": "s3", "wall_ti')
    t = timing.machine_time(tmp_path)
    assert t["experiment_sittings_s"] == 300.0 and t["sittings"] == 2


def test_reproduce_command_round_trips_through_the_shell(tmp_path):
    import shlex

    from core.cli import build_parser
    from core.train import config as config_mod

    cfg = config_mod.resolve(str(tmp_path / "my data"), "MobileNetV2@0.35", "full",
                             {"stage1": {"optimizer": "sgd"}, "seed": 3})
    command = config_mod.reproduce_command(cfg.to_dict(), deploy=True, artifacts=str(tmp_path / "out dir"))
    args = build_parser().parse_args(shlex.split(command)[3:])
    assert args.data == str(tmp_path / "my data") and args.seed == 3 and args.deploy
    assert args.artifacts == str(tmp_path / "out dir")
    again = config_mod.resolve(args.data, args.backbone, args.preset,
                               {**config_mod.parse_overrides(args.set), "seed": args.seed})
    assert again.run_id() == cfg.run_id()


def test_confusion_cells_use_class_names_and_leave_a_class_without_test_images_empty():
    from core.artifacts import record_view

    metrics = {"classes": ["None", "sea lion"],
               "confusion_matrix": {"labels": [0, 1], "counts": [[0, 0], [1, 3]], "normalized": [None, [0.25, 0.75]]}}
    cells = record_view.confusion_cells(metrics, normalised=True)
    assert set(cells["true"]) == {"None", "sea lion"}
    empty_row = cells[cells["true"] == "None"]
    assert empty_row["value"].isna().all() and list(empty_row["count"]) == [0, 0]
    assert cells[(cells["true"] == "sea lion") & (cells["predicted"] == "sea lion")]["value"].item() == 0.75
    assert list(record_view.confusion_cells(metrics, normalised=False)["value"]) == [0, 0, 1, 3]


def test_predictions_keep_class_names_that_look_like_missing_values(tmp_path):
    from core.artifacts import record_view

    (tmp_path / "predictions.csv").write_text("id,true,pred,p_None,p_NA\nNone/a.png,None,NA,0.4,0.6\n"
                                              "NA/b.png,NA,NA,0.1,0.9\n")
    preds = record_view.predictions(tmp_path)
    assert list(preds["true"]) == ["None", "NA"] and list(preds["pred"]) == ["NA", "NA"]
    assert (preds["true"] != preds["pred"]).tolist() == [True, False]


def test_try_page_offers_only_variants_whose_measurement_succeeded(tmp_path):
    from core.artifacts.config import RunConfig
    from core.artifacts.records import CompleteRecord, DeploymentRecord, ProvenanceRecord
    from core.deploy.predict import stored_models

    run = tmp_path / "pets" / "EfficientNetLite0" / "quick-imagenet-s0-x"
    (run / "deploy").mkdir(parents=True)
    RunConfig(dataset="pets", backbone="EfficientNetLite0", preset="quick").save(run / "config.json")
    ProvenanceRecord(code={}, libraries={}, machine={}, dataset={"classes": ["cat", "dog"]}).save(
        run / "provenance.json")
    CompleteRecord(completed_at="2026-11-30T00:00:00Z").save(run / "complete.json")
    for name in ("tflite_float16", "tflite_int8_full", "tflite_float32"):  # float32: measured, file not kept
        (run / "deploy" / f"{name}.tflite").write_bytes(b"not checked here")
    (run / "deploy" / "tflite_float32.tflite").unlink()
    DeploymentRecord(kind="run", variants=[
        {"name": "tflite_float16", "status": "ok"}, {"name": "tflite_int8_full", "status": "failed"},
        {"name": "tflite_float32", "status": "ok"}]).save(run / "deploy" / "deployment.json")
    lite, _ = stored_models("pets", tmp_path)
    assert [m.variant for m in lite] == ["tflite_float16"]


def test_the_try_page_models_leave_out_a_run_with_an_unreadable_record_and_say_why(tmp_path):
    from core.artifacts.config import RunConfig
    from core.artifacts.records import CompleteRecord
    from core.deploy.predict import stored_models

    for name in ("a", "b"):
        run = tmp_path / "pets" / "EfficientNetLite0" / f"quick-imagenet-s0-{name}"
        (run / "deploy").mkdir(parents=True)
        RunConfig(dataset="pets", backbone="EfficientNetLite0", preset="quick", seed=ord(name)).save(
            run / "config.json")
        CompleteRecord(completed_at="2026-11-30T00:00:00Z").save(run / "complete.json")
        (run / "model.keras").write_bytes(b"not checked here")
    (tmp_path / "pets" / "EfficientNetLite0" / "quick-imagenet-s0-a" / "provenance.json").write_text('{"code"')
    (tmp_path / "pets" / "EfficientNetLite0" / "quick-imagenet-s0-b" / "provenance.json").write_text(
        json.dumps({"code": {}, "libraries": {}, "machine": {}, "dataset": {"classes": ["cat", "dog"]}}))
    (tmp_path / "pets" / "EfficientNetLite0" / "quick-imagenet-s0-b" / "deploy" / "deployment.json").write_text("[")
    problems = []
    assert stored_models("pets", tmp_path, problems) == ([], [])
    assert len(problems) == 2 and all("not valid JSON" in p for p in problems)
    assert "provenance.json" in problems[0] and "deployment.json" in problems[1]


@pytest.mark.parametrize("image_id, expected", [("../outside.png", "not a path inside the dataset folder"),
                                                ("/etc/hostname", "not a path inside the dataset folder"),
                                                ("cat/gone.png", "is no longer in the dataset folder"),
                                                ("cat", "cannot be read"),
                                                ("cat/notes.png", "is not an image"),
                                                ("cat/empty.png", "is empty")])
def test_a_picked_test_image_that_cannot_be_shown_is_one_line(tmp_path, image_id, expected):
    from core.deploy.predict import read_test_image
    from core.errors import UserError

    (tmp_path / "data" / "cat").mkdir(parents=True)
    (tmp_path / "data" / "cat" / "notes.png").write_text("a text file now")
    (tmp_path / "data" / "cat" / "empty.png").write_bytes(b"")
    (tmp_path / "outside.png").write_bytes(b"not read")
    with pytest.raises(UserError, match=expected) as info:
        read_test_image(tmp_path / "data", image_id)
    assert image_id in str(info.value) and "\n" not in str(info.value)


def test_an_upload_past_pillows_bomb_limit_gets_the_pixel_limit_message(monkeypatch):
    import io

    import numpy as np
    from PIL import Image

    from core.deploy import predict
    from core.errors import UserError

    buf = io.BytesIO()
    Image.fromarray(np.zeros((80, 80, 3), np.uint8)).save(buf, format="PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 6400 pixels > 2x the limit: Pillow refuses to open
    with pytest.raises(UserError, match="larger than the limit"):
        predict.decode_upload("huge.png", buf.getvalue())


def test_a_failed_recommendation_says_why():
    import pandas as pd

    from core.artifacts import ranking

    def configs(deployed, int8_mb):
        n = len(deployed)
        return pd.DataFrame({"preset": ["full"] * n, "label": [f"c{i}" for i in range(n)], "deployed": deployed,
                             "int8_mb": int8_mb, "int8_latency_ms": [1.0] * n, "val_accuracy": [0.9] * n,
                             "accuracy": [0.9] * n, "accuracy_low": [0.8] * n, "accuracy_high": [0.95] * n})

    assert "No run has deployment" in ranking.recommend(configs([False], [None]), 100.0, None, "accuracy").reason
    failed = configs([True, False], [None, None])  # deployed, but the full-int8 variant failed
    assert ranking.recommend(failed, 100.0, None, "accuracy").chosen is None
    assert "working TFLite model" in ranking.recommend(failed, 100.0, None, "accuracy").reason
    too_big = configs([True, True], [5.0, 3.25])
    assert ranking.recommend(too_big, 1.0, None, "accuracy").reason == (
        "No deployed run fits these limits: the smallest deployable model is 3.25 MB (tflite_int8_full) and the "
        "fastest takes 1.0 ms.")
    untimed = too_big.assign(int8_latency_ms=[None, None])
    assert "no latency was measured" in ranking.recommend(untimed, 1.0, None, "accuracy").reason
    unscored = too_big.assign(val_accuracy=[None, None])
    assert "has a validation accuracy" in ranking.recommend(unscored, None, None, "accuracy").reason


def test_split_counts_keep_every_stored_split_apart(tmp_path):
    from core.artifacts import record_view
    from core.artifacts.records import SplitRecord

    splits = tmp_path / "pets" / "splits"
    splits.mkdir(parents=True)
    for seed, n_test in ((1, 2), (2, 3)):
        items = [{"path": f"cat/{i}.png", "label": "cat", "split": "test" if i < n_test else "train"} for i in range(5)]
        SplitRecord(seed=seed, val_fraction=0.0, test_fraction=0.4, layout="class_folders",
                    items=items).save(splits / f"split-seed{seed}-abc.json")
    counts = record_view.split_counts("pets", tmp_path)
    test = counts[counts["split"] == "test"].set_index("split_file")["images"].to_dict()
    assert test == {"split-seed1-abc": 2, "split-seed2-abc": 3}


def test_train_page_is_disabled_on_a_shared_app(monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("STUDY_DISABLE_TRAINING", "1")
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=60).run()
    at.switch_page("pages/train.py").run()
    assert any("Training is switched off" in i.value for i in at.info)
    assert not [b for b in at.button if b.label == "Start training"]


def test_one_unreadable_file_leaves_the_rest_of_the_report_working(tmp_path, capsys):
    """A truncated metrics.json leaves its run out, listed once with the file and the reason; a truncated
    audit.json is one error line on the Data page; every other page and the CLI report still work."""
    import shutil

    from core.artifacts import report
    from core.cli import main

    art = tmp_path / "art"
    shutil.copytree(REPO / "artifacts" / "alzheimer_mri", art / "alzheimer_mri",
                    ignore=shutil.ignore_patterns("*.tflite", ".lock", "model.keras"))
    runs = sorted((art / "alzheimer_mri").glob("*/*/metrics.json"))
    broken = runs[0]
    broken.write_text('{"accuracy": 0.6')
    (art / "alzheimer_mri" / "audit.json").write_text("{")

    table = report.runs_table("alzheimer_mri", art)
    assert len(table) == len(runs) - 1 and str(broken.parent) not in set(table["path"])
    [problem] = report.unreadable(table)
    assert str(broken) in problem and "not valid JSON" in problem

    result = render(art)
    for page, content in result["pages"].items():
        assert content["exception"] == [], page
    assert any(str(broken) in w for w in result["pages"]["overview"]["warning"])
    assert any("audit.json" in e and "not valid JSON" in e for e in result["pages"]["data"]["error"])

    assert main(["report", "--artifacts", str(art)]) == 0
    out = capsys.readouterr().out
    assert "1 run(s) could not be read and are left out" in out and str(broken) in out
    missing = [label for label in table["label"] if f"| {label} |" not in out]
    assert not missing, missing  # the other runs' rows are there


def test_a_truncated_predictions_table_or_history_is_flagged_not_shown_partially(tmp_path, capsys):
    """predictions.csv cut inside its last value, or short of whole lines: the run is left out and listed with the
    file. history.csv cut mid-line, or short of epochs its provenance records: a warning on the Training page."""
    import shutil

    from core.artifacts import record_view, report
    from core.artifacts.records import RecordError
    from core.cli import main

    art = tmp_path / "art"
    shutil.copytree(REPO / "artifacts" / "alzheimer_mri", art / "alzheimer_mri",
                    ignore=shutil.ignore_patterns("*.tflite", ".lock", "model.keras"))
    table = report.runs_table("alzheimer_mri", art)
    readable = len(table)
    curves = [Path(p) for p in table[table["method"] == "finetune"]["path"]][:2]  # the Training page's default pick
    runs = table[table["kind"] != "ensemble"]
    cut_value, lost_lines = [Path(p) / "predictions.csv" for p in runs["path"].iloc[-2:]]
    cut_value.write_bytes(cut_value.read_bytes()[:-4])
    lost_lines.write_text("".join(lost_lines.read_text().splitlines(keepends=True)[:100]))
    cut_history, short_history = [run / "history.csv" for run in curves]
    cut_history.write_bytes(cut_history.read_bytes()[:-10])
    short_history.write_text("".join(short_history.read_text().splitlines(keepends=True)[:-3]))

    table = report.runs_table("alzheimer_mri", art)
    problems = report.unreadable(table)
    assert len(table) == readable - 2 and len(problems) == 2
    assert any(str(cut_value) in p and "last line is cut short" in p for p in problems)
    assert any(str(lost_lines) in p and "99 rows where the run's metrics count" in p for p in problems)
    with pytest.raises(RecordError, match="cut short"):
        record_view.predictions(cut_value.parent)
    history = record_view.history(cut_history.parent)
    cut, count = record_view.history_problems(history)  # the cut line, then the epoch it cost
    assert cut == f"{cut_history}: its last line is cut short (that epoch is left out)" and "records" in count
    assert history["val_accuracy"].notna().all()  # no half row
    [short] = record_view.history_problems(record_view.history(short_history.parent))
    assert str(short_history) in short and "where provenance.json records" in short

    result = render(art)
    for page, content in result["pages"].items():
        assert content["exception"] == [], page
    assert any(str(cut_value) in w and str(lost_lines) in w for w in result["pages"]["overview"]["warning"])
    training = result["pages"]["training"]["warning"]
    assert any(str(cut_history) in w and "cut short" in w for w in training), training
    assert any(str(short_history) in w and "the curve is incomplete" in w for w in training), training

    assert main(["report", "--artifacts", str(art)]) == 0
    assert "2 run(s) could not be read and are left out" in capsys.readouterr().out


def test_the_data_page_names_the_artifacts_folder_the_app_reads(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    art = tmp_path / "results elsewhere"
    (art / "pets").mkdir(parents=True)
    (art / "pets" / "unavailable.json").write_text(json.dumps({"runs": []}))  # a dataset with no audit yet
    monkeypatch.setenv("STUDY_ARTIFACTS", str(art))
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=60).run()
    at.switch_page("pages/data.py").run()
    assert not at.exception
    [hint] = [i.value for i in at.info if "No audit stored" in i.value]
    assert f"--out '{art / 'pets' / 'audit.json'}'" in hint and "artifacts/pets" not in hint


def test_the_training_page_shows_each_stage_against_the_machine_limit_or_not_recorded(tmp_path):
    """A run whose provenance has the stages' compute blocks shows them; a run trained before shows "not
    recorded" (nothing is recomputed at report time)."""
    import shutil

    from core.artifacts import report

    art = tmp_path / "art"
    shutil.copytree(REPO / "artifacts" / "alzheimer_mri", art / "alzheimer_mri",
                    ignore=shutil.ignore_patterns("*.tflite", ".lock", "model.keras"))
    table = report.runs_table("alzheimer_mri", art)
    with_compute, without = [Path(p) for p in table[table["method"] == "finetune"]["path"]][:2]  # the default pick
    prov = json.loads((with_compute / "provenance.json").read_text())
    block = {"forward_flops_per_sample": 10**8, "training_flops_per_sample": 3 * 10**8,
             "train_samples_per_epoch": 1000, "val_samples_per_epoch": 200, "gflops_per_epoch": 320.0, "median_epoch_seconds": 4.0,
             "achieved_gflops_per_s": 80.0, "peak_gflops_per_s": 200.0, "peak_threads": 2, "peak_library": "numpy",
             "fraction_of_peak": 0.4, "method": "analytic"}
    prov["details"]["stage1"]["compute"] = block
    prov["details"]["stage2"]["compute"] = {**block, "fraction_of_peak": 0.05, "achieved_gflops_per_s": 10.0}
    (with_compute / "provenance.json").write_text(json.dumps(prov))
    old = json.loads((without / "provenance.json").read_text())  # as a run made before compute was recorded
    for stage in ("stage1", "stage2"):
        old["details"].get(stage, {}).pop("compute", None)
    (without / "provenance.json").write_text(json.dumps(old))

    page = render(art)["pages"]["training"]
    assert page["exception"] == [] and "Training against the machine's limit" in page["subheaders"]
    shown = next(d for d in page["dataframes"] if "fraction of peak" in d)
    rows = list(zip(shown["stage"], shown["GFLOPs per epoch"], shown["achieved GFLOP/s"], shown["peak GFLOP/s"],
                    shown["fraction of peak"], shown["note"]))
    assert rows[:2] == [("stage 1 (head)", "320", "80.00", "200", "40.0%", "peak with 2 thread(s)"),
                        ("stage 2 (fine-tuning)", "320", "10.00", "200", "5.0%", "peak with 2 thread(s)")]
    assert rows[2:4] == [("stage 1 (head)", "", "", "", "", "not recorded"),
                         ("stage 2 (fine-tuning)", "", "", "", "", "not recorded")]
    assert any("compute-bound" in c and "input-bound" in c for c in page["caption"])
