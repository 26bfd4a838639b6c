"""Benchmark: one grid of quick runs locally, then on local Ray with 1 and with 2 workers, in one sitting.

    python scripts/bench_ray.py --data ../shared/data/flower_photos --out benchmarks/ray.json

Each mode runs the same grid (EfficientNet-Lite0, quick preset shortened by --set, one run
per seed) in a fresh process, into its own temporary artifacts folder with an empty feature
cache, so no mode reuses another's work. Local: ``python -m core experiment`` (one run after
the other, TensorFlow on every core). Ray: a local Ray instance with 1 or 2 CPUs and one
CPU per run (TensorFlow on one thread per run). Prints the wall times and their ratios to
the local one; --out writes them as JSON with the machine.
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
SHORT = {"stage1.epochs": 4, "stage2.epochs": 1, "max_train_per_class": 20, "max_eval_per_class": 10}


def grid_file(folder: Path, data: str, seeds: int) -> Path:
    """The benchmark grid: quick EfficientNet-Lite0 runs, one per seed, shortened by SHORT."""
    from core.orchestrate.experiment import grid_toml

    path = folder / "grid.toml"
    text = grid_toml(folder / "art", [str(Path(data).resolve())], ["EfficientNetLite0"], "imagenet", 0, "quick", SHORT)
    path.write_text(text.replace("seeds = [0]", f"seeds = {list(range(seeds))}"))
    return path


def one_mode(grid: str, workers: int) -> int:
    """Run the grid in this process: locally (workers 0) or on a local Ray instance with that many CPUs."""
    if workers == 0:
        from core.orchestrate.experiment import run_experiment

        return run_experiment(grid)
    import ray

    from core.orchestrate import distributed

    ray.init(num_cpus=workers, include_dashboard=False)
    try:
        return distributed.run_experiment_on_ray(grid, options=distributed.RayOptions(cpus_per_run=1))
    finally:
        ray.shutdown()


def timed_mode(data: str, seeds: int, workers: int) -> dict:
    """Wall time of the grid in a fresh process, a fresh artifacts folder and an empty feature cache."""
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        grid = grid_file(Path(tmp), data, seeds)
        env = dict(os.environ, STUDY_CACHE=str(Path(tmp) / "cache"))
        load_before = os.getloadavg()[0]  # other work on the machine shares its cores
        started = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--one", str(grid), "--workers", str(workers)], cwd=REPO, env=env,
                       check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        log = [json.loads(line) for line in (Path(tmp) / "art" / "experiment_log.jsonl").read_text().splitlines()]
    last = log[-1]
    return {"mode": "local" if workers == 0 else f"ray, {workers} worker{'s' * (workers > 1)}", "workers": workers,
            "wall_s": round(wall, 1), "sitting_wall_s": last["wall_time_s"], "run_time_s": last.get("run_time_s"),
            "runs": last["runs"], "failed": last["failed"],
            "load_1min_before": round(load_before, 2), "load_1min_after": round(os.getloadavg()[0], 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="dataset folder")
    parser.add_argument("--seeds", type=int, default=4, help="runs in the grid (one per seed; default 4)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one mode in this process
    parser.add_argument("--workers", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        return one_mode(args.one, args.workers)
    if not args.data:
        parser.error("--data is required")
    from core.artifacts.provenance import machine

    rows = []
    for workers in (0, 1, 2):
        rows.append(timed_mode(args.data, args.seeds, workers))
        print(f"{rows[-1]['mode']}: {rows[-1]['wall_s']:.1f} s", flush=True)
    local = rows[0]["wall_s"]
    for row in rows:
        row["ratio_to_local"] = round(row["wall_s"] / local, 2)
    print("\n| mode | wall time | ratio to local | summed run time |\n|---|---|---|---|")
    for r in rows:
        summed = "" if r["run_time_s"] is None else f"{r['run_time_s']:.0f} s"
        print(f"| {r['mode']} | {r['wall_s']:.0f} s | {r['ratio_to_local']:.2f} | {summed} |")
    if args.out:
        doc = {"command": f"python scripts/bench_ray.py --data {args.data} --seeds {args.seeds}",
               "grid": {"backbone": "EfficientNetLite0", "preset": "quick", "set": SHORT, "runs": args.seeds},
               "rows": rows, "machine": machine()}
        Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
        print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
