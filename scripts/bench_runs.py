"""Benchmark: wall time of a `quick` run (cold feature cache) and of the committed `full` runs.

    python scripts/bench_runs.py --data ../shared/data/flower_photos ../shared/data/alzheimer_mri

For each dataset it times `python -m core run --preset quick` for the backbone into a
temporary artifacts folder with an empty feature cache, then reads the stage timings of
the complete `full` runs of that backbone from artifacts/ (recorded by the runs
themselves in provenance.json). Prints a Markdown table; --out writes JSON.
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
    args = parser.parse_args()
    from core.artifacts.config import RunConfig
    from core.artifacts.layout import CONFIG_FILE, PROVENANCE_FILE, artifacts_dir, dataset_slug
    from core.artifacts.provenance import machine
    from core.artifacts.records import ProvenanceRecord
    from core.artifacts.runs import RunFolder

    rows = []
    for data in args.data:
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
            if RunConfig.load(run / CONFIG_FILE).method != "finetune":
                continue  # baselines: no network training to time
            timings = ProvenanceRecord.load(run / PROVENANCE_FILE).timings_s
            rows.append({"dataset": dataset_slug(data), "run": run.name, "quick_s": round(quick, 1),
                         "full_s": round(sum(timings.values()), 1), "full_timings_s": timings})
        print(f"{dataset_slug(data)}: quick {quick:.0f} s")
    print("\n| dataset | full run | quick run (cold cache) | full run (sum of stages) | features | stage 1 | stage 2 / scratch | test inference |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        t = r["full_timings_s"]
        print(f"| {r['dataset']} | {r['run']} | {r['quick_s']:.0f} s | {r['full_s'] / 60:.1f} min | "
              f"{t.get('features', 0):.0f} s | {t.get('stage1', 0):.0f} s | "
              f"{t.get('stage2', t.get('scratch', 0)):.0f} s | {t.get('test_inference', 0):.0f} s |")
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows, "machine": machine()}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
