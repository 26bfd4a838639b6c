"""Typed records of the stored results: one owner for each kind of file under ``artifacts/``.

Every record is a dataclass with a ``SCHEMA_VERSION``, :meth:`Record.to_dict` /
:meth:`Record.from_dict`, and :meth:`Record.save` / :meth:`Record.load` (atomic write;
one :class:`RecordError` line for a missing, unreadable or foreign file). Where each file
lives is :mod:`core.artifacts.layout`; what each field means is ``docs/ARTIFACTS.md``
(a test checks that it names every field written here).

Reading an older schema: :meth:`Record.migrate` turns it into the current one (files
written before versioning count as schema 1; :class:`ProvenanceRecord` is at schema 2). A file
of a newer schema than this code knows is refused, not guessed at. Fields a newer minor
writer added are kept in ``extra`` and written back unchanged.

The run configuration record is :class:`core.artifacts.config.RunConfig`; history.csv and
events.jsonl are appended by :class:`core.artifacts.runs.RunFolder`.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from core.artifacts.storage import append_lines, atomic_write_json, atomic_write_text, read_json
from core.errors import UserError

R = TypeVar("R", bound="Record")


class RecordError(UserError):
    """A stored result file is missing, unreadable, or not the record it should be."""


def _reason(exc: BaseException) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON ({exc.msg}, line {exc.lineno})"
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def read_record_json(path: str | os.PathLike, kind: str) -> Any:
    """The parsed JSON of ``path``, or one :class:`RecordError` line naming the file and the problem."""
    try:
        return read_json(path)
    except FileNotFoundError:
        raise RecordError(f"{path}: no {kind} here (file missing)") from None
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise RecordError(f"{path}: unreadable {kind}: {_reason(exc)}") from None


@dataclass
class Record:
    """Base of the JSON records: schema version, plain-data conversion, atomic save, checked load."""

    SCHEMA_VERSION: ClassVar[int] = 1
    KIND: ClassVar[str] = "record"

    def to_dict(self) -> dict[str, Any]:
        """Plain data, ``schema_version`` first, extra fields from a newer writer last."""
        out = {"schema_version": self.SCHEMA_VERSION}
        out.update({f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"})
        out.update(getattr(self, "extra", None) or {})
        return out

    @classmethod
    def migrate(cls, data: dict[str, Any], version: int) -> dict[str, Any]:
        """Turn a stored dict of schema ``version`` into the current schema (identity at schema 1)."""
        return data

    @classmethod
    def from_dict(cls: type[R], data: Any, where: str = "") -> R:
        """The record in ``data``; :class:`RecordError` if it is not one."""
        where = where or cls.KIND
        if not isinstance(data, dict):
            raise RecordError(f"{where}: not a {cls.KIND} (expected a JSON object, found {type(data).__name__})")
        version = data.get("schema_version", 1)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise RecordError(f"{where}: not a {cls.KIND} (schema_version {version!r})")
        if version > cls.SCHEMA_VERSION:
            raise RecordError(f"{where}: a {cls.KIND} of schema {version}, newer than this code reads "
                              f"({cls.SCHEMA_VERSION}); update the project to read it")
        data = cls.migrate({k: v for k, v in data.items() if k != "schema_version"}, version)
        names = {f.name for f in fields(cls)} - {"extra"}
        missing = [f.name for f in fields(cls) if f.name in names and f.name not in data
                   and f.default is MISSING and f.default_factory is MISSING]
        if missing:
            raise RecordError(f"{where}: not a {cls.KIND} (missing {', '.join(missing)})")
        record = cls(**{k: v for k, v in data.items() if k in names})
        if "extra" in {f.name for f in fields(cls)}:
            record.extra = {k: v for k, v in data.items() if k not in names}
        return record

    def save(self, path: str | os.PathLike) -> Path:
        """Write the record atomically as indented JSON."""
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls: type[R], path: str | os.PathLike) -> R:
        """Read and check a stored record; one :class:`RecordError` line if it is missing or unusable."""
        return cls.from_dict(read_record_json(path, cls.KIND), str(path))


def readable(kind, path: Path, default):
    """A record, or ``default`` when its file cannot be read (for totals that do without it)."""
    try:
        return kind.load(path)
    except RecordError:
        return default


@dataclass
class MetricsRecord(Record):
    """``metrics.json``: the test-split evaluation of one run (:func:`core.evaluate.metrics.evaluate`)."""

    KIND: ClassVar[str] = "metrics record"
    n: int
    classes: list[str]
    accuracy: float
    balanced_accuracy: float | None
    macro_f1: float | None
    weighted_f1: float | None
    per_class: list[dict]
    confusion_matrix: dict
    roc: dict
    pr: dict
    calibration: dict
    bootstrap: dict
    extra: dict = field(default_factory=dict)

    def headline(self) -> dict[str, float | None]:
        """Accuracy, balanced accuracy and macro-F1."""
        return {"accuracy": self.accuracy, "balanced_accuracy": self.balanced_accuracy, "macro_f1": self.macro_f1}


@dataclass
class LeakageRecord(Record):
    """``leakage.json``: the run scored on its whole test split and on the leak-free part of it
    (:func:`core.evaluate.leakage.score_leakage`), intervals resampling groups."""

    KIND: ClassVar[str] = "leakage record"
    grouping: dict
    computed_from: str
    test_images: int
    test_groups: int
    leaking_images: int
    definition: str
    subsets: dict
    created_at: str | None = None
    validation: dict | None = None  # val images and how many are in a group with train images (the run's split)
    extra: dict = field(default_factory=dict)

    def subset(self, name: str) -> dict | None:
        """``all``, ``leak_free`` or ``leaking``: n, metrics and bootstrap intervals (None when empty)."""
        return self.subsets.get(name)


@dataclass
class OperatingPointsRecord(Record):
    """``operating_points.json``: the run read as binary screens (:mod:`core.evaluate.operating_point`), one
    entry per positive classes and target, each with its threshold chosen on validation and its test figures."""

    KIND: ClassVar[str] = "operating points record"
    points: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)


@dataclass
class CompleteRecord(Record):
    """``complete.json``: written last; only then is a run folder a result."""

    KIND: ClassVar[str] = "completion marker"
    completed_at: str
    accuracy: float | None = None
    balanced_accuracy: float | None = None
    macro_f1: float | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class ProvenanceRecord(Record):
    """``provenance.json``: code version, libraries, machine, dataset fingerprint and split, timings.

    Schema 2: ``invocations`` lists every invocation that worked on the run (a resume
    is one more) with its own seconds per phase; ``timings_s`` and ``wall_time_s`` are
    their totals. Schema 1 recorded only the invocation that completed the run: it reads
    as that one invocation, ``started_at`` unknown.
    """

    SCHEMA_VERSION: ClassVar[int] = 2
    KIND: ClassVar[str] = "provenance record"
    code: dict
    libraries: dict
    machine: dict
    dataset: dict
    timings_s: dict = field(default_factory=dict)
    wall_time_s: float | None = None
    details: dict = field(default_factory=dict)
    invocations: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    @classmethod
    def migrate(cls, data: dict[str, Any], version: int) -> dict[str, Any]:
        """Schema 1 -> 2: its timings become the one invocation on record."""
        if version < 2:
            data = {**data, "invocations": [{"started_at": None, "resumed": None, "outcome": "complete",
                                             "wall_time_s": data.get("wall_time_s"),
                                             "timings_s": dict(data.get("timings_s") or {})}]}
        return data

    @property
    def fingerprint(self) -> str | None:
        """The dataset fingerprint the run was made from."""
        return (self.dataset or {}).get("fingerprint")

    @property
    def split_file(self) -> str | None:
        """The split file, relative to the run folder."""
        return (self.dataset or {}).get("split_file")


@dataclass(kw_only=True)  # keyword-only: the fields keep the order of the stored files
class SplitRecord(Record):
    """``splits/split-seed<S>-<fp>.json``: the train/val/test assignment shared by the runs of a split seed."""

    KIND: ClassVar[str] = "split record"
    seed: int
    val_fraction: float
    test_fraction: float
    layout: str
    sources: dict = field(default_factory=dict)
    dataset_fingerprint: str | None = None
    grouping: dict | None = None  # splits made by group: where the groups came from and their summary
    policy: str | None = None  # splits made by group: "keep" (predefined folders kept) or "regroup"
    items: list
    extra: dict = field(default_factory=dict)

    def test_size(self) -> int:
        """Images in the test split."""
        return sum(1 for item in self.items if item["split"] == "test")


@dataclass
class DeploymentRecord(Record):
    """``deploy/deployment.json`` (or ``architectures/<backbone>/deployment.json``): every variant measured."""

    KIND: ClassVar[str] = "deployment record"
    kind: str
    variants: list[dict] = field(default_factory=list)
    source: str | None = None
    backbone: str | None = None
    input_size: int | None = None
    classes: list[str] = field(default_factory=list)
    parent: dict | None = None
    test_set: dict | None = None
    libraries: dict | None = None
    settings: dict | None = None
    representative_dataset: dict | None = None
    fine_tune_data: dict | None = None
    matmul_peak: dict | None = None
    machine: dict | None = None
    flops: dict | None = None
    updated_at: str | None = None
    keras_latency: dict | None = None
    timings_s: dict | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class AuditRecord(Record):
    """``audit.json``: ``python -m core audit`` (duplicates, leakage, conflicting labels, corrupt files)."""

    KIND: ClassVar[str] = "audit report"
    tool: str
    created_at: str
    dataset: dict
    split: dict
    hash: dict
    counts: dict
    duplicates: dict
    corrupt: list
    skipped: list
    imbalance: dict
    timings_s: dict
    verdict: dict
    groups: dict | None = None  # groups of near-copies and the splits they cross (audits before groups: none)
    extra: dict = field(default_factory=dict)


@dataclass
class ComparisonRecord(Record):
    """``mcnemar.json``: McNemar's test between every pair of complete runs of a dataset."""

    KIND: ClassVar[str] = "comparison record"
    names: list[str]
    alpha: float
    correction: str
    pairs: list[dict]
    matrix: list
    accuracy: dict = field(default_factory=dict)
    grouping: str | None = None  # the groups the paired bootstrap resampled (None: made before it existed)
    ensembles: list | None = None  # each stored ensemble against its best member (None: made before ensembles)
    configurations: dict | None = None  # pairs of configurations, mean over seeds (None: made before it existed)
    extra: dict = field(default_factory=dict)


