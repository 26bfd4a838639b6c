"""Experiment grids: a committed TOML file of datasets x backbones x seeds x options.

Example::

    artifacts = "artifacts"            # relative to the current folder
    data_root = "../shared/data"       # relative dataset paths start here (see below)

    [data.flower_photos]               # optional: where a dataset comes from, for a missing folder
    source = "https://storage.googleapis.com/download.tensorflow.org/example_images/flower_photos.tgz"
    licence = "CC-BY 2.0"
    layout = "flower_photos/<class>/*.jpg"

    [[grid]]
    datasets = ["flower_photos"]       # <data root>/flower_photos; an absolute path is used as it is
    backbones = ["EfficientNetLite0", "MobileNetV2@0.35"]
    weights = ["imagenet"]             # and/or "none"
    methods = ["finetune"]             # and/or any of core.artifacts.config.BASELINES, e.g. "logreg"
    seeds = [0, 1, 2]
    preset = "full"
    deploy = true                      # measure the deployment variants of each run
    set = { "stage1.epochs" = 40 }     # overrides, as with `run --set`

Every combination is one run. Complete runs are skipped, interrupted ones resume,
and a run that fails (bad data, say) is reported and the grid goes on.

A run whose ImageNet weights are not on this machine cannot be trained; it is recorded
in ``<artifacts>/<dataset>/unavailable.json`` (backbone, reason, the command that fills
it in) so the report can say so, and with ``deploy`` its architecture is still measured
(sizes, TFLite variants, latency with random weights) under
``<artifacts>/architectures/<backbone>/``. Such runs are listed as waiting for weights,
not as failures.

Every sitting starts by auditing each dataset of the grid (duplicates, leakage across
splits, conflicting labels; seconds), written to ``<artifacts>/<dataset>/audit.json``
where the report reads it, unless an audit of the same images is there already. After
the runs, each dataset with two or more complete runs gets its pairwise comparison
(``mcnemar.json``, as ``python -m core compare``) when a run of it was trained or the
comparison is missing. So a dataset trained from the app's Train page gets the whole report.

Relative dataset paths are resolved against the data root: ``--data-root DIR``, else the
environment variable ``STUDY_DATA_ROOT``, else the file's ``data_root`` (relative to the current
folder), else the current folder. So one study file runs on any machine that has the data
somewhere. A dry run lists every dataset folder that is missing, with its ``[data.NAME]`` table
(source, licence, variant, layout): what to download and where to put it.

Each invocation appends its wall time to ``<artifacts>/experiment_log.jsonl``, so the
total machine time of a study run in several sittings is on record.
"""

from __future__ import annotations

import copy
import itertools
import os
import time
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from core.artifacts.config import RunConfig
from core.artifacts.layout import (
    DEFAULT_ARTIFACTS,
    DEPLOYMENT_FILE,
    EXPERIMENT_LOG,
    MCNEMAR_FILE,
    UNAVAILABLE_FILE,
    architecture_dir,
    artifacts_dir,
    dataset_complete_runs,
    dataset_slug,
    deploy_dir,
)
from core.artifacts.provenance import machine
from core.artifacts.records import (
    AuditRecord,
    DeploymentRecord,
    RecordError,
    UnavailableRecord,
    append_experiment_log,
)
from core.artifacts.runs import RunFolder
from core.artifacts.storage import utc_timestamp
from core.data import audit as audit_mod
from core.data import dataset as data_mod
from core.deploy.measure import deploy_architecture, is_measured
from core.deploy.variants import variant_plan
from core.errors import UserError, WeightsUnavailableError
from core.evaluate.compare import compare_dataset
from core.evaluate.leakage import rescore_dataset
from core.models.backbones import get_spec
from core.orchestrate.analyses import (
    ANALYSES,
    ON_RUNS,
    Analysis,
    is_done,
    parse_analyses,
    run_analyses,
    run_key,
    waiting_for,
)
from core.orchestrate.run import execute, validate_config
from core.progress import Emit
from core.train import config as config_mod

