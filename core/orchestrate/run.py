"""One run end to end: data, training (or a baseline), evaluation, stored results.

:func:`execute` is what ``python -m core run`` and ``python -m core experiment`` call.
It is idempotent: a complete run is skipped, an interrupted one resumes from its
checkpoints, and nothing counts as a result until ``complete.json`` is written.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import time
from pathlib import Path

from core.artifacts import provenance
from core.artifacts.config import RunConfig
from core.artifacts.layout import (
    LEAKAGE_FILE,
    METRICS_FILE,
    PREDICTIONS_FILE,
    PROVENANCE_FILE,
    VAL_PREDICTIONS_FILE,
    dataset_slug,
    split_path,
)
from core.artifacts.records import MetricsRecord, Predictions, ProvenanceRecord, SplitRecord
from core.artifacts.runs import RunFolder, total_timings
from core.artifacts.storage import utc_timestamp
from core.data.dataset import discover, fingerprint
from core.data.prepare import PreparedData, prepare_data
from core.deploy.measure import deploy_run
from core.errors import UserError, WeightsUnavailableError
from core.evaluate import metrics as evaluation
from core.evaluate.leakage import score_with_grouping
from core.models.backbones import BackboneSpec, get_spec
from core.progress import Emit
from core.train import baselines
from core.train import config as config_mod
from core.train import transfer


def validate_config(config: RunConfig) -> BackboneSpec:
    """Check a config before any work (nothing is written before this passes); returns the backbone spec."""
    spec = get_spec(config.backbone)
    config_mod.check_config(config)
    discover(config.dataset, validate=False)  # missing, a file, no class folders or no images: one line now
    if config.weights == "imagenet" and not spec.weights_available():
        raise WeightsUnavailableError(spec.missing_weights_message())
    return spec


def execute(config: RunConfig, artifacts_root: str | Path | None = None, emit: Emit = print,
            deploy: bool = False, fingerprints: dict[str, str] | None = None) -> RunFolder:
    """Run (or resume, or skip if complete) one configured run; returns its folder.

    With ``deploy`` a network run's deployment variants are measured right after
    training (``python -m core deploy``; resumable, measured variants are kept).
    ``fingerprints`` (dataset path -> fingerprint) lets a caller running many runs hash
    each dataset once for the check that a complete run was made on the same images.
    """
    spec = validate_config(config)
    run = RunFolder.for_config(config, artifacts_root)
    if run.is_complete():
        stored = ProvenanceRecord.load(run.file(PROVENANCE_FILE)).fingerprint
        fingerprints = {} if fingerprints is None else fingerprints
        if config.dataset not in fingerprints:
            fingerprints[config.dataset] = fingerprint(discover(config.dataset))
        _check_same_dataset(run, config, stored, fingerprints[config.dataset])
        emit(f"complete already: {run.path}")
        if deploy:
            _deploy(run, config, emit)
        return run
    _train(run, config, spec, emit)
    if deploy:
        _deploy(run, config, emit)
    return run


def _deploy(run: RunFolder, config: RunConfig, emit: Emit) -> None:
    if config.method != "finetune":
        return  # baselines are scikit-learn models: nothing to convert
    emit(f"deploying {run.path}")
    deploy_run(run.path, emit=emit)


def _train(run: RunFolder, config: RunConfig, spec: BackboneSpec, emit: Emit) -> None:
    resuming = run.start(config)
    try:
        run.event("resumed" if resuming else "started", run=str(run.path))
        emit(f"{'resuming' if resuming else 'starting'} {run.path}")
        started = time.time()
        data = prepare_data(config, emit)
        if resuming:
            problems: list[str] = []
            first = next((e for e in run.read_events(problems) if e["event"] == "data"), {})
            for problem in problems:
                emit(f"warning: {problem}")
            _check_same_dataset(run, config, first.get("fingerprint"), data.fingerprint)
        run.event("data", fingerprint=data.fingerprint)
        split_file = _store_split(run, data, config.val_folder)
        if config.method == "finetune":
            outcome = transfer.train_and_predict(config, spec, data, run, emit)
        else:
            outcome = baselines.train_and_predict(config, spec, data, run, emit)
        headline = _store_results(run, config, data, outcome, started, split_file)
        run.event("complete", metrics=headline)
        emit(f"done: accuracy {headline['accuracy']:.4f}, balanced accuracy {headline['balanced_accuracy']:.4f}, "
             f"macro-F1 {headline['macro_f1']:.4f} -> {run.path}")
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        run.event("interrupted" if isinstance(exc, KeyboardInterrupt) else "failed", error=error)
        raise
    finally:
        run.unlock()


def _check_same_dataset(run: RunFolder, config: RunConfig, stored: str | None, current: str) -> None:
    """A run folder is named by the dataset *folder name*: refuse to reuse one made from other images."""
    if stored and stored != current:
        raise UserError(
            f"{run.path} holds a run of other images than {config.dataset} (dataset fingerprint "
            f"{stored[:12]}, now {current[:12]}): another dataset with the same folder name, or this one changed "
            "(deduplicated, say). Use another --artifacts folder for it, or move the old run away to redo it.")


def _store_split(run: RunFolder, data: PreparedData, val_folder: str) -> str:
    """The dataset's split, shared by all runs with the same split seed and data."""
    split = data.split
    legacy = split.groups is None and (split.val_fraction, split.test_fraction) == (0.15, 0.15) \
        and val_folder == "validation"
    key = [split.grouping, split.policy, split.val_fraction, split.test_fraction]
    if val_folder != "validation":  # left out at the first runs' value: their split files keep their names
        key.append(val_folder)
    variant = None if legacy else hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8]
    path = split_path(run.path.parent.parent, data.split.seed, data.fingerprint, variant)
    if not path.is_file():
        SplitRecord.from_dict(data.split.to_dict(), str(path)).save(path)
    return os.path.relpath(path, run.path)


