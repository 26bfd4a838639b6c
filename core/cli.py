"""Command-line interface: ``python -m core <command>``.

Each command imports what it needs lazily, so ``--help`` and the data commands
start fast and never load TensorFlow. A :class:`core.errors.UserError` becomes one
clear line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
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
        print("interrupted", file=sys.stderr)
        return 130
