"""Leak-free scores: a run scored on the test images whose group has no member in train or val.

A test image *leaks* when its group (:mod:`core.data.groups`: connected near-copies, or
the user's subject ids) also has a member in train or val: the model has seen a near-copy
of it, so it scores better than on a new image. Every run is scored on the whole test
split, on its leak-free part and on its leaking part, each with bootstrap intervals that
resample whole groups (a cluster bootstrap: slices of one scan are not independent).

Two ways in, one record (:class:`~core.artifacts.records.LeakageRecord`, ``leakage.json``):

- a new run scores itself when it finishes (:func:`score_leakage` with its own groups);
- ``python -m core leakage DATASET`` scores stored runs from their ``predictions.csv``,
  their split file and the dataset's ``audit.json`` (:func:`rescore_dataset`), so runs made
  before groups existed show their leak-free score without re-training.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from core.artifacts.layout import AUDIT_FILE, LEAKAGE_FILE, PREDICTIONS_FILE, PROVENANCE_FILE, dataset_complete_runs
from core.artifacts.records import AuditRecord, LeakageRecord, Predictions, ProvenanceRecord, RecordError, SplitRecord
from core.data.groups import Grouping, from_audit
from core.data.splits import SplitAssignment
from core.errors import UserError
from core.evaluate.metrics import interval_summary

DEFINITION = ("a test image leaks when its group also has a member in train or val (leak_free: the others); "
              "direct_copy: the image itself is a near-copy of a train or val image")


def score_leakage(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str], group_codes: np.ndarray,
                  leaking: np.ndarray, direct: np.ndarray | None, grouping: dict[str, Any], computed_from: str,
                  seed: int = 0, n_bootstrap: int = 1000, validation: dict[str, int] | None = None) -> LeakageRecord:
    """Score one run's test predictions on all, leak-free and leaking test images (cluster bootstrap).

    ``leaking``: the image's group has a member in train or val. ``direct`` (duplicate groups
    only): the image itself is a near-copy of a train or val image, a subset of the leaking ones.
    ``validation``: the validation split's size and its images in a group with train images.
    """
    y, p = np.asarray(y_true), np.asarray(probs, dtype=float)
    codes, leaking = np.asarray(group_codes), np.asarray(leaking, dtype=bool)
    direct_sets = {}
    if direct is not None:
        direct = np.asarray(direct, dtype=bool)
        direct_sets = {"direct_copy": direct, "no_direct_copy": ~direct}

    def subset(mask: np.ndarray) -> dict | None:
        if not mask.any():
            return None
        out = interval_summary(y[mask], p[mask], classes, codes[mask], n_bootstrap, seed)
        pred = p[mask].argmax(axis=1)
        recall = [{"class": str(name), "support": int((y[mask] == k).sum()),
                   "recall": float((pred[y[mask] == k] == k).mean()) if (y[mask] == k).any() else None}
                  for k, name in enumerate(classes)]
        return {**out, "groups": int(len(np.unique(codes[mask]))), "per_class": recall}

    return LeakageRecord(
        grouping=dict(grouping), computed_from=computed_from, test_images=int(y.size),
        test_groups=int(len(np.unique(codes))), leaking_images=int(leaking.sum()), definition=DEFINITION,
        subsets={"all": subset(np.ones(y.size, bool)), "leak_free": subset(~leaking), "leaking": subset(leaking),
                 **{name: subset(mask) for name, mask in direct_sets.items()}},
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), validation=validation)


def score_with_grouping(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str], ids: Sequence[str],
                        split_items: Sequence[tuple[str, str, str]], grouping: Grouping, grouping_info: dict[str, Any],
                        computed_from: str, seed: int = 0) -> LeakageRecord:
    """:func:`score_leakage` of the test images ``ids``, with what ``grouping`` says of them in the whole split."""
    return score_leakage(y_true, probs, classes, grouping.codes(ids), grouping.leaking(split_items, ids),
                         grouping.direct_copies(split_items, ids), grouping_info, computed_from, seed,
                         validation=grouping.validation_leak(split_items))


def rescore_run(run: Path, prov: ProvenanceRecord, grouping: Grouping, grouping_info: dict[str, Any],
                computed_from: str, seed: int = 0) -> LeakageRecord:
    """Score a stored run (its ``prov``) from its predictions and split with ``grouping``; writes ``leakage.json``."""
    preds = Predictions.load(run / PREDICTIONS_FILE)
    split_file = (run / prov.dataset.get("split_file", "")).resolve()
    split = SplitAssignment.from_dict(SplitRecord.load(split_file).to_dict())
    index = {c: i for i, c in enumerate(preds.classes)}
    unknown = sorted(set(preds.true) - set(index))
    if unknown:
        raise RecordError(f"{run / PREDICTIONS_FILE}: true label(s) {', '.join(unknown)} have no probability column")
    y = np.array([index[t] for t in preds.true])
    record = score_with_grouping(y, preds.probs, preds.classes, preds.ids, split.items, grouping, grouping_info,
                                 computed_from, seed)
    record.save(run / LEAKAGE_FILE)
    return record


def rescore_dataset(dataset_dir: Path, emit=print) -> list[tuple[Path, LeakageRecord | str]]:
    """Score every complete run of a dataset folder with the groups of its ``audit.json``.

    Returns ``(run, record or reason it was not scored)`` per run. A run made from other
    images than the audited ones (dataset fingerprint differs) is not scored, nor is a run
    that scored itself with its own groups when it finished (its record is kept).
    """
    audit_path = dataset_dir / AUDIT_FILE
    if not audit_path.is_file():
        raise UserError(f"{audit_path} not found: audit the dataset first (python -m core audit DATASET_FOLDER)")
    audit = AuditRecord.load(audit_path).to_dict()
    grouping = from_audit(audit)
    info = {**grouping.to_dict(), "audit_created_at": audit.get("created_at")}
    fingerprint = audit["dataset"]["fingerprint"]
    out: list[tuple[Path, LeakageRecord | str]] = []
    for run in dataset_complete_runs(dataset_dir):
        try:
            stored = LeakageRecord.load(run / LEAKAGE_FILE) if (run / LEAKAGE_FILE).is_file() else None
            if stored is not None and AUDIT_FILE not in stored.computed_from:
                out.append((run, "scored by the run itself with its own groups (kept)"))
                continue
            prov = ProvenanceRecord.load(run / PROVENANCE_FILE)
            if prov.fingerprint != fingerprint:
                out.append((run, f"made from other images than the audit (fingerprint {str(prov.fingerprint)[:12]}, "
                                 f"audit {fingerprint[:12]})"))
                continue
            out.append((run, rescore_run(run, prov, grouping, info,
                                         f"{PREDICTIONS_FILE}, the run's split and {AUDIT_FILE}")))
        except RecordError as exc:
            out.append((run, str(exc)))
    emit(f"{dataset_dir.name}: scored {sum(isinstance(r, LeakageRecord) for _, r in out)} of {len(out)} run(s)")
    return out
