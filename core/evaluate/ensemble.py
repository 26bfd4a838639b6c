"""Ensembles of stored runs: soft voting over their test probabilities, stored like a run.

``python -m core ensemble DATASET RUN... [--weights uniform|val_loss|stacked]`` combines runs
that share the dataset fingerprint, the split file and the class order (so their test images
are the same), from their stored ``predictions.csv``; no model is loaded.

Weights:

- ``uniform``: every member 1/n;
- ``val_loss``: ``w_i ∝ exp(-L_i)``, normalised to sum to 1, where ``L_i`` is member i's mean
  validation log loss (natural log): the mean of ``-log p(true class)`` over its
  ``val_predictions.csv``, else the best validation loss its training recorded (provenance
  ``details``). ``exp(-L_i)`` is the member's geometric-mean likelihood of the true class per
  validation image, so a member twice as likely per image on average weighs twice as much;
- ``stacked``: a scikit-learn logistic regression (multinomial, C = 1) fitted on the members'
  validation probabilities side by side (member after member, class columns in the class
  order) against the validation labels, then applied to their test probabilities. It never
  sees a test label. Its coefficients are stored as plain numbers (no pickle), so the Try page
  applies them with NumPy (:func:`stacked_probs`).

The ensemble is scored like a run (metrics with group-bootstrap intervals, leak-free scores)
with the groups of the members' split (else the dataset's audit, else every image alone),
and its deployment cost is the sum of its members' TFLite sizes and latencies.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.artifacts import provenance
from core.artifacts.config import ENSEMBLE_WEIGHTS, RunConfig
from core.artifacts.layout import (
    COMPLETE_MARKER,
    CONFIG_FILE,
    LEAKAGE_FILE,
    METRICS_FILE,
    PREDICTIONS_FILE,
    PROVENANCE_FILE,
    VAL_PREDICTIONS_FILE,
    dataset_complete_runs,
    deployment_file,
    ensemble_dir,
)
from core.artifacts.records import (
    CompleteRecord,
    DeploymentRecord,
    EnsembleRecord,
    MetricsRecord,
    Predictions,
    ProvenanceRecord,
    RecordError,
    SplitRecord,
)
from core.artifacts.storage import utc_timestamp
from core.data.groups import Grouping, singletons
from core.data.splits import SplitAssignment
from core.errors import UserError
from core.evaluate import metrics as evaluation
from core.evaluate.compare import run_label, split_groups
from core.evaluate.leakage import score_with_grouping

WEIGHT_METHODS = ENSEMBLE_WEIGHTS
WEIGHT_RULES = {
    "uniform": "every member weighs 1/n",
    "val_loss": "w_i = exp(-L_i) / sum_j exp(-L_j), L_i the member's mean validation log loss (natural log): "
                "exp(-L_i) is its geometric-mean likelihood of the true class per validation image",
    "stacked": "a multinomial logistic regression (C=1) fitted on the members' validation probabilities side by "
               "side against the validation labels, applied to their test probabilities; never sees test labels",
}
STACK_C = 1.0
LOG_LOSS_FLOOR = 1e-15  # a probability of 0 for the true class costs -log(1e-15), not infinity
# Deployable variants whose cost an ensemble adds up over its members: name -> how the report names it.
COST_VARIANTS = {"tflite_int8_full": "int8", "tflite_float32": "float32"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,80}$")


@dataclass
class Member:
    """One stored run as an ensemble sees it."""

    run: Path
    label: str  # backbone/run id
    prov: ProvenanceRecord
    metrics: MetricsRecord
    test: Predictions
    val: Predictions | None
    details: dict


def resolve_runs(dataset_dir: Path, names: list[str]) -> list[Path]:
    """The run folders named by ``names``: a run folder's path, ``backbone/run id`` or a run id unique in the
    dataset folder; one line for a name that is none of these, a run given twice or fewer than two runs."""
    runs = dataset_complete_runs(dataset_dir)
    out = []
    for name in names:
        path = Path(name).expanduser()
        if path.is_dir():
            found = path.resolve()
        else:
            matches = [r for r in runs if run_label(r) == name or r.name == name]
            if len(matches) != 1:
                known = ", ".join(run_label(r) for r in runs[:8]) + (", ..." if len(runs) > 8 else "")
                why = "matches several runs (give backbone/run id)" if matches else "is no complete run of it"
                raise UserError(f"'{name}' {why} in {dataset_dir} (complete runs: {known or 'none'})")
            found = matches[0].resolve()
        if found in out:
            raise UserError(f"{name} is given twice: each member run once")
        out.append(found)
    if len(out) < 2:
        raise UserError(f"an ensemble needs at least 2 member runs; {len(out)} given")
    return out


def load_member(run: Path) -> Member:
    """A complete run's records and predictions; one line if it is missing, incomplete or a file is corrupt."""
    if not run.is_dir():
        raise UserError(f"{run}: no such run folder")
    if not (run / COMPLETE_MARKER).is_file():
        raise UserError(f"{run}: not a complete run (no {COMPLETE_MARKER}): finish it before ensembling it")
    metrics = MetricsRecord.load(run / METRICS_FILE)
    prov = ProvenanceRecord.load(run / PROVENANCE_FILE)
    test = Predictions.load(run / PREDICTIONS_FILE, expected_rows=metrics.n)
    val_path = run / VAL_PREDICTIONS_FILE
    val = Predictions.load(val_path, expected_rows=(prov.dataset.get("counts") or {}).get("val")) \
        if val_path.is_file() else None
    return Member(run, run_label(run), prov, metrics, test, val, prov.details or {})


