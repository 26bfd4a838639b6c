"""Crash-safe file writing and plain-data helpers shared by every module.

Every result file is written to a temporary file in the same folder, flushed and
fsync'ed, then renamed over the target, so a reader never sees half a file. Appended
logs (:func:`append_lines`) start every write on a fresh line, so one line cut short by
a crash or a full disk costs that line only.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be shared
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_save(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Let ``write(tmp_path)`` produce the file (a Keras save, say), then rename it over ``path``.

    The temporary name keeps every suffix (``.weights.h5``, ``.keras``): savers pick the
    format from them.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffixes = "".join(path.suffixes)
    tmp = path.with_name(f".{path.name[: len(path.name) - len(suffixes)]}.tmp{suffixes}")
    try:
        write(str(tmp))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def append_lines(path: str | os.PathLike, text: str) -> None:
    """Append ``text`` (whole lines), flushed and fsync'ed, on a fresh line.

    If the file does not end with a newline (a write cut short by a crash or a full
    disk), one is written first, so the new line is not glued onto the broken one.
    """
    data = text.encode("utf-8")
    with open(path, "ab+") as fh:
        end = fh.seek(0, os.SEEK_END)
        if end:
            fh.seek(end - 1)
            if fh.read(1) != b"\n":
                data = b"\n" + data
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file."""
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def json_default(obj: Any) -> Any:
    """``json.dumps(default=...)``: numpy scalars and arrays, Paths (the only non-JSON types results contain)."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def utc_timestamp(seconds: float | None = None) -> str:
    """``2026-11-30T13:26:17Z``: how every stored record writes a time (now, or ``seconds`` since the epoch)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
