"""``python -m core val-predictions RUN_DIR...``: add ``val_predictions.csv`` to runs stored before it existed.

A complete network run that kept its ``model.keras`` is rebuilt as it saw its data: the
split from its split file, the validation images it used (a quick preset's subsample
drawn again with its split seed), their classes in the run's order, and those images
predicted through the stored model. A run without a model (a baseline, or a seed whose
model was not kept) gets one line saying so. Resumable: a run that has the file is
skipped, and the file is written atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.artifacts.config import RunConfig
from core.artifacts.layout import (
    COMPLETE_MARKER,
    CONFIG_FILE,
    MODEL_FILE,
    PROVENANCE_FILE,
    VAL_PREDICTIONS_FILE,
    find_dataset,
)
from core.artifacts.records import Predictions, ProvenanceRecord, SplitRecord
from core.data.prepare import run_pairs
from core.data.splits import SplitAssignment
from core.errors import UserError
from core.models.backbones import get_spec
from core.models.loading import load_model
from core.progress import Emit
from core.train.transfer import predict_images


def check_run(run: Path) -> Path:
    """``run`` if it is a complete run folder; one line otherwise."""
    run = Path(run).expanduser()
    if not run.is_dir():
        raise UserError(f"{run}: no such run folder")
    if not (run / CONFIG_FILE).is_file() or not (run / COMPLETE_MARKER).is_file():
        raise UserError(f"{run}: not a complete run (no {COMPLETE_MARKER}): finish it first")
    return run


def add_val_predictions(runs: list[Path], emit: Emit = print) -> dict[Path, str]:
    """Write ``val_predictions.csv`` into each complete network run with a model; returns what happened to each."""
    runs = [check_run(r) for r in runs]  # every folder checked before any work
    outcome = {}
    for run in runs:
        outcome[run] = _add_one(run)
        emit(f"{run}: {outcome[run]}")
    return outcome


def _add_one(run: Path) -> str:
    target = run / VAL_PREDICTIONS_FILE
    if target.is_file():
        return f"{VAL_PREDICTIONS_FILE} present already (kept)"
    config = RunConfig.load(run / CONFIG_FILE)
    if config.method != "finetune":
        return (f"not written: a {config.method} baseline keeps no model; its {VAL_PREDICTIONS_FILE} is written "
                "only when the run is made (move the run away and run it again)")
    if not (run / MODEL_FILE).is_file():
        return f"not written: no {MODEL_FILE} (this run's model was not kept); run it again to get one"
    prov = ProvenanceRecord.load(run / PROVENANCE_FILE)
    ids, labels = _val_items(run, config, prov)
    root = find_dataset(prov.dataset.get("path", ""), run)
    if root is None:
        raise UserError(f"{run}: its dataset folder {prov.dataset.get('path')} is not on this machine")
    missing = [i for i in ids if not (root / i).is_file()]
    if missing:
        raise UserError(f"{run}: {len(missing)} validation image(s) of its split are not in {root} "
                        f"(e.g. {missing[0]}): another version of the dataset")
    model = load_model(run / MODEL_FILE)
    probs = predict_images(model, get_spec(config.backbone), config, [str(root / i) for i in ids])
    Predictions.from_probs(ids, labels, probs, prov.dataset["classes"]).save(target)
    accuracy = float((probs.argmax(1) == labels).mean())
    return f"{VAL_PREDICTIONS_FILE} written ({len(ids)} validation images, accuracy {accuracy:.4f})"


def _val_items(run: Path, config: RunConfig, prov: ProvenanceRecord) -> tuple[list[str], np.ndarray]:
    """The validation images the run used and their class indices, from its split file."""
    if not prov.split_file:
        raise UserError(f"{run}: its provenance names no split file, so its validation images are not known")
    split = SplitAssignment.from_dict(SplitRecord.load((run / prov.split_file).resolve()).to_dict())
    classes = prov.dataset.get("classes") or []
    pairs = run_pairs(split, "val", config)
    unknown = sorted({label for _, label in pairs} - set(classes))
    if unknown:
        raise UserError(f"{run}: validation class(es) {', '.join(unknown)} are not among the run's classes")
    expected = (prov.dataset.get("counts") or {}).get("val")
    if expected is not None and expected != len(pairs):
        raise UserError(f"{run}: its split gives {len(pairs)} validation images where the run recorded {expected}")
    index = {c: i for i, c in enumerate(classes)}
    return [p for p, _ in pairs], np.array([index[label] for _, label in pairs], dtype=np.int64)
