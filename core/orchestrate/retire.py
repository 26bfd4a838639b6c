"""What a study no longer plans, in its artifacts folder: ``python -m core experiment FILE --retire``.

When an experiment file changes (a new split, other settings), the runs of its earlier version stay in the
artifacts folder, and the report would show them beside the new ones. Retired are, in each dataset folder the
study uses:

- every run folder that no grid of the file names (an earlier edition's, but also one made by hand, by the Train
  page or by another experiment file sharing the folder);
- every ensemble with a retired (or missing) member;
- every BatchNorm diagnosis of a retired run;
- every cross-validation, fold-count and tuning record whose base settings are neither a planned run's nor an
  ``[[cv]]``/``[[tune]]`` analysis's;
- every split file that no kept run or ensemble reads (all are kept while a planned run has not recorded its
  split yet);
- and the comparison (``mcnemar.json``) is redone from the kept runs (removed when fewer than two remain).

Kept, and said so: a record this code cannot read (it cannot tell what it rests on), and a run folder another
process holds locked (it is being written). The dataset's audit, notes, weights-waiting list and Optuna storage
stay. Listing is the default; deleting needs ``--yes`` (git history keeps what was committed; files never
committed are gone).
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
from core.artifacts.runs import RunFolder, RunLockedError
from core.errors import UserError
from core.evaluate.compare import compare_dataset
from core.orchestrate.experiment import Study, load_grid
from core.progress import Emit

_NOT_RUNS = {ENSEMBLES_DIR, MODEL_SELECTION_DIR, DIAGNOSTICS_DIR, SPLITS_DIR}
_SELECTION = {"cv": CrossValidationRecord, "fold_study": FoldStudyRecord, "tuning": TuningRecord}
_UNKNOWN = "?"  # the split of a run that has not recorded it yet


@dataclass
class Retirement:
    """What retiring would remove in one dataset folder, by kind (paths), and what it keeps although the study does
    not plan it (path, why)."""

    dataset_dir: Path
    runs: list[Path] = field(default_factory=list)
    ensembles: list[Path] = field(default_factory=list)
    diagnostics: list[Path] = field(default_factory=list)
    model_selection: list[Path] = field(default_factory=list)
    splits: list[Path] = field(default_factory=list)
    kept: list[tuple[Path, str]] = field(default_factory=list)

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
    return [_plan(root / slug, kept_runs, bases) for slug in slugs if (root / slug).is_dir()]


def _plan(folder: Path, kept_runs: set[Path], bases: set[Path]) -> Retirement:
    plan = Retirement(folder)
    runs = sorted(c.parent for c in folder.glob(f"*/*/{CONFIG_FILE}") if c.parent.parent.name not in _NOT_RUNS)
    for run in (r for r in runs if r.resolve() not in kept_runs):
        if _locked(run):
            plan.kept.append((run, "another process is writing it"))
        else:
            plan.runs.append(run)
    retired = {r.resolve() for r in plan.runs}
    splits_read = {_split_of(r) for r in runs if r.resolve() not in retired}
    for ensemble in sorted(c.parent for c in (folder / ENSEMBLES_DIR).glob(f"*/{CONFIG_FILE}")):
        record = _load(EnsembleRecord, ensemble / CONFIG_FILE)
        if record is None:
            plan.kept.append((ensemble, "its config.json cannot be read"))
            continue
        members = [(folder / m["run"]).resolve() for m in record.members]
        if not members or any(m in retired or not m.is_dir() for m in members):
            plan.ensembles.append(ensemble)
        else:
            splits_read.add(Path(record.split_file).name if record.split_file else None)
    for path in sorted((folder / DIAGNOSTICS_DIR).glob("batchnorm-*.json")):
        doc = _load(BatchNormDiagnosis, path)
        if doc is None:
            plan.kept.append((path, "it cannot be read"))
        elif (folder / doc.backbone / doc.run).resolve() in retired or not (folder / doc.backbone / doc.run).is_dir():
            plan.diagnostics.append(path)
    for prefix, kind in _SELECTION.items():
        for path in model_selection_records(folder, prefix):
            record = _load(kind, path)
            base = None if record is None else _run_folder_of(
                record.base_config if isinstance(record, TuningRecord) else record.config, folder.parent)
            if base is None:
                plan.kept.append((path, "it cannot be read"))
            elif base not in bases:
                plan.model_selection.append(path)
    if _UNKNOWN in splits_read:  # a run still training has not recorded its split: it may be any of them
        plan.kept += [(p, "a planned run has not recorded its split yet") for p in sorted(
            (folder / SPLITS_DIR).glob("split-*.json")) if p.name not in splits_read]
    else:
        plan.splits = [p for p in sorted((folder / SPLITS_DIR).glob("split-*.json")) if p.name not in splits_read]
    return plan


def retire_study(path: str | Path, artifacts: str | None, emit: Emit, delete: bool = False,
                 data_root: str | None = None, datasets: list[str] | None = None) -> int:
    """``experiment FILE --retire``: list (or, with ``delete``, remove) what the study no longer plans in its
    artifacts folder, on ``datasets`` only if given (as :func:`~core.orchestrate.experiment.run_experiment`)."""
    study = load_grid(path, data_root).only(datasets)
    root = Path(artifacts or study.artifacts or artifacts_dir()).expanduser()
    if not root.is_dir():
        emit(f"no artifacts folder at {root}: nothing to retire")
        return 0
    return retire(plan_retirement(study, root), emit, delete)


def retire(plans: list[Retirement], emit: Emit, delete: bool) -> int:
    """List each plan's paths; with ``delete``, remove them and redo (or remove) each dataset's comparison.
    Returns how many paths were listed for removal."""
    total = 0
    for plan in plans:
        paths = plan.paths()
        total += len(paths)
        if paths:
            emit(f"{plan.dataset_dir}: {len(plan.runs)} runs, {len(plan.ensembles)} ensembles, "
                 f"{len(plan.diagnostics)} diagnoses, {len(plan.model_selection)} model-selection records, "
                 f"{len(plan.splits)} split files {'retired' if delete else 'to retire'}:")
        else:
            emit(f"{plan.dataset_dir}: nothing to retire")
        for path in paths:
            emit(f"  {path.relative_to(plan.dataset_dir).as_posix()}")
            if delete:
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        for path, why in plan.kept:
            emit(f"  kept: {path.relative_to(plan.dataset_dir).as_posix()} ({why})")
        if delete:  # also after nothing to remove: a sitting interrupted after its removals left the old comparison
            _redo_comparison(plan.dataset_dir, emit)
    if total and not delete:
        emit(f"{total} paths would be removed: add --yes to remove them (git history keeps committed ones; "
             "files never committed are gone)")
    return total


def _redo_comparison(folder: Path, emit: Emit) -> None:
    """The comparison of the runs that remain, or none when fewer than two do (it would list retired runs)."""
    if len(dataset_complete_runs(folder)) >= 2:
        try:
            compare_dataset(folder)
        except UserError as exc:  # an unreadable run: the comparison says so when it is next made
            emit(f"  {MCNEMAR_FILE} not redone: {exc}")
            return
        emit(f"  {MCNEMAR_FILE} redone from the runs that remain")
    elif (folder / MCNEMAR_FILE).is_file():
        (folder / MCNEMAR_FILE).unlink()
        emit(f"  {MCNEMAR_FILE} removed (fewer than two runs remain)")


def _split_of(run: Path) -> str | None:
    """The split file a run read (its name), or :data:`_UNKNOWN` when it has not recorded one (still training)."""
    path = run / PROVENANCE_FILE
    record = _load(ProvenanceRecord, path) if path.is_file() else None
    if record is None:
        return _UNKNOWN
    return Path(record.split_file).name if record.split_file else None


def _locked(run: Path) -> bool:
    """Whether another process holds the run folder's lock (a run or deployment writing it)."""
    folder = RunFolder(run)
    try:
        folder.lock()
    except RunLockedError:
        return True
    except OSError:  # a read-only folder: nobody writes it
        return False
    folder.unlock()
    return False


def _run_folder_of(config: dict, root: Path) -> Path | None:
    try:
        return RunFolder.for_config(RunConfig.from_dict(config), root).path.resolve()
    except (TypeError, ValueError, KeyError, AttributeError):
        return None


def _load(kind, path: Path):
    """The record, or ``None`` when it cannot be read (an unreadable record rests on nothing the study plans)."""
    try:
        return kind.load(path)
    except (RecordError, OSError, json.JSONDecodeError):
        return None
