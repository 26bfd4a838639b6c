"""Background training jobs for the app: one at a time, state on disk, survives app restarts.

A job is the product's own CLI (``python -m core run ...``) started as a separate
process in its own session, so it outlives Streamlit reruns, page switches, browser
reloads and even a restart of the app, and TensorFlow's memory never sits in the app
server. Its state lives in ``<jobs dir>/<job id>/``:

- ``job.json``: what was asked (arguments, run folders it will write), pid, start time;
- ``log.txt``: the CLI's output;
- ``result.json``: exit code and end time, written by the job's wrapper when it ends.

Progress comes from the run folders' ``events.jsonl``. Cancelling sends SIGINT to the
job's process group: the run stops between steps and stays resumable, never marked
complete. ``<jobs dir>/current`` names the job that holds the one-job lock.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from core.artifacts.layout import COMPLETE_MARKER, REPO_ROOT, deployment_file
from core.artifacts.records import CompleteRecord, DeploymentRecord, RecordError
from core.artifacts.runs import RunFolder
from core.artifacts.storage import atomic_write_json, read_json
from core.cli import main
from core.deploy.variants import variant_plan
from core.errors import UserError


class JobRunningError(UserError):
    """Another job is running; only one at a time."""


def jobs_dir() -> Path:
    """``$STUDY_JOBS`` or ``jobs/`` in the repo (git-ignored)."""
    return Path(os.environ.get("STUDY_JOBS") or REPO_ROOT / "jobs")


@dataclass
class JobStatus:
    """What the app shows about a job."""

    job_id: str
    state: str  # running | succeeded | failed | cancelled | lost
    spec: dict
    returncode: int | None
    log_tail: str
    started: float
    ended: float | None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of this process counts as ended
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            return fh.read().split(") ", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def current_job(root: Path | None = None) -> str | None:
    """The id of the job holding the lock, if it is still running."""
    root = Path(root or jobs_dir())
    marker = root / "current"
    if not marker.is_file():
        return None
    job_id = marker.read_text().strip()
    status = job_status(job_id, root)
    return job_id if status and status.state == "running" else None


def start_job(args: Sequence[str], description: str, root: Path | None = None,
              run_dirs: Sequence[str] = (), files: dict[str, str] | None = None) -> str:
    """Start ``python -m core <args>`` in the background; returns the job id.

    ``run_dirs`` are the run folders the job will write (for progress); ``files``
    (name -> text) are written into the job folder first, and ``{job}`` in ``args``
    is replaced by that folder. Raises :class:`JobRunningError` naming the running
    job when one is already running.
    """
    root = Path(root or jobs_dir())
    root.mkdir(parents=True, exist_ok=True)
    lock = root / ".lock"
    with open(lock, "a+") as fh:  # serialise concurrent starts (two tabs, two users)

        fcntl.flock(fh, fcntl.LOCK_EX)
        running = current_job(root)
        if running:
            spec = read_json(root / running / "job.json")
            raise JobRunningError(f"a job is already running: {spec['description']} (started "
                                  f"{time.strftime('%H:%M:%S', time.localtime(spec['started']))}); "
                                  "wait for it or cancel it first")
        job_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        folder = root / job_id
        folder.mkdir()
        for name, text in (files or {}).items():
            (folder / name).write_text(text, encoding="utf-8")
        args = [a.replace("{job}", str(folder)) for a in args]
        log = open(folder / "log.txt", "ab")
        cmd = [sys.executable, "-m", "core.jobs", str(folder), *args]
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        log.close()
        atomic_write_json(folder / "job.json", {"schema_version": 1, "job_id": job_id, "args": list(args),
                                                "description": description, "pid": proc.pid,
                                                "run_dirs": [str(d) for d in run_dirs],
                                                "started": time.time()})
        (root / "current").write_text(job_id)
    return job_id


# Share of a run's progress bar taken by training when the job also measures deployment variants.
TRAINING_SHARE_WITH_DEPLOY = 0.75


def job_deploys(status: JobStatus) -> bool:
    """Whether the job measures deployment variants after training."""
    return "--deploy" in status.spec.get("args", [])


def job_progress(status: JobStatus) -> tuple[float, str]:
    """One overall fraction for the job (its runs, each through its stages and deployment) and what runs now."""
    run_dirs = [Path(d) for d in status.spec.get("run_dirs", [])]
    if not run_dirs:
        return (0.0 if status.state == "running" else 1.0), ""
    deploy = job_deploys(status)
    parts = [run_progress(d, deploy) for d in run_dirs]
    overall = sum(f for f, _ in parts) / len(parts)
    current = next((i for i, (f, _) in enumerate(parts) if f < 1.0), None)
    if current is None:
        return 1.0, f"{len(parts)} of {len(parts)} run(s) done"
    return overall, f"run {current + 1} of {len(parts)} ({run_dirs[current].parent.name}): {parts[current][1]}"


def run_progress(run_dir: Path, deploy: bool) -> tuple[float, str]:
    """A run's share done (training stages, then deployment variants when ``deploy``) and a short description."""
    folder = RunFolder(run_dir)
    train_share = TRAINING_SHARE_WITH_DEPLOY if deploy else 1.0
    if folder.is_complete():
        if not deploy:
            return 1.0, "trained"
        measured, total = deployment_progress(run_dir)
        if total and measured >= total:
            return 1.0, "trained and deployment measured"
        return (train_share + (1 - train_share) * (measured / total if total else 0.0),
                f"trained; measuring deployment variants ({measured} of {total or '?'})")
    events = folder.read_events([]) if run_dir.is_dir() else []
    last = next((e for e in reversed(events) if e.get("event") == "epoch"), None)
    if last is None:
        return (0.02 * train_share, "preparing data and features" if events else "waiting")
    start, width = {"stage1": (0.1, 0.45), "stage2": (0.55, 0.45)}.get(last.get("stage"), (0.1, 0.9))
    done = start + width * min(1.0, last["epoch"] / max(1, last["epochs"]))
    return done * train_share, f"{last['stage']} epoch {last['epoch']} of {last['epochs']} (early stopping may end it sooner)"


