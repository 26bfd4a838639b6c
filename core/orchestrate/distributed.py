"""Experiment grids on a Ray cluster: ``python -m core experiment FILE --ray [auto|ray://HOST:PORT]``.

Every run of the grid that is not complete in ``artifacts/`` becomes one Ray task. The
task calls :func:`core.orchestrate.run.execute` in a temporary artifacts folder on its
worker and returns the finished run folder (and the split file it wrote) as a tar archive;
the driver writes it into ``artifacts/`` the way a local run is written: files fsync'ed, the
folder renamed into place in one step, so ``complete.json`` appears with the rest of the
run or not at all. A run folder already started here (an interrupted local run, or a
complete one that still needs its deployment variants) travels to the worker with the
task, so the worker resumes it from its checkpoints.

Faults: a task whose worker process dies is retried by Ray (``max_retries``); each
attempt works in a fresh temporary folder, so a killed attempt leaves nothing half-written
behind, and the retry starts again from what the driver sent. Ctrl-C cancels the tasks
still running; runs already written stay, and no unfinished run is ever written.

Ray is an optional dependency (``requirements-ray.txt``): it is imported only here, when
``--ray`` is given.
"""

from __future__ import annotations

import dataclasses
import io
import os
import shutil
import signal
import socket
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from core.artifacts.config import RunConfig
from core.artifacts.layout import COMPLETE_MARKER, SPLITS_DIR, artifacts_dir, dataset_slug, deploy_dir
from core.artifacts.runs import RunFolder
from core.deploy.measure import is_measured
from core.errors import UserError, WeightsUnavailableError
from core.orchestrate import experiment
from core.orchestrate.analyses import run_analyses
from core.orchestrate.run import execute
from core.progress import Emit

LOCAL = "local"  # `--ray` with no address: start a Ray instance on this machine
RAY_MISSING = "--ray needs the 'ray' package, which is not installed: pip install -r requirements-ray.txt"
INCOMING_DIR = ".incoming"  # <artifacts>/<dataset>/.incoming/<tmp>/run: deeper than any run folder glob
# Test hook: a marker file path; the first task to find it absent creates it and kills its own
# worker process (SIGKILL) mid-run, as a crashed node would.
CRASH_ONCE_ENV = "CORE_RAY_CRASH_ONCE"
THREAD_ENV = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS")


@dataclass(frozen=True)
class RayOptions:
    """How the grid is spread: the cluster, what each run asks of it, and paths as workers see them."""

    address: str = LOCAL  # "local", "auto" (a cluster started with `ray start`) or "ray://HOST:PORT"
    cpus_per_run: float = 1
    gpus_per_run: float = 0
    max_retries: int = 2
    data_map: tuple[tuple[str, str], ...] = ()  # (local prefix, worker prefix) of dataset paths
    env: dict = field(default_factory=dict)  # extra environment of the tasks (the tests' crash hook)


def parse_data_map(items: list[str] | None) -> tuple[tuple[str, str], ...]:
    """``["LOCAL=REMOTE", ...]`` (``--data-map``) as prefix pairs; one line for a malformed item."""
    pairs = []
    for item in items or []:
        local, sep, remote = item.partition("=")
        if not sep or not local or not remote:
            raise UserError(f"--data-map {item!r}: write LOCAL=REMOTE, e.g. --data-map /home/me/data=/mnt/data")
        pairs.append((local.rstrip("/") or "/", remote.rstrip("/") or "/"))
    return tuple(pairs)


def map_dataset(path: str, data_map: tuple[tuple[str, str], ...]) -> str:
    """The dataset path as workers see it: the first ``--data-map`` prefix that matches is replaced."""
    for local, remote in data_map:
        if path == local or path.startswith(local.rstrip("/") + "/"):
            return remote + path[len(local):]
    return path


