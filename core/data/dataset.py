"""Image-folder datasets: discovery, decoding, fingerprints and train/val/test splits.

This module is light on purpose (numpy, Pillow, scikit-learn; never TensorFlow), so
the data commands and the audit start fast.

Two layouts are recognised, and :func:`discover` tells them apart:

``class_folders``
    ``ROOT/<class>/**/<image>``: one folder per class, no split given.
``predefined_splits``
    ``ROOT/train/<class>/...`` plus ``ROOT/test/<class>/...`` and/or
    ``ROOT/val/<class>/...`` (``validation/`` and ``valid/`` are read as ``val``).

Images are files ending in one of :data:`IMAGE_EXTENSIONS` (any case), found
recursively inside a class folder. Hidden files and folders (name starting with
``.``) are ignored everywhere; other files at the top of ROOT or of a split folder
(``LICENSE.txt``, ``README.md``) are ignored too, while non-image files *inside* a
class folder are listed in :attr:`DatasetIndex.skipped` with the reason. All lists
are sorted, so the same folder always gives the same index.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
from PIL import Image, ImageOps

from core.errors import DatasetError, ImageDecodeError

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
SPLITS = ("train", "val", "test")
LAYOUT_CLASS_FOLDERS = "class_folders"
LAYOUT_PREDEFINED = "predefined_splits"
# Folder names at ROOT that mark a predefined split, and the split they mean.
SPLIT_DIR_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                   "validation": "val", "test": "test", "testing": "test"}

Progress = Callable[[int, int], None]


# --- index -----------------------------------------------------------------------

@dataclass(frozen=True)
class ImageRecord:
    """One image: ``path`` relative to the dataset root with ``/`` separators."""

    path: str
    label: str
    split: str | None = None  # the predefined split ("train"/"val"/"test"), or None


@dataclass
class DatasetIndex:
    """What :func:`discover` found in a dataset folder."""

    root: Path
    layout: str
    classes: list[str]
    records: list[ImageRecord]
    skipped: list[tuple[str, str]]  # (relative path, reason)
    problems: list[str]  # human-readable warnings: empty classes, classes missing in a split, ...
    # Every class folder seen as (split, label); kept to recompute problems after filtering.
    class_dirs: list[tuple[str | None, str]] = field(default_factory=list, repr=False)
    notes: list[str] = field(default_factory=list, repr=False)  # warnings found while scanning

    @property
    def warnings(self) -> list[str]:
        """Alias of :attr:`problems`."""
        return self.problems

    def abspath(self, record: ImageRecord | str) -> Path:
        """Absolute path of a record (or of a relative path)."""
        rel = record.path if isinstance(record, ImageRecord) else record
        return self.root / Path(*rel.split("/"))

    def splits(self) -> list[str]:
        """Predefined splits present, in train/val/test order (empty for class folders)."""
        present = {r.split for r in self.records if r.split}
        return [s for s in SPLITS if s in present]

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per predefined split (``"all"`` for class folders) per class."""
        out: dict[str, dict[str, int]] = {}
        for rec in self.records:
            per = out.setdefault(rec.split or "all", {c: 0 for c in self.classes})
            per[rec.label] = per.get(rec.label, 0) + 1
        order = list(SPLITS) + ["all"]
        return {k: out[k] for k in sorted(out, key=order.index)}

    def without(self, bad: Mapping[str, str]) -> "DatasetIndex":
        """A copy with the records in ``bad`` (path -> reason) moved to :attr:`skipped`."""
        if not bad:
            return self
        records = [r for r in self.records if r.path not in bad]
        skipped = sorted(self.skipped + [(p, str(reason)) for p, reason in bad.items()])
        return _assemble(self.root, self.layout, records, skipped, self.class_dirs, self.notes)


def discover(root: str | os.PathLike, validate: bool = True, progress: Progress | None = None,
             workers: int | None = None) -> DatasetIndex:
    """Scan a dataset folder and return its :class:`DatasetIndex`.

    With ``validate`` every image is really decoded (see :func:`load_image`); the ones
    that fail move to ``skipped`` with the reason. ``progress(done, total)`` is called
    while validating. Raises :class:`DatasetError` when the folder is missing, has no
    class folders, or holds no usable image.
    """
    root_path = _check_root(root)
    layout, tops, notes = _detect_layout(root_path)
    records: list[ImageRecord] = []
    skipped: list[tuple[str, str]] = []
    class_dirs: list[tuple[str | None, str]] = []
    for split, top in tops:
        for label, class_dir in _class_dirs(top, root_path, skipped):
            class_dirs.append((split, label))
            _scan_class_dir(class_dir, root_path, label, split, records, skipped)
    if not class_dirs:
        raise DatasetError(f"no class folders found in {root_path} (expected ROOT/<class>/<images> "
                           "or ROOT/train|test/<class>/<images>)")
    index = _assemble(root_path, layout, records, sorted(skipped), class_dirs, notes)
    if validate:
        index = index.without(validate_images(index, progress=progress, workers=workers))
    return index