@dataclass
class EnsembleRecord(Record):
    """``ensembles/<name>/config.json``: an ensemble of stored runs (:mod:`core.evaluate.ensemble`).

    ``members``: one entry per run (``run`` as ``backbone/run id``, ``weight``, ``val_loss`` and where it came
    from, ``accuracy`` on the test split); ``stacked``: the logistic regression's coefficients as plain numbers.
    """

    KIND: ClassVar[str] = "ensemble record"
    kind: str
    name: str
    dataset: str
    weights_method: str
    weight_rule: str
    members: list[dict]
    classes: list[str]
    test_images: int
    fingerprint: str | None = None
    split_file: str | None = None
    stacked: dict | None = None
    deployment: dict = field(default_factory=dict)
    created_at: str | None = None
    extra: dict = field(default_factory=dict)

    def member_runs(self) -> list[str]:
        """The members as ``backbone/run id``."""
        return [m["run"] for m in self.members]

    def weights(self) -> list[float]:
        """Each member's weight in the soft vote (stacked: the share of each member's coefficients, for display)."""
        return [float(m["weight"]) for m in self.members]


@dataclass
class UnavailableRecord(Record):
    """``unavailable.json``: runs an experiment could not train for lack of ImageNet weights."""

    KIND: ClassVar[str] = "list of runs waiting for weights"
    runs: list[dict] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


