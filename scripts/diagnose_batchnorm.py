"""Is a run's validation accuracy held down by its BatchNorm moving statistics?

    python scripts/diagnose_batchnorm.py artifacts/alzheimer_mri/EfficientNetLite0/full-scratch-s0-610323e3

Needs the run's model.keras and the dataset. model.keras is not committed: re-run the
run's command with another ``--artifacts`` folder to rebuild it (same config, same run
id), then point this script at the rebuilt run and at the repository's artifacts::

    python -m core run ... --artifacts /tmp/rebuild
    python scripts/diagnose_batchnorm.py /tmp/rebuild/flower_photos/EfficientNetLite0/RUN_ID --artifacts artifacts

Scores the run's validation split three ways:

- ``inference``: as trained and evaluated (moving statistics, what the run reported);
- ``batch_statistics``: training-mode forward passes over the shuffled split, each batch
  normalised by its own statistics (no weights change);
- ``reestimated``: moving statistics replaced by their average over ``--train-images``
  training images (:func:`core.models.batchnorm.reestimate_batchnorm_statistics`: dropout
  off during the passes), then inference.

If the last two are far above the first, the weights learned something the moving
statistics hide. The result is written, with provenance, to
``<artifacts>/<dataset>/diagnostics/batchnorm-<backbone>-<run id>.json``, ``<artifacts>``
being ``--artifacts`` or else the folder the run is in. When ``<artifacts>`` holds the same
run (dataset, backbone, run id) in another folder, the diagnosed model is a rebuild of it:
the result says so and records both runs' own validation and test accuracy.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.artifacts import provenance  # noqa: E402
from core.artifacts.layout import (  # noqa: E402
    METRICS_FILE,
    MODEL_FILE,
    PROVENANCE_FILE,
    diagnostics_file,
    find_dataset,
)
from core.artifacts.records import BatchNormDiagnosis, MetricsRecord, ProvenanceRecord, SplitRecord  # noqa: E402
from core.artifacts.runs import RunFolder  # noqa: E402
from core.data.splits import SplitAssignment  # noqa: E402
from core.models.backbones import get_spec  # noqa: E402
from core.models.batchnorm import reestimate_batchnorm_statistics  # noqa: E402
from core.models.loading import load_model  # noqa: E402
from core.models.preprocess import load_batch  # noqa: E402
from core.train.config import reproduce_command  # noqa: E402


def accuracy(model, x: np.ndarray, y: np.ndarray, batch_size: int, training_mode: bool) -> dict:
    probs = np.concatenate([model(x[i:i + batch_size], training=training_mode).numpy()
                            for i in range(0, len(x), batch_size)])
    pred = probs.argmax(axis=1)
    return {"accuracy": round(float((pred == y).mean()), 4),
            "predicted_per_class": np.bincount(pred, minlength=probs.shape[1]).tolist()}


def run_scores(run: RunFolder) -> dict:
    """A complete run's own scores: validation accuracy at the epoch it kept, test accuracy."""
    metrics = MetricsRecord.load(run.file(METRICS_FILE))
    details = ProvenanceRecord.load(run.file(PROVENANCE_FILE)).details or {}
    out = {"test_accuracy": round(float(metrics.accuracy), 4), "test_images": metrics.n}
    stage = next((s for s in ("scratch", "stage2", "stage1") if "best_epoch" in (details.get(s) or {})), None)
    if stage is not None:
        best = details[stage]["best_epoch"]
        row = next((r for r in run.read_history() if r["stage"] == stage and int(r["epoch"]) == best), None)
        out.update(stage=stage, best_epoch=best, epochs_run=details[stage].get("epochs_run"),
                   val_accuracy=round(float(row["val_accuracy"]), 4) if row and row.get("val_accuracy") else None)
    return out


