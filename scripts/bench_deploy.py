"""Benchmark: full-integer int8 against float32 TFLite for deployed runs, against the issue's targets.

    python scripts/bench_deploy.py artifacts/flower_photos/EfficientNetLite0/full-imagenet-s0-0eb5b721 [RUN_DIR ...]

For each run it reads ``deploy/deployment.json`` (running ``python -m core deploy`` first
when it is missing or lacks one of the two variants) and prints, as a Markdown table,
for full-integer int8 (``tflite_int8_full``, per-channel weight scales; also
``tflite_int8_per_tensor`` when measured):

* bytes of ``tflite_int8_full`` / bytes of ``tflite_float32``      target <= 0.27
* 1-thread median latency, int8 / float32 (LiteRT, batch 1)        target <= 0.6
* test accuracy, int8 minus float32, in percentage points          target within 1 pp

The latencies in deployment.json were timed one variant after the other, minutes
apart; on a shared machine the load may differ between them. ``--paired N`` times the
two stored ``.tflite`` files again, alternating one ``invoke()`` of each for N rounds
(1 thread, batch 1, a synthetic preprocessed image: the latency of these dense models
does not depend on the pixel values), and reports that ratio next to the stored one.

``--out FILE`` also writes the figures as JSON (with the machine and load average of
each latency figure).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TARGETS = {"size_ratio": 0.27, "latency_ratio": 0.6, "accuracy_pp": 1.0}
NEEDED = ("tflite_float32", "tflite_int8_full")
INT8_VARIANTS = ("tflite_int8_full", "tflite_int8_per_tensor")


def _variants(doc: dict) -> dict:
    return {v["name"]: v for v in doc.get("variants", [])}


def load_or_measure(run_dir: Path, measure: bool = True) -> dict:
    """The run's deployment.json, measuring the two variants first when they are missing."""
    from core.artifacts.layout import COMPLETE_MARKER, deployment_file
    from core.artifacts.records import DeploymentRecord
    from core.deploy import measure as deploy

    path = deployment_file(run_dir)
    doc = DeploymentRecord.load(path).to_dict() if path.is_file() else {}
    missing = [n for n in NEEDED if (_variants(doc).get(n) or {}).get("status") != "ok"]
    if missing and measure:
        if (run_dir / COMPLETE_MARKER).is_file():
            print(f"{run_dir}: measuring {', '.join(missing)} first (python -m core deploy)", file=sys.stderr)
        doc = deploy.deploy_run(run_dir, emit=lambda line: print(line, file=sys.stderr, flush=True), only=missing)
    return doc


def compare(doc: dict, int8: str = "tflite_int8_full") -> dict:
    """int8 / float32 figures and whether each target is met (None where not measured)."""
    v = _variants(doc)
    f32, i8 = v.get("tflite_float32") or {}, v.get(int8) or {}
    out = {"run": doc.get("source"), "backbone": doc.get("backbone"), "int8_variant": int8,
           "float32_bytes": f32.get("bytes"),
           "int8_bytes": i8.get("bytes"), "size_ratio": None, "latency_ratio": None, "accuracy_pp": None}
    if f32.get("bytes") and i8.get("bytes"):
        out["size_ratio"] = i8["bytes"] / f32["bytes"]
    l32 = ((f32.get("latency") or {}).get("threads_1") or {})
    l8 = ((i8.get("latency") or {}).get("threads_1") or {})
    out.update(float32_ms=l32.get("median_ms"), int8_ms=l8.get("median_ms"),
               load_average=[l32.get("load_average_1min"), l8.get("load_average_1min")])
    if l32.get("median_ms") and l8.get("median_ms"):
        out["latency_ratio"] = l8["median_ms"] / l32["median_ms"]
    a32, a8 = (f32.get("metrics") or {}).get("accuracy"), (i8.get("metrics") or {}).get("accuracy")
    out.update(float32_accuracy=a32, int8_accuracy=a8)
    if a32 is not None and a8 is not None:
        out["accuracy_pp"] = (a8 - a32) * 100
    out["met"] = {
        "size_ratio": None if out["size_ratio"] is None else out["size_ratio"] <= TARGETS["size_ratio"],
        "latency_ratio": None if out["latency_ratio"] is None else out["latency_ratio"] <= TARGETS["latency_ratio"],
        "accuracy_pp": None if out["accuracy_pp"] is None else abs(out["accuracy_pp"]) <= TARGETS["accuracy_pp"],
    }
    out["machine"] = i8.get("machine") or doc.get("machine")
    return out


