"""Is a run's validation accuracy held down by its BatchNorm moving statistics?

    python scripts/diagnose_batchnorm.py artifacts/flower_photos/EfficientNetLite0/full-scratch-s0-610323e3

Needs the run's model.keras (not committed: re-run the run's command to rebuild it) and
the dataset. Scores the run's validation split three ways:

- ``inference``: as trained and evaluated (moving statistics, what the run reported);
- ``batch_statistics``: training-mode forward passes over the shuffled split, each batch
  normalised by its own statistics (no weights change);
- ``reestimated``: moving statistics replaced by their average over ``--train-images``
  training images (:func:`core.models.batchnorm.reestimate_batchnorm_statistics`), then inference.

If the last two are far above the first, the weights learned something the moving
statistics hide. The result is written, with provenance, to
``artifacts/<dataset>/diagnostics/batchnorm-<backbone>-<run id>.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.artifacts import provenance
from core.artifacts.layout import find_dataset  # noqa: E402
from core.artifacts.runs import RunFolder  # noqa: E402
from core.artifacts.storage import atomic_write_json, read_json  # noqa: E402
from core.data.dataset import SplitAssignment  # noqa: E402
from core.models.backbones import get_spec  # noqa: E402
from core.models.batchnorm import reestimate_batchnorm_statistics  # noqa: E402
from core.models.preprocess import load_batch  # noqa: E402


def accuracy(model, x: np.ndarray, y: np.ndarray, batch_size: int, training_mode: bool) -> dict:
    probs = np.concatenate([model(x[i:i + batch_size], training=training_mode).numpy()
                            for i in range(0, len(x), batch_size)])
    pred = probs.argmax(axis=1)
    return {"accuracy": round(float((pred == y).mean()), 4),
            "predicted_per_class": np.bincount(pred, minlength=probs.shape[1]).tolist()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--train-images", type=int, default=640, help="training images for re-estimation")
    parser.add_argument("--seed", type=int, default=0, help="which training images are drawn, dropout's draws")
    args = parser.parse_args(argv)

    from core.models.tfkeras import keras

    if args.train_images < 1:
        parser.error("--train-images must be at least 1")
    run = RunFolder(args.run_dir.resolve())
    if not run.is_complete() or not run.file("model.keras").is_file():
        parser.error(f"{args.run_dir} is not a complete run with its model.keras")
    config = run.read_config()
    prov = read_json(run.file("provenance.json"))
    split = SplitAssignment.from_dict(read_json(run.path / prov["dataset"]["split_file"]))
    classes = prov["dataset"]["classes"]
    spec = get_spec(config.backbone)
    root = find_dataset(config.dataset, run.path)
    if root is None:
        parser.error(f"the run's dataset {config.dataset} is not on this machine")
    batch_size = config.batch_size

    def load(paths: list[str]) -> np.ndarray:
        return load_batch([str(root / p) for p in paths], spec, config.input_size)

    started = time.perf_counter()
    val = [(path, label) for path, label, s in split.items if s == "val"]
    rng = np.random.default_rng(args.seed)
    # Shuffled: the split lists images by class, and a one-class batch has class-specific statistics.
    val = [val[i] for i in rng.permutation(len(val))]
    x_val, y_val = load([p for p, _ in val]), np.array([classes.index(label) for _, label in val])
    model = keras.models.load_model(run.file("model.keras"), compile=False)
    keras.utils.set_random_seed(args.seed)  # training-mode passes apply dropout: the same draw every time
    result = {"inference": accuracy(model, x_val, y_val, batch_size, False),
              "batch_statistics": accuracy(model, x_val, y_val, batch_size, True)}
    train = [path for path, _, s in split.items if s == "train"]
    chosen = [train[i] for i in rng.choice(len(train), min(args.train_images, len(train)), replace=False)]
    x_train = load(chosen)
    used = reestimate_batchnorm_statistics(
        model, (x_train[i:i + batch_size] for i in range(0, len(x_train), batch_size)))
    result["reestimated"] = {**accuracy(model, x_val, y_val, batch_size, False),
                             "train_images": len(chosen), "batches": used, "draw_seed": args.seed}
    doc = {
        "schema_version": 1,
        "kind": "batchnorm_diagnosis",
        "run": run.path.name, "backbone": config.backbone, "weights": config.weights,
        "split": "val", "val_images": len(val), "classes": classes,
        "note": ("inference = how the run itself was validated and tested"
                 + (f"; this run validated on at most {config.max_eval_per_class} images per class, the "
                    "diagnosis scores the whole val split" if config.max_eval_per_class else "")),
        "results": result,
        "seconds": round(time.perf_counter() - started, 1),
        "provenance": provenance.collect(),
        "command": f"python scripts/diagnose_batchnorm.py {args.run_dir} --train-images {args.train_images} "
                   f"--seed {args.seed}",
    }
    out = run.path.parent.parent / "diagnostics" / f"batchnorm-{config.backbone}-{run.path.name}.json"
    atomic_write_json(out, doc)
    for mode, r in result.items():
        print(f"{mode:>17}: val accuracy {r['accuracy']:.3f}, predicted per class {r['predicted_per_class']}")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
