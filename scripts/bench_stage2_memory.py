"""Benchmark: stage 2's peak memory and speed as the number of training images grows.

    python scripts/bench_stage2_memory.py --images 1000 2000 4000 8000 --out benchmarks/stage2_memory.json

Stage 2 trains the backbone's top layers on cached activations of its frozen lower part
(EfficientNet-Lite0 at 224 px, the top 20 layers unfrozen, as in a full run, with its
ImageNet weights). For each number of training images N the script writes synthetic
activations of the cut layer's shape for the original and two augmented views (float16,
as the cache holds them) into a temporary feature store, then trains ``--steps`` batches
of 32 in a fresh process, two ways:

* ``in memory``: the first runs' way, every view's array loaded and concatenated, then
  ``model.fit`` on the arrays;
* ``streamed``: this version's way (``core.train.pipeline.cached_dataset``), each batch's rows
  read from the store file when it is needed.

It records each process's peak resident memory (``wait4``'s ``ru_maxrss``), its anonymous
resident memory sampled after every batch, and training throughput (samples per second over the steps after the first). The values are random:
memory and speed do not depend on them.
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

VIEWS = 3
BATCH = 32
UNFREEZE = 20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, nargs="+", default=[1000, 2000, 4000, 8000])
    parser.add_argument("--steps", type=int, default=40, help="training batches per measurement")
    parser.add_argument("--out", default=None)
    parser.add_argument("--worker", nargs=4, default=None, help=argparse.SUPPRESS)  # mode store n steps
    args = parser.parse_args()
    if args.worker:
        mode, store, n, steps = args.worker
        return _worker(mode, Path(store), int(n), int(steps))

    from core.artifacts.provenance import collect

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.images:
            store = Path(tmp) / f"n{n}"
            _write_stores(store, n)
            for mode in ("in memory", "streamed"):
                result = _measure(mode, store, n, args.steps)
                rows.append({"images": n, "samples": n * VIEWS, "mode": mode, **result})
                print(f"N={n:>6} {mode:>9}: peak RSS {result['peak_rss_mb']:.0f} MB (anonymous while training "
                      f"{result['peak_anon_mb_while_training']:.0f} MB), {result['samples_per_s']:.0f} samples/s")
            for view in range(VIEWS):
                (store / f"view{view}.npz").unlink()
    prov = collect()
    out = {"rows": rows, "steps": args.steps, "batch": BATCH, "views": VIEWS, "unfrozen_layers": UNFREEZE,
           "command": " ".join(["python", "scripts/bench_stage2_memory.py", *sys.argv[1:]]),
           "machine": prov["machine"], "code": prov["code"], "libraries": prov["libraries"]}
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


def _upper():
    """Lite0's layers above the cut of a full run's stage 2, and the cut activation's shape."""
    from core.models.backbones import build_backbone, get_spec
    from core.models.classifier import build_classifier, build_head_layers
    from core.models.tfkeras import keras
    from core.train import stages
    from core.train.config import resolve

    spec = get_spec("EfficientNetLite0")
    base = build_backbone(spec, "imagenet", (spec.input_size, spec.input_size, 3))
    classifier = build_classifier(base, build_head_layers(5, resolve(".", spec.name)))
    unfrozen = stages.unfreeze_top(base, UNFREEZE)
    cut = stages.find_cut_layer(base, unfrozen[0])
    upper = keras.Model(base.get_layer(cut).output, classifier.output)
    return upper, tuple(base.get_layer(cut).output.shape[1:])


def _write_stores(folder: Path, n: int) -> None:
    """Random float16 activations of the cut layer's shape, one store per view, written 1000 rows at a time."""
    import numpy as np

    from core.train import features

    shape = json.loads(subprocess.run([sys.executable, __file__, "--worker", "shape", "-", "0", "0"], cwd=REPO,
                                      check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
    rng = np.random.default_rng(0)
    for view in range(VIEWS):
        cached: dict = {}
        for start in range(0, n, 1000):
            rows = min(1000, n - start)
            values = rng.standard_normal((rows, *shape), dtype=np.float32).astype(np.float16)
            cached = features._merge(folder / f"view{view}.npz", cached, [str(i) for i in range(start, start + rows)],
                                     [values])


def _measure(mode: str, store: Path, n: int, steps: int) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as result:
        proc = subprocess.Popen([sys.executable, __file__, "--worker", mode, str(store), str(n), str(steps)], cwd=REPO,
                                stdout=open(result.name, "w"))
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"the {mode} worker for {n} images failed")
        out = json.loads(Path(result.name).read_text().strip().splitlines()[-1])
    return {"peak_rss_mb": round(usage.ru_maxrss / 1024, 1), **out}


def _worker(mode: str, store: Path, n: int, steps: int) -> int:
    import numpy as np

    from core.models.tfkeras import keras
    from core.train import features
    from core.train.pipeline import cached_dataset, training_order

    upper, shape = _upper()
    if mode == "shape":
        print(json.dumps(list(shape)))
        return 0
    upper.compile(optimizer=keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy")
    labels = np.random.default_rng(1).integers(0, 5, size=n).astype(np.int32)
    stores = [features._load(store / f"view{v}.npz") for v in range(VIEWS)]
    views = [features.CachedRows(s["values"], np.arange(n)) for s in stores]
    timer = _StepTimer()
    if mode == "in memory":
        x = np.concatenate([np.asarray(v) for v in views])
        y = np.concatenate([labels] * VIEWS)
        upper.fit(x, y, batch_size=BATCH, epochs=1, steps_per_epoch=steps, shuffle=True, verbose=0,
                  callbacks=[timer])
    else:
        ds = cached_dataset(views, labels, BATCH, training_order(n, VIEWS, 0, 0, "all"))
        upper.fit(ds, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[timer])
    times = np.diff(timer.ends)
    print(json.dumps({"samples_per_s": round(BATCH / float(np.median(times)), 1), "steps": steps,
                      "peak_anon_mb_while_training": round(timer.peak_anon_mb, 1)}))
    return 0


def _rss_anon_mb() -> float:
    """This process's anonymous resident memory (not file pages), from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return 0.0


class _StepTimer:
    """A Keras callback recording when each training batch ends (built lazily: Keras loads on demand)."""

    def __new__(cls):
        from core.models.tfkeras import keras

        class Timer(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.ends: list[float] = []

                self.peak_anon_mb = 0.0

            def on_train_batch_end(self, batch, logs=None):
                self.ends.append(time.perf_counter())
                self.peak_anon_mb = max(self.peak_anon_mb, _rss_anon_mb())

        return Timer()


if __name__ == "__main__":
    raise SystemExit(main())