def validate_images(index: DatasetIndex, progress: Progress | None = None,
                    workers: int | None = None) -> dict[str, str]:
    """Decode every image of ``index``; return ``{relative path: reason}`` for the failures."""
    def check(rec: ImageRecord) -> str | None:
        try:
            open_image(index.abspath(rec))
        except ImageDecodeError as exc:
            return exc.reason
        return None

    results = map_parallel(check, index.records, progress=progress, workers=workers)
    return {rec.path: reason for rec, reason in zip(index.records, results) if reason}


def _check_root(root: str | os.PathLike) -> Path:
    path = Path(root).expanduser()
    if not path.exists():
        raise DatasetError(f"data folder not found: {path}")
    if not path.is_dir():
        kind = "is a file, not a folder" if path.is_file() else "is not a folder"
        raise DatasetError(f"{path} {kind}: give the dataset folder (ROOT/<class>/<images>)")
    return path.resolve()


def _visible_entries(folder: Path) -> list[os.DirEntry]:
    """Non-hidden entries of ``folder``, sorted by name."""
    with os.scandir(folder) as it:
        return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)


def _detect_layout(root: Path) -> tuple[str, list[tuple[str | None, Path]], list[str]]:
    """Return the layout, the (split, folder) pairs that hold class folders, and notes."""
    dirs = [e for e in _visible_entries(root) if e.is_dir()]
    split_dirs: dict[str, list[str]] = {}
    for e in dirs:
        split = SPLIT_DIR_NAMES.get(e.name.lower())
        if split:
            split_dirs.setdefault(split, []).append(e.name)
    train = split_dirs.get("train")
    if not train or not any(x.is_dir() for x in _visible_entries(root / train[0])):
        _refuse_split_folders_as_classes(root, dirs, split_dirs)
        return LAYOUT_CLASS_FOLDERS, [(None, root)], []
    notes, tops = [], []
    for split in SPLITS:
        names = split_dirs.get(split, [])
        if len(names) > 1:
            notes.append(f"several folders mean the {split} split ({', '.join(names)}); only '{names[0]}' is used")
        if names:
            tops.append((split, root / names[0]))
    used = {names[0] for names in split_dirs.values()}
    for e in dirs:
        if e.name not in used:
            notes.append(f"folder '{e.name}' ignored: not a split folder (train/val/test)")
    return LAYOUT_PREDEFINED, tops, notes


def _refuse_split_folders_as_classes(root: Path, dirs: list[os.DirEntry], split_dirs: dict[str, list[str]]) -> None:
    """Class-folder layout, but the folders look like splits: training on them would learn 'train vs test'."""
    if split_dirs:
        names = sorted(n for group in split_dirs.values() for n in group)
        raise DatasetError(
            f"{root} has split folder(s) {', '.join(names)} but no train/ folder with class folders in it, so they "
            "would be read as classes. Use ROOT/<class>/<images> (splits made for you) or ROOT/train/<class>/... "
            "with test/ (and optionally val/) beside it.")
    if len(dirs) < 2:
        return
    inner = []
    for e in dirs:
        entries = _visible_entries(Path(e.path))
        if any(not x.is_dir() and _is_image_name(x.name) for x in entries):
            return  # images directly in the folder: a class folder
        inner.append(frozenset(x.name for x in entries if x.is_dir()))
    if inner[0] and all(names == inner[0] for names in inner) and len(inner[0]) >= 2:
        raise DatasetError(
            f"every folder of {root} ({', '.join(e.name for e in dirs)}) holds the same subfolders "
            f"({', '.join(sorted(inner[0]))}): those look like the classes and the top folders like splits. Rename "
            "the split folders train/ and test/ (val/ optional), or point at one folder of class folders.")


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _class_dirs(top: Path, root: Path, skipped: list[tuple[str, str]]) -> list[tuple[str, Path]]:
    """Class folders directly under ``top``; stray images beside them go to ``skipped``."""
    out = []
    for e in _visible_entries(top):
        if e.is_dir():
            out.append((e.name, Path(e.path)))
        elif _is_image_name(e.name):
            skipped.append((_rel(Path(e.path), root), "image outside any class folder"))
    return out