DATA_ROOT_ENV = "STUDY_DATA_ROOT"
DATA_KEYS = ("source", "licence", "variant", "layout")  # a [data.NAME] table's keys, in the order shown
GRID_KEYS = {"datasets", "backbones", "weights", "methods", "seeds", "preset", "set", "deploy", "cpus_per_run",
             "gpus_per_run"}


@dataclass
class PlannedRun:
    """One run of a grid, whether the grid asks for its deployment variants, and what a run of it reserves on
    a Ray cluster (``None``: the ``--cpus-per-run``/``--gpus-per-run`` of the sitting; unused without ``--ray``)."""

    config: RunConfig
    deploy: bool = False
    cpus: float | None = None
    gpus: float | None = None


@dataclass
class Study:
    """An experiment file, read: its runs in order, its artifacts folder (``None``: not set), the data root
    its relative dataset paths were resolved against (``""``: the current folder) and its ``[data.NAME]``
    tables (dataset folder name -> where it comes from), and its analyses of the runs
    (:mod:`core.orchestrate.analyses`)."""

    runs: list[PlannedRun]
    artifacts: str | None = None
    data_root: str = ""
    data: dict[str, dict[str, str]] = field(default_factory=dict)
    analyses: list[Analysis] = field(default_factory=list)  # [[ensemble]], [[operating_point]]: after the grids

    def missing_datasets(self) -> list[str]:
        """The grid's dataset folders that are not on this machine, in grid order."""
        named = [p.config.dataset for p in self.runs] + [a.dataset for a in self.analyses]
        return [d for d in dict.fromkeys(named) if not Path(d).expanduser().exists()]

    def only(self, names: list[str] | None) -> Study:
        """The part of the study on the datasets ``names`` (as their artifacts folders name them, e.g.
        ``flower_photos``): its runs and analyses, in order; ``None`` or empty: all of it. A name the study does
        not use is a mistake."""
        if not names:
            return self
        used = list(dict.fromkeys(dataset_slug(d) for d in [p.config.dataset for p in self.runs]
                                  + [a.dataset for a in self.analyses]))
        unknown = [n for n in names if n not in used]
        if unknown:
            raise UserError(f"no run of this study is on {', '.join(unknown)} (its datasets, as their artifacts "
                            f"folders name them: {', '.join(used)})")
        return replace(self, runs=[p for p in self.runs if dataset_slug(p.config.dataset) in names],
                       analyses=[a for a in self.analyses if dataset_slug(a.dataset) in names])

    def deploying_all(self) -> Study:
        """The study with every run's deployment measured (``--deploy``): its ensembles then wait for every member's
        deployment, as for the runs a grid deploys."""
        for analysis in (a for a in self.analyses if a.kind == "ensemble"):
            analysis.options["deployed"] = {run_key(c) for c in analysis.members}
        return replace(self, runs=[replace(p, deploy=True) for p in self.runs])

    def how_to_get(self, dataset: str) -> list[str]:
        """Lines that say where a dataset comes from (its ``[data.NAME]`` table), or how to describe it."""
        name = Path(dataset).name
        info = self.data.get(name)
        if not info:
            return [f"no [data.{name}] table in the experiment file says where it comes from"]
        return [f"{key}: {info[key]}" for key in DATA_KEYS if key in info]


