"""A run's folder after a crash, a full disk or an early failure (issue #15): the event log keeps every readable
line, a failed run says so with the reason, and the time of every invocation stays on record.

Training is replaced by a stand-in that times its phases like the real one, so no TensorFlow is needed.
"""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import make_image_dataset
from test_app import _PROBE, REPO

from core.artifacts import report
from core.artifacts.layout import EVENTS_FILE, EXPERIMENT_LOG, PROVENANCE_FILE, dataset_slug
from core.artifacts.records import ProvenanceRecord, RecordError, append_experiment_log, read_experiment_log
from core.artifacts.runs import RunFolder
from core.cli import main as cli_main
from core.errors import DatasetError, WeightsUnavailableError
from core.orchestrate import run as run_mod
from core.train import config as config_mod

pytestmark = pytest.mark.unit

CUT = b'{"t": 1700000000.5, "event": "epo'  # an append that a full disk cut short


def folder_with_events(tmp_path, *raw_lines: bytes) -> RunFolder:
    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    run.file(EVENTS_FILE).write_bytes(b"".join(raw_lines))
    return run


def test_an_event_after_a_line_cut_short_starts_on_a_fresh_line(tmp_path):
    run = folder_with_events(tmp_path, b'{"t": 1700000000.0, "event": "started"}\n', CUT)
    run.event("epoch", epoch=1)
    problems = []
    events = run.read_events(problems)
    # Before: the epoch event was glued onto the cut line, and both were lost.
    assert [e["event"] for e in events] == ["started", "epoch"]
    assert problems == [f"{run.file(EVENTS_FILE)} line 2: not a complete event (cut short by a crash or a full disk?), "
                        "skipped"]


@pytest.mark.parametrize("broken", [CUT, b"\xff\xfe not UTF-8", b"[1, 2]", b'{"t": 1}', b'{"event": "epoch"}',
                                    b'{"t": "soon", "event": "epoch"}'])
def test_a_broken_event_line_is_skipped_with_a_warning_and_the_rest_kept(tmp_path, broken):
    run = folder_with_events(tmp_path, b'{"t": 1700000000.0, "event": "started"}\n', broken + b"\n",
                             b'{"t": 1700000005.0, "event": "failed", "error": "DatasetError: no images"}\n')
    problems = []
    assert [e["event"] for e in run.read_events(problems)] == ["started", "failed"]
    assert len(problems) == 1 and "line 2" in problems[0]
    assert run.invocations()[0]["outcome"] == "failed"


def test_history_and_experiment_log_appends_start_on_a_fresh_line_too(tmp_path):
    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    run.append_history({"stage": "stage1", "epoch": 1})
    with open(run.file("history.csv"), "a") as fh:
        fh.write("stage1,2,0.5")  # cut short
    run.append_history({"stage": "stage1", "epoch": 3})
    assert [r["epoch"] for r in run.read_history()][-1] == "3"
    log = tmp_path / EXPERIMENT_LOG
    append_experiment_log(log, {"sitting": "a", "wall_time_s": 1.0})
    with open(log, "a") as fh:
        fh.write('{"sitting": "a", "wall')
    append_experiment_log(log, {"sitting": "b", "wall_time_s": 2.0})
    assert [e["sitting"] for e in read_experiment_log(log)] == ["a", "b"]


def config_for(root, **overrides):
    return config_mod.resolve(str(root), "EfficientNetLite0", "quick", {"weights": "none", **overrides})


