"""Run folders: one folder per run, crash-safe, resumable.

``<artifacts>/<dataset>/<backbone>/<run id>/`` holds (see docs/ARTIFACTS.md):

- ``config.json``: the resolved :class:`~core.artifacts.config.RunConfig`;
- ``provenance.json``: code version, libraries, machine, dataset fingerprint, split, timings;
- ``history.csv``: one row per epoch of every stage, appended as training goes;
- ``events.jsonl``: machine-readable progress events, appended;
- ``metrics.json``, ``predictions.csv``: the test-set evaluation;
- ``model.keras``: the trained classifier;
- ``state/``: checkpoints for resuming (removed when the run completes);
- ``complete.json``: written last; only then is the run a result.

Every file is written atomically; appends are flushed and fsync'ed. A run folder is
locked while a process works on it, so two processes never train the same run.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Iterable

from core.artifacts.config import RunConfig
from core.artifacts.layout import (
    COMPLETE_MARKER,
    CONFIG_FILE,
    EVENTS_FILE,
    HISTORY_FILE,
    STATE_DIR,
    dataset_slug,
    run_dir,
)
from core.artifacts.records import CompleteRecord, RecordError
from core.artifacts.storage import atomic_write_text, utc_timestamp
from core.errors import UserError

HISTORY_COLUMNS = ["stage", "epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds"]



class RunLockedError(UserError):
    """Another process is working on this run."""


class RunFolder:
    """The folder of one run and the operations on it."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock_fh = None

    @classmethod
    def for_config(cls, config: RunConfig, root: str | os.PathLike | None = None) -> "RunFolder":
        """The folder a config's results live in."""
        return cls(run_dir(dataset_slug(config.dataset), config.backbone, config.run_id(), root))

    # --- state -------------------------------------------------------------------
    @property
    def state_dir(self) -> Path:
        return self.path / STATE_DIR

    def file(self, name: str) -> Path:
        return self.path / name

    def is_complete(self) -> bool:
        return self.file(COMPLETE_MARKER).is_file()

    def exists(self) -> bool:
        return self.file(CONFIG_FILE).is_file()

    def read_config(self) -> RunConfig:
        return RunConfig.load(self.file(CONFIG_FILE))

    # --- lifecycle ---------------------------------------------------------------
    def start(self, config: RunConfig) -> bool:
        """Create or reopen the folder for ``config``; returns True when resuming.

        A folder whose stored config differs from ``config`` is refused (the run id
        is a hash of the config, so this only happens if files were edited by hand).
        """
        self.path.mkdir(parents=True, exist_ok=True)
        self.lock()
        if self.exists():
            try:
                same = self.read_config().run_id() == config.run_id()  # settings added later: at their defaults
            except RecordError:
                same = False  # not a config this version can read
            if not same:
                raise UserError(f"{self.path} holds a run with other settings; move it away to start afresh")
            return True
        config.save(self.file(CONFIG_FILE))
        return False

    def lock(self) -> None:
        """Hold an exclusive lock on the folder for this process's lifetime."""
        if self._lock_fh is not None:
            return
        fh = open(self.path / ".lock", "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise RunLockedError(f"another process is already working on {self.path}") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._lock_fh = fh

    def unlock(self) -> None:
        if self._lock_fh is not None:
            fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None

    def mark_complete(self, summary: dict) -> None:
        """Write the completion marker last and drop the resume state."""
        CompleteRecord(completed_at=utc_timestamp(), **summary).save(self.file(COMPLETE_MARKER))
        shutil.rmtree(self.state_dir, ignore_errors=True)

    # --- history and events ------------------------------------------------------
    def read_history(self) -> list[dict]:
        """The rows of history.csv; a line cut short or malformed is left out (:meth:`history_problems`)."""
        return self._history()[0]

    def history_problems(self) -> list[str]:
        """One line per part of history.csv that :meth:`read_history` left out, naming the file."""
        return self._history()[1]

    def _history(self) -> tuple[list[dict], list[str]]:
        path = self.file(HISTORY_FILE)
        if not path.is_file():
            return [], []
        text = path.read_text(encoding="utf-8")
        problems = []
        if text and not text.endswith("\n"):  # a crash in the middle of an append
            text = text[: text.rfind("\n") + 1]
            problems.append(f"{path}: its last line is cut short (that epoch is left out)")
        rows = []
        reader = csv.DictReader(io.StringIO(text, newline=""))
        for row in reader:
            if None in row or None in row.values():  # more or fewer fields than the header
                problems.append(f"{path}: line {reader.line_num} does not have the columns of its header (left out)")
            else:
                rows.append(row)
        return rows, problems

    def rewrite_history(self, rows: Iterable[dict]) -> None:
        """Replace history.csv with ``rows`` (used when resuming from a checkpoint)."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=HISTORY_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
        atomic_write_text(self.file(HISTORY_FILE), buf.getvalue())

    def append_history(self, row: dict) -> None:
        path = self.file(HISTORY_FILE)
        if not path.is_file():
            self.rewrite_history([])
        buf = io.StringIO()
        csv.DictWriter(buf, fieldnames=HISTORY_COLUMNS, extrasaction="ignore", lineterminator="\n").writerow(row)
        _append(path, buf.getvalue())

    def event(self, kind: str, **fields: Any) -> dict:
        """Append one progress event to events.jsonl and return it."""
        record = {"t": round(time.time(), 3), "event": kind, **fields}
        _append(self.file(EVENTS_FILE), json.dumps(record, default=float) + "\n")
        return record

    def read_events(self) -> list[dict]:
        path = self.file(EVENTS_FILE)
        if not path.is_file():
            return []
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a crash
        return out


def _append(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