def check_compatible(members: list[Member]) -> None:
    """One line unless every member shares the dataset fingerprint, the split file, the class order and the test
    images."""
    first = members[0]
    for m in members[1:]:
        if m.prov.fingerprint != first.prov.fingerprint:
            raise UserError(f"{m.label} was made from other images than {first.label} (dataset fingerprint "
                            f"{str(m.prov.fingerprint)[:12]} vs {str(first.prov.fingerprint)[:12]}): not ensembled")
        if _split_path(m) != _split_path(first):
            raise UserError(f"{m.label} used another split than {first.label} ({m.prov.split_file} vs "
                            f"{first.prov.split_file}): their test images differ, not ensembled")
        if m.test.classes != first.test.classes:
            raise UserError(f"{m.label} has other classes or class order than {first.label} "
                            f"({', '.join(m.test.classes)} vs {', '.join(first.test.classes)}): not ensembled")
        if sorted(m.test.ids) != sorted(first.test.ids):
            raise UserError(f"{m.label} was scored on other test images than {first.label} ({len(m.test.ids)} vs "
                            f"{len(first.test.ids)}; a quick and a full run?): not ensembled")


def _split_path(member: Member) -> Path | None:
    return (member.run / member.prov.split_file).resolve() if member.prov.split_file else None


def aligned(tables: list[Predictions]) -> tuple[list[str], np.ndarray, list[np.ndarray]]:
    """The first table's ids and integer labels, and every table's probabilities in that id order."""
    ids = tables[0].ids
    index = {c: i for i, c in enumerate(tables[0].classes)}
    unknown = sorted(set(tables[0].true) - set(index))
    if unknown:
        raise RecordError(f"true label(s) {', '.join(unknown)} have no probability column")
    y = np.array([index[t] for t in tables[0].true], dtype=np.int64)
    probs = []
    for table in tables:
        row = {i: n for n, i in enumerate(table.ids)}
        probs.append(np.asarray(table.probs, dtype=float)[[row[i] for i in ids]])
    return ids, y, probs


def mean_log_loss(y: np.ndarray, probs: np.ndarray) -> float:
    """Mean of ``-log p(true class)`` (natural log), probabilities floored at :data:`LOG_LOSS_FLOOR`."""
    return float(-np.log(np.clip(probs[np.arange(len(y)), y], LOG_LOSS_FLOOR, None)).mean())


def validation_losses(members: list[Member]) -> list[tuple[float | None, str]]:
    """Each member's validation loss and its source, one kind of source for all: the mean log loss of their
    ``val_predictions.csv`` when every member stored one, else the loss each training recorded (losses of two
    kinds, or recorded ones that include different label smoothing or penalties, are not comparable)."""
    if all(m.val is not None for m in members):
        return [validation_loss(m) for m in members]
    recorded = [validation_loss(m, recorded_only=True) for m in members]
    regularised = {m.label: _loss_terms(m) for m in members}
    if len(set(regularised.values())) > 1:
        raise UserError("--weights val_loss: the members' recorded validation losses include different label "
                        "smoothing or penalties, so they do not compare; add val_predictions.csv to every member "
                        "(python -m core val-predictions RUN_DIR) or use --weights uniform")
    return recorded


def _loss_terms(member: Member) -> tuple:
    """What besides the data enters a recorded Keras loss: label smoothing and the kernel penalties."""
    config = RunConfig.load(member.run / CONFIG_FILE)
    return (config.label_smoothing, config.head_l1, config.head_l2, config.unfrozen_l2)