@dataclass
class BatchNormDiagnosis(Record):
    """``diagnostics/batchnorm-<backbone>-<run id>.json`` (``scripts/diagnose_batchnorm.py``)."""

    KIND: ClassVar[str] = "BatchNorm diagnosis"
    kind: str
    run: str
    backbone: str
    weights: str
    split: str
    val_images: int
    classes: list[str]
    note: str
    results: dict
    seconds: float
    provenance: dict
    command: str
    model: dict | None = None  # where the diagnosed model.keras came from (rebuilt or the run's own)
    extra: dict = field(default_factory=dict)


PROBABILITY_FORMAT = ".6g"  # how predictions.csv writes a probability


@dataclass
class Predictions:
    """``predictions.csv``: one row per test image, ``id,true,pred,p_<class>...`` (column layout = schema 1).

    Enough to recompute every metric and to pair runs for McNemar's test.
    """

    SCHEMA_VERSION: ClassVar[int] = 1
    KIND: ClassVar[str] = "predictions table"
    ids: list[str]
    true: list[str]
    pred: list[str]
    classes: list[str] = field(default_factory=list)
    probs: np.ndarray | None = None

    @classmethod
    def from_probs(cls, ids: list[str], labels: np.ndarray, probs: np.ndarray, classes: list[str]) -> "Predictions":
        """From integer labels and class probabilities (the predicted class is the most probable one)."""
        probs = np.asarray(probs)
        return cls(list(ids), [classes[int(y)] for y in labels], [classes[int(i)] for i in probs.argmax(axis=1)],
                   list(classes), probs)

    def correct(self) -> list[bool]:
        """Whether each image was classified correctly."""
        return [t == p for t, p in zip(self.true, self.pred)]

    @staticmethod
    def as_stored(probs) -> np.ndarray:
        """Probabilities as ``predictions.csv`` keeps them (6 significant digits). Every score of a run is computed
        from these, so its stored predictions reproduce it: two classes within 1e-6 of each other (a tree's
        weighted leaf, say) would otherwise be ordered one way in the run and the other way when re-scored."""
        return np.vectorize(lambda v: float(f"{v:{PROBABILITY_FORMAT}}"), otypes=[np.float64])(np.asarray(probs))

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["id", "true", "pred"] + [f"p_{c}" for c in self.classes])
        probs = self.probs if self.probs is not None else [[] for _ in self.ids]
        for i, t, p, row in zip(self.ids, self.true, self.pred, probs):
            writer.writerow([i, t, p] + [f"{v:{PROBABILITY_FORMAT}}" for v in row])
        return buf.getvalue()

    def save(self, path: str | os.PathLike) -> Path:
        """Write the table atomically."""
        return atomic_write_text(path, self.to_csv())

    @classmethod
    def load(cls, path: str | os.PathLike, expected_rows: int | None = None) -> "Predictions":
        """Read a stored table; one :class:`RecordError` line if it is missing, not a predictions table, or
        incomplete: its last line cut short, or not ``expected_rows`` rows (the test images its metrics count)."""
        try:
            with open(path, newline="", encoding="utf-8") as fh:
                text = fh.read()
            reader = csv.reader(io.StringIO(text, newline=""))
            header = next(reader, None)
            rows = list(reader)
        except FileNotFoundError:
            raise RecordError(f"{path}: no {cls.KIND} here (file missing)") from None
        except (OSError, ValueError, csv.Error) as exc:
            raise RecordError(f"{path}: unreadable {cls.KIND}: {_reason(exc)}") from None
        if not header or header[:3] != ["id", "true", "pred"]:
            raise RecordError(f"{path}: not a {cls.KIND} (its header must start with id,true,pred)")
        if not text.endswith("\n"):  # every line is written whole: a file that stops mid-line was cut short
            raise RecordError(f"{path}: an incomplete {cls.KIND} (its last line is cut short)")
        if expected_rows is not None and len(rows) != expected_rows:
            raise RecordError(f"{path}: {len(rows)} rows where the run's metrics count {expected_rows} test images "
                              f"(a truncated or foreign {cls.KIND})")
        classes = [c[2:] for c in header[3:] if c.startswith("p_")]
        if any(len(r) != len(header) for r in rows):
            raise RecordError(f"{path}: not a {cls.KIND} (a row does not have the {len(header)} columns of its header)")
        try:
            probs = np.array([[float(v) for v in r[3:]] for r in rows], dtype=float).reshape(len(rows), len(classes))
        except ValueError:
            raise RecordError(f"{path}: not a {cls.KIND} (a probability is not a number)") from None
        return cls([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], classes, probs)


