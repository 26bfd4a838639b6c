"""Read-only access to stored results under ``artifacts/`` (never imports TensorFlow).

Layout: ``artifacts/<dataset>/<backbone>/<run id>/``; a run counts as a result only
once its ``complete.json`` marker exists (written last, atomically).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ARTIFACTS = REPO_ROOT / "artifacts"
COMPLETE_MARKER = "complete.json"


def artifacts_dir() -> Path:
    """The artifacts folder: ``$STUDY_ARTIFACTS`` if set, else ``artifacts/`` in the repo."""
    return Path(os.environ.get("STUDY_ARTIFACTS") or DEFAULT_ARTIFACTS)


def complete_runs(root: Path | None = None) -> list[Path]:
    """Folders of every complete run, sorted."""
    root = Path(root or artifacts_dir())
    if not root.is_dir():
        return []
    return sorted(marker.parent for marker in root.glob(f"*/*/*/{COMPLETE_MARKER}"))