def load_grid(path: str | Path, data_root: str | None = None) -> Study:
    """The runs of an experiment file, in order, with its artifacts folder and data root (``data_root``, e.g.
    ``--data-root``, overrides :data:`DATA_ROOT_ENV` and the file's own)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"experiment file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path} is not UTF-8 text (byte offset {exc.start}): save the experiment file as "
                        "UTF-8") from None
    return parse_grid(text, str(path), data_root)


def parse_grid(text: str, where: str = "experiment", data_root: str | None = None) -> Study:
    """The runs of experiment TOML text, in order, with its artifacts folder and data root (as
    :func:`load_grid`)."""
    try:
        spec = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{where} is not valid TOML: {exc}") from None
    unknown = set(spec) - {"artifacts", "data_root", "data", "grid", *ANALYSES}
    if unknown:
        raise UserError(f"{where} has unknown top-level keys: {', '.join(sorted(unknown))} "
                        "(allowed: artifacts, data_root, [data.NAME], [[grid]], [[ensemble]], [[operating_point]], "
                        "[[cv]], [[tune]])")
    for key, what in (("artifacts", "a folder path"), ("data_root", "a folder path")):
        if key in spec and not isinstance(spec[key], str):
            raise UserError(f"{where}: '{key}' must be {what} in quotes")
    data = _data_tables(spec.get("data", {}), where)
    root = next((r for r in (data_root, os.environ.get(DATA_ROOT_ENV), spec.get("data_root")) if r is not None), "")
    grids = spec.get("grid")
    if not grids:
        raise UserError(f"{where} has no [[grid]] section")
    if not isinstance(grids, list):
        raise UserError(f"{where}: write each grid as [[grid]] (an array of tables), not [grid]")
    configs = []
    for n, grid in enumerate(grids, 1):
        if not isinstance(grid, dict):
            raise UserError(f"{where}: grid {n} is {grid!r}, not a table: write each grid as a [[grid]] section")
        try:
            configs += _grid_runs(grid, root)
        except UserError as exc:
            raise UserError(f"{where}: grid {n}: {exc}") from None
    analyses = parse_analyses(spec, lambda dataset: resolve_dataset(dataset, root), where)
    planned = {run_key(p.config) for p in configs}
    for analysis in (a for a in analyses if a.kind in ON_RUNS):
        strays = [c for c in analysis.members if run_key(c) not in planned]
        if strays:
            raise UserError(f"{where}: {analysis.describe()}: no grid plans the run of "
                            f"{', '.join(f'{c.backbone} seed {c.seed}' for c in strays)} with these settings (its "
                            "preset and set must match a grid's)")
    runs = _merged(configs)
    deployed = {run_key(p.config) for p in runs if p.deploy}
    for analysis in (a for a in analyses if a.kind == "ensemble"):
        analysis.options["deployed"] = {run_key(c) for c in analysis.members} & deployed
    return Study(runs, spec.get("artifacts"), root, data, analyses)


def _merged(planned: list[PlannedRun]) -> list[PlannedRun]:
    """One planned run per run folder, in first-seen order: two grids that name the same run (a seeds grid and a
    deployment grid, say) make one run that is deployed if either asks (on Ray, two would train at once)."""
    out: dict[tuple[str, str, str], PlannedRun] = {}
    for p in planned:
        key = run_key(p.config)
        if key in out:
            first = out[key]
            out[key] = PlannedRun(first.config, first.deploy or p.deploy, first.cpus, first.gpus)
        else:
            out[key] = p
    return list(out.values())


def _data_tables(tables, where: str) -> dict[str, dict[str, str]]:
    """The file's ``[data.NAME]`` tables, checked: each a table of the :data:`DATA_KEYS` with text values."""
    if not isinstance(tables, dict) or not all(isinstance(t, dict) for t in tables.values()):
        raise UserError(f"{where}: describe each dataset as a [data.NAME] table, e.g. [data.flower_photos]")
    for name, table in tables.items():
        unknown = set(table) - set(DATA_KEYS)
        if unknown:
            raise UserError(f"{where}: [data.{name}] has unknown keys: {', '.join(sorted(unknown))} "
                            f"(allowed: {', '.join(DATA_KEYS)})")
        if not all(isinstance(v, str) for v in table.values()):
            raise UserError(f"{where}: [data.{name}]: every value is text in quotes")
    return tables


