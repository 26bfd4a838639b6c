"""Benchmark: server-side render time of every report page on the committed artifacts.

    python scripts/bench_pages.py [--repeat 5] [--out benchmarks/pages.json]

Each page is rendered with streamlit.testing.v1.AppTest: once cold (first load, caches
empty) and then --repeat times warm (st.cache_data filled, as for a reader clicking
around); the median warm time and the cold time are reported. Target: under 1 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
PAGES = ["overview", "data", "training", "per_class", "roc_pr", "calibration", "deployment", "significance",
         "methods", "export"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    from streamlit.testing.v1 import AppTest

    from core.artifacts.layout import artifacts_dir
    from core.artifacts.provenance import machine

    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=120)
    t = time.perf_counter()
    at.run()
    first = time.perf_counter() - t
    rows = []
    for page in PAGES:
        t = time.perf_counter()
        at.switch_page(f"pages/{page}.py").run()
        cold = time.perf_counter() - t
        if at.exception:
            raise SystemExit(f"{page}: {at.exception[0].value}")
        warm = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            at.run()
            warm.append(time.perf_counter() - t)
        rows.append({"page": page, "cold_s": round(cold, 3), "warm_median_s": round(statistics.median(warm), 3)})
    print(f"app start (first script run): {first:.2f} s; artifacts: {artifacts_dir()}")
    print("| page | first view (s) | cached (median of %d, s) |" % args.repeat)
    print("|---|---|---|")
    for r in rows:
        print(f"| {r['page']} | {r['cold_s']:.2f} | {r['warm_median_s']:.2f} |")
    if args.out:
        Path(args.out).write_text(json.dumps({"first_run_s": round(first, 3), "pages": rows, "machine": machine(),
                                              "artifacts": str(artifacts_dir())}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
