"""Dataset audit: duplicates, train/test leakage, conflicting labels, corrupt files, imbalance.

Why: the original study reported 99% accuracy because augmented copies of one image
(flipped, rotated, brightened) sat on both sides of the train/test split. The audit
finds such pairs before any training.

How
---
1. :func:`core.data.dataset.discover` lists the images; every one is read once, hashed
   (SHA-256 of the bytes) and decoded; files that fail to decode are reported as corrupt.
2. The split is the one the product uses: :func:`core.data.dataset.make_splits` with the
   given seed (predefined train/test folders are kept); it is recorded in the report.
3. Each image gets a perceptual hash (pHash, ``hash_size=16`` -> 256 bits) for all 8
   flips/rotations (the dihedral group). Two images are near-duplicates when the
   smallest Hamming distance between one image's 8 hashes and the other's upright
   hash is ``<= threshold``; identical bytes are exact duplicates.
4. Every pair is classified: ``cross_split`` (leakage, the headline), ``cross_class``
   (same split, different labels) or ``within_split``; ``conflicting_labels`` marks
   any pair with different labels. Pairs are grouped into clusters.

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

Only numpy, Pillow, scipy and scikit-learn are used (never TensorFlow).
"""

from __future__ import annotations

import hashlib
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from core.artifacts.layout import AUDIT_FILE, dataset_dir, dataset_slug
from core.artifacts.records import AuditRecord
from core.data import dataset as data
from core.errors import DatasetError, UserError
from core.formatting import format_table

SCHEMA_VERSION = 1
HASH_SIZE = 16
HIGHFREQ_FACTOR = 4
DEFAULT_THRESHOLD = 24
DRAFT_SIZE = (128, 128)
FLAT_STD = 2.0  # per-channel pixel SD (of 255) at or below which an image has no structure to hash
FLAT_COLOUR_TOLERANCE = 8.0  # largest per-channel mean difference (of 255) between two matching flat images
MAX_PAIRS = 2_000_000  # more pairs than this means the threshold is far too loose
MAX_LISTED_PAIRS = 20_000  # pairs written out in full; counts always cover all pairs
SPLIT_ORDER = {s: i for i, s in enumerate(data.SPLITS)}

AuditProgress = Callable[[str, int, int], None]


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


# --- audit --------------------------------------------------------------------------------

def audit_dataset(root: str | os.PathLike, seed: int = 42, val_fraction: float = 0.15,
                  test_fraction: float = 0.15, near_threshold: int = DEFAULT_THRESHOLD,
                  progress: AuditProgress | None = None, hash_size: int = HASH_SIZE,
                  workers: int | None = None) -> dict[str, Any]:
    """Audit a dataset folder and return the report (plain JSON data, ``schema_version`` 1).

    ``progress(stage, done, total)`` is called during the slow stages ("hashing",
    "comparing"). See the module docstring for what is checked and how.
    """
    if not 0 <= near_threshold < hash_size * hash_size:
        raise UserError(f"threshold must be between 0 and {hash_size * hash_size - 1}, got {near_threshold}")
    t0 = time.perf_counter()
    raw = data.discover(root, validate=False)
    shas, packed, flat, bad = hash_images(raw, hash_size, progress, workers)
    index = raw.without(bad)
    keep = np.array([rec.path not in bad for rec in raw.records], dtype=bool)
    packed = packed[keep]
    t_hash = time.perf_counter()
    splits, split_problem = _product_split(index, val_fraction, test_fraction, seed)
    splits.dataset_fingerprint = data.fingerprint(index, shas)
    structured = np.array([r.path not in flat for r in index.records], dtype=bool)
    si, sj, sd = near_pairs(packed[structured], near_threshold, progress=progress)
    rows = np.flatnonzero(structured)
    fi, fj, fd = flat_pairs(index, flat, np.flatnonzero(~structured), packed)
    ii, jj, dd = np.concatenate([rows[si], fi]), np.concatenate([rows[sj], fj]), np.concatenate([sd, fd])
    order = np.lexsort((jj, ii))
    ii, jj, dd = ii[order], jj[order], dd[order]
    t_cmp = time.perf_counter()

    pairs = _pair_table(index, splits, shas, ii, jj, dd)
    clusters = _clusters(index, splits, ii, jj)
    counts = splits.counts()
    report = {
        "schema_version": SCHEMA_VERSION,
        "tool": "core.data.audit",
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dataset": {
            "root": str(index.root),
            "name": index.root.name,
            "layout": index.layout,
            "fingerprint": splits.dataset_fingerprint,
            "classes": index.classes,
            "images": len(index.records),
            "problems": index.problems + ([split_problem] if split_problem else []),
        },
        "split": {"seed": splits.seed, "val_fraction": splits.val_fraction,
                  "test_fraction": splits.test_fraction, "sources": splits.sources,
                  "assignment": splits.to_dict()["items"]},
        "hash": {"algorithm": "phash", "hash_size": hash_size, "bits": hash_size * hash_size,
                 "highfreq_factor": HIGHFREQ_FACTOR, "dihedral": True, "threshold": near_threshold,
                 "exact": "sha256 of file bytes",
                 "flat_images": {"count": len(flat), "max_std": FLAT_STD, "colour_tolerance": FLAT_COLOUR_TOLERANCE,
                                 "rule": "flat images match only flat images of the same mean colour"}},
        "counts": {"per_split": counts, "per_class": _per_class(counts),
                   "per_split_total": {s: sum(c.values()) for s, c in counts.items()}},
        "duplicates": _duplicate_section(pairs, clusters),
        "corrupt": [{"path": p, "reason": r} for p, r in sorted(bad.items())],
        "skipped": [{"path": p, "reason": r} for p, r in raw.skipped],
        "imbalance": _imbalance(counts),
        "timings_s": {"hash": round(t_hash - t0, 2), "compare": round(t_cmp - t_hash, 2),
                      "total": round(time.perf_counter() - t0, 2)},
    }
    report["verdict"] = _verdict(report, pairs, splits)
    return report


