"""Benchmark: stage 1 from cached backbone outputs against the naive loop.

The naive loop trains the head with the frozen backbone inside the model, so every
epoch runs the backbone over every image again. The cached way runs the backbone
once per image (core.train.features) and trains the head on its outputs. Same images, same
epochs, same batch size, same head, in one process:

    python scripts/bench_stage1.py --data ../shared/data/flower_photos --images 400 --epochs 10

Prints the wall times and ratios and writes them as JSON (--out).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--backbone", default="EfficientNetLite0")
    parser.add_argument("--images", type=int, default=400, help="training images (stratified subset)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", default=None, help="write the results JSON here")
    args = parser.parse_args()

    os.environ["STUDY_CACHE"] = tempfile.mkdtemp(prefix="bench-cache-")  # a cold cache
    from core.artifacts.provenance import collect
    from core.data.prepare import prepare_data
    from core.models.backbones import build_backbone, get_spec
    from core.models.classifier import build_classifier, build_head_layers, build_head_model
    from core.models.tfkeras import keras
    from core.train import config as config_mod
    from core.train import features as feat
    from core.train import stages as training
    from core.train.pipeline import make_dataset

    spec = get_spec(args.backbone)
    n_classes_guess = max(1, len([p for p in Path(args.data).iterdir() if p.is_dir()]))
    per_class = max(1, args.images // n_classes_guess)
    cfg = config_mod.resolve(args.data, args.backbone, "full", {
        "max_train_per_class": per_class, "max_eval_per_class": max(1, per_class // 4), "augment": {"views": 0},
        "stage1": {"epochs": args.epochs, "patience": args.epochs + 1}, "batch_size": args.batch_size})
    data = prepare_data(cfg, emit=lambda line: None)
    size = spec.input_size
    k = len(data.classes)
    n_train, n_val = len(data.ids["train"]), len(data.ids["val"])
    print(f"{args.backbone}: {n_train} train + {n_val} val images, {args.epochs} epochs, batch {args.batch_size}")

    def head_fit(model, x, y, val):
        model.fit(x, y, validation_data=val, epochs=args.epochs, batch_size=args.batch_size, verbose=0)

    # Naive: the frozen backbone runs inside every epoch.
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    base = build_backbone(spec, "imagenet")
    training.freeze_backbone(base)
    classifier = build_classifier(base, build_head_layers(k, cfg))
    training.compile_model(classifier, cfg.stage1)
    train_ds = make_dataset(data.abs_paths("train"), data.labels["train"], spec, args.batch_size, shuffle=True)
    val_ds = make_dataset(data.abs_paths("val"), data.labels["val"], spec, args.batch_size)
    t = time.perf_counter()
    classifier.fit(train_ds, validation_data=val_ds, epochs=args.epochs, verbose=0)
    naive = time.perf_counter() - t
    print(f"naive loop:              {naive:8.1f} s")

    # Cached: backbone once per image, then the head on its outputs.
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    base = build_backbone(spec, "imagenet")
    training.freeze_backbone(base)
    head_layers = build_head_layers(k, cfg)
    extractor = feat.FeatureExtractor(base, spec, size, None)
    t = time.perf_counter()
    x = {}
    for split in ("train", "val"):
        key = feat.FeatureKey(data.fingerprint, spec.name, "imagenet", size, spec.entry.preprocessing, None, 0)
        x[split] = feat.compute(extractor, key, data.root, data.ids[split], cfg.augment, args.batch_size)["pooled"]
    extract = time.perf_counter() - t
    head = build_head_model(x["train"].shape[1], head_layers)
    training.compile_model(head, cfg.stage1)
    t = time.perf_counter()
    head_fit(head, x["train"], data.labels["train"], (x["val"], data.labels["val"]))
    head_only = time.perf_counter() - t
    cold = extract + head_only
    print(f"cached, cold cache:      {cold:8.1f} s  (extraction {extract:.1f} s + head {head_only:.1f} s)")
    print(f"cached, warm cache:      {head_only:8.1f} s")
    print(f"speed-up cold: {naive / cold:5.1f}x   warm: {naive / head_only:7.1f}x")
    result = {"benchmark": "stage1_cached_vs_naive", "backbone": args.backbone, "data": args.data,
              "train_images": n_train, "val_images": n_val, "epochs": args.epochs, "batch_size": args.batch_size,
              "naive_s": round(naive, 2), "cached_cold_s": round(cold, 2), "extraction_s": round(extract, 2),
              "cached_warm_s": round(head_only, 2), "speedup_cold": round(naive / cold, 2),
              "speedup_warm": round(naive / head_only, 2), **collect()}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
