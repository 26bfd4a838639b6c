"""Which dataset folders the app's Train page offers and reads, and how much of one it scans.

Run locally, the page offers the folders under the data roots (``data/`` in the repo,
``../shared/data`` and ``$STUDY_DATA_ROOTS``) and accepts any other readable folder typed
in. On a shared app, set the allowed roots (``$STUDY_ALLOWED_DATA_ROOTS``, or
``allowed_data_roots`` in the app's secrets): only folders inside them are offered and
accepted, checked after symlinks and ``..`` are resolved. Either way a scan stops past a
file limit (``$STUDY_SCAN_LIMIT``, default :data:`DEFAULT_SCAN_LIMIT`) instead of walking
a whole disk.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from core.artifacts.layout import REPO_ROOT
from core.data.dataset import DatasetIndex, discover
from core.errors import DatasetError, UserError

DATA_ROOTS_ENV = "STUDY_DATA_ROOTS"
ALLOWED_ROOTS_ENV = "STUDY_ALLOWED_DATA_ROOTS"
SCAN_LIMIT_ENV = "STUDY_SCAN_LIMIT"
DEFAULT_SCAN_LIMIT = 200_000


def _split_paths(value: str | Iterable[str] | None) -> list[Path]:
    """Paths from an ``os.pathsep``-separated string or a list of strings; blanks dropped."""
    if not value:
        return []
    parts = value.split(os.pathsep) if isinstance(value, str) else [str(v) for v in value]
    return [Path(p.strip()).expanduser() for p in parts if p.strip()]


def allowed_roots(configured: str | Iterable[str] | None = None) -> list[Path] | None:
    """The roots a shared app restricts datasets to, resolved; None when nothing restricts them (local use).

    ``configured`` is the app's ``allowed_data_roots`` setting; ``$STUDY_ALLOWED_DATA_ROOTS`` adds to it.
    A root that does not exist still restricts (it simply offers nothing).
    """
    roots = _split_paths(os.environ.get(ALLOWED_ROOTS_ENV)) + _split_paths(configured)
    return [r.resolve() for r in roots] if roots else None


def scan_limit() -> int:
    """Files and folders a dataset scan may meet before it stops (``$STUDY_SCAN_LIMIT``)."""
    value = os.environ.get(SCAN_LIMIT_ENV, "").strip()
    if not value:
        return DEFAULT_SCAN_LIMIT
    try:
        limit = int(value)
    except ValueError:
        raise UserError(f"{SCAN_LIMIT_ENV}={value!r} is not a whole number of files") from None
    if limit < 1:
        raise UserError(f"{SCAN_LIMIT_ENV}={value!r} must be at least 1")
    return limit


def offered_roots(allowed: list[Path] | None) -> list[Path]:
    """The existing folders whose subfolders are offered as datasets: the allowed roots, else the data roots."""
    roots = allowed if allowed is not None else (
        _split_paths(os.environ.get(DATA_ROOTS_ENV)) + [REPO_ROOT / "data", REPO_ROOT.parent / "shared" / "data"])
    return [r for r in roots if r.is_dir()]


def dataset_choices(allowed: list[Path] | None) -> list[str]:
    """Every visible subfolder of the offered roots that :func:`check_data_folder` accepts, sorted."""
    found = [d for r in offered_roots(allowed) for d in r.iterdir() if d.is_dir() and not d.name.startswith(".")]
    return sorted(str(d) for d in found if _accepted(d, allowed))


def _accepted(folder: Path, allowed: list[Path] | None) -> bool:
    try:
        check_data_folder(folder, allowed)
    except DatasetError:
        return False
    return True


def check_data_folder(folder: str | os.PathLike, allowed: list[Path] | None) -> Path:
    """The dataset folder, resolved (symlinks and ``..``), if it exists and lies inside an allowed root.

    Raises :class:`DatasetError` with one line otherwise.
    """
    path = Path(folder).expanduser()
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):  # missing, a symlink loop, unreadable
        raise DatasetError(f"data folder not found: {folder}") from None
    if allowed is not None and not any(real.is_relative_to(root) for root in allowed):
        raise DatasetError(f"data folder not allowed on this app: {folder} is not inside the allowed data roots "
                           f"({', '.join(str(r) for r in allowed)})")
    if not real.is_dir():
        raise DatasetError(f"data path is not a folder: {folder}")
    return real


def scan_for_training(folder: str | os.PathLike, allowed: list[Path] | None,
                      limit: int | None = None) -> DatasetIndex:
    """The unvalidated index of a dataset folder the app may read, scanned up to ``limit`` files and folders."""
    real = check_data_folder(folder, allowed)
    return discover(real, validate=False, max_files=scan_limit() if limit is None else limit)