def paired(run_dir: Path, doc: dict, rounds: int, int8: str = "tflite_int8_full") -> dict:
    """int8 / float32 1-thread latency timed alternately from the stored TFLite files."""
    from core.artifacts.layout import deploy_dir
    from core.deploy import latency as lat
    from core.deploy.source import synthetic_images
    from core.models.backbones import get_spec

    v = _variants(doc)
    models = {name: lat.LiteModel((deploy_dir(run_dir) / v[name]["file"]).read_bytes(), 1)
              for name in ("tflite_float32", int8)}
    sample = synthetic_images(1, doc["input_size"], get_spec(doc["backbone"]).entry.preprocessing, 0)[0]
    stats = lat.paired_latency(models, sample, rounds, 5)
    return {"float32_ms": stats["tflite_float32"]["median_ms"], "int8_ms": stats[int8]["median_ms"],
            "latency_ratio": stats[int8]["median_ms"] / stats["tflite_float32"]["median_ms"],
            "rounds": rounds, "load_average": stats["tflite_float32"]["load_average_1min"]}


def _fmt(value, fmt: str, met, unit: str = "") -> str:
    if value is None:
        return "not measured"
    return f"{value:{fmt}}{unit} ({'met' if met else 'MISSED'})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--no-measure", action="store_true", help="only read deployment.json; never measure")
    parser.add_argument("--paired", type=int, default=0, metavar="N",
                        help="also time int8 and float32 alternately for N rounds (fair ratio under changing load)")
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    from core.errors import UserError

    rows = []
    for run in args.runs:
        try:
            doc = load_or_measure(Path(run), measure=not args.no_measure)
            for int8 in INT8_VARIANTS:
                if int8 != "tflite_int8_full" and (_variants(doc).get(int8) or {}).get("status") != "ok":
                    continue
                row = compare(doc, int8)
                if args.paired and row["latency_ratio"] is not None:
                    row["paired"] = paired(Path(run), doc, args.paired, int8)
                rows.append(row)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    print(f"| run | int8 / float32 bytes (<= {TARGETS['size_ratio']}) | int8 / float32 median ms, 1 thread "
          f"(<= {TARGETS['latency_ratio']}) | int8 - float32 accuracy (within {TARGETS['accuracy_pp']:g} pp) |")
    print("|---|---|---|---|")
    paired_lines = []
    for r in rows:
        size = _fmt(r["size_ratio"], ".3f", r["met"]["size_ratio"])
        if r["size_ratio"] is not None:
            size = f"{r['int8_bytes'] / 1e6:.2f} / {r['float32_bytes'] / 1e6:.2f} MB = {size}"
        speed = _fmt(r["latency_ratio"], ".2f", r["met"]["latency_ratio"])
        if r["latency_ratio"] is not None:
            speed = f"{r['int8_ms']:.2f} / {r['float32_ms']:.2f} ms = {speed}"
        acc = _fmt(r["accuracy_pp"], "+.2f", r["met"]["accuracy_pp"], " pp")
        if r["accuracy_pp"] is not None:
            acc = f"{r['int8_accuracy']:.4f} vs {r['float32_accuracy']:.4f}: {acc}"
        print(f"| {r['backbone']} {r['run']} {r['int8_variant']} | {size} | {speed} | {acc} |")
        if r.get("paired"):
            p = r["paired"]
            met = "met" if p["latency_ratio"] <= TARGETS["latency_ratio"] else "MISSED"
            paired_lines.append(f"{r['backbone']} {r['run']} {r['int8_variant']}: timed alternately "
                                f"({p['rounds']} rounds, load average {p['load_average']}): int8 {p['int8_ms']:.2f} ms / float32 {p['float32_ms']:.2f} ms "
                                f"= {p['latency_ratio']:.2f} ({met})")
    for line in paired_lines:
        print("\n" + line)
    if args.out:
        Path(args.out).write_text(json.dumps({"targets": TARGETS, "runs": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