def deployment_progress(run_dir: Path) -> tuple[int, int]:
    """``(variants measured, variants planned)`` of a run's deploy/deployment.json (written variant by variant)."""
    path = deployment_file(run_dir)
    try:
        variants = DeploymentRecord.load(path).variants if path.is_file() else []
    except RecordError:
        variants = []
    return sum(1 for v in variants if v.get("status")), max(len(variants), len(variant_plan()))


def complete_runs_of(run_dirs: Sequence[str | Path]) -> list[tuple[Path, float]]:
    """The complete ones of ``run_dirs`` with their test accuracy (complete.json)."""
    out = []
    for run_dir in (Path(d) for d in run_dirs):
        marker = run_dir / COMPLETE_MARKER
        try:
            accuracy = CompleteRecord.load(marker).accuracy if marker.is_file() else None
        except RecordError:
            accuracy = None
        if accuracy is not None:
            out.append((run_dir, float(accuracy)))
    return out


def job_status(job_id: str, root: Path | None = None, tail_lines: int = 30) -> JobStatus | None:
    """The state of a job, from its files and whether its process lives."""
    folder = Path(root or jobs_dir()) / job_id
    if not (folder / "job.json").is_file():
        return None
    spec = read_json(folder / "job.json")
    result = read_json(folder / "result.json") if (folder / "result.json").is_file() else None
    if result is not None:
        code = result["returncode"]
        state = "succeeded" if code == 0 else ("cancelled" if result.get("cancelled") or code == 130 else "failed")
        ended = result.get("ended")
    elif _pid_alive(spec["pid"]):
        state, code, ended = "running", None, None
    else:
        state, code, ended = "lost", None, None  # killed without a chance to write its result
    return JobStatus(job_id, state, spec, code, _tail(folder / "log.txt", tail_lines), spec["started"], ended)


def cancel_job(job_id: str, root: Path | None = None, wait_s: float = 30.0) -> JobStatus | None:
    """Ask a running job to stop (SIGINT to its process group), then force it after ``wait_s``."""
    folder = Path(root or jobs_dir()) / job_id
    status = job_status(job_id, root)
    if status is None or status.state != "running":
        return status
    atomic_write_json(folder / "cancel.json", {"requested": time.time()})
    pid = status.spec["pid"]
    try:
        os.killpg(pid, signal.SIGINT)
    except ProcessLookupError:
        return job_status(job_id, root)
    deadline = time.time() + wait_s
    while time.time() < deadline and _pid_alive(pid):
        time.sleep(0.2)
    if _pid_alive(pid):
        os.killpg(pid, signal.SIGKILL)
        _write_result(folder, 137, cancelled=True)
    return job_status(job_id, root)


def list_jobs(root: Path | None = None) -> list[JobStatus]:
    """All jobs, newest first."""
    root = Path(root or jobs_dir())
    if not root.is_dir():
        return []
    found = [job_status(p.name, root) for p in sorted(root.iterdir(), reverse=True) if (p / "job.json").is_file()]
    return [s for s in found if s is not None]


def _tail(path: Path, lines: int) -> str:
    if not path.is_file():
        return ""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - 20_000))
        text = fh.read().decode("utf-8", errors="replace")
    return "\n".join(line for line in text.splitlines()[-lines:] if not line.startswith(("I0000", "E0000", "WARNING: All")))


def _write_result(folder: Path, returncode: int, cancelled: bool = False) -> None:
    if not (folder / "result.json").is_file():
        atomic_write_json(folder / "result.json", {"returncode": returncode, "ended": time.time(),
                                                   "cancelled": cancelled or (folder / "cancel.json").is_file()})


def _wrapper(folder: str, args: list[str]) -> int:
    """Run the CLI in this process and record its exit code (the job's process)."""
    # A process started from a non-interactive shell's background (`streamlit run ... &` in a
    # script, CI) inherits SIGINT as ignored, and Python keeps it so: Cancel would then wait and kill instead of
    # letting the run record its interruption. The job always wants KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    code = 1
    try:
        code = main(args)
    except KeyboardInterrupt:
        code = 130
    except SystemExit as exc:
        code = int(exc.code or 0)
    except BaseException as exc:  # noqa: BLE001 - a crash must still be recorded for the app

        traceback.print_exc()
        print(f"error: the job crashed: {type(exc).__name__}: {exc}", flush=True)
        code = 1
    finally:
        _write_result(Path(folder), code)
    return code


if __name__ == "__main__":
    sys.exit(_wrapper(sys.argv[1], sys.argv[2:]))
