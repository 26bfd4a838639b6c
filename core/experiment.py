"""Experiment grids: a committed TOML file of datasets x backbones x seeds x options.

Example::

    artifacts = "artifacts"            # relative to the current folder

    [[grid]]
    datasets = ["../shared/data/flower_photos"]
    backbones = ["EfficientNetLite0", "MobileNetV2@0.35"]
    weights = ["imagenet"]             # and/or "none"
    methods = ["finetune"]             # and/or "logreg", "linear_svm", "knn"
    seeds = [0, 1, 2]
    preset = "full"
    set = { "stage1.epochs" = 40 }     # overrides, as with `run --set`

Every combination is one run. Complete runs are skipped, interrupted ones resume,
and a run that fails (missing weights, bad data) is reported and the grid goes on.
Each invocation appends its wall time to ``<artifacts>/experiment_log.jsonl``, so the
total machine time of a study run in several sittings is on record.
"""

from __future__ import annotations

import copy
import itertools
import json
import time
import tomllib
from pathlib import Path
from typing import Callable

from core import config as config_mod
from core.errors import UserError
from core.runs import RunFolder

Emit = Callable[[str], None]


def load_grid(path: str | Path) -> tuple[list[config_mod.RunConfig], str | None]:
    """The run configs of an experiment file, in order, and its artifacts folder."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"experiment file not found: {path}")
    return parse_grid(path.read_text(encoding="utf-8"), str(path))


def parse_grid(text: str, where: str = "experiment") -> tuple[list[config_mod.RunConfig], str | None]:
    """The run configs of experiment TOML text, in order, and its artifacts folder."""
    try:
        spec = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{where} is not valid TOML: {exc}") from None
    grids = spec.get("grid")
    if not grids:
        raise UserError(f"{where} has no [[grid]] section")
    configs = []
    for n, grid in enumerate(grids, 1):
        unknown = set(grid) - {"datasets", "backbones", "weights", "methods", "seeds", "preset", "set"}
        if unknown:
            raise UserError(f"{where}: grid {n} has unknown keys: {', '.join(sorted(unknown))}")
        for key in ("datasets", "backbones"):
            if not grid.get(key):
                raise UserError(f"{where}: grid {n} needs '{key}'")
        overrides = config_mod.nest(grid.get("set", {}))
        combos = itertools.product(grid["datasets"], grid["backbones"], grid.get("weights", ["imagenet"]),
                                   grid.get("methods", ["finetune"]), grid.get("seeds", [0]))
        for dataset, backbone, weights, method, seed in combos:
            if method != "finetune" and weights != "imagenet":
                continue  # baselines exist only on ImageNet embeddings
            layer = copy.deepcopy(overrides)
            layer.update(weights=weights, method=method, seed=seed)
            configs.append(config_mod.resolve(dataset, backbone, grid.get("preset", "full"), layer))
    return configs, spec.get("artifacts")


def run_experiment(path: str | Path, artifacts: str | None = None, dry_run: bool = False, emit: Emit = print,
                   deploy: bool = False) -> int:
    """Run every run of the grid; returns 0 if all are complete, 1 if some failed."""
    from core.runner import execute

    configs, file_artifacts = load_grid(path)
    root = artifacts or file_artifacts
    states = [(c, RunFolder.for_config(c, root)) for c in configs]
    done = sum(f.is_complete() for _, f in states)
    emit(f"{len(configs)} runs in {path}: {done} complete, {len(configs) - done} to do")
    if dry_run:
        for c, f in states:
            state = "complete" if f.is_complete() else ("partial" if f.exists() else "new")
            emit(f"  {state:8s} {c.backbone:18s} {c.weights:8s} {c.method:10s} seed {c.seed}  {f.path}")
        return 0
    started = time.time()
    failures = []
    try:
        for i, (cfg, folder) in enumerate(states, 1):
            if folder.is_complete() and not deploy:
                continue
            emit(f"[{i}/{len(states)}] {cfg.dataset} {cfg.backbone} weights={cfg.weights} method={cfg.method} seed={cfg.seed}")
            try:
                execute(cfg, root, emit, deploy=deploy)
            except UserError as exc:
                failures.append((cfg, str(exc)))
                emit(f"  failed: {exc}")
    finally:
        _log_time(root, path, started, len(configs), failures)
    if failures:
        emit(f"{len(failures)} runs failed:")
        for cfg, why in failures:
            emit(f"  {cfg.backbone} {cfg.weights} {cfg.method} seed {cfg.seed}: {why}")
        return 1
    emit("all runs complete")
    return 0


def _log_time(root, path, started: float, n_runs: int, failures: list) -> None:
    from core.provenance import machine
    from core.results import artifacts_dir

    log = Path(root or artifacts_dir()) / "experiment_log.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    entry = {"file": str(path), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
             "wall_time_s": round(time.time() - started, 1), "runs": n_runs, "failed": len(failures),
             "machine": machine()}
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry) + "\n")