def _scan_class_dir(class_dir: Path, root: Path, label: str, split: str | None,
                    records: list[ImageRecord], skipped: list[tuple[str, str]]) -> None:
    """Add the images under ``class_dir`` (recursively, symlinked folders too, each real folder once) to ``records``."""
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a link loop, or two links to one folder
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            rel = _rel(Path(dirpath) / name, root)
            if _is_image_name(name):
                records.append(ImageRecord(rel, label, split))
            else:
                ext = os.path.splitext(name)[1].lower() or "none"
                skipped.append((rel, f"not an image file (extension '{ext}')"))


def _assemble(root: Path, layout: str, records: list[ImageRecord], skipped: list[tuple[str, str]],
              class_dirs: list[tuple[str | None, str]], notes: list[str]) -> DatasetIndex:
    """Build the index: sort, derive the classes and the problems."""
    records = sorted(records, key=lambda r: r.path)
    if not records:
        hint = f" ({len(skipped)} file(s) skipped, e.g. {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise DatasetError(f"no usable images found in {root}{hint}")
    classes = sorted({r.label for r in records})
    problems = list(notes) + _record_problems(layout, classes, records, class_dirs)
    return DatasetIndex(root, layout, classes, records, list(skipped), problems, list(class_dirs), list(notes))


def _record_problems(layout: str, classes: list[str], records: list[ImageRecord],
                     class_dirs: list[tuple[str | None, str]]) -> list[str]:
    """Warnings about empty class folders and classes missing from a split."""
    seen = {(r.split, r.label) for r in records}
    problems = []
    for split, label in sorted(set(class_dirs), key=lambda x: (x[0] or "", x[1])):
        if (split, label) not in seen:
            where = f"{split}/{label}" if split else label
            extra = "" if label in classes else "; the class is ignored"
            problems.append(f"class folder '{where}' has no usable images{extra}")
    if layout == LAYOUT_PREDEFINED:
        splits = [s for s in SPLITS if any(r.split == s for r in records)]
        for label in classes:
            for split in splits:
                if (split, label) not in seen:
                    problems.append(f"class '{label}' has no images in the {split} split")
    return problems


# --- parallel helper -------------------------------------------------------------

def map_parallel(fn: Callable[[Any], Any], items: Sequence[Any], progress: Progress | None = None,
                 workers: int | None = None) -> list[Any]:
    """``[fn(x) for x in items]`` on a small thread pool, in order, reporting progress.

    Pillow releases the GIL while decoding and resizing, so threads use several cores
    without the start-up and pickling costs of processes.
    """
    total = len(items)
    workers = workers or min(4, os.cpu_count() or 1)
    step = max(1, total // 100)
    out = []
    if workers <= 1 or total < 64:
        results: Iterable[Any] = map(fn, items)
        pool = None
    else:
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="images")
        results = pool.map(fn, items, chunksize=1)
    try:
        for i, res in enumerate(results, 1):
            out.append(res)
            if progress and (i % step == 0 or i == total):
                progress(i, total)
    finally:
        if pool:
            pool.shutdown(wait=True, cancel_futures=True)
    return out


# --- decoding ----------------------------------------------------------------------

def open_image(path: str | os.PathLike, draft: tuple[int, int] | None = None,
               content: bytes | None = None) -> Image.Image:
    """Decode an image file fully into an RGB :class:`PIL.Image.Image` (see :func:`load_image`).

    ``draft=(w, h)`` lets JPEG decoding shrink by up to 8x while staying at least that
    big (fast for hashing). ``content`` is the file's bytes when the caller has read
    them already (``path`` then only names the file in messages). Raises
    :class:`ImageDecodeError` with the reason.
    """
    path = Path(path)
    try:
        size = len(content) if content is not None else path.stat().st_size
        if size == 0:
            raise ImageDecodeError(f"cannot decode {path}: empty file (0 bytes)", reason="empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(content) if content is not None else path) as im:
                if draft:
                    im.draft(None, draft)
                im.load()
                im = _exif_transpose(im)
                return to_rgb(im)
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"cannot decode {path}: too large ({exc})", reason=f"too large: {exc}") from None
    except Exception as exc:  # Pillow raises many types (OSError, SyntaxError, ValueError, ...) on bad data
        reason = _decode_reason(exc)
        raise ImageDecodeError(f"cannot decode {path}: {reason}", reason=reason) from None


