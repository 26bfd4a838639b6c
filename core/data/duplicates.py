"""Exact and near-duplicate images: perceptual hashes under flips/rotations, and the pairs they find.

Each image gets a perceptual hash (pHash, ``hash_size=16`` -> 256 bits) for all 8
flips/rotations (the dihedral group). Two images are near-duplicates when the smallest
Hamming distance between one image's 8 hashes and the other's upright hash is
``<= threshold``; identical bytes are exact duplicates. :func:`find_duplicates` is the
one entry point: the audit reports its pairs, and :mod:`core.data.groups` joins them into
groups that a split must not cut.

Hash details: the image is decoded (JPEG draft-scaled to >= 128 px), converted to
RGB as :func:`core.data.dataset.load_image` does, then to greyscale, resized to 64x64 with
Lanczos, and transformed with a 2-D DCT-II; the hash is the top-left 16x16 block
thresholded at its median: exactly ``imagehash.phash(img, hash_size=16)``. The 8
dihedral variants are derived from the one DCT (a flip multiplies frequency ``k`` by
``(-1)**k``, a transpose transposes the block), which equals hashing the flipped or
rotated 64x64 image with imagehash, 8x cheaper.

Flat images (every channel's pixel SD <= ``FLAT_STD``: blank slices, solid fills) have
no structure for a pHash, so any two of them would hash alike: they are left out of the
hash comparison and paired with each other only, when their mean colours agree within
``FLAT_COLOUR_TOLERANCE`` (:func:`flat_pairs`).

Default threshold (``DEFAULT_THRESHOLD`` = 24 of 256 bits). Flipped, rotated,
brightness- and contrast-changed copies and re-encoded JPEGs land at 0-20 bits;
distinct flower photos are >= 70 apart. Brain-MRI slices all look alike: on the
Alzheimer set, pairs up to 25 bits never join images of different labels (adjacent
slices of one scan), while from ~30 bits pairs with different labels appear, i.e.
distinct patients, so a looser threshold would flag look-alikes as duplicates.
64-bit hashes (``hash_size=8``) cannot separate these: distinct MRI slices fall to
2-6 of 64 bits.

Only numpy, Pillow and scipy are used (never TensorFlow).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from core.data import dataset as data
from core.errors import UserError

HASH_SIZE = 16
HIGHFREQ_FACTOR = 4
DEFAULT_THRESHOLD = 24
DRAFT_SIZE = (128, 128)
FLAT_STD = 2.0  # per-channel pixel SD (of 255) at or below which an image has no structure to hash
FLAT_COLOUR_TOLERANCE = 8.0  # largest per-channel mean difference (of 255) between two matching flat images
MAX_PAIRS = 2_000_000  # more pairs than this means the threshold is far too loose

AuditProgress = Callable[[str, int, int], None]


@dataclass
class DuplicateScan:
    """What :func:`find_duplicates` found: pairs ``(i, j, distance)`` index rows of ``index``
    (the readable images only, ``i < j``, sorted), SHA-256 of every read file, and the files
    that could not be read or decoded (path -> reason)."""

    index: data.DatasetIndex
    shas: dict[str, str]
    bad: dict[str, str]
    flat: dict[str, np.ndarray]
    ii: np.ndarray
    jj: np.ndarray
    dd: np.ndarray


def find_duplicates(raw: data.DatasetIndex, threshold: int = DEFAULT_THRESHOLD, hash_size: int = HASH_SIZE,
                    progress: AuditProgress | None = None, workers: int | None = None) -> DuplicateScan:
    """Hash every image of ``raw`` and return every exact or near-duplicate pair among the readable ones."""
    if not 0 <= threshold < hash_size * hash_size:
        raise UserError(f"threshold must be between 0 and {hash_size * hash_size - 1}, got {threshold}")
    shas, packed, flat, bad = hash_images(raw, hash_size, progress, workers)
    index = raw.without(bad)
    keep = np.array([rec.path not in bad for rec in raw.records], dtype=bool)
    packed = packed[keep]
    structured = np.array([r.path not in flat for r in index.records], dtype=bool)
    si, sj, sd = near_pairs(packed[structured], threshold, progress=progress)
    rows = np.flatnonzero(structured)
    fi, fj, fd = flat_pairs(index, flat, np.flatnonzero(~structured), packed)
    ii, jj, dd = np.concatenate([rows[si], fi]), np.concatenate([rows[sj], fj]), np.concatenate([sd, fd])
    order = np.lexsort((jj, ii))
    return DuplicateScan(index, shas, bad, flat, ii[order], jj[order], dd[order])


# --- hashing -------------------------------------------------------------------------

def dihedral_phashes(gray: np.ndarray, hash_size: int = HASH_SIZE) -> np.ndarray:
    """pHash bits of a square greyscale array under all 8 flips/rotations.

    ``gray`` is ``(hash_size*4, hash_size*4)`` (already resized). Returns a bool array
    ``(8, hash_size*hash_size)``; row 0 equals ``imagehash.phash(img, hash_size)``.
    Rows: identity, flip left-right, flip top-bottom, rotate 180, transpose, and the
    transpose combined with the same three flips (= the two 90-degree rotations and
    the anti-transpose).
    """
    from scipy.fftpack import dct  # the same DCT imagehash uses

    pixels = np.asarray(gray, dtype=np.float64)
    low = dct(dct(pixels, axis=0), axis=1)[:hash_size, :hash_size]
    sign = np.where(np.arange(hash_size) % 2 == 0, 1.0, -1.0)
    rows, cols = sign[:, None], sign[None, :]
    variants = np.stack([low, low * cols, low * rows, low * rows * cols,
                         low.T, low.T * cols, low.T * rows, low.T * rows * cols])
    flat = variants.reshape(8, -1)
    return flat > np.median(flat, axis=1, keepdims=True)


def _hash_one(path: Path, hash_size: int) -> tuple[str | None, np.ndarray | None, np.ndarray | None, str | None]:
    """Read one file: (SHA-256, packed 8 dihedral hashes, mean RGB if flat, error reason)."""
    try:
        content = path.read_bytes()
    except OSError as exc:
        return None, None, None, f"unreadable file ({exc.strerror or exc})"
    sha = hashlib.sha256(content).hexdigest()
    try:
        rgb = data.open_image(path, draft=DRAFT_SIZE, content=content)
    except data.ImageDecodeError as exc:
        return sha, None, None, exc.reason
    side = hash_size * HIGHFREQ_FACTOR
    gray = np.asarray(rgb.convert("L").resize((side, side), Image.Resampling.LANCZOS))
    pixels = np.asarray(rgb.resize((side, side), Image.Resampling.BILINEAR), dtype=np.float64).reshape(-1, 3)
    flat = pixels.mean(axis=0) if pixels.std(axis=0).max() <= FLAT_STD else None
    return sha, np.packbits(dihedral_phashes(gray, hash_size), axis=1), flat, None


def hash_images(index: data.DatasetIndex, hash_size: int = HASH_SIZE, progress: AuditProgress | None = None,
                workers: int | None = None
                ) -> tuple[dict[str, str], np.ndarray, dict[str, np.ndarray], dict[str, str]]:
    """Hash every record: ``(sha256 by path, packed hashes (N, 8, bytes), flat {path: mean RGB},
    bad {path: reason})``.

    Rows of the hash array follow ``index.records``; rows of unreadable images are zero.
    """
    cb = (lambda d, t: progress("hashing", d, t)) if progress else None
    results = data.map_parallel(lambda r: _hash_one(index.abspath(r), hash_size), index.records,
                                progress=cb, workers=workers)
    nbytes = hash_size * hash_size // 8
    hashes = np.zeros((len(results), 8, nbytes), dtype=np.uint8)
    shas, flat, bad = {}, {}, {}
    for i, (rec, (sha, packed, colour, reason)) in enumerate(zip(index.records, results)):
        if sha:
            shas[rec.path] = sha
        if reason:
            bad[rec.path] = reason
        else:
            hashes[i] = packed
            if colour is not None:
                flat[rec.path] = colour
    return shas, hashes, flat, bad


def flat_pairs(index: data.DatasetIndex, flat: dict[str, np.ndarray], rows: np.ndarray, packed: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of flat images whose mean colours agree within ``FLAT_COLOUR_TOLERANCE`` per channel.

    The pHash of a flat image has no structure (solid red and solid blue hash alike), so
    flat images are paired by colour instead; the distance reported is their upright
    hashes' Hamming distance. ``rows`` are the flat images' rows in ``index.records``.
    Returns ``(i, j, distance)`` like :func:`near_pairs`.
    """
    from scipy.spatial import cKDTree

    if len(rows) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    colours = np.stack([flat[index.records[k].path] for k in rows])
    found = cKDTree(colours).query_pairs(r=FLAT_COLOUR_TOLERANCE, p=np.inf, output_type="ndarray")
    if len(found) > MAX_PAIRS:
        raise UserError(f"more than {MAX_PAIRS:,} pairs of flat (single-colour) images of the same colour; "
                        "remove the blank images before auditing")
    found = np.asarray(found, dtype=np.int64).reshape(-1, 2)
    ii, jj = rows[found[:, 0]], rows[found[:, 1]]
    ii, jj = np.minimum(ii, jj), np.maximum(ii, jj)
    dd = np.unpackbits(packed[ii, 0] ^ packed[jj, 0], axis=1).sum(axis=1).astype(np.int64)
    return ii, jj, dd