def validation_loss(member: Member, recorded_only: bool = False) -> tuple[float | None, str]:
    """The member's validation loss and where it came from: its ``val_predictions.csv`` when stored (and not
    ``recorded_only``), else the best validation loss its training recorded (network: the last stage's
    ``best_val_loss``; baseline: its chosen grid row's ``val_loss``)."""
    if member.val is not None and not recorded_only:
        _, y, (probs,) = aligned([member.val])
        return mean_log_loss(y, probs), f"mean log loss of {VAL_PREDICTIONS_FILE}"
    details = member.details
    for stage in ("stage2", "scratch", "stage1"):
        loss = (details.get(stage) or {}).get("best_val_loss")
        if loss is not None:
            return float(loss), f"provenance details {stage}.best_val_loss (as training recorded it)"
    key, chosen = details.get("hyperparameter"), details.get("chosen")
    row = next((g for g in details.get("grid") or [] if key and g.get(key) == chosen), None)
    if row and row.get("val_loss") is not None:
        return float(row["val_loss"]), f"provenance details grid {key}={chosen} val_loss"
    return None, "none recorded"


def loss_weights(losses: list[float]) -> np.ndarray:
    """``exp(-L_i)`` normalised to sum to 1 (shifted by the smallest loss first: the same weights, no underflow)."""
    losses = np.asarray(losses, dtype=float)
    raw = np.exp(-(losses - losses.min()))
    return raw / raw.sum()


def fit_stacker(val_probs: list[np.ndarray], y_val: np.ndarray, n_classes: int) -> dict:
    """The stacked logistic regression fitted on validation probabilities, as plain numbers."""
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(y_val)) < 2:
        raise UserError("the members' validation images hold one class only: a stacked ensemble cannot be fitted")
    model = LogisticRegression(C=STACK_C, max_iter=5000).fit(np.hstack(val_probs), y_val)
    return {"coef": model.coef_.tolist(), "intercept": model.intercept_.tolist(),
            "classes": [int(c) for c in model.classes_], "n_classes": int(n_classes), "C": STACK_C,
            "features": "the members' probabilities side by side, member after member, classes in the stored order"}


def stacked_probs(stacked: dict, member_probs: list[np.ndarray]) -> np.ndarray:
    """The stored logistic regression applied to members' probabilities (``predict_proba`` in NumPy); a column of
    zeros for a class the validation images lacked."""
    x = np.hstack([np.atleast_2d(p) for p in member_probs])
    coef, intercept = np.asarray(stacked["coef"], dtype=float), np.asarray(stacked["intercept"], dtype=float)
    scores = x @ coef.T + intercept
    if coef.shape[0] == 1:  # two classes: one logistic output for the second
        positive = 1.0 / (1.0 + np.exp(-scores[:, 0]))
        fitted = np.column_stack([1.0 - positive, positive])
    else:
        scores -= scores.max(axis=1, keepdims=True)
        fitted = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    out = np.zeros((len(x), stacked["n_classes"]))
    out[:, stacked["classes"]] = fitted
    return out


def soft_vote(member_probs: list[np.ndarray], weights: list[float] | np.ndarray) -> np.ndarray:
    """The weighted average of the members' probabilities."""
    return np.tensordot(np.asarray(weights, dtype=float), np.stack(member_probs), axes=1)


def combine(members: list[Member], method: str) -> tuple[np.ndarray, list[dict], dict | None, np.ndarray | None]:
    """The ensemble's test probabilities, the member entries (weights, losses), the stacker and the validation
    probabilities of a soft vote whose members all stored theirs (None otherwise)."""
    if method not in WEIGHT_METHODS:
        raise UserError(f"unknown weights '{method}'; choose one of: {', '.join(WEIGHT_METHODS)}")
    _, _, test_probs = aligned([m.test for m in members])
    losses = validation_losses(members) if method == "val_loss" else [validation_loss(m) for m in members]
    entries = [{"run": m.label, "val_loss": loss, "val_loss_source": source, "accuracy": m.metrics.accuracy}
               for m, (loss, source) in zip(members, losses)]
    has_val = all(m.val is not None for m in members)
    if has_val:
        _check_same_val(members)
        _, y_val, val_probs = aligned([m.val for m in members])
    stacked = None
    if method == "stacked":
        if not has_val:
            missing = ", ".join(m.label for m in members if m.val is None)
            raise UserError(f"--weights stacked needs {VAL_PREDICTIONS_FILE} for every member; missing for {missing} "
                            "(python -m core val-predictions RUN_DIR adds it to runs that kept model.keras)")
        stacked = fit_stacker(val_probs, y_val, len(members[0].test.classes))
        weights = _coefficient_shares(stacked, len(members))
        return stacked_probs(stacked, test_probs), _with_weights(entries, weights), stacked, None
    if method == "val_loss":
        unknown = [m.label for m, (loss, _) in zip(members, losses) if loss is None]
        if unknown:
            raise UserError(f"--weights val_loss: no validation loss recorded for {', '.join(unknown)}")
        weights = loss_weights([loss for loss, _ in losses])
    else:
        weights = np.full(len(members), 1.0 / len(members))
    val = soft_vote(val_probs, weights) if has_val else None
    return soft_vote(test_probs, weights), _with_weights(entries, weights), None, val


