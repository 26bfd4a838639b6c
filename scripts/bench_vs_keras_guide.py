"""Benchmark: this product's run against the pipeline the keras-io transfer-learning guide teaches.

    python scripts/bench_vs_keras_guide.py --data ../shared/data/flower_photos --out benchmarks/vs_keras_guide_flower_photos.json
    python scripts/bench_vs_keras_guide.py --data ../shared/data/flower_photos --full   # the full schedule (long)

Both arms get the same images (the product's split and subsample of the preset), backbone
and ImageNet weights, input size, head, augmentation ranges, class weights, optimiser,
learning rates, epochs and early stopping, and each runs in a fresh process, one after the
other, in one sitting:

* **guide**: ``image_dataset_from_directory`` over the split, augmentation layers inside the
  model (flip, rotation, zoom, brightness, contrast: one random draw per image and epoch),
  ``model.fit`` with the frozen backbone in the loop, then the top layers unfrozen (BatchNorm
  frozen), recompiled at the lower learning rate and fitted again, the way the guide and the
  original study do it;
* **product**: ``python -m core run`` with an empty feature cache (backbone outputs of fixed
  augmented views computed once, stage 1 on pooled features, stage 2 on cached activations).

It records wall time per stage, peak resident memory of each process (``wait4``'s
``ru_maxrss``; the guide's process wall time less the time it spends computing the product's
split, which a guide user would not) and test accuracy with its group-bootstrap interval (the same evaluation
code for both), and prints the ratios. ``--set`` passes run settings to both arms; the guide's
arm takes those its pipeline has (images, size, schedule, learning rates, augmentation ranges,
class weights, head, label smoothing), not the product's own (cached views, stage2_views).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--backbone", default="EfficientNetLite0")
    parser.add_argument("--full", action="store_true", help="the full preset's schedule instead of quick")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a setting for both arms")
    parser.add_argument("--out", default=None)
    parser.add_argument("--guide-worker", default=None, help=argparse.SUPPRESS)  # internal: one arm's process
    args = parser.parse_args()
    if args.guide_worker:
        return _guide_worker(Path(args.guide_worker))

    from core.artifacts.provenance import collect

    preset = "full" if args.full else "quick"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        spec = {"data": args.data, "backbone": args.backbone, "preset": preset, "set": args.set,
                "tree": str(tmp / "tree"), "result": str(tmp / "guide.json")}
        (tmp / "spec.json").write_text(json.dumps(spec))
        product = _product_arm(args, preset, tmp)
        guide = _measure([sys.executable, __file__, "--data", args.data, "--guide-worker", str(tmp / "spec.json")])
        guide.update(json.loads((tmp / "guide.json").read_text()))
        # The guide's process also computes the product's split (to train on the same images): not its cost.
        guide["wall_s"] = round(guide["wall_s"] - guide.pop("same_split_s"), 1)
    prov = collect()
    result = {"dataset": Path(args.data).name, "backbone": args.backbone, "preset": preset, "set": args.set,
              "command": " ".join(["python", "scripts/bench_vs_keras_guide.py", *sys.argv[1:]]),
              "guide": guide, "product": product, "ratios": _ratios(guide, product),
              "machine": prov["machine"], "code": prov["code"], "libraries": prov["libraries"]}
    print(_table(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _measure(cmd: list[str], env: dict | None = None) -> dict:
    """Run ``cmd`` to completion; its wall time and peak resident memory (its own, from ``wait4``)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])}... failed with exit status {proc.returncode}")
    return {"wall_s": round(time.perf_counter() - started, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def _product_arm(args, preset: str, tmp: Path) -> dict:
    from core.artifacts.layout import METRICS_FILE, PROVENANCE_FILE
    from core.artifacts.records import MetricsRecord, ProvenanceRecord

    env = dict(os.environ, STUDY_CACHE=str(tmp / "cache"))
    cmd = [sys.executable, "-m", "core", "run", "--data", args.data, "--backbone", args.backbone, "--preset", preset,
           "--artifacts", str(tmp / "art")]
    for item in args.set:
        cmd += ["--set", item]
    out = _measure(cmd, env)
    run = next(p.parent for p in (tmp / "art").rglob("complete.json"))
    prov = ProvenanceRecord.load(run / PROVENANCE_FILE)
    metrics = MetricsRecord.load(run / METRICS_FILE).to_dict()
    out.update(stages_s=prov.timings_s, test=_headline(metrics), run=run.name)
    return out


def _headline(metrics: dict) -> dict:
    interval = metrics["bootstrap"]["metrics"]["accuracy"]
    return {"accuracy": metrics["accuracy"], "low": interval["low"], "high": interval["high"],
            "unit": metrics["bootstrap"].get("unit", "image")}


def _guide_worker(spec_file: Path) -> int:
    """The guide's pipeline in this process; writes stage times and test metrics to the spec's result file."""
    import numpy as np

    from core.data.prepare import prepare_data
    from core.evaluate.metrics import evaluate
    from core.models.backbones import build_backbone, get_spec
    from core.models.classifier import build_classifier, build_head_layers
    from core.models.preprocess import preprocess
    from core.models.tfkeras import keras
    from core.train import config as config_mod
    from core.train import stages

    started = time.perf_counter()
    spec_data = json.loads(spec_file.read_text())
    config = config_mod.resolve(spec_data["data"], spec_data["backbone"], spec_data["preset"],
                                config_mod.nest(config_mod.parse_overrides(spec_data["set"])))
    data = prepare_data(config, lambda line: None)
    tree = Path(spec_data["tree"])
    for split, ids in data.ids.items():  # the product's split and subsample, as class folders
        for rel, label in zip(ids, data.labels[split]):
            link = tree / split / data.classes[label] / rel.replace("/", "__")
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(data.root / rel)
    same_split_s = time.perf_counter() - started
    backbone = get_spec(config.backbone)
    size = config.input_size or backbone.input_size
    keras.utils.set_random_seed(config.seed)

    def folder(split: str, shuffle: bool):
        return keras.utils.image_dataset_from_directory(
            tree / split, labels="inferred", label_mode="int", class_names=data.classes, image_size=(size, size),
            batch_size=config.batch_size, shuffle=shuffle, seed=config.seed)

    train, val, test = folder("train", True), folder("val", False), folder("test", False)
    aug = config.augment
    augmentation = keras.Sequential(
        ([keras.layers.RandomFlip("horizontal")] if aug.flip else [])
        + [keras.layers.RandomRotation(aug.rotation_deg / 360.0), keras.layers.RandomZoom(aug.zoom),
           keras.layers.RandomBrightness(aug.brightness, value_range=(0, 255)), keras.layers.RandomContrast(aug.contrast)],
        name="augmentation")
    base = build_backbone(backbone, "imagenet", (size, size, 3))
    classifier = build_classifier(base, build_head_layers(len(data.classes), config))
    inputs = keras.Input((size, size, 3))
    x = augmentation(inputs)
    x = keras.layers.Lambda(lambda t: preprocess(t, backbone.entry.preprocessing), name="preprocess")(x)
    model = keras.Model(inputs, classifier(x))
    weights = stages.class_weights(data.labels["train"], len(data.classes)) if config.class_weights else None

    def fit(stage) -> float:
        stop = keras.callbacks.EarlyStopping(patience=stage.patience, restore_best_weights=True)
        started = time.perf_counter()
        model.fit(train, validation_data=val, epochs=stage.epochs, class_weight=weights, callbacks=[stop], verbose=0)
        return round(time.perf_counter() - started, 2)

    stages.freeze_backbone(base)
    stages.compile_model(model, config.stage1, config.label_smoothing)
    times = {"stage1": fit(config.stage1)}
    stages.unfreeze_top(base, config.unfreeze_layers)
    stages.compile_model(model, config.stage2, config.label_smoothing)
    times["stage2"] = fit(config.stage2)
    started = time.perf_counter()
    probs = np.asarray(model.predict(test, verbose=0), dtype=np.float64)
    times["test_inference"] = round(time.perf_counter() - started, 2)
    labels = np.concatenate([y.numpy() for _, y in test])
    rel = {str(tree / "test" / data.classes[y] / r.replace("/", "__")): r for r, y in zip(data.ids["test"], data.labels["test"])}
    groups = data.measured_groups.codes([rel[p] for p in test.file_paths])
    metrics = evaluate(labels, probs, data.classes, seed=config.seed, groups=groups)
    Path(spec_data["result"]).write_text(json.dumps({"stages_s": times, "test": _headline(metrics),
                                                          "same_split_s": round(same_split_s, 2)}))
    return 0


def _ratios(guide: dict, product: dict) -> dict:
    return {"wall_guide_over_product": round(guide["wall_s"] / product["wall_s"], 2),
            "peak_rss_product_over_guide": round(product["peak_rss_mb"] / guide["peak_rss_mb"], 2),
            "accuracy_difference": round(product["test"]["accuracy"] - guide["test"]["accuracy"], 4)}


def _table(result: dict) -> str:
    lines = [f"{result['dataset']}, {result['backbone']}, preset {result['preset']} {' '.join(result['set'])}".rstrip(),
             "", "| arm | wall | stages | peak RSS | test accuracy (95% interval) |", "|---|---|---|---|---|"]
    for name in ("guide", "product"):
        arm = result[name]
        stages_text = ", ".join(f"{k} {v:.0f} s" for k, v in arm["stages_s"].items())
        t = arm["test"]
        lines.append(f"| {name} | {arm['wall_s']:.0f} s | {stages_text} | {arm['peak_rss_mb'] / 1024:.2f} GB | "
                     f"{t['accuracy']:.4f} ({t['low']:.4f}-{t['high']:.4f}) |")
    r = result["ratios"]
    lines.append(f"\nproduct {r['wall_guide_over_product']}x faster end to end; peak memory "
                 f"{r['peak_rss_product_over_guide']}x the guide's; accuracy difference {r['accuracy_difference']:+.4f}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
