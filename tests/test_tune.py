"""``python -m core tune``: an Optuna study of the stage-1 head that survives kill -9, and tuned settings that
become normal runs the report ranks as their own configuration (tiny data, cached Lite0 weights)."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
from conftest import TINY_RUN, make_image_dataset

from core.artifacts.config import flatten
from core.cli import main as cli_main

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[1]


def _argv(data, art, *extra):
    sets = [f"{key}={json.dumps(value)}" for key, value in flatten(TINY_RUN).items()]
    return ["tune", "--data", str(data), "--backbone", "EfficientNetLite0", "--preset", "quick", "--artifacts",
            str(art), *extra] + [x for item in sets for x in ("--set", item)]


def _study(art):
    import optuna

    from core.artifacts import layout

    storage = layout.optuna_storage(art / "colours")
    names = optuna.get_all_study_names(storage)
    return optuna.load_study(study_name=names[0], storage=storage) if names else None


def _complete_trials(path) -> int:
    """Complete trials in a study's SQLite file, read only and without Optuna: its load_study would create the
    schema tables the tuning process may be creating at that moment (both insert alembic_version: one fails)."""
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return db.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
    except sqlite3.Error:  # no file or no table yet
        return 0


def test_a_study_resumes_after_kill_minus_nine_without_losing_finished_trials(lite0_home, tmp_path):
    import optuna

    data = make_image_dataset(tmp_path / "colours", per_class=10, seed=9)
    art = tmp_path / "art"
    proc = subprocess.Popen([sys.executable, "-m", "core", *_argv(data, art, "--trials", "200")], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    complete = 0
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and complete < 2:
            time.sleep(0.5)
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            complete = _complete_trials(art / "colours" / "model_selection" / "optuna.sqlite3")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert complete >= 2, "no two trials finished in time"
    before = {t.number: t.value for t in _study(art).get_trials() if t.state == optuna.trial.TrialState.COMPLETE}
    target = len(before) + 2
    assert cli_main(_argv(data, art, "--trials", str(target))) == 0
    after = _study(art).get_trials()
    assert {t.number: t.value for t in after if t.number in before} == before  # finished trials kept as they were
    finished = [t for t in after if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    assert len(finished) == target
    record = json.loads(next((art / "colours" / "model_selection").glob("tuning-*.json")).read_text())
    assert record["best"]["value"] == max(v for v in before.values() if v is not None) or \
        record["best"]["number"] not in before
    assert set(record["search_space"]) == set(record["best"]["overrides"])
    assert record["objective"]["source"] == "validation: the 4 of 4 images in no group with a training image"
    assert record["importance_note"]
    assert all(0 <= v <= 1 for v in record["importances"].values())  # tiny data: every trial may score the same


def test_tuned_settings_become_a_normal_run_the_report_ranks_as_its_own_configuration(lite0_home, tmp_path):
    from core.artifacts import ranking, report
    from core.artifacts.config import RunConfig

    data = make_image_dataset(tmp_path / "colours", per_class=10, seed=11)
    art = tmp_path / "art"
    assert cli_main(["run"] + _argv(data, art)[1:]) == 0  # the default configuration
    assert cli_main(_argv(data, art, "--trials", "2", "--run-best", "--seeds", "0")) == 0
    runs = report.runs_table("colours", art)
    assert len(runs) == 2
    tuned = [RunConfig.load(Path(p) / "config.json") for p in runs["path"]]
    marks = sorted(c.tuned_from for c in tuned)
    assert marks[0] == "" and "#" in marks[1]
    configs = ranking.configurations(runs)
    assert len(configs) == 2 and configs["settings_key"].nunique() == 2
    assert any("tuned_from" in label for label in configs["label"])


def test_tune_with_a_bad_storage_is_one_line(lite0_home, tmp_path, capsys):
    data = make_image_dataset(tmp_path / "colours", per_class=10, seed=2)
    assert cli_main(_argv(data, tmp_path / "art", "--trials", "1", "--storage", "nosuchdb://x")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --storage nosuchdb://x: cannot open the Optuna storage") and "Traceback" not in err