def run_experiment_on_ray(path: str | Path, artifacts: str | None = None, emit: Emit = print, deploy: bool = False,
                          options: RayOptions = RayOptions(), data_root: str | None = None,
                          datasets: list[str] | None = None) -> int:
    """Run every run of the grid as a Ray task; returns 0 unless a run failed (as ``run_experiment``, whose
    ``datasets`` this takes too)."""
    study = experiment.load_grid(path, data_root).only(datasets)
    if deploy:
        study = study.deploying_all()
    planned = study.runs
    root = Path(artifacts or study.artifacts or artifacts_dir()).expanduser()
    states = [(p.config, p.deploy, RunFolder.for_config(p.config, root)) for p in planned]
    reserve = {id(p.config): (p.cpus or options.cpus_per_run, options.gpus_per_run if p.gpus is None else p.gpus)
               for p in planned}
    todo = [(cfg, wants, folder) for cfg, wants, folder in states
            if not folder.is_complete() or (wants and not is_measured(deploy_dir(folder.path)))]
    emit(f"{len(states)} runs in {path}: {len(states) - len(todo)} complete, {len(todo)} to do "
         f"(Ray: {options.address}, {options.cpus_per_run:g} CPU and {options.gpus_per_run:g} GPU per run)")
    ray = _import_ray()
    _connect(ray, options)
    task = ray.remote(_run_task)
    started = time.time()
    failures, waiting, finished = [], [], []
    pending = {}
    datasets = list(dict.fromkeys([c.dataset for c, _, _ in states] + [a.dataset for a in study.analyses]))
    for dataset in datasets:  # on the driver, as a local sitting does: the report gets its audit
        experiment.audit_if_needed(dataset, root, emit)
    try:
        for cfg, wants, folder in todo:
            worker_cfg = dataclasses.replace(cfg, dataset=map_dataset(cfg.dataset, options.data_map))
            cpus, gpus = reserve[id(cfg)]
            threads = str(max(1, int(cpus)))  # TensorFlow in the task uses the CPUs it reserved, not the node's
            sized = task.options(num_cpus=cpus, num_gpus=gpus, max_retries=options.max_retries, runtime_env={
                "env_vars": {**{name: threads for name in THREAD_ENV}, **options.env}})
            pending[sized.remote(worker_cfg.to_dict(), wants, _pack_existing(folder))] = (cfg, wants, folder)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=5.0)
            for ref in ready:
                cfg, wants, folder = pending.pop(ref)
                outcome = _outcome(ray, ref)
                _settle(outcome, cfg, wants, folder, root, emit, failures, waiting)
                finished.append(_run_entry(outcome, folder, root))
                _progress(emit, len(finished), len(todo), started, cfg, outcome)
                _log_time(root, path, started, len(states), failures, finished, done=False, datasets=datasets)
        trained = {cfg.dataset for cfg, _, _ in todo}
        if study.analyses:  # on the driver, from the installed runs, as a local sitting does them
            emit(f"analyses of the stored runs ({len(study.analyses)}):")
            broken, changed = run_analyses(study.analyses, root, emit)
            failures += broken
            trained |= set(changed)
        for dataset in datasets:
            experiment.compare_if_needed(root / dataset_slug(dataset), emit, dataset in trained)
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)
        emit(f"interrupted: {len(pending)} running or waiting runs cancelled; {len(finished)} finished runs kept")
        raise
    finally:
        _log_time(root, path, started, len(states), failures, finished, done=True, datasets=datasets)
    return experiment.sitting_summary(emit, failures, waiting, "the workers")


# --- driver ---------------------------------------------------------------------

def _import_ray():
    try:
        import ray  # optional dependency: only `--ray` needs it
    except ImportError:
        raise UserError(RAY_MISSING) from None
    return ray


def _connect(ray, options: RayOptions) -> None:
    """Join the cluster (or start a local instance); a session that already called ``ray.init`` is kept."""
    if ray.is_initialized():
        return
    kwargs = {"include_dashboard": False, "log_to_driver": True}
    if options.address != LOCAL:
        kwargs["address"] = options.address
        # Workers elsewhere may not have this checkout: ship the `core` package with the job.
        kwargs["runtime_env"] = {"py_modules": [str(Path(__file__).resolve().parents[1])]}
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UserError(f"--ray {options.address}: cannot connect to the Ray cluster ({str(exc).splitlines()[0]})") \
            from None


