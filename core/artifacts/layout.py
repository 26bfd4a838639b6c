"""Where every stored file lives: the one module that knows the layout of ``artifacts/``.

::

    <artifacts>/
      experiment_log.jsonl
      architectures/<backbone>/deployment.json
      <dataset>/
        audit.json  unavailable.json  mcnemar.json  dataset_notes.md
        splits/split-seed<S>-<fingerprint[:12]>.json
        diagnostics/batchnorm-<backbone>-<run id>.json
        ensembles/<name>/   config.json (kind "ensemble")  provenance.json  metrics.json  predictions.csv
                            leakage.json  complete.json
        model_selection/cv-<backbone>-<run id>-k<K>-<grouped|ungrouped>.json  fold_study-<backbone>-<run id>.json
        model_selection/tuning-<study>.json  optuna.sqlite3
        <backbone>/<run id>/
          config.json  provenance.json  history.csv  events.jsonl  metrics.json  predictions.csv
          val_predictions.csv  leakage.json  operating_points.json
          model.keras  state/  complete.json
          deploy/deployment.json  deploy/predictions.csv  deploy/<variant>.tflite

A run counts as a result only once its ``complete.json`` exists (written last,
atomically). Nothing here reads a file's content: that is :mod:`core.artifacts.records`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from core.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ARTIFACTS = REPO_ROOT / "artifacts"

# Files of a run folder.
CONFIG_FILE = "config.json"
PROVENANCE_FILE = "provenance.json"
HISTORY_FILE = "history.csv"
EVENTS_FILE = "events.jsonl"
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.csv"
# The validation split's probabilities (the same columns): what ensembles weigh and operating points are chosen on.
VAL_PREDICTIONS_FILE = "val_predictions.csv"
LEAKAGE_FILE = "leakage.json"
# Binary screens read from the run (python -m core operating-point): thresholds chosen on validation.
OPERATING_POINTS_FILE = "operating_points.json"
MODEL_FILE = "model.keras"
STATE_DIR = "state"
COMPLETE_MARKER = "complete.json"
# Deployment measurements: <run>/deploy/ or architectures/<backbone>/.
DEPLOY_DIR = "deploy"
DEPLOYMENT_FILE = "deployment.json"
DEPLOY_PREDICTIONS_FILE = "predictions.csv"
# Files of a dataset folder.
AUDIT_FILE = "audit.json"
UNAVAILABLE_FILE = "unavailable.json"
MCNEMAR_FILE = "mcnemar.json"
DATASET_NOTES_FILE = "dataset_notes.md"
SPLITS_DIR = "splits"
DIAGNOSTICS_DIR = "diagnostics"
# Ensembles of a dataset's runs, one folder each: stored like a run, never listed among the runs.
ENSEMBLES_DIR = "ensembles"
MODEL_SELECTION_DIR = "model_selection"  # cross-validation, the fold-count study, tuning
OPTUNA_DB = "optuna.sqlite3"
# Top level.
ARCHITECTURES_DIR = "architectures"
# The leakage lesson's runs and record (experiments/leakage_lesson.toml): deeper than any glob of a dataset's
# runs (<artifacts>/<dataset>/<backbone>/<run>), so no other page lists them.
LESSON_DIR = "lessons/leakage"
LESSON_FILE = "lesson.json"
EXPERIMENT_LOG = "experiment_log.jsonl"


def artifacts_dir() -> Path:
    """The artifacts folder: ``$STUDY_ARTIFACTS`` if set, else ``artifacts/`` in the repo."""
    return Path(os.environ.get("STUDY_ARTIFACTS") or DEFAULT_ARTIFACTS)


def _root(root: str | os.PathLike | None) -> Path:
    return Path(root).expanduser() if root else artifacts_dir()


def existing_artifacts_dir(root: str | os.PathLike | None = None) -> Path:
    """The artifacts folder to read results from (``root`` or the default); one line if it is not a folder."""
    path = _root(root)
    if not path.is_dir():
        what = "is a file, not a folder" if path.exists() else "not found"
        raise UserError(f"artifacts folder {what}: {path}")
    return path


def dataset_slug(dataset: str | os.PathLike) -> str:
    """Folder name used for a dataset under artifacts/ (its folder name, made safe)."""
    name = Path(dataset).expanduser().resolve().name or "dataset"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def dataset_dir(dataset: str, root: str | os.PathLike | None = None) -> Path:
    """``<artifacts>/<dataset>``: ``dataset`` is the folder name under artifacts/ (a slug)."""
    return _root(root) / dataset


def run_dir(dataset: str, backbone: str, run_id: str, root: str | os.PathLike | None = None) -> Path:
    """``<artifacts>/<dataset>/<backbone>/<run id>``."""
    return dataset_dir(dataset, root) / backbone / run_id


def dataset_of_run(run: Path) -> str:
    """The dataset folder name of a run folder."""
    return Path(run).parent.parent.name


def split_path(dataset_folder: Path, seed: int, fingerprint: str, variant: str | None = None) -> Path:
    """A dataset's stored split for a split seed and data fingerprint; ``variant`` tells apart splits of
    the same seed made with other settings (groups, policy, fractions; none for the first runs' splits)."""
    suffix = f"-{variant}" if variant else ""
    return dataset_folder / SPLITS_DIR / f"split-seed{seed}-{fingerprint[:12]}{suffix}.json"


def deploy_dir(run: Path) -> Path:
    """Where a run's deployment measurements go."""
    return Path(run) / DEPLOY_DIR


def deployment_file(run: Path) -> Path:
    """A run's ``deploy/deployment.json``."""
    return deploy_dir(run) / DEPLOYMENT_FILE


def architecture_dir(backbone: str, root: str | os.PathLike | None = None) -> Path:
    """The measurement of a backbone without trained weights."""
    return _root(root) / ARCHITECTURES_DIR / backbone


def ensemble_dir(dataset_folder: str | os.PathLike, name: str) -> Path:
    """``<artifacts>/<dataset>/ensembles/<name>``."""
    return Path(dataset_folder) / ENSEMBLES_DIR / name


def ensemble_folders(dataset_folder: str | os.PathLike) -> list[Path]:
    """Folders of every complete ensemble of one dataset folder, sorted."""
    folder = Path(dataset_folder) / ENSEMBLES_DIR
    return sorted(marker.parent for marker in folder.glob(f"*/{COMPLETE_MARKER}")) if folder.is_dir() else []


def is_ensemble(folder: str | os.PathLike) -> bool:
    """Whether a result folder is an ensemble's (``<dataset>/ensembles/<name>``) rather than a run's."""
    return Path(folder).parent.name == ENSEMBLES_DIR


def _runs_only(folders) -> list[Path]:
    return sorted(f for f in folders if not is_ensemble(f))


def diagnostics_file(dataset_folder: Path, backbone: str, run_id: str) -> Path:
    """A run's BatchNorm diagnosis (scripts/diagnose_batchnorm.py)."""
    return dataset_folder / DIAGNOSTICS_DIR / f"batchnorm-{backbone}-{run_id}.json"


def model_selection_dir(dataset_folder: Path) -> Path:
    """A dataset's cross-validation and tuning records."""
    return Path(dataset_folder) / MODEL_SELECTION_DIR


def cv_file(dataset_folder: Path, backbone: str, run_id: str, k: int, grouped: bool) -> Path:
    """One cross-validation record (``python -m core cv``) of a base config (its run id: method, preset, settings)."""
    kind = "grouped" if grouped else "ungrouped"
    return model_selection_dir(dataset_folder) / f"cv-{backbone}-{run_id}-k{k}-{kind}.json"


def fold_study_file(dataset_folder: Path, backbone: str, run_id: str) -> Path:
    """The fold-count study (``python -m core cv --fold-study``) of a base config (its run id)."""
    return model_selection_dir(dataset_folder) / f"fold_study-{backbone}-{run_id}.json"


def tuning_file(dataset_folder: Path, study: str) -> Path:
    """The plain record of an Optuna study (``python -m core tune``)."""
    return model_selection_dir(dataset_folder) / f"tuning-{study}.json"


def optuna_storage(dataset_folder: Path) -> str:
    """The default Optuna storage of a dataset: an SQLite file (optuna-dashboard opens the URL)."""
    return f"sqlite:///{(model_selection_dir(dataset_folder) / OPTUNA_DB).resolve()}"


def model_selection_records(dataset_folder: Path, prefix: str) -> list[Path]:
    """The stored records of one kind (``cv``, ``fold_study`` or ``tuning``) of a dataset, sorted."""
    folder = model_selection_dir(dataset_folder)
    return sorted(folder.glob(f"{prefix}-*.json")) if folder.is_dir() else []


def complete_runs(root: str | os.PathLike | None = None) -> list[Path]:
    """Folders of every complete run, sorted."""
    root = _root(root)
    if not root.is_dir():
        return []
    return _runs_only(marker.parent for marker in root.glob(f"*/*/*/{COMPLETE_MARKER}"))


def dataset_complete_runs(dataset_folder: str | os.PathLike) -> list[Path]:
    """Folders of every complete run of one dataset folder (``<artifacts>/<dataset>``), sorted."""
    folder = Path(dataset_folder)
    return _runs_only(marker.parent for marker in folder.glob(f"*/*/{COMPLETE_MARKER}")) if folder.is_dir() else []


def run_folders(root: str | os.PathLike | None = None) -> list[Path]:
    """Folders of every run begun (a stored config), complete or not, sorted."""
    root = _root(root)
    if not root.is_dir():
        return []
    return _runs_only(config.parent for config in root.glob(f"*/*/*/{CONFIG_FILE}"))


def result_files(root: str | os.PathLike | None = None) -> list[Path]:
    """Every file whose change changes what the report shows (the app's cache key is built from them; an
    ensemble's ``complete.json`` is among the first pattern's)."""
    root = _root(root)
    if not root.is_dir():
        return []
    patterns = [f"*/*/*/{COMPLETE_MARKER}", f"*/*/*/{LEAKAGE_FILE}", f"*/*/*/{OPERATING_POINTS_FILE}",
                f"*/*/*/{VAL_PREDICTIONS_FILE}", f"*/*/*/{EVENTS_FILE}", "*/*.json",
                f"*/*/*/{DEPLOY_DIR}/{DEPLOYMENT_FILE}",
                f"{ARCHITECTURES_DIR}/*/{DEPLOYMENT_FILE}", f"*/{DIAGNOSTICS_DIR}/*.json", f"*/{SPLITS_DIR}/*.json",
                f"*/{MODEL_SELECTION_DIR}/*.json", f"{LESSON_DIR}/{LESSON_FILE}"]
    return [p for pattern in patterns for p in root.glob(pattern)]


def find_dataset(path: str, run: Path | None = None) -> Path | None:
    """A run's recorded dataset folder on this machine, or None if it is not here.

    An absolute path is taken as it is; a relative one is looked up from the current
    folder, the repository and the run folder, in that order (the same rule for the CLI,
    the scripts and the app).
    """
    p = Path(path).expanduser()
    candidates = [p] if p.is_absolute() else [Path.cwd() / p, REPO_ROOT / p] + ([Path(run) / p] if run else [])
    return next((c.resolve() for c in candidates if c.is_dir()), None)


def lesson_dir(root: str | os.PathLike | None = None) -> Path:
    """The leakage lesson's artifacts folder (its runs and ``lesson.json``)."""
    return _root(root) / LESSON_DIR