def resolve_dataset(dataset: str, data_root: str) -> str:
    """A grid's dataset path as a run uses it: relative paths under ``data_root`` (``""``: as written)."""
    if not data_root or Path(dataset).expanduser().is_absolute():
        return dataset
    return str(Path(data_root) / dataset)


def _grid_runs(grid: dict, data_root: str = "") -> list[PlannedRun]:
    """The runs of one [[grid]] table, in order, datasets resolved against ``data_root``; one
    :class:`UserError` line for a mistake in it."""
    unknown = set(grid) - GRID_KEYS
    if unknown:
        raise UserError(f"unknown keys: {', '.join(sorted(unknown))} (allowed: {', '.join(sorted(GRID_KEYS))})")
    for key in ("datasets", "backbones"):
        if not grid.get(key):
            raise UserError(f"needs '{key}'")
    for key, kind, example in (("datasets", str, '["data/flowers"]'), ("backbones", str, '["EfficientNetLite0"]'),
                               ("weights", str, '["imagenet"]'), ("methods", str, '["finetune"]'),
                               ("seeds", int, "[0, 1, 2]")):
        value = grid.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, kind) and not isinstance(v, bool) for v in value):
            raise UserError(f"'{key}' must be a list, e.g. {key} = {example}")
    if not isinstance(grid.get("preset", "full"), str):
        raise UserError(f"'preset' must be one name in quotes, e.g. preset = \"quick\" "
                        f"(one of: {', '.join(config_mod.PRESETS)})")
    deploy = grid.get("deploy", False)
    if not isinstance(deploy, bool):
        raise UserError("'deploy' must be true or false")
    if not isinstance(grid.get("set", {}), dict):
        raise UserError('\'set\' must be a table, e.g. set = { "stage1.epochs" = 5 }')
    resources = {}
    for key, low in (("cpus_per_run", 0.0), ("gpus_per_run", -1.0)):
        value = grid.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not value > low
                                  or value != value or value > 1024):
            raise UserError(f"'{key}' must be a number {'above 0' if low == 0 else 'of at least 0'} (at most 1024), "
                            f"not {value!r}")
        resources[key] = None if value is None else float(value)
    overrides = config_mod.nest(grid.get("set", {}))
    config_mod.reject_identity_overrides(overrides, "'set'")
    runs = []
    combos = itertools.product(grid["datasets"], grid["backbones"], grid.get("weights", ["imagenet"]),
                               grid.get("methods", ["finetune"]), grid.get("seeds", [0]))
    for dataset, backbone, weights, method, seed in combos:
        if method != "finetune" and weights != "imagenet":
            continue  # baselines exist only on ImageNet embeddings
        layer = copy.deepcopy(overrides)
        layer.update(weights=weights, method=method, seed=seed)
        runs.append(PlannedRun(config_mod.resolve(resolve_dataset(dataset, data_root), backbone, grid.get("preset", "full"), layer), deploy,
                               resources["cpus_per_run"], resources["gpus_per_run"]))
    return runs


