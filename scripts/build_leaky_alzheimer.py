"""Build the pre-augmented Alzheimer MRI set the original study trained on, outside the repository.

    python scripts/build_leaky_alzheimer.py --source ../shared/data/alzheimer_mri --out ../lesson_data/alzheimer_mri_augmented

The public "augmented" version of the Alzheimer MRI dataset was made by augmenting every
training image *before* any split, so a random image-level split puts copies of one scan on
both sides. This script makes that set again from the original (non-augmented) images with
the original study's own Keras settings::

    ImageDataGenerator(rotation_range=360, width_shift_range=0.1, height_shift_range=0.1,
                       shear_range=0.1, zoom_range=0.1, horizontal_flip=True, vertical_flip=True)

Layout of ``--out`` (a class-per-folder dataset with predefined splits)::

    train/<class>/<stem>__orig.jpg      the source image, re-encoded
    train/<class>/<stem>__aug<k>.jpg    its k-th augmented copy (k = 1 .. --copies)
    test/<class>/<file>                 the untouched predefined test images, byte for byte

Only the training images are augmented; the test split stays the dataset's own, so both of
the lesson's runs are scored on images no augmentation touched. ``--per-class`` caps the source
images per class (drawn with ``--seed``) so that the runs stay practical on a small machine;
the copies of one source share its ``<stem>``, which the group-aware run uses as its group::

    --set "grouping=regex:^(train/[^/]+/.+)__(?:orig|aug[0-9]+)[.]jpg$"

The folder also gets ``BUILD.json`` (source fingerprint, settings, counts): the dataset's
discovery reads only class folders, so it does not count as an image.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.data.dataset import discover, fingerprint  # noqa: E402

# The original study's augmentation, as its notebook constructed the generator.
ORIGINAL_STUDY_AUGMENTATION = dict(rotation_range=360, width_shift_range=0.1, height_shift_range=0.1,
                                   shear_range=0.1, zoom_range=0.1, horizontal_flip=True, vertical_flip=True)
GROUP_PATTERN = r"^(train/[^/]+/.+)__(?:orig|aug[0-9]+)[.]jpg$"


def build(source: Path, out: Path, copies: int, per_class: int | None, seed: int, emit=print) -> dict:
    """Write the augmented set to ``out`` (which must not exist or be empty); return its BUILD.json record."""
    from PIL import Image

    from core.models.tfkeras import keras

    index = discover(str(source))
    train = [r for r in index.records if r.split == "train"]
    test = [r for r in index.records if r.split == "test"]
    if not train or not test:
        raise SystemExit(f"{source} needs predefined train/ and test/ folders (the original Alzheimer MRI layout)")
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} exists and is not empty: choose another --out or remove it")
    rng = np.random.default_rng(seed)
    chosen = []
    for label in index.classes:
        records = sorted((r for r in train if r.label == label), key=lambda r: r.path)
        if per_class is not None and len(records) > per_class:
            records = [records[i] for i in sorted(rng.choice(len(records), per_class, replace=False))]
        chosen += records
    generator = keras.preprocessing.image.ImageDataGenerator(**ORIGINAL_STUDY_AUGMENTATION)
    started = time.time()
    for n, record in enumerate(chosen, 1):
        with Image.open(source / record.path) as img:
            image = np.asarray(img.convert("L"), dtype=np.float32)[..., None]
        folder = out / "train" / record.label
        folder.mkdir(parents=True, exist_ok=True)
        stem = Path(record.path).stem
        _save(image, folder / f"{stem}__orig.jpg")
        for k in range(1, copies + 1):
            transformed = generator.random_transform(image, seed=int(rng.integers(2**31)))
            _save(transformed, folder / f"{stem}__aug{k}.jpg")
        if n % 200 == 0 or n == len(chosen):
            emit(f"{n}/{len(chosen)} source images ({time.time() - started:.0f} s)")
    for record in test:
        target = out / record.path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / record.path, target)
    built = discover(str(out))
    record = {
        "schema_version": 1,
        "tool": "scripts/build_leaky_alzheimer.py",
        "source": {"path": str(source), "fingerprint": fingerprint(index)},
        "augmentation": {"keras": "tf_keras.preprocessing.image.ImageDataGenerator", **ORIGINAL_STUDY_AUGMENTATION},
        "copies_per_image": copies, "per_class": per_class, "seed": seed,
        "source_images": {label: sum(r.label == label for r in chosen) for label in index.classes},
        "images": {"train": sum(r.split == "train" for r in built.records),
                   "test": sum(r.split == "test" for r in built.records)},
        "fingerprint": fingerprint(built),
        "group_pattern": GROUP_PATTERN,
    }
    (out / "BUILD.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return record


def _save(image: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(np.clip(image[..., 0], 0, 255).astype(np.uint8), mode="L").save(path, quality=95)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default="../shared/data/alzheimer_mri",
                        help="the original Alzheimer MRI folder with train/ and test/ (default ../shared/data/alzheimer_mri)")
    parser.add_argument("--out", default="../lesson_data/alzheimer_mri_augmented",
                        help="where to write the augmented set, outside the repository (default "
                             "../lesson_data/alzheimer_mri_augmented: experiments/leakage_lesson.toml's data root)")
    parser.add_argument("--copies", type=int, default=3, help="augmented copies per source image (default 3)")
    parser.add_argument("--per-class", type=int, default=250,
                        help="at most this many source images per class (default 250; 0: all)")
    parser.add_argument("--seed", type=int, default=0, help="draws the sources and the augmentations (default 0)")
    args = parser.parse_args(argv)
    out = Path(args.out).expanduser().resolve()
    repo = Path(__file__).resolve().parents[1]
    if out == repo or repo in out.parents:
        raise SystemExit("--out must be outside the repository (datasets are never committed)")
    if args.copies < 1:
        raise SystemExit("--copies must be at least 1")
    if args.per_class < 0:
        raise SystemExit("--per-class must be 0 (all) or more")
    if out.exists() and not out.is_dir():
        raise SystemExit(f"--out {out} is a file, not a folder")
    record = build(Path(args.source).expanduser(), out, args.copies, args.per_class or None, args.seed)
    print(json.dumps({k: record[k] for k in ("source_images", "images", "fingerprint")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