def _product_split(index: data.DatasetIndex, val_fraction: float, test_fraction: float,
                   seed: int) -> tuple[data.SplitAssignment, str | None]:
    """The split the product would make; if it cannot, a fallback and the reason."""
    try:
        return data.make_splits(index, val_fraction, test_fraction, seed), None
    except DatasetError as exc:
        fallback = data.make_splits(index, 0.0, 0.0, seed)
        return fallback, f"cannot make the product's split ({exc}); audited with predefined splits only"


def _pair_table(index: data.DatasetIndex, splits: data.SplitAssignment, shas: dict[str, str],
                ii: np.ndarray, jj: np.ndarray, dd: np.ndarray) -> list[dict[str, Any]]:
    """One dict per pair, most important first (leakage, conflicting labels, within split)."""
    recs = index.records
    split_of = {p: s for p, _, s in splits.items}
    out = []
    for i, j, d in zip(ii.tolist(), jj.tolist(), dd.tolist()):
        a, b = recs[i], recs[j]
        sa, sb = split_of[a.path], split_of[b.path]
        if (SPLIT_ORDER[sb], b.path) < (SPLIT_ORDER[sa], a.path):
            a, b, sa, sb = b, a, sb, sa
        conflicting = a.label != b.label
        relation = "cross_split" if sa != sb else ("cross_class" if conflicting else "within_split")
        exact = shas.get(a.path) is not None and shas.get(a.path) == shas.get(b.path)
        out.append({"a": a.path, "b": b.path, "split_a": sa, "split_b": sb, "label_a": a.label,
                    "label_b": b.label, "distance": int(d), "kind": "exact" if exact else "near",
                    "relation": relation, "conflicting_labels": conflicting})
    rank = {"cross_split": 0, "cross_class": 1, "within_split": 2}
    out.sort(key=lambda p: (rank[p["relation"]], not p["conflicting_labels"], p["distance"], p["a"], p["b"]))
    return out