def grid_toml(artifacts: str | Path, datasets: list[str], backbones: list[str], weights: str, seed: int,
              preset: str, overrides: dict | None = None) -> str:
    """An experiment file with one grid (what the Train page starts); any path is quoted safely, datasets as absolute
    paths (a data root, e.g. ``STUDY_DATA_ROOT``, never re-roots the folder the page checked)."""
    lines = [f"artifacts = {_toml_value(str(artifacts))}", "", "[[grid]]",
             f"datasets = {_toml_value([os.path.abspath(os.path.expanduser(d)) for d in datasets])}", f"backbones = {_toml_value(list(backbones))}",
             f"weights = {_toml_value([weights])}", f"seeds = [{int(seed)}]", f"preset = {_toml_value(preset)}"]
    if overrides:
        lines.append("set = { " + ", ".join(f"{_toml_value(k)} = {_toml_value(v)}" for k, v in overrides.items()) + " }")
    return "\n".join(lines) + "\n"


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        # TOML basic string: escape backslash, quote and every control character (DEL included).
        return '"' + "".join(f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F else
                             "\\" + c if c in '"\\' else c for c in value) + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def run_experiment(path: str | Path, artifacts: str | None = None, dry_run: bool = False, emit: Emit = print,
                   deploy: bool = False, data_root: str | None = None, datasets: list[str] | None = None,
                   analyses_only: bool = False) -> int:
    """Run every run of the grid; returns 0 unless a run failed.

    ``deploy`` measures the deployment variants of every network run, on top of the
    grids that ask for it; a run (or architecture) whose deployment.json measures every
    variant is kept as stored (:func:`~core.deploy.measure.is_measured`). Runs waiting for
    ImageNet weights are not failures: they are recorded (see the module docstring) and
    listed at the end. ``data_root`` overrides
    the data root (module docstring). ``datasets`` (folder names) runs only the runs and
    analyses on those datasets, in the file's order. ``analyses_only`` trains no run: it
    carries out the analyses whose runs are complete (cross-validation and tuning on cached
    features, say, before a long grid) and leaves the others waiting.
    """
    study = load_grid(path, data_root).only(datasets)
    if deploy:
        study = study.deploying_all()
    root = Path(artifacts or study.artifacts or artifacts_dir()).expanduser()
    states = [(p.config, p.deploy, RunFolder.for_config(p.config, root)) for p in study.runs]
    done = sum(f.is_complete() for _, _, f in states)
    emit(f"{len(states)} runs in {path}{' on ' + ', '.join(datasets) if datasets else ''}: {done} complete, "
         f"{len(states) - done} to do")
    if study.data_root:
        emit(f"data root: {study.data_root}")
    if dry_run:
        invalid, failed = 0, 0
        for c, wants_deploy, f in states:
            status = f.status()
            state, problem = status.state, ""
            if status.reason:  # failed or interrupted when last tried: say why, until a sitting retries it
                problem = f"  ({status.state} {status.at}: {status.reason})"
            if state != "complete":
                try:  # the cheap checks a real sitting would only meet when it reaches the run
                    validate_config(c)
                except WeightsUnavailableError:  # its weights are not on this machine (now, not when recorded)
                    state = "waiting"
                except UserError as exc:
                    state, problem, invalid = "invalid", f"  ({exc})", invalid + 1
            failed += state == "failed"
            emit(f"  {state:8s} {c.backbone:18s} {c.weights:8s} {c.method:10s} seed {c.seed}"
                 f"{'  +deploy' if wants_deploy else ''}  {f.path}{problem}")
        if failed:
            emit(f"{failed} runs failed when last tried (the reason is shown); a sitting tries them again")
        for analysis in study.analyses:
            try:
                todo = waiting_for(analysis, root)
                state = "waiting" if todo else "complete" if is_done(analysis, root) else "ready"
                detail = f"  (after {todo} run(s) of the grids)" if todo else ""
            except UserError as exc:  # an unreadable record of it: say so, as a run's reason is said
                state, detail = "failed", f"  ({exc})"
            emit(f"  {state:8s} {analysis.describe()}{detail}")
        missing = study.missing_datasets()
        if missing:
            emit(f"{len(missing)} dataset folder{'s are' if len(missing) > 1 else ' is'} missing on this machine:")
            for dataset in missing:
                emit(f"  {dataset}")
                for line in study.how_to_get(dataset):
                    emit(f"    {line}")
            emit(f"  Put each dataset there, or point the study at the folder that holds them: --data-root DIR "
                 f"or {DATA_ROOT_ENV}=DIR (now: {study.data_root or 'the current folder'}).")
        if invalid:
            emit(f"{invalid} runs are invalid: fix the grid before running it")
        return 1 if invalid else 0
    started = time.time()
    failures, waiting = [], []
    fingerprints: dict[str, str] = {}  # each dataset hashed once per sitting
    trained: set[str] = set()  # datasets with a run trained (or resumed) in this sitting
    failed_analyses: set[int] = set()  # analyses that failed in this sitting (ids)
    dataset_paths = list(dict.fromkeys([c.dataset for c, _, _ in states] + [a.dataset for a in study.analyses]))
    try:
        for dataset in dataset_paths:
            audit_if_needed(dataset, root, emit, fingerprints)
        if analyses_only:
            emit("analyses only: no run is trained or deployed in this sitting")
        for i, (cfg, wants_deploy, folder) in enumerate(states, 1):
            complete = folder.is_complete()
            measured = wants_deploy and complete and is_measured(deploy_dir(folder.path))  # read only when asked
            needs_deploy = wants_deploy and not measured
            if measured and not analyses_only:
                emit(f"[{i}/{len(states)}] deployment measured already: {folder.path} (python -m core deploy RUN_DIR "
                     "makes a missing TFLite file again)")
            if analyses_only or (complete and not needs_deploy):
                continue
            emit(f"[{i}/{len(states)}] {cfg.dataset} {cfg.backbone} weights={cfg.weights} method={cfg.method} seed={cfg.seed}")
            if not complete:
                trained.add(cfg.dataset)
            try:
                execute(cfg, root, emit, deploy=needs_deploy, fingerprints=fingerprints)
                _forget_unavailable(root, cfg, folder)
            except WeightsUnavailableError as exc:
                waiting.append((cfg, str(exc)))
                emit(f"  waiting for weights: {exc}")
                _record_unavailable(root, cfg, folder, str(exc), wants_deploy)
                if wants_deploy:
                    problem = _measure_architecture(cfg, root, emit)
                    if problem:
                        failures.append((cfg, f"architecture measurement failed: {problem}"))
            except UserError as exc:
                failures.append((cfg, str(exc)))
                emit(f"  failed: {exc}")
            # Ensembles and operating points as soon as their runs are there (seconds), not only at the end; one
            # that failed is not tried again in this sitting.
            broken, changed = run_analyses([a for a in study.analyses if id(a) not in failed_analyses], root, emit,
                                           kinds=ON_RUNS, quiet=True)
            failures += broken
            failed_analyses |= {id(a) for a, _ in broken}
            trained |= set(changed)
            # Logged after every run, so a sitting that is killed still counts up to its last run.
            _log_time(root, path, started, len(states), failures, finished=False, **only_note(datasets))
        if study.analyses:
            emit(f"analyses of the stored runs ({len(study.analyses)}):")
            broken, changed = run_analyses([a for a in study.analyses if id(a) not in failed_analyses], root, emit)
            failures += [(analysis, why) for analysis, why in broken]
            trained |= set(changed)
        for dataset in dataset_paths:
            compare_if_needed(root / dataset_slug(dataset), emit, dataset in trained)
    finally:
        _log_time(root, path, started, len(states), failures, finished=True, **only_note(datasets))
    return sitting_summary(emit, failures, waiting, "this machine")