def test_a_run_that_fails_on_its_data_is_marked_failed_with_the_reason(tmp_path, capsys):
    one_class = make_image_dataset(tmp_path / "lonely", classes=("only",), per_class=10)
    art = tmp_path / "art"
    cfg = config_for(one_class)
    with pytest.raises(DatasetError):
        run_mod.execute(cfg, art, emit=lambda line: None)
    folder = RunFolder.for_config(cfg, art)
    assert sorted(p.name for p in folder.path.iterdir() if not p.name.startswith(".")) == ["config.json",
                                                                                          "events.jsonl"]
    status = folder.status()
    assert status.state == "failed" and "a classifier needs at least 2" in status.reason and status.at
    # The app lists it as failed, with the reason, under its dataset.
    assert "lonely" in report.datasets(art)
    failed = report.failed_runs("lonely", art)
    assert list(failed["run_id"]) == [folder.path.name] and "needs at least 2" in failed["reason"].iloc[0]
    assert list(report.failed_table(failed).columns) == ["Backbone", "Run", "Failed at", "Reason"]
    # `experiment --dry-run` says failed and why (before: "partial", no reason).
    grid = tmp_path / "grid.toml"
    grid.write_text(f'artifacts = "{art}"\n[[grid]]\ndatasets = ["{one_class}"]\nbackbones = ["EfficientNetLite0"]\n'
                    'weights = ["none"]\npreset = "quick"\n')
    assert cli_main(["experiment", str(grid), "--dry-run"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if str(folder.path) in x)
    assert line.lstrip().startswith("failed ") and "DatasetError" in line and "needs at least 2" in line
    assert "1 runs failed when last tried" in out


def test_a_run_whose_weights_fail_to_load_after_the_folder_exists_is_failed(tmp_path, monkeypatch):
    data = make_image_dataset(tmp_path / "colours", per_class=8)
    art = tmp_path / "art"

    def weights_gone(config, spec, data, run, emit):
        raise WeightsUnavailableError("EfficientNetLite0: weights file removed while the run started")

    monkeypatch.setattr(run_mod.transfer, "train_and_predict", weights_gone)
    cfg = config_for(data)
    with pytest.raises(WeightsUnavailableError):
        run_mod.execute(cfg, art, emit=lambda line: None)
    status = RunFolder.for_config(cfg, art).status()
    assert status.state == "failed" and "weights file removed" in status.reason


def stand_in_training(phases, stop_in=None):
    """A train_and_predict timing ``phases`` ({name: seconds}) like the real one; KeyboardInterrupt in ``stop_in``."""
    def train_and_predict(config, spec, data, run, emit):
        for name, seconds in phases.items():
            with run.phase(name):
                time.sleep(seconds)
                if name == stop_in:
                    raise KeyboardInterrupt
        probs = np.eye(len(data.classes))[data.labels["test"]]
        return {"test_probs": probs, "val_probs": np.eye(len(data.classes))[data.labels["val"]], "details": {}}
    return train_and_predict


def test_timings_keep_every_invocation_after_a_resume(tmp_path, monkeypatch):
    data = make_image_dataset(tmp_path / "colours", per_class=8)
    art = tmp_path / "art"
    cfg = config_for(data)
    monkeypatch.setattr(run_mod.transfer, "train_and_predict",
                        stand_in_training({"features": 0.3, "stage1": 0.1}, stop_in="stage1"))
    with pytest.raises(KeyboardInterrupt):
        run_mod.execute(cfg, art, emit=lambda line: None)
    folder = RunFolder.for_config(cfg, art)
    assert folder.status().state == "interrupted"
    assert report.failed_runs(dataset_slug(data), art).empty  # interrupted is not failed: it resumes
    with open(folder.file(EVENTS_FILE), "ab") as fh:
        fh.write(CUT)  # the disk filled up while the first invocation wrote its last event
    # The resume warns about the cut line, finds the features cached (fast) and finishes.
    monkeypatch.setattr(run_mod.transfer, "train_and_predict",
                        stand_in_training({"features": 0.0, "stage1": 0.1, "test_inference": 0.0}))
    lines = []
    run_mod.execute(cfg, art, emit=lines.append)
    assert any(line.startswith("warning: ") and "not a complete event" in line for line in lines)
    prov = ProvenanceRecord.load(folder.file(PROVENANCE_FILE))
    first, second = prov.invocations
    assert (first["outcome"], first["resumed"], second["outcome"], second["resumed"]) == \
        ("interrupted", False, "complete", True)
    # Before: timings_s held the last invocation only (features 0.0 s).
    assert first["timings_s"]["features"] >= 0.3 and second["timings_s"]["features"] < 0.3
    assert prov.timings_s["features"] == pytest.approx(first["timings_s"]["features"] + second["timings_s"]["features"])
    assert set(prov.timings_s) == {"features", "stage1", "test_inference"}
    assert prov.wall_time_s == pytest.approx(first["wall_time_s"] + second["wall_time_s"], abs=0.11)
    assert json.loads(folder.file(PROVENANCE_FILE).read_text())["schema_version"] == 2
    assert folder.status().state == "complete"


def test_a_schema_1_provenance_file_reads_as_its_one_invocation(tmp_path):
    old = {"schema_version": 1, "code": {}, "libraries": {}, "machine": {}, "dataset": {},
           "timings_s": {"features": 0.03, "stage1": 12.5}, "wall_time_s": 20.1, "details": {}}
    path = tmp_path / PROVENANCE_FILE
    path.write_text(json.dumps(old))
    prov = ProvenanceRecord.load(path)
    assert prov.timings_s == old["timings_s"] and prov.wall_time_s == 20.1
    assert prov.invocations == [{"started_at": None, "resumed": None, "outcome": "complete", "wall_time_s": 20.1,
                                 "timings_s": {"features": 0.03, "stage1": 12.5}}]
    path.write_text(json.dumps({**old, "schema_version": 3}))
    with pytest.raises(RecordError, match="newer than this code reads"):
        ProvenanceRecord.load(path)


def test_the_overview_page_lists_a_failed_run_with_its_reason(tmp_path):
    one_class = make_image_dataset(tmp_path / "lonely", classes=("only",), per_class=10)
    art = tmp_path / "art"
    with pytest.raises(DatasetError):
        run_mod.execute(config_for(one_class), art, emit=lambda line: None)
    env = dict(os.environ, STUDY_ARTIFACTS=str(art))
    out = subprocess.run([sys.executable, "-c", _PROBE % ["overview"]], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    page = json.loads(out.stdout.strip().splitlines()[-1])["pages"]["overview"]
    assert page["exception"] == [] and "Failed runs" in page["subheaders"]
    reasons = [r for table in page["dataframes"] for r in table.get("Reason", [])]
    assert len(reasons) == 1 and "a classifier needs at least 2" in reasons[0]