def _outcome(ray, ref) -> dict:
    """A task's result; a task that failed in Ray itself (retries spent, cancelled) as a failed outcome."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as exc:
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        return {"status": "failed", "error": f"Ray: {type(exc).__name__}: {first}", "node": None, "wall_time_s": None}


def _settle(outcome: dict, cfg: RunConfig, wants_deploy: bool, folder: RunFolder, root: Path, emit: Emit,
            failures: list, waiting: list) -> None:
    """Write a finished run into artifacts/, or record why it did not finish (as a local sitting does)."""
    status = outcome["status"]
    if status == "complete":
        try:
            _install(outcome["files"], folder)
        except UserError as exc:  # what came back is not a complete run: that run failed, the grid goes on
            failures.append((cfg, str(exc)))
            outcome.update(status="failed", error=str(exc))
            return
        experiment._forget_unavailable(root, cfg, folder)
    elif status == "waiting":
        waiting.append((cfg, outcome["error"]))
        experiment._record_unavailable(root, cfg, folder, outcome["error"], wants_deploy)
        if wants_deploy:  # measured here, on the driver: random weights, no run folder to send
            problem = experiment._measure_architecture(cfg, root, emit)
            if problem:
                failures.append((cfg, f"architecture measurement failed: {problem}"))
    else:
        failures.append((cfg, outcome["error"]))


def _progress(emit: Emit, done: int, total: int, started: float, cfg: RunConfig, outcome: dict) -> None:
    elapsed = time.time() - started
    eta = elapsed / done * (total - done)
    what = "done" if outcome["status"] == "complete" else outcome["status"]
    why = f": {outcome['error']}" if outcome["status"] != "complete" else ""
    emit(f"[{done}/{total}] {what} {cfg.backbone} weights={cfg.weights} method={cfg.method} seed={cfg.seed} "
         f"on {outcome.get('node') or '?'} in {outcome.get('wall_time_s') or 0:.1f} s{why}; "
         f"elapsed {elapsed:.0f} s, ETA {eta:.0f} s")


def _run_entry(outcome: dict, folder: RunFolder, root: Path) -> dict:
    return {"run_dir": folder.path.relative_to(root).as_posix(), "outcome": outcome["status"],
            "node": outcome.get("node"), "wall_time_s": outcome.get("wall_time_s"), "threads": outcome.get("threads")}


def _log_time(root: Path, path, started: float, n_runs: int, failures: list, finished: list, done: bool,
              datasets: list[str] | None = None) -> None:
    """The sitting's line of experiment_log.jsonl, plus each run's node and wall time and the speed-up."""
    run_time = round(sum(r["wall_time_s"] or 0.0 for r in finished), 1)
    wall = max(time.time() - started, 1e-9)
    experiment._log_time(root, path, started, n_runs, failures, finished=done, mode="ray", run_log=list(finished),
                         run_time_s=run_time, speedup=round(run_time / wall, 2), **experiment.only_note(datasets))


def _pack_existing(folder: RunFolder) -> bytes | None:
    """A run folder already started here, for the worker to resume (None: nothing started)."""
    return _pack(folder) if folder.exists() else None


def _pack(folder: RunFolder, splits: Path | None = None) -> bytes:
    """An uncompressed tar of the run folder as ``run/`` (its lock file left out) and ``splits`` as ``splits/``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(folder.path, arcname="run", filter=lambda info: None if Path(info.name).name == ".lock" else info)
        if splits is not None and splits.is_dir():
            tar.add(splits, arcname=SPLITS_DIR)
    return buf.getvalue()


def _install(data: bytes, folder: RunFolder) -> None:
    """Write a finished run (and its split file) into artifacts/: fsync'ed, then renamed into place in one step."""
    dataset_dir = folder.path.parent.parent
    staging_root = dataset_dir / INCOMING_DIR
    staging_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="run-", dir=staging_root))
    try:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(staging, filter="data")
        run = staging / "run"
        if not (run / COMPLETE_MARKER).is_file():
            raise UserError(f"{folder.path}: the worker sent the run back without {COMPLETE_MARKER}; not written")
        for split in sorted((staging / SPLITS_DIR).glob("*.json")):
            target = dataset_dir / SPLITS_DIR / split.name
            if not target.exists():  # same name, same seed, data and settings: the same split
                _fsync_tree(split)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(split, target)
        _fsync_tree(run)
        _replace_folder(run, folder.path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        try:
            staging_root.rmdir()
        except OSError:
            pass  # another run is being written beside it


def _fsync_tree(path: Path) -> None:
    for file in [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]:
        with open(file, "rb") as fh:
            os.fsync(fh.fileno())


def _replace_folder(new: Path, target: Path) -> None:
    """Put ``new`` at ``target``; an earlier (unfinished or undeployed) copy is moved aside first, then removed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if target.exists():
        old = new.parent / "previous"
        os.replace(target, old)
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --- worker ---------------------------------------------------------------------

def _run_task(config: dict, deploy: bool, existing: bytes | None) -> dict:
    """One run on a worker (a Ray task): execute it in a temporary folder and send the finished folder back."""
    started = time.time()
    node = socket.gethostname()
    cfg = RunConfig.from_dict(config)
    tmp = Path(tempfile.mkdtemp(prefix="core-ray-run-"))
    label = f"{cfg.backbone} {cfg.method} seed {cfg.seed}"
    try:
        root = tmp / "artifacts"
        folder = RunFolder.for_config(cfg, root)
        if existing is not None:
            with tarfile.open(fileobj=io.BytesIO(existing)) as tar:
                tar.extractall(tmp / "sent", filter="data")
            folder.path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp / "sent" / "run", folder.path)

        def emit(line: str) -> None:
            print(f"[{label}] {line}", flush=True)
            _maybe_crash()

        try:
            execute(cfg, root, emit, deploy=deploy)
        except WeightsUnavailableError as exc:
            return _result("waiting", node, started, error=str(exc))
        except UserError as exc:
            return _result("failed", node, started, error=f"on {node}: {exc}")
        if not folder.is_complete():
            return _result("failed", node, started, error=f"on {node}: the run ended without {COMPLETE_MARKER}")
        return _result("complete", node, started, files=_pack(folder, folder.path.parent.parent / SPLITS_DIR))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _result(status: str, node: str, started: float, **more) -> dict:
    return {"status": status, "node": node, "wall_time_s": round(time.time() - started, 1),
            "threads": int(os.environ.get("TF_NUM_INTRAOP_THREADS") or 0) or None, **more}


def _maybe_crash() -> None:
    marker = os.environ.get(CRASH_ONCE_ENV)
    if not marker:
        return
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)