def _store_results(run: RunFolder, config: RunConfig, data: PreparedData, outcome: dict, started: float,
                   split_file: str) -> dict:
    """Evaluate on the test split and write the run's results (and its validation probabilities), completion marker
    last; returns the headline."""
    invocations = _invocations(run, started)
    probs = Predictions.as_stored(outcome["test_probs"])  # scored as stored, so re-scoring predictions.csv agrees
    codes = data.test_groups()
    metrics = MetricsRecord.from_dict(evaluation.evaluate(data.labels["test"], probs, data.classes, seed=config.seed,
                                                          groups=codes))
    metrics.save(run.file(METRICS_FILE))
    grouping = data.measured_groups
    score_with_grouping(data.labels["test"], probs, data.classes, data.ids["test"], data.split.items, grouping,
                        {**grouping.to_dict(), "split_grouping": config.grouping},
                        "the run's own test predictions and groups", seed=config.seed).save(run.file(LEAKAGE_FILE))
    Predictions.from_probs(data.ids["test"], data.labels["test"], probs, data.classes).save(run.file(PREDICTIONS_FILE))
    Predictions.from_probs(data.ids["val"], data.labels["val"], Predictions.as_stored(outcome["val_probs"]),
                           data.classes).save(
        run.file(VAL_PREDICTIONS_FILE))
    ProvenanceRecord(
        **provenance.collect(),
        dataset={"path": str(Path(config.dataset)), "slug": dataset_slug(config.dataset),
                    "fingerprint": data.fingerprint, "classes": data.classes,
                    "split_file": split_file, "split_seed": config.split_seed,
                    "counts": {k: len(v) for k, v in data.ids.items()}, "skipped_files": len(data.skipped)},
        timings_s=total_timings(invocations),
        wall_time_s=round(sum(inv["wall_time_s"] or 0.0 for inv in invocations), 1),
        details=outcome.get("details", {}),
        invocations=invocations,
    ).save(run.file(PROVENANCE_FILE))
    run.mark_complete(metrics.headline())
    return metrics.headline()


def _invocations(run: RunFolder, started: float) -> list[dict]:
    """Every invocation on record, this one (completing the run now) last."""
    invocations = run.invocations() or [{"started_at": utc_timestamp(started), "resumed": None, "timings_s": {}}]
    invocations[-1].update(outcome="complete", wall_time_s=round(time.time() - started, 1),
                           peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))
    return invocations