# --- pairwise comparison ----------------------------------------------------------------

def _as_words(packed: np.ndarray) -> np.ndarray:
    """(N, 8, bytes) uint8 -> (N, 8, words) uint64, zero-padded to whole words."""
    n, t, nbytes = packed.shape
    if n == 0:  # every image flat (blank slices, solid fills): nothing to compare by hash
        return np.zeros((0, t, (nbytes + 7) // 8), np.uint64)
    pad = (-nbytes) % 8
    if pad:
        packed = np.concatenate([packed, np.zeros((n, t, pad), np.uint8)], axis=2)
    return np.ascontiguousarray(packed).view(np.uint64).reshape(n, t, -1)


def near_pairs(packed: np.ndarray, threshold: int, block_elems: int = 1 << 22,
               progress: AuditProgress | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs ``i < j`` whose dihedral-invariant Hamming distance is ``<= threshold``.

    The distance of (i, j) is ``min over t of popcount(hash_t(i) XOR hash_0(j))``. Rows
    are processed in blocks (``block_elems`` words at a time) so memory stays flat.
    Returns arrays ``(i, j, distance)`` sorted by (i, j).
    """
    words = _as_words(packed)
    n, _, nw = words.shape
    upright = np.ascontiguousarray(words[:, 0, :].T)  # (words, N)
    rows_per_block = max(1, block_elems // max(1, n * nw))
    found_i, found_j, found_d = [], [], []
    total = 0
    for start in range(0, n, rows_per_block):
        stop = min(n, start + rows_per_block)
        cols = upright[:, start:]
        best = None
        for t in range(8):
            dist = np.zeros((stop - start, n - start), dtype=np.uint16)
            for w in range(nw):
                dist += np.bitwise_count(words[start:stop, t, w, None] ^ cols[w][None, :])
            best = dist if best is None else np.minimum(best, dist, out=best)
        best[np.tril_indices(stop - start, 0, n - start)] = threshold + 1  # keep j > i only
        ii, jj = np.nonzero(best <= threshold)
        total += len(ii)
        if total > MAX_PAIRS:
            raise UserError(f"more than {MAX_PAIRS:,} near-duplicate pairs at threshold {threshold}; "
                            "the threshold is far too loose, lower --threshold")
        found_i.append(ii + start)
        found_j.append(jj + start)
        found_d.append(best[ii, jj])
        if progress:
            progress("comparing", stop, n)
    cat = lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt)  # noqa: E731
    return cat(found_i, np.int64), cat(found_j, np.int64), cat(found_d, np.int64)