def load_image(path: str | os.PathLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode an image file to a ``uint8`` array of shape ``(H, W, 3)``, RGB.

    - EXIF orientation is applied, so the array is upright as a viewer shows it.
    - Greyscale (``1``, ``L``) is repeated into three channels; palette, CMYK and
      YCbCr are converted by Pillow.
    - Transparency (``LA``, ``RGBA``, palette with transparency) is composited onto
      **black**: a transparent pixel becomes (0, 0, 0), a half-transparent one half as bright.
    - 16- and 32-bit integer images (``I;16``, ``I;16B``, ``I``) are scaled by their
      effective bit depth, ``b = max(8, bit_length(max value))``: ``v * 255 / (2**b - 1)``.
      A full-range 16-bit image maps 65535 to 255; 12-bit data stored in 16 bits
      (medical scans) maps 4095 to 255 instead of coming out nearly black. Negative
      values are shifted up first. Nothing is clipped.
    - Float images (``F``): values in [0, 1] are multiplied by 255, values in
      [0, 255] are kept, anything else is min-max scaled to [0, 255]; NaN becomes 0.
    - Animated or multi-page files give their first frame.

    ``size=(height, width)`` resizes bilinearly. Corrupt, truncated or non-image
    files raise :class:`ImageDecodeError`.
    """
    im = open_image(path)
    if size is not None:
        h, w = int(size[0]), int(size[1])
        if h <= 0 or w <= 0:
            raise ValueError(f"size must be positive (height, width), got {size}")
        if (w, h) != im.size:
            im = im.resize((w, h), Image.Resampling.BILINEAR)
    return np.array(im, dtype=np.uint8)


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert a decoded Pillow image of any mode to RGB (rules in :func:`load_image`)."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in im.info
        im = im.convert("RGBA" if has_alpha else "RGB")
        mode = im.mode
        if mode == "RGB":
            return im
    if mode in ("LA", "La", "RGBA", "RGBa", "PA"):
        rgba = im.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("RGB")
    if mode.startswith("I"):  # I, I;16, I;16L, I;16B, I;16N
        return _gray_array_to_rgb(_scale_integers(np.asarray(im)))
    if mode == "F":
        return _gray_array_to_rgb(_scale_floats(np.asarray(im)))
    try:
        return im.convert("RGB")  # 1, L, CMYK, YCbCr, RGBX, HSV, ...
    except Exception as exc:
        raise ImageDecodeError(f"unsupported image mode {mode}: {exc}", reason=f"unsupported image mode {mode}") from None


def _scale_integers(arr: np.ndarray) -> np.ndarray:
    """Scale integer pixel values to uint8 by their effective bit depth (no clipping)."""
    a = arr.astype(np.int64)
    if a.size == 0:
        return a.astype(np.uint8)
    lo = int(a.min())
    if lo < 0:
        a = a - lo
    top = (1 << max(8, int(a.max()).bit_length())) - 1
    return ((a * 255 + top // 2) // top).astype(np.uint8)


def _scale_floats(arr: np.ndarray) -> np.ndarray:
    """Scale float pixel values to uint8: [0,1] -> x255, [0,255] kept, else min-max."""
    a = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if lo >= 0 and hi <= 1:
        a = a * 255.0
    elif not (lo >= 0 and hi <= 255):
        a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def _gray_array_to_rgb(gray: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2)), "RGB")


def _exif_transpose(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a broken EXIF block is ignored, not fatal."""
    try:
        return ImageOps.exif_transpose(im) or im
    except Exception:
        return im


def _decode_reason(exc: BaseException) -> str:
    """A short human reason for a decoding failure."""
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"unreadable file ({exc.strerror or text})"
    if isinstance(exc, Image.UnidentifiedImageError):
        return "not a recognised image format"
    if "truncated" in text.lower():
        return f"truncated file ({text})"
    return f"corrupt image ({type(exc).__name__}: {text})"


# --- fingerprint -------------------------------------------------------------------

def file_sha256(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk_size), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint(index: DatasetIndex, file_hashes: Mapping[str, str] | None = None) -> str:
    """SHA-256 over the sorted (relative path, label, split, file SHA-256) of every record.

    ``file_hashes`` (relative path -> hex SHA-256) avoids reading files twice when the
    caller has hashed them already. Renaming, relabelling, moving between splits or
    editing any image changes the fingerprint; the root's location does not.
    """
    file_hashes = file_hashes or {}
    h = hashlib.sha256()
    for rec in sorted(index.records, key=lambda r: (r.path, r.label, r.split or "")):
        digest = file_hashes.get(rec.path) or file_sha256(index.abspath(rec))
        h.update(json.dumps([rec.path, rec.label, rec.split or "", digest]).encode("utf-8") + b"\n")
    return h.hexdigest()


# --- splits ------------------------------------------------------------------------

@dataclass
class SplitAssignment:
    """The train/val/test split of every image, reproducible from the seed.

    ``items`` holds ``(relative path, label, split)`` sorted by path. ``sources`` says
    for each split whether it was ``"predefined"`` by the folder layout or
    ``"stratified"`` (made here with scikit-learn and the seed).
    """

    seed: int
    val_fraction: float
    test_fraction: float
    layout: str
    items: list[tuple[str, str, str]]
    sources: dict[str, str] = field(default_factory=dict)
    dataset_fingerprint: str | None = None

    def split_of(self, path: str) -> str:
        """The split of one relative path."""
        return self._by_path()[path]

    def paths(self, split: str) -> list[str]:
        """Relative paths in ``split``, sorted."""
        return [p for p, _, s in self.items if s == split]

    def labelled(self, split: str) -> list[tuple[str, str]]:
        """``(relative path, label)`` pairs in ``split``, sorted by path."""
        return [(p, lab) for p, lab, s in self.items if s == split]

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per split per class: ``{"train": {"cat": 10, ...}, "val": ..., "test": ...}``."""
        classes = sorted({lab for _, lab, _ in self.items})
        out = {s: {c: 0 for c in classes} for s in SPLITS}
        for _, lab, s in self.items:
            out[s][lab] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data; :meth:`from_dict` reads it back."""
        return {
            "seed": self.seed,
            "val_fraction": self.val_fraction,
            "test_fraction": self.test_fraction,
            "layout": self.layout,
            "sources": dict(self.sources),
            "dataset_fingerprint": self.dataset_fingerprint,
            "items": [{"path": p, "label": lab, "split": s} for p, lab, s in self.items],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SplitAssignment":
        """Inverse of :meth:`to_dict`."""
        items = [(d["path"], d["label"], d["split"]) for d in data["items"]]
        return cls(int(data["seed"]), float(data["val_fraction"]), float(data["test_fraction"]),
                   str(data["layout"]), sorted(items), dict(data.get("sources", {})),
                   data.get("dataset_fingerprint"))

    def _by_path(self) -> dict[str, str]:
        cache = self.__dict__.get("_path_cache")
        if cache is None or len(cache) != len(self.items):
            cache = {p: s for p, _, s in self.items}
            self.__dict__["_path_cache"] = cache
        return cache


def min_class_size(val_fraction: float, test_fraction: float) -> int:
    """Fewest images a class needs so each split with a non-zero fraction gets one."""
    fractions = [1.0 - val_fraction - test_fraction] + [f for f in (val_fraction, test_fraction) if f > 0]
    return max([len(fractions)] + [math.ceil(1.0 / f - 1e-9) for f in fractions])


def make_splits(index: DatasetIndex, val_fraction: float = 0.15, test_fraction: float = 0.15,
                seed: int = 42) -> SplitAssignment:
    """Assign every record of ``index`` to ``train``, ``val`` or ``test``, deterministically.

    - ``class_folders``: stratified by class with scikit-learn's ``train_test_split``
      and ``seed``: first ``test_fraction`` of all images, then ``val_fraction`` of all
      images out of the rest.
    - ``predefined_splits``: the folders' splits are kept. A split the layout lacks
      (usually val) is carved out of the predefined train set, stratified, with its
      fraction taken *of the train set*.

    Raises :class:`DatasetError` when a class has too few images to give each split
    at least one (see :func:`min_class_size`) or when the fractions are out of range.
    """
    _check_fractions(val_fraction, test_fraction)
    sources: dict[str, str] = {}
    if index.layout == LAYOUT_PREDEFINED:
        present = set(index.splits())
        pool = [r for r in index.records if r.split == "train"]
        vf = 0.0 if "val" in present else val_fraction
        tf = 0.0 if "test" in present else test_fraction
        assigned = {r.path: r.split for r in index.records if r.split != "train"}
        assigned.update(_stratified_split(pool, vf, tf, seed, where=" in the train split"))
        for s in SPLITS:
            carved = (s == "val" and vf > 0) or (s == "test" and tf > 0)
            sources[s] = "stratified from train" if carved else ("predefined" if s in present else "empty")
    else:
        assigned = _stratified_split(index.records, val_fraction, test_fraction, seed, where="")
        for s, f in (("train", 1.0), ("val", val_fraction), ("test", test_fraction)):
            sources[s] = "stratified" if f > 0 else "empty"
    items = sorted((r.path, r.label, assigned[r.path]) for r in index.records)
    return SplitAssignment(int(seed), float(val_fraction), float(test_fraction), index.layout, items, sources)


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    ok = 0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1
    if not ok:
        raise DatasetError(f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must be in [0, 1) "
                           "and leave some images for training")


def _stratified_split(records: Sequence[ImageRecord], val_fraction: float, test_fraction: float,
                      seed: int, where: str) -> dict[str, str]:
    """Stratified train/val/test assignment of ``records`` (path -> split)."""
    from sklearn.model_selection import train_test_split  # imported here: slow to import

    labels = np.array([r.label for r in records])
    _check_class_sizes(labels, val_fraction, test_fraction, where)
    idx = np.arange(len(records))
    split = np.full(len(records), "train", dtype=object)
    rest = idx
    if test_fraction > 0:
        rest, test = train_test_split(idx, test_size=test_fraction, stratify=labels, random_state=seed)
        split[test] = "test"
    if val_fraction > 0:
        rel = val_fraction / (1.0 - test_fraction)
        _, val = train_test_split(rest, test_size=rel, stratify=labels[rest], random_state=seed)
        split[val] = "val"
    _ensure_each_split(split, labels, val_fraction, test_fraction, seed)
    return {r.path: str(s) for r, s in zip(records, split)}


def _check_class_sizes(labels: np.ndarray, val_fraction: float, test_fraction: float, where: str) -> None:
    """Raise :class:`DatasetError` for the first class too small to split."""
    if val_fraction == 0 and test_fraction == 0:
        return
    need = min_class_size(val_fraction, test_fraction)
    names, counts = np.unique(labels, return_counts=True)
    for name, n in zip(names, counts):
        if n < need:
            wanted = ["train"] + [s for s, f in (("val", val_fraction), ("test", test_fraction)) if f > 0]
            raise DatasetError(
                f"class '{name}' has only {n} image(s){where}; at least {need} are needed to put one in each of "
                f"{'/'.join(wanted)} with val_fraction={val_fraction} and test_fraction={test_fraction}. "
                + _class_size_hint(int(counts.min()), val_fraction, test_fraction))


def _class_size_hint(n: int, val_fraction: float, test_fraction: float) -> str:
    """What would let every class split, the smallest having ``n`` images: larger fractions if any fit,
    else more images."""
    fractions = {k: f for k, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)) if f > 0}
    if n > len(fractions):
        wanted = math.ceil(100 / n) / 100  # smallest two-decimal fraction that gives this class one image
        raised = {k: max(f, wanted) for k, f in fractions.items()}
        if sum(raised.values()) < 1 and min_class_size(raised.get("val_fraction", 0.0),
                                                       raised.get("test_fraction", 0.0)) <= n:
            settings = " ".join(f"{k}={f:g}" for k, f in raised.items())
            return f"Add images, or raise the fractions ({settings} fits classes of {n} or more images)."
    return "Add images, or set a fraction to 0."


def _ensure_each_split(split: np.ndarray, labels: np.ndarray, val_fraction: float, test_fraction: float,
                       seed: int) -> None:
    """Rounding can leave a class without a val or test image; move one over from train."""
    rng = np.random.default_rng(seed)
    wanted = [s for s, f in (("val", val_fraction), ("test", test_fraction)) if f > 0]
    for label in np.unique(labels):
        for s in wanted:
            members = labels == label
            if np.any(members & (split == s)):
                continue
            donors = np.flatnonzero(members & (split == "train"))
            if len(donors) > 1:
                split[donors[rng.integers(len(donors))]] = s