def model_origin(run: RunFolder, stored: RunFolder) -> dict:
    """Where the diagnosed model comes from: the stored run itself, or a rebuild of it."""
    if stored.path.resolve() == run.path.resolve() or not stored.is_complete():
        return {"rebuilt": False, "run_scores": run_scores(run)}
    rebuilt, original = run_scores(run), run_scores(stored)
    same = all(rebuilt.get(k) == original.get(k) for k in ("val_accuracy", "test_accuracy"))
    return {"rebuilt": True,
            "how": ("model.keras is not committed: the model was rebuilt by re-running the run's command "
                    "(same config, same run id) into another artifacts folder; the diagnosis scores the rebuild"),
            "rebuild_command": reproduce_command(run.read_config().to_dict(), artifacts=str(run.path.parents[2])),
            "rebuilt_run": rebuilt, "stored_run": original,
            "note": ("the rebuilt run's own scores equal the stored run's" if same else
                     "the rebuilt run's own scores differ from the stored run's: this diagnosis describes the "
                     "rebuilt model, not the stored one")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--train-images", type=int, default=640, help="training images for re-estimation")
    parser.add_argument("--seed", type=int, default=0, help="which images are drawn, dropout's draws")
    parser.add_argument("--artifacts", type=Path, default=None,
                        help="artifacts folder to write the diagnosis into (default: the one the run is in); "
                             "if it holds the same run elsewhere, the diagnosed model is recorded as its rebuild")
    args = parser.parse_args(argv)

    from core.models.tfkeras import keras

    if args.train_images < 1:
        parser.error("--train-images must be at least 1")
    run = RunFolder(args.run_dir.resolve())
    if not run.is_complete() or not run.file(MODEL_FILE).is_file():
        parser.error(f"{args.run_dir} is not a complete run with its model.keras")
    config = run.read_config()
    prov = ProvenanceRecord.load(run.file(PROVENANCE_FILE))
    split = SplitAssignment.from_dict(SplitRecord.load(run.path / prov.split_file).to_dict())
    classes = prov.dataset["classes"]
    spec = get_spec(config.backbone)
    root = find_dataset(config.dataset, run.path)
    if root is None:
        parser.error(f"the run's dataset {config.dataset} is not on this machine")
    batch_size = config.batch_size
    artifacts = (args.artifacts or run.path.parents[2]).resolve()
    dataset = run.path.parents[1].name  # the dataset's folder under artifacts/
    if not (artifacts / dataset).is_dir():
        parser.error(f"{artifacts} has no folder {dataset}: not the artifacts folder of this run's dataset")
    out = diagnostics_file(artifacts / dataset, config.backbone, run.path.name)
    stored = RunFolder(artifacts / dataset / config.backbone / run.path.name)

    def load(paths: list[str]) -> np.ndarray:
        return load_batch([str(root / p) for p in paths], spec, config.input_size)

    started = time.perf_counter()
    val = [(path, label) for path, label, s in split.items if s == "val"]
    rng = np.random.default_rng(args.seed)
    # Shuffled: the split lists images by class, and a one-class batch has class-specific statistics.
    val = [val[i] for i in rng.permutation(len(val))]
    x_val, y_val = load([p for p, _ in val]), np.array([classes.index(label) for _, label in val])
    model = load_model(run.file(MODEL_FILE))
    keras.utils.set_random_seed(args.seed)  # batch_statistics runs with dropout on: the same draws every time
    result = {"inference": accuracy(model, x_val, y_val, batch_size, False),
              "batch_statistics": accuracy(model, x_val, y_val, batch_size, True)}
    train = [path for path, _, s in split.items if s == "train"]
    chosen = [train[i] for i in rng.choice(len(train), min(args.train_images, len(train)), replace=False)]
    x_train = load(chosen)
    used = reestimate_batchnorm_statistics(
        model, (x_train[i:i + batch_size] for i in range(0, len(x_train), batch_size)))
    result["reestimated"] = {**accuracy(model, x_val, y_val, batch_size, False),
                             "train_images": len(chosen), "batches": used, "draw_seed": args.seed}
    doc = BatchNormDiagnosis(
        kind="batchnorm_diagnosis",
        run=run.path.name, backbone=config.backbone, weights=config.weights,
        split="val", val_images=len(val), classes=classes,
        note=("inference = how the run itself was validated and tested"
                 + (f"; this run validated on at most {config.max_eval_per_class} images per class, the "
                    "diagnosis scores the whole val split" if config.max_eval_per_class else "")),
        results=result,
        model=model_origin(run, stored),
        seconds=round(time.perf_counter() - started, 1),
        provenance=provenance.collect(),
        command=f"python scripts/diagnose_batchnorm.py {args.run_dir} --train-images {args.train_images} "
                f"--seed {args.seed}" + (f" --artifacts {args.artifacts}" if args.artifacts else ""),
    )
    doc.save(out)
    for mode, r in result.items():
        print(f"{mode:>17}: val accuracy {r['accuracy']:.3f}, predicted per class {r['predicted_per_class']}")
    if doc.model["rebuilt"]:
        print(f"model rebuilt: {doc.model['note']} (rebuilt {doc.model['rebuilt_run']}, "
              f"stored {doc.model['stored_run']})")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