def sitting_summary(emit: Emit, failures: list, waiting: list, where: str) -> int:
    """The end of a sitting: runs waiting for weights (not on ``where``), failures; returns the exit code."""
    if waiting:
        emit(f"{len(waiting)} runs wait for ImageNet weights that are not on {where} "
             f"(recorded in {UNAVAILABLE_FILE} beside each dataset's runs):")
        for cfg, _ in waiting:
            emit(f"  {cfg.backbone} on {cfg.dataset}")
    if failures:
        emit(f"{len(failures)} runs failed:")
        for what, why in failures:
            name = what.describe() if isinstance(what, Analysis) else \
                f"{what.backbone} {what.weights} {what.method} seed {what.seed}"
            emit(f"  {name}: {why}")
        return 1
    emit("all runs complete" if not waiting else "all other runs complete")
    return 0


def audit_if_needed(dataset: str, root: Path, emit: Emit, fingerprints: dict[str, str] | None = None) -> bool:
    """Audit ``dataset`` into ``<root>/<slug>/audit.json`` unless an audit of the same images is there.

    Returns whether an audit was written. A problem (a missing folder, say) is one line: the
    runs of the dataset meet it again and are listed as failures. After a new audit, complete
    runs are re-scored with its groups (their leak-free columns), as ``python -m core audit`` does.
    """
    fingerprints = {} if fingerprints is None else fingerprints
    path = audit_mod.default_report_path(dataset, root)
    try:
        if path.is_file():
            if dataset not in fingerprints:
                fingerprints[dataset] = data_mod.fingerprint(data_mod.discover(dataset))
            if _audited_fingerprint(path) == fingerprints[dataset]:
                emit(f"audit: up to date ({path})")
                return False
        emit(f"audit: {dataset} (duplicates, leakage across splits, conflicting labels)")
        report = audit_mod.audit_dataset(dataset)
        audit_mod.write_report(report, path)
        fingerprints.setdefault(dataset, report["dataset"]["fingerprint"])
        for message in report["verdict"]["messages"] or ["no problem found"]:
            emit(f"audit: {message}")
        emit(f"audit: written to {path}")
        if dataset_complete_runs(path.parent):
            rescore_dataset(path.parent, emit=lambda line: None)
    except UserError as exc:
        emit(f"audit: not made: {exc}")
        return False
    return True