def _check_same_val(members: list[Member]) -> None:
    first = members[0]
    for m in members[1:]:
        if sorted(m.val.ids) != sorted(first.val.ids):
            raise UserError(f"{m.label} stored other validation images than {first.label}: not ensembled")


def _coefficient_shares(stacked: dict, n_members: int) -> np.ndarray:
    """Each member's share of the stacker's absolute coefficients (a display of how much each one counts)."""
    coef = np.abs(np.asarray(stacked["coef"], dtype=float))
    per_member = np.array([block.sum() for block in np.array_split(coef, n_members, axis=1)])
    return per_member / per_member.sum() if per_member.sum() > 0 else np.full(n_members, 1.0 / n_members)


def _with_weights(entries: list[dict], weights: np.ndarray) -> list[dict]:
    return [{**e, "weight": float(w)} for e, w in zip(entries, weights)]


def deployment_settled(run_dir: Path) -> bool:
    """Whether a run's deployment has tried every variant an ensemble's cost sums (:data:`COST_VARIANTS`), measured
    or not (failed, unsupported): an ensemble built before that would keep "not measured" for a cost measured later."""
    path = deployment_file(run_dir)
    if not path.is_file():
        return False
    tried = {v["name"] for v in DeploymentRecord.load(path).variants if v.get("status")}
    return all(name in tried for name in COST_VARIANTS)


def _measured(variant: dict | None) -> bool:
    return bool(variant and variant.get("status") == "ok" and variant.get("bytes"))


def deployment_cost(members: list[Member]) -> dict:
    """Per deployable variant (int8, float32): the members' summed MB and median ms at 1 thread, or why not
    measured (a member without that variant measured)."""
    variants = {}
    for member in members:
        path = deployment_file(member.run)
        variants[member.label] = {v["name"]: v for v in DeploymentRecord.load(path).variants} if path.is_file() else {}
    out = {}
    for name, short in COST_VARIANTS.items():
        sizes, times, missing = [], [], []
        for label, found in variants.items():
            v = found.get(name)
            if not _measured(v):
                missing.append(label)
                continue
            sizes.append(v["bytes"] / 1e6)
            times.append(((v.get("latency") or {}).get("threads_1") or {}).get("median_ms"))
        if missing:
            out[name] = {"label": short, "measured": False,
                         "reason": f"not measured: no {name} measurement for {', '.join(missing)}"}
        else:
            out[name] = {"label": short, "measured": True, "mb": sum(sizes),
                         "ms": None if any(t is None for t in times) else sum(times)}
    return out


def test_grouping(members: list[Member], dataset_dir: Path) -> tuple[Grouping, SplitAssignment]:
    """The members' split and the groups its intervals resample (:func:`~core.evaluate.compare.split_groups`;
    none: every image alone)."""
    split = SplitAssignment.from_dict(SplitRecord.load(_split_path(members[0])).to_dict())
    grouping, _ = split_groups(split, dataset_dir, members[0].prov.fingerprint)
    return (grouping or singletons([p for p, _, _ in split.items])), split


def default_name(labels: list[str], method: str) -> str:
    """``<method>-<n>runs-<hash of the members>``."""
    digest = hashlib.sha256(json.dumps(sorted(labels)).encode()).hexdigest()[:8]
    return f"{method}-{len(labels)}runs-{digest}"