def _clusters(index: data.DatasetIndex, splits: data.SplitAssignment, ii: np.ndarray,
              jj: np.ndarray) -> list[dict[str, Any]]:
    """Connected groups of duplicates (union of all pairs), largest first."""
    if len(ii) == 0:
        return []
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(index.records)
    graph = coo_matrix((np.ones(len(ii), np.int8), (ii, jj)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    split_of = {p: s for p, _, s in splits.items}
    groups: dict[int, list[int]] = {}
    for node in np.unique(np.concatenate([ii, jj])).tolist():
        groups.setdefault(int(comp[node]), []).append(node)
    out = []
    for nodes in groups.values():
        members = [{"path": index.records[k].path, "label": index.records[k].label,
                    "split": split_of[index.records[k].path]} for k in nodes]
        members.sort(key=lambda m: (SPLIT_ORDER[m["split"]], m["path"]))
        labels = sorted({m["label"] for m in members})
        used = sorted({m["split"] for m in members}, key=SPLIT_ORDER.get)
        out.append({"size": len(members), "splits": used, "labels": labels, "cross_split": len(used) > 1,
                    "conflicting_labels": len(labels) > 1, "members": members})
    out.sort(key=lambda c: (-c["size"], c["members"][0]["path"]))
    for k, c in enumerate(out):
        c["id"] = k
    return out


def _duplicate_section(pairs: list[dict[str, Any]], clusters: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts by kind and relation, the (capped) pair list and the clusters."""
    by_kind = {"exact": 0, "near": 0}
    by_relation = {"cross_split": 0, "cross_class": 0, "within_split": 0}
    by_split_pair: dict[str, int] = {}
    for p in pairs:
        by_kind[p["kind"]] += 1
        by_relation[p["relation"]] += 1
        if p["relation"] == "cross_split":
            key = f"{p['split_a']}-{p['split_b']}"
            by_split_pair[key] = by_split_pair.get(key, 0) + 1
    return {
        "pairs_total": len(pairs),
        "by_kind": by_kind,
        "by_relation": by_relation,
        "conflicting_label_pairs": sum(p["conflicting_labels"] for p in pairs),
        "cross_split_by_split_pair": by_split_pair,
        "pairs_listed": min(len(pairs), MAX_LISTED_PAIRS),
        "pairs": pairs[:MAX_LISTED_PAIRS],
        "clusters_total": len(clusters),
        "images_in_clusters": sum(c["size"] for c in clusters),
        "clusters": clusters,
    }


def _per_class(counts: dict[str, dict[str, int]]) -> dict[str, int]:
    classes = sorted({c for per in counts.values() for c in per})
    return {c: sum(per.get(c, 0) for per in counts.values()) for c in classes}


def _imbalance_of(per_class: dict[str, int]) -> dict[str, Any] | None:
    """Largest/smallest class and their ratio (``None`` ratio when a class is empty)."""
    if not per_class:
        return None
    hi = max(per_class, key=lambda c: (per_class[c], c))
    lo = min(per_class, key=lambda c: (per_class[c], c))
    ratio = round(per_class[hi] / per_class[lo], 3) if per_class[lo] else None
    return {"largest": hi, "largest_count": per_class[hi], "smallest": lo,
            "smallest_count": per_class[lo], "ratio": ratio}


def _imbalance(counts: dict[str, dict[str, int]]) -> dict[str, Any]:
    per_split = {s: _imbalance_of(per) for s, per in counts.items() if sum(per.values())}
    return {"overall": _imbalance_of(_per_class(counts)), "per_split": per_split}


def too_few_classes(classes: Sequence[str]) -> str:
    """The verdict line of a dataset with fewer than 2 classes: no classifier can be trained on it."""
    return f"{len(classes)} class folder(s) with images; training needs at least 2"


def _verdict(report: dict[str, Any], pairs: list[dict[str, Any]], splits: data.SplitAssignment) -> dict[str, Any]:
    """Top-level summary numbers and one-line messages."""
    dup = report["duplicates"]
    twins: dict[str, set[str]] = {"val": set(), "test": set()}
    for p in pairs:
        if p["relation"] == "cross_split" and p["split_a"] == "train":
            twins[p["split_b"]].add(p["b"])
    totals = report["counts"]["per_split_total"]
    eval_twins = {s: {"images": len(v), "of": totals.get(s, 0),
                      "fraction": round(len(v) / totals[s], 4) if totals.get(s) else 0.0}
                  for s, v in twins.items()}
    ratio = (report["imbalance"]["overall"] or {}).get("ratio")
    leakage = dup["by_relation"]["cross_split"]
    messages = []
    if leakage:
        messages.append(f"LEAKAGE: {leakage} duplicate pair(s) across splits; "
                        f"{eval_twins['test']['images']} test and {eval_twins['val']['images']} val image(s) "
                        "have a copy in train")
    if dup["conflicting_label_pairs"]:
        messages.append(f"{dup['conflicting_label_pairs']} duplicate pair(s) with conflicting labels")
    if dup["by_relation"]["within_split"]:
        messages.append(f"{dup['by_relation']['within_split']} duplicate pair(s) within one split")
    if report["corrupt"]:
        messages.append(f"{len(report['corrupt'])} corrupt or unreadable file(s)")
    classes = report["dataset"]["classes"]
    if len(classes) < 2:
        messages.append(too_few_classes(classes))
    if ratio is None or ratio >= 3:
        messages.append(f"class imbalance: largest/smallest = {ratio if ratio is not None else 'inf'}")
    return {
        "leakage": bool(leakage),
        "leakage_pairs": leakage,
        "eval_images_with_train_copy": eval_twins,
        "conflicting_label_pairs": dup["conflicting_label_pairs"],
        "within_split_pairs": dup["by_relation"]["within_split"],
        "exact_pairs": dup["by_kind"]["exact"],
        "near_pairs": dup["by_kind"]["near"],
        "corrupt_files": len(report["corrupt"]),
        "imbalance_ratio": ratio,
        "clean": not (leakage or dup["pairs_total"] or report["corrupt"] or len(classes) < 2),
        "messages": messages,
    }


# --- output --------------------------------------------------------------------------------

def write_report(report: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write the report as JSON, atomically."""
    return AuditRecord.from_dict(report, str(path)).save(path)


def default_report_path(root: str | os.PathLike, artifacts: str | os.PathLike | None = None) -> Path:
    """``<artifacts>/<dataset folder name>/audit.json``: beside the dataset's runs, where the report app reads it."""
    return dataset_dir(dataset_slug(root), artifacts) / AUDIT_FILE


def format_summary(report: dict[str, Any], examples: int = 5) -> str:
    """A readable multi-line summary of a report for the terminal."""
    ds, dup, verdict = report["dataset"], report["duplicates"], report["verdict"]
    lines = [f"Dataset {ds['name']} ({ds['root']})",
             f"  layout {ds['layout']}, {ds['images']} images, {len(ds['classes'])} classes, "
             f"fingerprint {ds['fingerprint'][:12]}",
             f"  split seed {report['split']['seed']}: " +
             ", ".join(f"{s} {src}" for s, src in report["split"]["sources"].items()), ""]
    lines += _counts_table(report) + [""]
    h = report["hash"]
    lines.append(f"Duplicates (pHash {h['bits']} bits, flips/rotations included, threshold {h['threshold']}): "
                 f"{dup['pairs_total']} pair(s) in {dup['clusters_total']} cluster(s)")
    lines.append(f"  exact {dup['by_kind']['exact']}, near {dup['by_kind']['near']}; "
                 f"across splits {dup['by_relation']['cross_split']}, "
                 f"conflicting labels {dup['conflicting_label_pairs']}, "
                 f"within one split {dup['by_relation']['within_split']}")
    lines += _example_pairs(dup["pairs"], examples)
    lines.append(f"Corrupt or unreadable files: {len(report['corrupt'])}")
    lines += [f"  {c['path']}: {c['reason']}" for c in report["corrupt"][:examples]]
    if len(report["corrupt"]) > examples:
        lines.append(f"  ... and {len(report['corrupt']) - examples} more")
    skipped = report["skipped"]
    if skipped:
        lines.append(f"Skipped files, folders and links: {len(skipped)}")
        lines += [f"  {s['path']}: {s['reason']}" for s in skipped[:examples]]
        if len(skipped) > examples:
            lines.append(f"  ... and {len(skipped) - examples} more (all in the JSON report)")
    lines.append(_imbalance_line(report["imbalance"]))
    lines += [f"Warning: {p}" for p in ds["problems"]]
    if len(ds["classes"]) < 2:
        lines.append(f"Warning: {too_few_classes(ds['classes'])}")
    lines.append("")
    if verdict["leakage"]:
        lines.append(verdict["messages"][0] + " -- test scores would be inflated; deduplicate before training")
    else:
        lines.append("No leakage across splits found." if not dup["pairs_total"] else
                     "No leakage across splits found (duplicates within splits only).")
    return "\n".join(lines)


def _counts_table(report: dict[str, Any]) -> list[str]:
    per_split = report["counts"]["per_split"]
    splits = [s for s in per_split if sum(per_split[s].values())]
    rows = [[c] + [per_split[s].get(c, 0) for s in splits] + [n]
            for c, n in report["counts"]["per_class"].items()]
    rows.append(["(total)"] + [sum(per_split[s].values()) for s in splits] + [report["dataset"]["images"]])
    return format_table(rows, ["class"] + splits + ["all"]).splitlines()


def _example_pairs(pairs: Sequence[dict[str, Any]], examples: int) -> list[str]:
    leaking = [p for p in pairs if p["relation"] == "cross_split"][:examples]
    others = [p for p in pairs if p["relation"] != "cross_split"][:max(0, examples - len(leaking))]
    out = []
    for title, group in (("Leaking pairs (examples)", leaking), ("Other duplicate pairs (examples)", others)):
        if group:
            out.append(f"  {title}:")
            out += [f"    [{p['split_a']}] {p['a']}  <->  [{p['split_b']}] {p['b']}  "
                    f"({p['kind']}, distance {p['distance']}"
                    f"{', labels differ' if p['conflicting_labels'] else ''})" for p in group]
    return out


def _imbalance_line(imbalance: dict[str, Any]) -> str:
    o = imbalance.get("overall")
    if not o:
        return "Class imbalance: n/a"
    ratio = "inf" if o["ratio"] is None else f"{o['ratio']:.2f}"
    return (f"Class imbalance: largest/smallest = {ratio} "
            f"({o['largest']} {o['largest_count']} vs {o['smallest']} {o['smallest_count']})")