def _audited_fingerprint(path: Path) -> str | None:
    """The fingerprint of the images a stored audit saw (None when the file is unreadable)."""
    try:
        return AuditRecord.load(path).dataset.get("fingerprint")
    except RecordError:
        return None


def compare_if_needed(dataset_dir: Path, emit: Emit, changed: bool) -> bool:
    """McNemar's test and the paired bootstrap between the complete runs of a dataset folder.

    Made when the folder has two or more complete runs and a run of it was trained in this
    sitting (``changed``) or its ``mcnemar.json`` is missing; returns whether it was written.
    """
    complete = dataset_complete_runs(dataset_dir)
    if len(complete) < 2 or not (changed or not (dataset_dir / MCNEMAR_FILE).is_file()):
        return False
    try:
        result = compare_dataset(dataset_dir)
    except UserError as exc:
        emit(f"comparison: not made: {exc}")
        return False
    significant = sum(bool(p["significant"]) for p in result["pairs"])
    emit(f"comparison: {len(complete)} complete runs, {len(result['pairs'])} pairs, {significant} significantly "
         f"different (McNemar, Holm-corrected): {dataset_dir / MCNEMAR_FILE}")
    return True


def _measure_architecture(cfg: RunConfig, root: Path, emit: Emit) -> str | None:
    """Sizes and latency of the backbone + head with random weights; returns a problem or None.

    One measurement per backbone: a second dataset resumes the stored one (its head's
    class count barely changes the size) unless the input size differs. Only the
    conversion variants (Keras and TFLite families of the plan): pruning, clustering and QAT
    fine-tune trained weights, so on random ones they say nothing a study needs, and
    they would triple the time of the large backbones.
    """

    out = architecture_dir(cfg.backbone, root)
    emit(f"  measuring the architecture instead (random weights): {out}")
    try:
        size = cfg.input_size or get_spec(cfg.backbone).input_size
        try:
            stored = DeploymentRecord.load(out / DEPLOYMENT_FILE) if (out / DEPLOYMENT_FILE).is_file() else None
        except RecordError:
            stored = None  # unreadable: measured afresh
        conversions = [v.name for v in variant_plan() if v.family in ("keras", "tflite")]
        if stored is not None and stored.input_size == size and is_measured(out, conversions):
            emit(f"  architecture measured already: {out / DEPLOYMENT_FILE}")
            return None
        if stored is not None and stored.input_size == size and stored.classes:
            classes = len(stored.classes)
        else:
            classes = len(data_mod.discover(cfg.dataset, validate=False).classes)
        deploy_architecture(cfg.backbone, max(classes, 2), out, emit=emit, input_size=size, only=conversions)
    except Exception as exc:  # noqa: BLE001 - one backbone's measurement must not stop the study
        emit(f"  architecture measurement failed: {type(exc).__name__}: {exc}")
        return f"{type(exc).__name__}: {exc}"
    return None


