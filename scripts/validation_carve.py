"""How many images, and how many groups of near-copies, of each class would validation get?

    python scripts/validation_carve.py ../shared/data/alzheimer_mri --fractions 0.15 0.2 0.25 0.3

Before choosing ``val_fraction`` (or ``split_seed``) for a dataset with a rare class: the
validation split is carved by whole groups (the run's own grouping, ``duplicates`` by default),
so a class with few groups gets few validation images, or one big group of one subject's
slices. The groups count matters more than the images: near-copies of one image are one
example, not many. Prints, for each fraction and split seed, each class's validation images
and groups (and what train keeps); ``--out FILE.json`` stores the table. Nothing is trained
and nothing under artifacts/ is written. The same settings as ``python -m core run`` apply
(``--set grouping=...``, ``--set duplicate_threshold=...``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.artifacts.storage import utc_timestamp  # noqa: E402
from core.data.dataset import discover  # noqa: E402
from core.data.prepare import make_grouping  # noqa: E402
from core.data.splits import make_splits  # noqa: E402
from core.errors import UserError  # noqa: E402
from core.train import config as config_mod  # noqa: E402


def carve_table(dataset: str, fractions: list[float], seeds: list[int], overrides: dict | None = None,
                emit=print) -> list[dict]:
    """One row per (fraction, split seed, class): the class's validation and train images and groups."""
    config = config_mod.resolve(dataset, "EfficientNetLite0", "full", overrides or {})
    index = discover(config.dataset)
    grouping, _ = make_grouping(config, index, emit)
    rows = []
    for fraction in fractions:
        for seed in seeds:
            split = make_splits(index, fraction, config.test_fraction, seed,
                                None if grouping.source == "none" else grouping, config.split_policy,
                                config.val_folder)
            for label in sorted({lab for _, lab, _ in split.items}):
                mine = {s: [p for p, lab, where in split.items if lab == label and where == s]
                        for s in ("train", "val")}
                groups = {s: split.groups_of(paths) for s, paths in mine.items()}
                rows.append({"val_fraction": fraction, "split_seed": seed, "class": label,
                             "val_images": len(mine["val"]),
                             "val_groups": None if groups["val"] is None else len(set(groups["val"])),
                             "train_images": len(mine["train"]),
                             "train_groups": None if groups["train"] is None else len(set(groups["train"]))})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", help="class-per-folder dataset (predefined train/ and test/ folders kept)")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.15, 0.2, 0.25, 0.3],
                        help="val_fraction values to try (default 0.15 0.2 0.25 0.3)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 0, 1, 2, 3],
                        help="split seeds to try (default 42, the runs' own, then 0 1 2 3)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a run setting, as `python -m core run --set` (e.g. grouping=none)")
    parser.add_argument("--out", default=None, help="also write the table as JSON here")
    args = parser.parse_args(argv)
    try:
        overrides = config_mod.parse_overrides(args.set)
        rows = carve_table(args.dataset, args.fractions, args.seeds, overrides, emit=lambda line: print(line))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{'val_fraction':>12} {'seed':>5}  {'class':24s} {'val images':>10} {'val groups':>10} "
          f"{'train images':>12} {'train groups':>12}")
    for r in rows:
        print(f"{r['val_fraction']:>12} {r['split_seed']:>5}  {r['class']:24s} {r['val_images']:>10} "
              f"{str(r['val_groups']):>10} {r['train_images']:>12} {str(r['train_groups']):>12}")
    if args.out:
        Path(args.out).write_text(json.dumps({"created_at": utc_timestamp(), "dataset": args.dataset,
                                              "settings": args.set, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