@dataclass
class VariantPredictions:
    """``deploy/predictions.csv``: one row per test image, ``id,true,parent,<variant>...``: the class each
    deployment variant (and the parent Keras model) predicted."""

    KIND: ClassVar[str] = "variant predictions table"
    ids: list[str]
    true: list[str]
    parent: list[str]
    variants: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "VariantPredictions":
        """Read a stored table; one :class:`RecordError` line if it is missing, not such a table, or cut short."""
        try:
            with open(path, newline="", encoding="utf-8") as fh:
                text = fh.read()
            rows = list(csv.reader(io.StringIO(text, newline="")))
        except FileNotFoundError:
            raise RecordError(f"{path}: no {cls.KIND} here (file missing)") from None
        except (OSError, ValueError, csv.Error) as exc:
            raise RecordError(f"{path}: unreadable {cls.KIND}: {_reason(exc)}") from None
        header, body = (rows[0], rows[1:]) if rows else ([], [])
        if header[:3] != ["id", "true", "parent"]:
            raise RecordError(f"{path}: not a {cls.KIND} (its header must start with id,true,parent)")
        if not text.endswith("\n") or any(len(r) != len(header) for r in body):
            raise RecordError(f"{path}: an incomplete {cls.KIND} (a row is cut short)")
        columns = list(zip(*body)) if body else [()] * len(header)
        return cls(list(columns[0]), list(columns[1]), list(columns[2]),
                   {name: list(col) for name, col in zip(header[3:], columns[3:])})