def _unavailable_path(root: Path, cfg: RunConfig) -> Path:
    return root / dataset_slug(cfg.dataset) / UNAVAILABLE_FILE


def _read_unavailable(path: Path) -> UnavailableRecord:
    return UnavailableRecord.load(path) if path.is_file() else UnavailableRecord()


def _record_unavailable(root: Path, cfg: RunConfig, folder: RunFolder, reason: str,
                        measured: bool) -> None:
    path = _unavailable_path(root, cfg)
    doc = _read_unavailable(path)
    run_dir = folder.path.relative_to(root).as_posix()
    entry = {
        "run_dir": run_dir, "backbone": cfg.backbone, "weights": cfg.weights, "method": cfg.method,
        "preset": cfg.preset, "seed": cfg.seed, "reason": reason,
        "architecture": architecture_dir(cfg.backbone, root).relative_to(root).as_posix() if measured else None,
        "command": config_mod.reproduce_command(cfg.to_dict(), deploy=True, artifacts=_explicit_root(root)),
    }
    previous = next((r for r in doc.runs if r["run_dir"] == run_dir), None)
    stale = [r for r in doc.runs if r["run_dir"] != run_dir and r.get("command") == entry["command"]]
    if previous is not None and {k: v for k, v in previous.items() if k != "recorded_at"} == entry and not stale:
        return  # nothing new: keep the file (and its recorded_at) as it is
    # An entry of another run with the same command is stale: a default changed since (the split's grouping, say),
    # so that command now makes this run, and the other one would never be filled in.
    doc.runs = [r for r in doc.runs if r["run_dir"] != run_dir and r not in stale]
    doc.runs.append({**entry, "recorded_at": utc_timestamp()})
    doc.save(path)


def _explicit_root(root: Path) -> str | None:
    """The --artifacts a command needs to write where this study writes (None: the repo's artifacts/).

    Compared with the repo default, not ``$STUDY_ARTIFACTS``: whoever runs the recorded
    command later may not have that variable set.
    """
    default = DEFAULT_ARTIFACTS
    try:
        same = root.resolve() == default.resolve()
    except OSError:
        same = False
    return None if same else str(root)


def _forget_unavailable(root: Path, cfg: RunConfig, folder: RunFolder) -> None:
    """Once a run has completed (the weights turned up), it no longer waits."""
    path = _unavailable_path(root, cfg)
    if not path.is_file():
        return
    doc = _read_unavailable(path)
    run_dir = folder.path.relative_to(root).as_posix()
    kept = [r for r in doc.runs if r["run_dir"] != run_dir]
    if len(kept) != len(doc.runs):
        doc.runs = kept
        doc.save(path)


def only_note(datasets: list[str] | None) -> dict:
    """The log entry's note of a sitting restricted to some datasets (none when it ran all of them)."""
    return {"datasets": list(datasets)} if datasets else {}


def _log_time(root, path, started: float, n_runs: int, failures: list, finished: bool, **extra) -> None:
    """Append this sitting's wall time so far (and ``extra`` fields); readers keep the last entry of each sitting."""
    entry = {"file": str(path), "started": utc_timestamp(started),
             "sitting": f"{started:.3f}-{os.getpid()}", "finished": finished,
             "wall_time_s": round(time.time() - started, 1), "runs": n_runs, "failed": len(failures),
             "machine": machine(), **extra}
    append_experiment_log(Path(root) / EXPERIMENT_LOG, entry)
