"""Dataset audit: duplicates, train/test leakage, conflicting labels, corrupt files, imbalance.

Why: the original study reported 99% accuracy because augmented copies of one image
(flipped, rotated, brightened) sat on both sides of the train/test split. The audit
finds such pairs before any training.

How
---
1. :func:`core.data.dataset.discover` lists the images; every one is read once, hashed
   (SHA-256 of the bytes) and decoded; files that fail to decode are reported as corrupt.
2. The split is the one a run makes by default: :func:`core.data.splits.make_splits` with the
   given seed, disjoint by group of near-copies (predefined train/test folders are kept, so
   a predefined test split can still leak); it is recorded in the report.
3. Each image gets a perceptual hash (pHash, ``hash_size=16`` -> 256 bits) for all 8
   flips/rotations (the dihedral group). Two images are near-duplicates when the
   smallest Hamming distance between one image's 8 hashes and the other's upright
   hash is ``<= threshold``; identical bytes are exact duplicates.
4. Every pair is classified: ``cross_split`` (leakage, the headline), ``cross_class``
   (same split, different labels) or ``within_split``; ``conflicting_labels`` marks
   any pair with different labels. Pairs are grouped into clusters.

How images are hashed and compared, and why the default threshold is what it is:
:mod:`core.data.duplicates`.

Only numpy, Pillow, scipy and scikit-learn are used (never TensorFlow).
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from core.artifacts.layout import AUDIT_FILE, dataset_dir, dataset_slug
from core.artifacts.records import AuditRecord
from core.data import dataset as data
from core.data import groups
from core.data import splits as splits_mod
from core.data.duplicates import (
    DEFAULT_THRESHOLD,
    FLAT_COLOUR_TOLERANCE,
    FLAT_STD,
    HASH_SIZE,
    HIGHFREQ_FACTOR,
    AuditProgress,
    find_duplicates,
)
from core.data.splits import SplitAssignment
from core.errors import DatasetError
from core.formatting import format_table

SCHEMA_VERSION = 1
MAX_LISTED_PAIRS = 20_000  # pairs written out in full; counts always cover all pairs
SPLIT_ORDER = {s: i for i, s in enumerate(data.SPLITS)}


# --- audit --------------------------------------------------------------------------------

def audit_dataset(root: str | os.PathLike, seed: int = 42, val_fraction: float = 0.15,
                  test_fraction: float = 0.15, near_threshold: int = DEFAULT_THRESHOLD,
                  progress: AuditProgress | None = None, hash_size: int = HASH_SIZE,
                  workers: int | None = None) -> dict[str, Any]:
    """Audit a dataset folder and return the report (plain JSON data, ``schema_version`` 1).

    ``progress(stage, done, total)`` is called during the slow stages ("hashing",
    "comparing"). See the module docstring for what is checked and how.
    """
    t0 = time.perf_counter()
    raw = data.discover(root, validate=False)
    scan = find_duplicates(raw, near_threshold, hash_size, progress, workers)
    index, shas, bad, flat = scan.index, scan.shas, scan.bad, scan.flat
    ii, jj, dd = scan.ii, scan.jj, scan.dd
    t_hash = time.perf_counter()
    grouping = groups.from_pairs([r.path for r in index.records], ii, jj, dd,
                                 f"pHash within {near_threshold} of {hash_size * hash_size} bits, flips and rotations "
                                 "included, or identical bytes")
    splits, split_problem = _product_split(index, val_fraction, test_fraction, seed, grouping)
    splits.dataset_fingerprint = data.fingerprint(index, shas)
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
        "groups": {**grouping.summary({r.path: r.label for r in index.records}),
                   "leaking": _leaking_by_group(grouping, splits)},
        "corrupt": [{"path": p, "reason": r} for p, r in sorted(bad.items())],
        "skipped": [{"path": p, "reason": r} for p, r in raw.skipped],
        "imbalance": _imbalance(counts),
        "timings_s": {"duplicates": round(t_hash - t0, 2), "split": round(t_cmp - t_hash, 2),
                      "total": round(time.perf_counter() - t0, 2)},
    }
    report["verdict"] = _verdict(report, pairs, splits)
    return report


def _product_split(index: data.DatasetIndex, val_fraction: float, test_fraction: float,
                   seed: int, grouping: groups.Grouping) -> tuple[SplitAssignment, str | None]:
    """The split a run would make by default (disjoint by duplicate group); if it cannot, a fallback and the reason."""
    try:
        return splits_mod.make_splits(index, val_fraction, test_fraction, seed, grouping), None
    except DatasetError as exc:
        fallback = splits_mod.make_splits(index, 0.0, 0.0, seed)
        return fallback, f"cannot make the product's split ({exc}); audited with predefined splits only"


def _pair_table(index: data.DatasetIndex, splits: SplitAssignment, shas: dict[str, str],
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


def _clusters(index: data.DatasetIndex, splits: SplitAssignment, ii: np.ndarray,
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


def _leaking_by_group(grouping: groups.Grouping, splits: SplitAssignment) -> dict[str, dict[str, int]]:
    """Per evaluation split: images whose group has a member in an earlier split (train, or train and val for test)."""
    out = {}
    for split, earlier in (("val", ("train",)), ("test", ("train", "val"))):
        paths = [p for p, _, s in splits.items if s == split]
        out[split] = {"images": int(grouping.leaking(splits.items, paths, earlier).sum()), "of": len(paths)}
    return out


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


def _verdict(report: dict[str, Any], pairs: list[dict[str, Any]], splits: SplitAssignment) -> dict[str, Any]:
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
    messages += [f"CHAINING: {m}" for m in groups.chaining_messages(report["groups"])]
    by_group = report["groups"]["leaking"]
    if by_group["test"]["images"] > eval_twins["test"]["images"]:
        messages.append(f"counting whole groups of near-copies, {by_group['test']['images']} of "
                        f"{by_group['test']['of']} test images are in a group with train or val images")
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
        "eval_images_in_train_groups": by_group,
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
    lines += _group_lines(report)
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


def _group_lines(report: dict[str, Any]) -> list[str]:
    """How the near-copies join into groups, which splits they cross, and chains (audits before groups: none)."""
    g = report.get("groups")
    if not g:
        return []
    largest = g["largest"] or {"size": 0, "classes": []}
    lines = [f"Groups (images that must stay on one side of a split): {g['groups']} for {g['images']} images; "
             f"largest {largest['size']} ({', '.join(largest['classes'])}); "
             f"{g['share_in_groups_of_2_or_more']:.1%} of images are in groups of 2 or more"]
    lines += [f"  {s} images in a group with earlier-split images: {v['images']} of {v['of']}"
              for s, v in g.get("leaking", {}).items() if v["of"]]
    lines += [f"  CHAINING: {m}" for m in groups.chaining_messages(g)]
    return lines


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
