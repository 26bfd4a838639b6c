"""What a study no longer plans, in its artifacts folder: ``python -m core experiment FILE --retire``.

When an experiment file changes (a new split, other settings), the runs of its earlier version stay in the
artifacts folder, and the report would show them beside the new ones. Retired are, in each dataset folder the
study uses:

- every run folder that no grid of the file names;
- every ensemble with a retired (or missing) member;
- every BatchNorm diagnosis of a retired run;
- every cross-validation, fold-count and tuning record whose base settings are neither a planned run's nor an
  ``[[cv]]``/``[[tune]]`` analysis's;
- every split file that no kept run or ensemble reads;
- the comparison (``mcnemar.json``), which is redone from the kept runs (removed when fewer than two remain).

The dataset's audit, notes, weights-waiting list and Optuna storage stay. Listing is the default; deleting
needs ``--yes`` (git history keeps what was committed).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from core.artifacts.config import RunConfig
from core.artifacts.layout import (
    CONFIG_FILE,
    DIAGNOSTICS_DIR,
    ENSEMBLES_DIR,
    MCNEMAR_FILE,
    MODEL_SELECTION_DIR,
    PROVENANCE_FILE,
    SPLITS_DIR,
    artifacts_dir,
    dataset_complete_runs,
    dataset_slug,
    model_selection_records,
)
from core.artifacts.records import (
    BatchNormDiagnosis,
    CrossValidationRecord,
    EnsembleRecord,
    FoldStudyRecord,
    ProvenanceRecord,
    RecordError,
    TuningRecord,
)
from core.artifacts.runs import RunFolder
from core.evaluate.compare import compare_dataset
from core.orchestrate.experiment import Study, load_grid
from core.progress import Emit

_NOT_RUNS = {ENSEMBLES_DIR, MODEL_SELECTION_DIR, DIAGNOSTICS_DIR, SPLITS_DIR}
_SELECTION = {"cv": CrossValidationRecord, "fold_study": FoldStudyRecord, "tuning": TuningRecord}


@dataclass
class Retirement:
    """What retiring would remove in one dataset folder, by kind (paths), and whether its comparison is redone."""

    dataset_dir: Path
    runs: list[Path] = field(default_factory=list)
    ensembles: list[Path] = field(default_factory=list)
    diagnostics: list[Path] = field(default_factory=list)
    model_selection: list[Path] = field(default_factory=list)
    splits: list[Path] = field(default_factory=list)

    def paths(self) -> list[Path]:
        """Every file or folder to remove."""
        return self.runs + self.ensembles + self.diagnostics + self.model_selection + self.splits


def plan_retirement(study: Study, root: Path) -> list[Retirement]:
    """Per dataset folder of ``study`` under ``root``: what it no longer plans (module docstring). Nothing is
    changed."""
    kept_runs = {RunFolder.for_config(p.config, root).path.resolve() for p in study.runs}
    bases = kept_runs | {RunFolder.for_config(a.members[0], root).path.resolve() for a in study.analyses
                         if a.kind in ("cv", "tune")}
    slugs = dict.fromkeys(dataset_slug(d) for d in [p.config.dataset for p in study.runs]
                          + [a.dataset for a in study.analyses])
    out = []
    for slug in slugs:
        folder = root / slug
        if not folder.is_dir():
            continue
        plan = Retirement(folder)
        runs = sorted(c.parent for c in folder.glob(f"*/*/{CONFIG_FILE}") if c.parent.parent.name not in _NOT_RUNS)
        plan.runs = [r for r in runs if r.resolve() not in kept_runs]
        retired = {r.resolve() for r in plan.runs}
        kept_splits = set()
        for run in (r for r in runs if r.resolve() in kept_runs):
            kept_splits.add(_split_of(run))
        for ensemble in sorted(c.parent for c in (folder / ENSEMBLES_DIR).glob(f"*/{CONFIG_FILE}")):
            record = _load(EnsembleRecord, ensemble / CONFIG_FILE)
            members = [(folder / m["run"]).resolve() for m in record.members] if record else []
            if not members or any(m in retired or not m.is_dir() for m in members):
                plan.ensembles.append(ensemble)
            else:
                kept_splits.add(Path(record.split_file).name if record.split_file else None)
        for path in sorted((folder / DIAGNOSTICS_DIR).glob("batchnorm-*.json")):
            doc = _load(BatchNormDiagnosis, path)
            run = folder / doc.backbone / doc.run if doc else None
            if run is None or run.resolve() in retired or not run.is_dir():
                plan.diagnostics.append(path)
        for prefix, kind in _SELECTION.items():
            for path in model_selection_records(folder, prefix):
                record = _load(kind, path)
                base = record.base_config if isinstance(record, TuningRecord) else record.config if record else None
                if not base or _run_folder_of(base, root) not in bases:
                    plan.model_selection.append(path)
        plan.splits = [p for p in sorted((folder / SPLITS_DIR).glob("split-*.json")) if p.name not in kept_splits]
        out.append(plan)
    return out


def retire_study(path: str | Path, artifacts: str | None, emit: Emit, delete: bool = False,
                 data_root: str | None = None, datasets: list[str] | None = None) -> int:
    """``experiment FILE --retire``: list (or, with ``delete``, remove) what the study no longer plans in its
    artifacts folder, on ``datasets`` only if given (as :func:`~core.orchestrate.experiment.run_experiment`)."""
    study = load_grid(path, data_root).only(datasets)
    root = Path(artifacts or study.artifacts or artifacts_dir()).expanduser()
    return retire(plan_retirement(study, root), emit, delete)


def retire(plans: list[Retirement], emit: Emit, delete: bool) -> int:
    """List each plan's paths; with ``delete``, remove them and redo (or remove) each touched dataset's
    comparison. Returns how many paths were listed."""
    total = 0
    for plan in plans:
        paths = plan.paths()
        total += len(paths)
        if not paths:
            emit(f"{plan.dataset_dir}: nothing to retire")
            continue
        emit(f"{plan.dataset_dir}: {len(plan.runs)} runs, {len(plan.ensembles)} ensembles, "
             f"{len(plan.diagnostics)} diagnoses, {len(plan.model_selection)} model-selection records, "
             f"{len(plan.splits)} split files {'retired' if delete else 'to retire'}:")
        for path in paths:
            emit(f"  {path.relative_to(plan.dataset_dir).as_posix()}")
            if delete:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        if delete:
            _redo_comparison(plan.dataset_dir, emit)
    if total and not delete:
        emit(f"{total} paths would be removed: add --yes to remove them (git history keeps committed ones)")
    return total


def _redo_comparison(folder: Path, emit: Emit) -> None:
    """The comparison of the runs that remain, or none when fewer than two do (it would list retired runs)."""
    if len(dataset_complete_runs(folder)) >= 2:
        compare_dataset(folder)
        emit(f"  {MCNEMAR_FILE} redone from the runs that remain")
    elif (folder / MCNEMAR_FILE).is_file():
        (folder / MCNEMAR_FILE).unlink()
        emit(f"  {MCNEMAR_FILE} removed (fewer than two runs remain)")


def _split_of(run: Path) -> str | None:
    path = run / PROVENANCE_FILE
    record = _load(ProvenanceRecord, path) if path.is_file() else None
    return Path(record.split_file).name if record and record.split_file else None


def _run_folder_of(config: dict, root: Path) -> Path | None:
    try:
        return RunFolder.for_config(RunConfig.from_dict(config), root).path.resolve()
    except (TypeError, ValueError, KeyError):
        return None


def _load(kind, path: Path):
    """The record, or ``None`` when it cannot be read (an unreadable record rests on nothing the study plans)."""
    try:
        return kind.load(path)
    except (RecordError, OSError, json.JSONDecodeError):
        return None
