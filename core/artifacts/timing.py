"""Machine time from the stored records: estimates for a new run or its deployment, and the time on record.

Reads stored records only (no TensorFlow).
"""

from __future__ import annotations

from pathlib import Path

from core.artifacts.config import RunConfig
from core.artifacts.layout import (
    ARCHITECTURES_DIR,
    CONFIG_FILE,
    DEPLOYMENT_FILE,
    EXPERIMENT_LOG,
    PROVENANCE_FILE,
    artifacts_dir,
    complete_runs,
    deployment_file,
)
from core.artifacts.records import DeploymentRecord, ProvenanceRecord, RecordError, read_experiment_log, readable


def estimate_seconds(backbone: str, preset: str, weights: str, n_images: int, root: Path | None = None) -> float | None:
    """Wall time of a run estimated from complete runs of the same kind stored here (None if none).

    Scales the median seconds per image of earlier runs of this backbone, preset and
    weights (all their recorded stage timings) by the new dataset's image count.
    """
    per_image = []
    for run in complete_runs(Path(root or artifacts_dir())):
        try:
            cfg = RunConfig.load(run / CONFIG_FILE).to_dict()
            prov = ProvenanceRecord.load(run / PROVENANCE_FILE)
        except RecordError:
            continue  # the leaderboard lists it as unreadable; an estimate does without it
        if (cfg["backbone"], cfg["preset"], cfg["weights"], cfg.get("method")) != (backbone, preset, weights, "finetune"):
            continue
        images = sum((prov.dataset or {}).get("counts", {}).values())
        seconds = sum(prov.timings_s.values())
        if images and seconds:
            per_image.append(seconds / images)
    if not per_image:
        return None
    per_image.sort()
    return per_image[len(per_image) // 2] * n_images


def estimate_deploy_seconds(backbone: str, root: Path | None = None) -> float | None:
    """Wall time of measuring a run's deployment variants, the median over earlier deployed runs of this
    backbone stored here (their variants' recorded timings); None if none was deployed."""
    totals = []
    for run in complete_runs(Path(root or artifacts_dir())):
        path = deployment_file(run)
        if run.parent.name != backbone or not path.is_file():
            continue
        try:
            variants = DeploymentRecord.load(path).variants
        except RecordError:
            continue
        total = sum(float((v.get("timings_s") or {}).get("total") or 0) for v in variants)
        if total:
            totals.append(total)
    return sorted(totals)[len(totals) // 2] if totals else None


def machine_time(root: Path | None = None) -> dict:
    """Machine time on record, in seconds: training stages, deployment measurements, experiment sittings."""
    root = Path(root or artifacts_dir())
    training = sum(sum(readable(ProvenanceRecord, run / PROVENANCE_FILE, ProvenanceRecord(
        code={}, libraries={}, machine={}, dataset={})).timings_s.values()) for run in complete_runs(root))
    deployment = 0.0
    for path in [deployment_file(run) for run in complete_runs(root)] + list(root.glob(f"{ARCHITECTURES_DIR}/*/{DEPLOYMENT_FILE}")):
        if not path.is_file():
            continue
        for v in readable(DeploymentRecord, path, DeploymentRecord(kind="unreadable")).variants:
            timings = v.get("timings_s") or {}
            deployment += timings.get("total", sum(timings.values()))
    sittings: dict[str, float] = {}
    for n, entry in enumerate(read_experiment_log(root / EXPERIMENT_LOG)):
        # One entry per run finished in a sitting: its last (largest) wall time counts.
        key = entry.get("sitting") or f"line-{n}"
        sittings[key] = max(sittings.get(key, 0.0), entry.get("wall_time_s", 0.0))
    return {"training_s": training, "deployment_s": deployment, "experiment_sittings_s": sum(sittings.values()),
            "sittings": len(sittings)}
