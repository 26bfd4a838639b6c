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

Symbolic links are followed only out of the dataset (to an image pool elsewhere, say).
A link back into the dataset would give another class's images this class's label, one
to an enclosing folder would loop, and a broken or looping link leads nowhere: each is
skipped with the reason, like an unreadable folder or file. Each real folder is read once.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
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

# What a lone val/ folder beside train/ (no test/ folder) becomes: the held-out "test" split (what users
# mean by it; validation is then carved from train) or "validation" (the first runs' reading).
VAL_FOLDER_CHOICES = ("validation", "test")

UNREADABLE_FOLDER = "unreadable folder"  # how a skipped folder's reason starts when it cannot be listed

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
    # Every class folder seen as (split, label, relative path); kept to recompute problems after filtering.
    class_dirs: list[tuple[str | None, str, str]] = field(default_factory=list, repr=False)
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
             workers: int | None = None, max_files: int | None = None) -> DatasetIndex:
    """Scan a dataset folder and return its :class:`DatasetIndex`.

    With ``validate`` every image is really decoded (see :func:`load_image`); the ones
    that fail move to ``skipped`` with the reason. ``progress(done, total)`` is called
    while validating. Raises :class:`DatasetError` when the folder is missing or
    unreadable, has no class folders, or holds no usable image, and, with ``max_files``, as
    soon as the scan has met more files and folders than that (a disk, not a dataset: it is
    not walked to the end).
    """
    root_path = _check_root(root)
    layout, tops, notes = _detect_layout(root_path)
    records: list[ImageRecord] = []
    skipped: list[tuple[str, str]] = []
    class_dirs: list[tuple[str | None, str, str]] = []
    for split, top in tops:
        for label, class_dir in _class_dirs(top, root_path, skipped):
            class_dirs.append((split, label, _rel(class_dir, root_path)))
            _scan_class_dir(class_dir, root_path, label, split, records, skipped, max_files)
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
    """Non-hidden entries of ``folder``, sorted by name; :class:`DatasetError` if it cannot be read.

    For the dataset root and its split folders, which the whole dataset needs; class
    folders go through :func:`_readable_entries`, so one bad class skips only itself.
    """
    entries = _readable_entries(folder)
    if isinstance(entries, str):
        raise DatasetError(f"{folder} is {entries.replace(UNREADABLE_FOLDER, 'unreadable', 1)}")
    return entries


def _readable_entries(folder: Path) -> list[os.DirEntry] | str:
    """Non-hidden entries of ``folder`` sorted by name, or why it cannot be read (``unreadable folder (...)``)."""
    try:
        with os.scandir(folder) as it:
            return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError as exc:
        return f"{UNREADABLE_FOLDER} ({exc.strerror or exc})"


