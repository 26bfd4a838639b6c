"""Background jobs: start, live progress, one at a time, cancel, recovery after a restart, failures."""

import json
import os
import signal
import time

import pytest
from conftest import make_image_dataset

from core import jobs

pytestmark = pytest.mark.integration

QUICK = ["--preset", "quick", "--set", "input_size=64", "--set", "augment.views=0"]


def wait_for(predicate, timeout=180, step=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("timed out")


@pytest.fixture
def job_root(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDY_JOBS", str(tmp_path / "jobs"))
    return tmp_path / "jobs"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_image_dataset(tmp_path_factory.mktemp("jobdata") / "colours", per_class=8)


def run_args(data, art, *extra):
    return ["run", "--data", str(data), "--backbone", "EfficientNetLite0", "--artifacts", str(art), *QUICK, *extra]


def test_a_job_runs_in_the_background_and_reports_progress(lite0_home, data, tmp_path, job_root):
    art = tmp_path / "art"
    job = jobs.start_job(run_args(data, art), "quick colours")
    assert jobs.current_job() == job
    events = wait_for(lambda: list(art.glob("*/*/*/events.jsonl")))
    wait_for(lambda: jobs.job_status(job).state != "running")
    status = jobs.job_status(job)
    assert status.state == "succeeded" and status.returncode == 0
    kinds = [json.loads(line)["event"] for line in events[0].read_text().splitlines()]
    assert "epoch" in kinds and kinds[-1] == "complete"
    assert "done: accuracy" in status.log_tail
    assert jobs.current_job() is None


def test_one_job_at_a_time_cancel_and_recovery(lite0_home, data, tmp_path, job_root):
    # As when the app was started from a background shell: SIGINT ignored, inherited by the job.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _cancel_and_recover(data, tmp_path)
    finally:
        signal.signal(signal.SIGINT, previous)


def _cancel_and_recover(data, tmp_path):
    art = tmp_path / "art"
    long = run_args(data, art, "--set", "stage1.epochs=1000", "--set", "stage1.patience=1000")
    job = jobs.start_job(long, "a long job")
    with pytest.raises(jobs.JobRunningError, match="a long job"):
        jobs.start_job(run_args(data, art), "a second job")
    wait_for(lambda: any('"epoch"' in p.read_text() for p in art.glob("*/*/*/events.jsonl")))
    # A restarted app finds the running job from the files alone.
    import importlib

    fresh = importlib.reload(jobs)
    assert fresh.current_job() == job and fresh.job_status(job).state == "running"
    status = fresh.cancel_job(job)
    assert status.state == "cancelled"
    run = next(art.glob("*/*/*"))
    assert not (run / "complete.json").exists() and (run / "state").is_dir()  # resumable, not a result
    events = [json.loads(line)["event"] for line in (run / "events.jsonl").read_text().splitlines()]
    assert events[-1] == "interrupted"
    assert fresh.current_job() is None


def test_failures_and_lost_jobs_are_reported(lite0_home, tmp_path, job_root):
    job = jobs.start_job(["run", "--data", str(tmp_path / "missing"), "--backbone", "EfficientNetLite0"], "bad data")
    wait_for(lambda: jobs.job_status(job).state != "running", timeout=60)
    status = jobs.job_status(job)
    assert status.state == "failed" and status.returncode == 2
    assert "data folder not found" in status.log_tail

    job = jobs.start_job(["experiment", "{job}/grid.toml"], "empty grid", files={"grid.toml": "artifacts = \"x\"\n"})
    wait_for(lambda: jobs.job_status(job).state != "running", timeout=60)
    status = jobs.job_status(job)
    assert status.state == "failed" and "no [[grid]] section" in status.log_tail


def test_a_killed_job_shows_as_lost(lite0_home, data, tmp_path, job_root):
    art = tmp_path / "art"
    job = jobs.start_job(run_args(data, art, "--set", "stage1.epochs=1000", "--set", "stage1.patience=1000"), "doomed")
    pid = jobs.job_status(job).spec["pid"]
    wait_for(lambda: list(art.glob("*/*/*/events.jsonl")))
    os.killpg(pid, signal.SIGKILL)
    wait_for(lambda: jobs.job_status(job).state != "running", timeout=30)
    assert jobs.job_status(job).state == "lost"
    assert jobs.current_job() is None
