"""What a reader must know about a dataset before its scores: the audit's findings and which folder became
which split (pandas only, no TensorFlow).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from core.artifacts.layout import PROVENANCE_FILE
from core.artifacts.records import ProvenanceRecord, RecordError, SplitRecord

# Verdict messages that change how every score reads: leakage across splits and conflicting labels.
_SERIOUS = ("LEAKAGE", "counting whole groups")


def _serious(message: str) -> bool:
    return message.startswith(_SERIOUS) or "conflicting labels" in message


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """``1 complete run``, ``2 complete runs``."""
    return f"{n} {noun if n == 1 else nouns or noun + 's'}"


def audit_findings(audit: dict | None) -> tuple[str, list[str]]:
    """The audit's verdict for a reader of the Overview: ``(level, lines)``, level ``"none"`` (no audit
    stored), ``"clean"``, ``"info"`` (other findings only: duplicates within a split, imbalance, chaining)
    or ``"warning"`` (leakage across splits or duplicates with conflicting labels, each named)."""
    if not audit:
        return "none", ["No audit of this dataset is stored: duplicates, leakage across splits and conflicting "
                        "labels were not checked (`python -m core audit DATA_DIR`; a Train-page job audits first)."]
    messages = list((audit.get("verdict") or {}).get("messages") or [])
    serious = [m for m in messages if _serious(m)]
    others = len(messages) - len(serious)
    more = (f"{plural(others, 'other finding')} (duplicates within a split, class imbalance, large groups) on the "
            "Data and audit page." if others else "")
    if serious:
        return "warning", [f"Audit: {m}" for m in serious] + ([f"And {more}"] if more else [])
    if others:
        return "info", [f"Audit: no leakage across splits and no conflicting labels; {more}"]
    return "clean", ["Audit: no duplicates across or within splits, no conflicting labels, no corrupt files."]


def split_sources(runs: pd.DataFrame) -> list[dict[str, str]]:
    """The distinct ``sources`` (split -> where it came from) of the split files the runs used."""
    seen: list[dict[str, str]] = []
    for path in runs.get("path", pd.Series(dtype=str)).dropna().unique():
        sources = _sources_of(Path(path))
        if sources and sources not in seen:
            seen.append(sources)
    return seen


def _sources_of(run: Path) -> dict[str, str] | None:
    try:
        split_file = ProvenanceRecord.load(run / PROVENANCE_FILE).split_file
        path = (run / split_file).resolve() if split_file else None
        return dict(SplitRecord.load(path).sources) if path is not None and path.is_file() else None
    except RecordError:
        return None


def split_mapping_text(sources: dict[str, str]) -> str:
    """``test ← folder val/; val ← stratified from train; train ← folder train/`` in reading order."""
    parts = []
    for split in ("train", "val", "test"):
        source = sources.get(split)
        if not source or source == "empty":
            continue
        source = "its predefined folder" if source == "predefined" else source.removeprefix("predefined: ")
        parts.append(f"{split} ← {source}")
    return "; ".join(parts)


# Leaderboard columns shown by default (besides the ranking metric and its leak-free twin): what a reader
# compares first at about 1400 px. The others are one click away.
DEFAULT_COLUMNS = ("Configuration", "Seeds", "int8 size (MB)", "int8 latency (ms)")


def leaderboard_columns(columns: list[str], metric_label: str) -> tuple[list[str], list[str]]:
    """``(shown by default, optional)`` columns of a leaderboard ranked by the metric called ``metric_label``."""
    wanted = [DEFAULT_COLUMNS[0], metric_label, f"Leak-free {metric_label.lower()}", *DEFAULT_COLUMNS[1:]]
    shown = [c for c in wanted if c in columns]
    return shown, [c for c in columns if c not in shown]
