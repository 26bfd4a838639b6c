"""Benchmark: wall time of a `quick` run (cold feature cache) and of the committed `full` runs.

    python scripts/bench_runs.py --data ../shared/data/flower_photos ../shared/data/alzheimer_mri

For each dataset it times `python -m core run --preset quick` for the backbone into a
temporary artifacts folder with an empty feature cache (``--no-quick`` skips this), then
reads the stage timings of the complete `full` runs of that backbone from artifacts/
(recorded by the runs themselves in provenance.json), with what a stage-2 epoch showed
(``stage2_views``), the epochs run, the peak memory a run recorded and its test accuracy.
Prints a Markdown table; --out writes JSON.
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
    parser.add_argument("--data", nargs="+", required=True)
    parser.add_argument("--backbone", default="EfficientNetLite0")
    parser.add_argument("--out", default=None)
    parser.add_argument("--no-quick", action="store_true", help="only read the full runs' recorded timings")
    args = parser.parse_args()
    from core.artifacts.config import RunConfig
    from core.artifacts.layout import CONFIG_FILE, METRICS_FILE, PROVENANCE_FILE, artifacts_dir, dataset_slug
    from core.artifacts.provenance import machine
    from core.artifacts.records import ProvenanceRecord
    from core.artifacts.runs import RunFolder

    rows = []
    for data in args.data:
        quick = None
        if not args.no_quick:
            with tempfile.TemporaryDirectory() as tmp:
                env = dict(os.environ, STUDY_CACHE=str(Path(tmp) / "cache"))
                t = time.perf_counter()
                subprocess.run([sys.executable, "-m", "core", "run", "--data", data, "--backbone", args.backbone,
                                "--preset", "quick", "--artifacts", str(Path(tmp) / "art")],
                               cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
                quick = time.perf_counter() - t
        for run in sorted((artifacts_dir() / dataset_slug(data) / args.backbone).glob("full-*")):
            if not RunFolder(run).is_complete():
                continue
            config = RunConfig.load(run / CONFIG_FILE)
            if config.method != "finetune":
                continue  # baselines: no network training to time
            prov = ProvenanceRecord.load(run / PROVENANCE_FILE)
            timings = prov.timings_s
            stage = prov.details.get("stage2") or prov.details.get("scratch") or {}
            metrics = json.loads((run / METRICS_FILE).read_text())
            rows.append({"dataset": dataset_slug(data), "run": run.name, "quick_s": None if quick is None else round(quick, 1),
                         "full_s": round(sum(timings.values()), 1), "full_timings_s": timings,
                         "stage2_views": config.stage2_views, "tuned_from": config.tuned_from,
                         "epochs_run": stage.get("epochs_run"), "test_accuracy": metrics["accuracy"],
                         "peak_rss_mb": (prov.invocations or [{}])[-1].get("peak_rss_mb")})
        if quick is not None:
            print(f"{dataset_slug(data)}: quick {quick:.0f} s")
    print("\n| dataset | full run | stage-2 epoch shows | quick run (cold cache) | full run (sum of stages) | features "
          "| stage 1 | stage 2 / scratch (epochs) | test inference | peak RSS | test accuracy |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        t = r["full_timings_s"]
        quick = "" if r["quick_s"] is None else f"{r['quick_s']:.0f} s"
        rss = "" if r["peak_rss_mb"] is None else f"{r['peak_rss_mb'] / 1024:.2f} GB"
        print(f"| {r['dataset']} | {r['run']} | {'one view' if r['stage2_views'] == 'one' else 'all views'} | {quick} | {r['full_s'] / 60:.1f} min | "
              f"{t.get('features', 0):.0f} s | {t.get('stage1', 0):.0f} s | "
              f"{t.get('stage2', t.get('scratch', 0)):.0f} s ({r['epochs_run']}) | {t.get('test_inference', 0):.0f} s "
              f"| {rss} | {r['test_accuracy']:.4f} |")
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows, "machine": machine()}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