def append_experiment_log(path: str | os.PathLike, entry: dict) -> None:
    """Append one sitting's line to ``experiment_log.jsonl`` (flushed and fsync'ed: a killed sitting keeps it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    append_lines(path, json.dumps(entry) + "\n")


def read_experiment_log(path: str | os.PathLike) -> list[dict]:
    """Every readable line of ``experiment_log.jsonl`` (a blank line or one cut short by a kill is skipped)."""
    path = Path(path)
    if not path.is_file():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


@dataclass
class CrossValidationRecord(Record):
    """``model_selection/cv-*.json``: ``python -m core cv``, K-fold cross-validation of one method over a
    dataset's non-test images (test split untouched), and the test score of the method refitted on them all."""

    KIND: ClassVar[str] = "cross-validation record"
    created_at: str
    dataset: dict  # path, slug, fingerprint, classes, counts (non_test, test)
    backbone: str
    method: str
    config: dict  # the resolved run config the features, head and split come from
    grouped: bool  # folds disjoint by group (else image by image: the leaky comparison)
    grouping: dict  # the groups folds keep whole: source, detail, groups among the non-test images
    k: int
    fold_seeds: list  # one fold assignment per repeat
    procedure: str  # what is fitted in each fold
    hyperparameter: dict | None  # a baseline's {name, value, chosen_on}; null for the network head
    folds: list  # per fold: repeat, fold, n_train, n_heldout, groups_heldout, metrics, fit_seconds
    summary: dict  # metric -> {n, mean, sd, low, high} over the folds of the first assignment
    repeats: list  # per assignment: repeat, seed, metric means
    test: dict  # the procedure refitted on all non-test images, scored on the test split
    fit_seconds: float  # all folds of all repeats
    code: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


@dataclass
class FoldStudyRecord(Record):
    """``model_selection/fold_study-*.json``: ``python -m core cv --fold-study``, the CV estimate for several
    fold counts, its spread across repeated fold assignments, its bias against the test score and its cost."""

    KIND: ClassVar[str] = "fold-count study"
    created_at: str
    dataset: dict
    backbone: str
    method: str
    config: dict
    metric: str
    grouping: dict
    procedure: str
    hyperparameter: dict | None
    test: dict  # the refitted procedure's test scores: the line the estimates are set against
    rows: list  # per (folds, grouped, repeat): seed, estimate, fold_sd, fit_seconds
    summary: list  # per (folds, grouped): estimate (mean over repeats), spread_sd, bias, fit_seconds, repeats
    code: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


@dataclass
class TuningRecord(Record):
    """``model_selection/tuning-*.json``: ``python -m core tune``, a plain copy of an Optuna study (the app
    reads it without Optuna or its storage)."""

    KIND: ClassVar[str] = "tuning record"
    created_at: str
    study: str  # the Optuna study name
    storage: str  # its storage URL (passwords removed)
    dataset: dict
    backbone: str
    base_config: dict  # the settings every trial starts from
    objective: dict  # metric, direction, source (validation or cv K), pruner
    search_space: dict  # setting -> {kind, low, high, log | choices}
    trials: list  # number, state, value, params, seconds, epochs_reported
    best: dict | None  # number, value, params, overrides (the run settings they become)
    importances: dict  # setting -> importance (Optuna's fANOVA); empty below two complete trials
    importance_note: str
    code: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


@dataclass
class LessonRecord(Record):
    """``lessons/leakage/lesson.json``: ``python -m core lesson`` (:mod:`core.evaluate.lesson`), one network trained
    on a pre-augmented dataset under several splits, each arm's validation and test scores and how many of its
    validation images have their source image in training (the truth, and what the audit sees)."""

    KIND: ClassVar[str] = "leakage lesson record"
    created_at: str
    dataset: dict  # slug, path, fingerprint, source_pattern (the regex that names each copy's source image)
    build: dict | None  # the augmented set's BUILD.json (augmentation, copies, sources); None if not found
    arms: list  # per split: kind, name, description, grouping, run, counts, validation, test, leak counts
    code: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


# Every record with the fields it writes (the documentation test walks this list).
JSON_RECORDS: tuple[type[Record], ...] = (MetricsRecord, CompleteRecord, ProvenanceRecord, SplitRecord,
                                          DeploymentRecord, AuditRecord, ComparisonRecord, UnavailableRecord,
                                          BatchNormDiagnosis, LeakageRecord, OperatingPointsRecord, EnsembleRecord,
                                          CrossValidationRecord, FoldStudyRecord, TuningRecord, LessonRecord)


def record_fields(kind: type) -> list[str]:
    """The field names a record writes (``extra`` is not a field of its own)."""
    return [f.name for f in dataclasses.fields(kind) if f.name != "extra"]