def build_ensemble(dataset_dir: str | Path, names: list[str], method: str = "uniform", name: str | None = None,
                   emit=print) -> Path:
    """Combine stored runs of ``dataset_dir`` and store the ensemble like a run; returns its folder.

    Idempotent: an ensemble of the same name, members and weights is left as it is; another
    one under that name is refused. Every file is written atomically, ``complete.json`` last.
    """
    started = time.time()
    dataset_dir = Path(dataset_dir)
    if method not in WEIGHT_METHODS:
        raise UserError(f"unknown weights '{method}'; choose one of: {', '.join(WEIGHT_METHODS)}")
    members = [load_member(r) for r in resolve_runs(dataset_dir, names)]
    outside = [m.label for m in members if m.run.parent.parent.resolve() != dataset_dir.resolve()]
    if outside:
        raise UserError(f"{', '.join(outside)}: not a run of {dataset_dir} (ensemble runs of one dataset folder)")
    check_compatible(members)
    name = name or default_name([m.label for m in members], method)
    if not _NAME.match(name):
        raise UserError(f"--name '{name}': use letters, digits and . _ @ + - (at most 81 characters)")
    folder = ensemble_dir(dataset_dir, name)
    if _same_complete(folder, [m.label for m in members], method):
        emit(f"complete already: {folder}")
        return folder
    test_probs, entries, stacked, val_probs = combine(members, method)
    test_probs = Predictions.as_stored(test_probs)  # scored as stored: re-scoring its predictions.csv agrees
    val_probs = None if val_probs is None else Predictions.as_stored(val_probs)
    ids, y, _ = aligned([members[0].test])
    classes = members[0].test.classes
    grouping, split = test_grouping(members, dataset_dir)
    metrics = MetricsRecord.from_dict(evaluation.evaluate(y, test_probs, classes, seed=0, groups=grouping.codes(ids)))
    record = EnsembleRecord(
        kind="ensemble", name=name, dataset=dataset_dir.name, weights_method=method, weight_rule=WEIGHT_RULES[method],
        members=entries, classes=list(classes), test_images=len(ids), fingerprint=members[0].prov.fingerprint,
        split_file=os.path.relpath(_split_path(members[0]), folder), stacked=stacked,
        deployment=deployment_cost(members), created_at=utc_timestamp())
    folder.mkdir(parents=True, exist_ok=True)
    (folder / COMPLETE_MARKER).unlink(missing_ok=True)  # a result again only once every file is rewritten
    record.save(folder / CONFIG_FILE)
    metrics.save(folder / METRICS_FILE)
    Predictions.from_probs(ids, y, test_probs, classes).save(folder / PREDICTIONS_FILE)
    if val_probs is not None:
        val_ids, y_val, _ = aligned([members[0].val])
        Predictions.from_probs(val_ids, y_val, val_probs, classes).save(folder / VAL_PREDICTIONS_FILE)
    else:  # a file left by an earlier attempt of another combination must not pass as this one's
        (folder / VAL_PREDICTIONS_FILE).unlink(missing_ok=True)
    score_with_grouping(y, test_probs, classes, ids, split.items, grouping, grouping.to_dict(),
                        f"the members' {PREDICTIONS_FILE} combined, their split's groups", seed=0).save(
        folder / LEAKAGE_FILE)
    wall = round(time.time() - started, 1)
    ProvenanceRecord(**provenance.collect(), dataset={**members[0].prov.dataset, "split_file": record.split_file},
                     timings_s={"combine": wall}, wall_time_s=wall,
                     details={"ensemble": {"weights_method": method, "members": record.member_runs()}},
                     invocations=[{"started_at": utc_timestamp(started), "resumed": None, "outcome": "complete",
                                   "wall_time_s": wall, "timings_s": {"combine": wall}}]).save(folder / PROVENANCE_FILE)
    CompleteRecord(completed_at=utc_timestamp(), **metrics.headline()).save(folder / COMPLETE_MARKER)
    emit(f"ensemble {name} ({method}) of {len(members)} runs: accuracy {metrics.accuracy:.4f}, balanced accuracy "
         f"{metrics.balanced_accuracy:.4f}, macro-F1 {metrics.macro_f1:.4f} -> {folder}")
    return folder


def _same_complete(folder: Path, labels: list[str], method: str) -> bool:
    """Whether ``folder`` holds this complete ensemble already (one line if it holds another one)."""
    if not (folder / COMPLETE_MARKER).is_file():
        return False
    stored = EnsembleRecord.load(folder / CONFIG_FILE)
    if sorted(stored.member_runs()) == sorted(labels) and stored.weights_method == method:
        return True
    raise UserError(f"{folder} holds another ensemble ({stored.weights_method} of {', '.join(stored.member_runs())});"
                    " give another --name, or move it away")


def load_ensemble(folder: Path) -> EnsembleRecord:
    """A stored ensemble's record."""
    return EnsembleRecord.load(Path(folder) / CONFIG_FILE)
