"""Groups: images that must never sit on two sides of a split.

The original study's 99% came from augmented copies of one image in both train and
test. A split that is disjoint by *group* cannot do that. Where groups come from (the
``grouping`` setting):

- ``duplicates`` (default): connected components of the duplicate graph, every exact or
  near-duplicate pair that :func:`core.data.duplicates.find_duplicates` finds (union over
  all pairs, so a chain a~b~c is one group);
- ``csv:PATH``: a CSV file with columns ``path,group`` (paths relative to the dataset
  folder), for users with real subject or patient ids;
- ``regex:PATTERN``: a regular expression searched in each relative path; its first
  capture group (or the whole match) is the group id;
- ``none``: every image is its own group (the split is made image by image: leaky when
  the dataset holds near-copies).

An image a file or pattern does not cover is its own group (counted in the summary).
A group id is the smallest member path (duplicates) or the given id (csv, regex).

Chaining: a loose duplicate threshold can join distinct images into one giant component,
which would make group splitting meaningless. :func:`Grouping.summary` flags every
group that holds more than :data:`CHAIN_SHARE` of a class, with the weakest links
(largest distances) that hold it together.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from core.errors import UserError

GROUPINGS = ("duplicates", "none", "csv:PATH", "regex:PATTERN")
CHAIN_SHARE = 0.2  # a group holding more than this share of a class is reported as possible chaining
CHAIN_MIN_SIZE = 3  # a pair is not a chain
SIZE_BUCKETS = ((1, 1), (2, 2), (3, 5), (6, 10), (11, 50), (51, None))
LISTED_LINKS = 5


@dataclass
class Grouping:
    """Which group each image (relative path) belongs to, and where that came from."""

    source: str  # "duplicates", "csv", "regex" or "none"
    detail: str  # what the source was: the threshold, the file (with its SHA-256) or the pattern
    group_of: dict[str, str]
    links: list[tuple[str, str, int]] = field(default_factory=list)  # duplicate pairs (a, b, distance)
    uncovered: int = 0  # images the file or pattern did not cover: each its own group

    def codes(self, paths: Sequence[str]) -> np.ndarray:
        """One integer per path: equal integers mean the same group."""
        ids: dict[str, int] = {}
        return np.array([ids.setdefault(self.group_of.get(p, p), len(ids)) for p in paths], dtype=np.int64)

    def leaking(self, split_items: Iterable[tuple[str, str, str]], paths: Sequence[str],
                earlier: Sequence[str] = ("train", "val")) -> np.ndarray:
        """For each of ``paths`` (test images): does its group have a member in train or val?

        ``split_items`` are ``(path, label, split)`` of the whole split, so a member left out of a
        subsampled (quick) run still counts. For validation images pass ``earlier=("train",)``.
        """
        seen = {self.group_of.get(p, p) for p, _, s in split_items if s in earlier}
        return np.array([self.group_of.get(p, p) in seen for p in paths], dtype=bool)

    def validation_leak(self, split_items: Sequence[tuple[str, str, str]]) -> dict[str, int]:
        """How many validation images are in a group that also has training images (early stopping and
        every choice made on validation then rest on near-copies of training images)."""
        val = [p for p, _, s in split_items if s == "val"]
        return {"images": len(val), "leaking": int(self.leaking(split_items, val, ("train",)).sum())}

    def direct_copies(self, split_items: Iterable[tuple[str, str, str]], paths: Sequence[str]) -> np.ndarray | None:
        """For each of ``paths``: is it itself a near-copy of a train or val image (a listed pair)?

        Narrower than :meth:`leaking` (no chains through other test images); None when the
        groups did not come from duplicate pairs.
        """
        if self.source != "duplicates":
            return None
        seen = {p for p, _, s in split_items if s in ("train", "val")}
        twins = {b for a, b, _ in self.links if a in seen} | {a for a, b, _ in self.links if b in seen}
        return np.array([p in twins for p in paths], dtype=bool)

    def describe(self) -> str:
        """One line for captions and logs."""
        return {"duplicates": f"groups are connected duplicates ({self.detail})",
                "csv": f"groups from {self.detail}", "regex": f"groups from the path pattern {self.detail}",
                "none": "no groups: every image is its own group"}[self.source]

    def summary(self, labels: Mapping[str, str]) -> dict[str, Any]:
        """Counts for the run and audit records: groups, size distribution, largest, chaining."""
        members: dict[str, list[str]] = {}
        for path in labels:
            members.setdefault(self.group_of.get(path, path), []).append(path)
        sizes = np.array([len(m) for m in members.values()], dtype=np.int64)
        n = int(sizes.sum())
        largest_id = max(members, key=lambda g: (len(members[g]), g)) if members else None
        return {
            "source": self.source,
            "detail": self.detail,
            "images": n,
            "groups": len(members),
            "largest": ({"group": largest_id, "size": len(members[largest_id]),
                         "classes": sorted({labels[p] for p in members[largest_id]})} if largest_id else None),
            "sizes": {_bucket_name(lo, hi): int(((sizes >= lo) & (sizes <= (hi or n))).sum())
                      for lo, hi in SIZE_BUCKETS},
            "images_in_groups_of_2_or_more": int(sizes[sizes > 1].sum()),
            "share_in_groups_of_2_or_more": round(float(sizes[sizes > 1].sum()) / n, 4) if n else 0.0,
            "uncovered_images": self.uncovered,
            "chaining": self._chaining(members, labels),
        }

    def _chaining(self, members: Mapping[str, list[str]], labels: Mapping[str, str]) -> list[dict[str, Any]]:
        class_size = Counter(labels.values())
        out = []
        for gid, paths in members.items():
            if len(paths) < CHAIN_MIN_SIZE:
                continue
            for label, count in Counter(labels[p] for p in paths).items():
                share = count / class_size[label]
                if share > CHAIN_SHARE:
                    inside = set(paths)
                    links = sorted((lk for lk in self.links if lk[0] in inside), key=lambda lk: (-lk[2], lk[0], lk[1]))
                    out.append({"group": gid, "size": len(paths), "class": label, "class_images": class_size[label],
                                "share_of_class": round(share, 4),
                                "weakest_links": [{"a": a, "b": b, "distance": d} for a, b, d in links[:LISTED_LINKS]]})
        out.sort(key=lambda c: (-c["share_of_class"], c["class"]))
        return out

    def to_dict(self) -> dict[str, Any]:
        """Where the groups came from (the per-image ids are stored with the split's items)."""
        return {"source": self.source, "detail": self.detail, "uncovered_images": self.uncovered}


def chaining_messages(summary: Mapping[str, Any]) -> list[str]:
    """Loud one-line warnings for the groups that swallow a large part of a class."""
    out = []
    for c in summary.get("chaining", []):
        link = c["weakest_links"][0] if c["weakest_links"] else None
        joined = f"; weakest link {link['a']} ~ {link['b']} (distance {link['distance']})" if link else ""
        out.append(f"one group holds {c['share_of_class']:.0%} of class '{c['class']}' ({c['size']} images): "
                   "one subject with many images, or a duplicate threshold so loose that distinct images chain "
                   f"together{joined}")
    return out


def _bucket_name(lo: int, hi: int | None) -> str:
    return f"{lo}" if lo == hi else (f"{lo}-{hi}" if hi else f">{lo - 1}")


def parse_grouping(value: str) -> tuple[str, str]:
    """``"duplicates"``, ``"none"``, ``"csv:PATH"`` or ``"regex:PATTERN"`` -> (kind, argument); checked."""
    if value in ("duplicates", "none"):
        return value, ""
    kind, sep, arg = str(value).partition(":")
    if not sep or kind not in ("csv", "regex") or not arg:
        raise UserError(f"grouping must be one of {', '.join(GROUPINGS)}; got '{value}'")
    if kind == "regex":
        try:
            re.compile(arg)
        except re.error as exc:
            raise UserError(f"grouping regex '{arg}' is not a regular expression: {exc}") from None
    return kind, arg


def from_pairs(paths: Sequence[str], ii: np.ndarray, jj: np.ndarray, dd: np.ndarray, detail: str) -> Grouping:
    """Connected components of the pair graph over ``paths`` (row indices ``ii``, ``jj``)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(paths)
    if len(ii):
        graph = coo_matrix((np.ones(len(ii), np.int8), (ii, jj)), shape=(n, n))
        _, component = connected_components(graph, directed=False)
    else:
        component = np.arange(n)
    first: dict[int, str] = {}
    for k in np.argsort(np.asarray(paths, dtype=object), kind="stable"):
        first.setdefault(int(component[k]), paths[k])
    group_of = {p: first[int(c)] for p, c in zip(paths, component)}
    links = [(paths[i], paths[j], int(d)) for i, j, d in zip(ii.tolist(), jj.tolist(), dd.tolist())]
    return Grouping("duplicates", detail, group_of, links)


def from_audit(audit: Mapping[str, Any]) -> Grouping:
    """The duplicate groups an audit report found (its clusters; every other image is its own group)."""
    group_of: dict[str, str] = {}
    for cluster in audit["duplicates"]["clusters"]:
        paths = sorted(m["path"] for m in cluster["members"])
        group_of.update({p: paths[0] for p in paths})
    links = [(p["a"], p["b"], int(p["distance"])) for p in audit["duplicates"].get("pairs", [])]
    h = audit["hash"]
    detail = (f"pHash within {h['threshold']} of {h['bits']} bits, flips and rotations included, or identical bytes; "
              "from the dataset's audit")
    return Grouping("duplicates", detail, group_of, links)


def from_csv(path: str | Path, paths: Sequence[str]) -> Grouping:
    """Groups from a ``path,group`` CSV file (header required; paths relative to the dataset folder)."""
    file = Path(path).expanduser()
    try:
        content = file.read_bytes()
        text = content.decode("utf-8-sig")
    except OSError as exc:
        raise UserError(f"cannot read the groups file {file}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UserError(f"the groups file {file} is not UTF-8 text") from None
    rows = list(csv.reader(text.splitlines()))
    if not rows or [c.strip().lower() for c in rows[0][:2]] != ["path", "group"]:
        raise UserError(f"the groups file {file} must be a CSV with a header 'path,group'")
    wanted = set(paths)
    given: dict[str, str] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not row or not any(c.strip() for c in row):
            continue
        if len(row) < 2 or not row[1].strip():
            raise UserError(f"{file}, line {line}: expected 'path,group', got {','.join(row)!r}")
        rel = row[0].strip().replace("\\", "/")
        given[rel[2:] if rel.startswith("./") else rel] = row[1].strip()
    matched = {p: g for p, g in given.items() if p in wanted}
    if not matched:
        raise UserError(f"no path in the groups file {file} names an image of the dataset (paths must be relative "
                        "to the dataset folder, e.g. train/cat/1.jpg)")
    digest = hashlib.sha256(content).hexdigest()[:12]
    return _covering(paths, matched, "csv", f"{file} (sha256 {digest}, {len(matched)} of {len(given)} rows matched)")


def from_pattern(pattern: str, paths: Sequence[str]) -> Grouping:
    """Groups from a regular expression searched in each relative path (first capture group, else whole match)."""
    regex = re.compile(pattern)
    matched = {}
    for p in paths:
        m = regex.search(p)
        if m:
            matched[p] = m.group(1) if regex.groups else m.group(0)
    if not matched:
        raise UserError(f"the group pattern '{pattern}' matches no image path (e.g. {paths[0] if paths else '-'})")
    return _covering(paths, matched, "regex", f"'{pattern}'")


def _covering(paths: Sequence[str], matched: Mapping[str, str], source: str, detail: str) -> Grouping:
    # Group ids from a user are prefixed so they can never collide with a path used as a singleton id.
    group_of = {p: (f"id:{matched[p]}" if p in matched else p) for p in paths}
    return Grouping(source, detail, group_of, uncovered=sum(p not in matched for p in paths))


def singletons(paths: Sequence[str]) -> Grouping:
    """Every image its own group (``grouping = "none"``)."""
    return Grouping("none", "", {p: p for p in paths})
