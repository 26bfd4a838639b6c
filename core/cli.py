"""Command-line interface: ``python -m core <command>``.

Each command imports what it needs lazily, so ``--help`` and the data commands
start fast and never load TensorFlow. A :class:`core.errors.UserError` becomes one
clear line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import sys
from typing import Sequence

from core.errors import UserError


def format_table(rows: Sequence[Sequence[object]], headers: Sequence[str]) -> str:
    """Render rows as a fixed-width text table with a header rule."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --- backbones -----------------------------------------------------------------

def _cmd_backbones(args: argparse.Namespace) -> int:
    from core import backbones

    rows = []
    for spec in backbones.listed_specs():
        rows.append([
            spec.name,
            "" if spec.alpha is None else f"{spec.alpha:g}",
            f"{spec.input_size}x{spec.input_size}",
            f"{spec.param_count():,}",
            spec.entry.preprocessing,
            spec.weights_source(),
            "yes" if spec.weights_available() else "no",
        ])
    print(format_table(rows, ["backbone", "alpha", "input", "params (no top)", "preprocessing", "ImageNet weights from", "available here"]))
    missing = [s for s in backbones.listed_specs() if not s.weights_available()]
    if missing:
        print()
        print("Weights marked 'no' are not on this machine; see README 'Offline ImageNet weights'.")
    return 0


def _add_backbones(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("backbones", help="list the backbone registry and which ImageNet weights are available here")
    p.set_defaults(func=_cmd_backbones)


# --- audit ---------------------------------------------------------------------

def _cmd_audit(args: argparse.Namespace) -> int:
    raise UserError("the audit command is not implemented yet")


def _add_audit(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="audit an image dataset: duplicates, leakage across splits, conflicting labels, corrupt files, imbalance")
    p.add_argument("root", help="dataset folder (ROOT/<class>/... or ROOT/train|test/<class>/...)")
    p.set_defaults(func=_cmd_audit)


# --- run / experiment ----------------------------------------------------------

def parse_overrides(items: Sequence[str]) -> dict:
    """``["stage1.epochs=5", "augment.views=0"]`` -> nested dict (values parsed as JSON when possible)."""
    import json

    out: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set expects KEY=VALUE, got '{item}'")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def _cmd_run(args: argparse.Namespace) -> int:
    from core import config as config_mod
    from core.runner import execute

    overrides = parse_overrides(args.set or [])
    overrides.update(weights=args.weights, seed=args.seed, method=args.method)
    cfg = config_mod.resolve(args.data, args.backbone, args.preset, overrides)
    execute(cfg, args.artifacts, emit=_emit)
    return 0


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="train and evaluate one backbone on one dataset (resumes an interrupted run)")
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--backbone", required=True, help="registry name, e.g. EfficientNetLite0 or MobileNetV2@0.35")
    p.add_argument("--preset", default="full", help="quick (minutes, subsampled) or full (default)")
    p.add_argument("--weights", default="imagenet", choices=["imagenet", "none"],
                   help="imagenet (transfer learning, default) or none (same architecture from scratch)")
    p.add_argument("--method", default="finetune", choices=["finetune", "logreg", "linear_svm", "knn"],
                   help="finetune the network (default) or a scikit-learn baseline on frozen embeddings")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--artifacts", default=None, help="results folder (default: artifacts/ in the repo)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a setting, e.g. --set stage1.epochs=5 --set augment.views=0 (repeatable)")
    p.set_defaults(func=_cmd_run)


def _cmd_experiment(args: argparse.Namespace) -> int:
    from core.experiment import run_experiment

    return run_experiment(args.file, artifacts=args.artifacts, dry_run=args.dry_run, emit=_emit)


def _add_experiment(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("experiment", help="run a grid from a TOML file, skipping complete runs and resuming others")
    p.add_argument("file", help="experiment file, e.g. experiments/study.toml")
    p.add_argument("--artifacts", default=None, help="results folder (default: the file's, else artifacts/)")
    p.add_argument("--dry-run", action="store_true", help="list the runs and their state without running")
    p.set_defaults(func=_cmd_experiment)


def _cmd_compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from core.compare import compare_dataset
    from core.results import artifacts_dir

    folder = Path(args.dataset)
    if not folder.is_dir():
        folder = Path(args.artifacts or artifacts_dir()) / args.dataset
    result = compare_dataset(folder, alpha=args.alpha)
    rows = [[p["a"], p["b"], p["n_common"], p["n01"], p["n10"],
             "" if p["p_holm"] is None else f"{p['p_holm']:.4g}", "yes" if p["significant"] else "no"]
            for p in result["pairs"]]
    print(format_table(rows, ["run A", "run B", "n", "A wrong, B right", "A right, B wrong", "p (Holm)", "significant"]))
    print(f"\nwritten to {folder / 'mcnemar.json'}")
    return 0


def _add_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="McNemar's test between every pair of complete runs of a dataset")
    p.add_argument("dataset", help="dataset folder under artifacts/ (e.g. flower_photos) or its path")
    p.add_argument("--artifacts", default=None)
    p.add_argument("--alpha", type=float, default=0.05)
    p.set_defaults(func=_cmd_compare)


def _emit(line: str) -> None:
    print(line, flush=True)


# --- entry point ---------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="python -m core",
        description="Transfer-learning study: backbones, datasets, training, evaluation, deployment.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_backbones(sub)
    _add_audit(sub)
    _add_run(sub)
    _add_experiment(sub)
    _add_compare(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            print(f"error: the disk is full ({exc.filename or 'writing results'}); free some space and run the "
                  "same command again to resume", file=sys.stderr)
            return 3
        raise