def _is_dir(entry: os.DirEntry) -> bool:
    """Whether an entry is a folder, following links; False for a broken or looping link."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def _is_file(entry: os.DirEntry) -> bool:
    """Whether an entry is a regular file, following links (not a pipe, socket or device)."""
    try:
        return entry.is_file()
    except OSError:
        return False


def _detect_layout(root: Path) -> tuple[str, list[tuple[str | None, Path]], list[str]]:
    """Return the layout, the (split, folder) pairs that hold class folders, and notes."""
    dirs = [e for e in _visible_entries(root) if _is_dir(e)]
    split_dirs: dict[str, list[str]] = {}
    for e in dirs:
        split = SPLIT_DIR_NAMES.get(e.name.lower())
        if split:
            split_dirs.setdefault(split, []).append(e.name)
    train = split_dirs.get("train")
    if not train or not any(_is_dir(x) for x in _visible_entries(root / train[0])):
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


def split_folders(root: str | os.PathLike) -> dict[str, str]:
    """Predefined split -> the folder that holds it (``{"train": "train", "val": "validation"}``); empty for
    class folders or a folder that cannot be read. Reads the root only (cheap)."""
    try:
        layout, tops, _ = _detect_layout(_check_root(root))
    except DatasetError:
        return {}
    return {split: top.name for split, top in tops} if layout == LAYOUT_PREDEFINED else {}


def default_val_folder(present_splits: Iterable[str]) -> str:
    """What a dataset's val/ folder becomes by default: ``test`` when it is the only held-out folder
    (train/ and val/, no test/), else ``validation``."""
    present = set(present_splits)
    return "test" if "val" in present and "test" not in present else "validation"


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
        entries = _readable_entries(Path(e.path))
        if isinstance(entries, str):
            return  # an unreadable folder: the scan reports it; nothing to compare
        if any(not _is_dir(x) and _is_image_name(x.name) for x in entries):
            return  # images directly in the folder: a class folder
        inner.append(frozenset(x.name for x in entries if _is_dir(x)))
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
    """Class folders directly under ``top``; stray images and links that must not be followed go to ``skipped``."""
    out = []
    for e in _visible_entries(top):
        path = Path(e.path)
        if e.is_symlink():
            problem = _link_problem(path, Path(os.path.realpath(top)), root, root)
            if problem:
                skipped.append((_rel(path, root), problem))
                continue
        if _is_dir(e):
            out.append((e.name, path))
        elif _is_image_name(e.name):
            skipped.append((_rel(path, root), "image outside any class folder"))
    return out


def _link_problem(link: Path, holder: Path, class_dir: Path, root: Path) -> str | None:
    """Why the symbolic link ``link`` must not be followed, or None when it leads out of the dataset.

    ``holder`` is the real folder the link sits in, ``class_dir`` the real class folder
    being scanned (``root`` itself when the link is a class folder), ``root`` the real
    dataset root.
    """
    try:
        target = Path(os.path.realpath(link, strict=True))
    except OSError as exc:
        why = "a loop of links" if exc.errno == errno.ELOOP else "its target does not exist"
        return f"broken symbolic link ({why})"
    if target == holder or target in holder.parents or target == class_dir or target in class_dir.parents:
        return (f"symbolic link to an enclosing folder ({target}): following it would loop and read the "
                "other classes' images")
    if class_dir != root and class_dir in target.parents:
        return f"symbolic link to '{_rel(target, class_dir)}' inside its own class folder, which is read from there"
    if root in target.parents:
        return (f"symbolic link into another part of the dataset ('{_rel(target, root)}'): read here, its images "
                "would get a second label")
    return None


def _scan_class_dir(class_dir: Path, root: Path, label: str, split: str | None,
                    records: list[ImageRecord], skipped: list[tuple[str, str]], max_files: int | None = None) -> None:
    """Add the images under ``class_dir`` (recursively) to ``records``; what is not read goes to ``skipped``.

    Links are followed only out of the dataset (see :func:`_link_problem`); every real
    folder is read once, so two links to one folder give its images once.
    """
    class_real = Path(os.path.realpath(class_dir))
    seen: dict[Path, str] = {}
    stack = [class_dir]
    while stack:
        folder = stack.pop()
        real, rel = Path(os.path.realpath(folder)), _rel(folder, root)
        if real in seen:
            skipped.append((rel, f"symbolic link to a folder read already ('{seen[real]}')"))
            continue
        seen[real] = rel
        entries = _readable_entries(folder)
        if isinstance(entries, str):
            skipped.append((rel, entries))
            continue
        subfolders = []
        for e in entries:
            path = Path(e.path)
            if e.is_symlink():
                problem = _link_problem(path, real, class_real, root)
                if problem:
                    skipped.append((_rel(path, root), problem))
                    continue
            if _is_dir(e):
                subfolders.append(path)
            elif not _is_file(e):
                skipped.append((_rel(path, root), "not a regular file (a pipe, socket or device)"))
            elif _is_image_name(e.name):
                records.append(ImageRecord(_rel(path, root), label, split))
            else:
                ext = os.path.splitext(e.name)[1].lower() or "none"
                skipped.append((_rel(path, root), f"not an image file (extension '{ext}')"))
        stack.extend(reversed(subfolders))
        if max_files is not None and len(records) + len(skipped) + len(seen) > max_files:
            raise DatasetError(f"stopped scanning {root}: more than {max_files:,} files and folders, too many for "
                               "one dataset here; point at a folder of class folders of images")


def _assemble(root: Path, layout: str, records: list[ImageRecord], skipped: list[tuple[str, str]],
              class_dirs: list[tuple[str | None, str, str]], notes: list[str]) -> DatasetIndex:
    """Build the index: sort, derive the classes and the problems."""
    records = sorted(records, key=lambda r: r.path)
    if not records:
        hint = f" ({len(skipped)} file(s) skipped, e.g. {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise DatasetError(f"no usable images found in {root}{hint}")
    classes = sorted({r.label for r in records})
    problems = list(notes) + _record_problems(layout, classes, records, class_dirs, skipped)
    return DatasetIndex(root, layout, classes, records, list(skipped), problems, list(class_dirs), list(notes))


def _record_problems(layout: str, classes: list[str], records: list[ImageRecord],
                     class_dirs: list[tuple[str | None, str, str]], skipped: list[tuple[str, str]]) -> list[str]:
    """Warnings about empty or unreadable class folders and classes missing from a split."""
    seen = {(r.split, r.label) for r in records}
    problems = []
    for split, label, folder in sorted(set(class_dirs), key=lambda x: (x[0] or "", x[1], x[2])):
        if (split, label) not in seen:
            where = f"{split}/{label}" if split else label
            extra = "" if label in classes else "; the class is ignored"
            problems.append(f"class folder '{where}' {_why_empty(folder, skipped)}{extra}")
    if layout == LAYOUT_PREDEFINED:
        splits = [s for s in SPLITS if any(r.split == s for r in records)]
        for label in classes:
            for split in splits:
                if (split, label) not in seen:
                    problems.append(f"class '{label}' has no images in the {split} split")
    return problems


def _why_empty(folder: str, skipped: list[tuple[str, str]]) -> str:
    """Why the class folder ``folder`` (relative path) gave no image: unreadable, or what was skipped in it."""
    reason = dict(skipped).get(folder)
    if reason and reason.startswith(UNREADABLE_FOLDER):
        return "is " + reason.replace(UNREADABLE_FOLDER, "unreadable", 1)
    inside = [(p, r) for p, r in skipped if p.startswith(folder + "/")]
    if not inside:
        return "has no usable images"
    kind = "unreadable" if all(r.startswith("unreadable") for _, r in inside) else "skipped"
    return f"has no usable images: {len(inside)} {kind} (e.g. {inside[0][0]}: {inside[0][1]})"


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
