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

import contextlib
import csv
import fcntl
import io
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

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
from core.artifacts.storage import append_lines, atomic_write_text, utc_timestamp
from core.errors import UserError

HISTORY_COLUMNS = ["stage", "epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds"]


START_EVENTS = ("started", "resumed")  # the first event of an invocation
END_EVENTS = ("complete", "failed", "interrupted")  # the last event of an invocation that ended in Python


@dataclass(frozen=True)
class RunStatus:
    """Where a run folder stands (:meth:`RunFolder.status`)."""

    state: str  # new | partial | failed | interrupted | complete
    reason: str | None = None  # why a failed or interrupted run stopped (its error)
    at: str | None = None  # when it stopped (UTC)


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
        append_lines(path, buf.getvalue())

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time a phase of this invocation (``features``, ``stage1``, ...) into a ``phase`` event.

        The event is written when the phase ends, also when it fails or is interrupted
        (``finished`` false), so the time an invocation spent is on record even if the run
        completes in a later one (see :meth:`invocations`).
        """
        started, finished = time.monotonic(), False
        try:
            yield
            finished = True
        finally:
            self.event("phase", phase=name, seconds=round(time.monotonic() - started, 2), finished=finished)

    def event(self, kind: str, **fields: Any) -> dict:
        """Append one progress event to events.jsonl and return it."""
        record = {"t": round(time.time(), 3), "event": kind, **fields}
        append_lines(self.file(EVENTS_FILE), json.dumps(record, default=float) + "\n")
        return record

    def read_events(self, problems: list[str] | None = None) -> list[dict]:
        """Every readable event of events.jsonl, in order.

        A line that is not one event (cut short by a crash or a full disk) is skipped;
        with ``problems``, a one-line warning for it is appended there, for the caller to show.
        """
        path = self.file(EVENTS_FILE)
        try:
            lines = path.read_bytes().split(b"\n")
        except FileNotFoundError:
            return []
        except OSError as exc:
            _note(problems, f"{path}: unreadable ({exc.strerror or exc}); its progress events are not shown")
            return []
        out = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            event = _parse_event(line)
            if event is None:
                _note(problems, f"{path} line {number}: not a complete event (cut short by a crash or a full "
                                "disk?), skipped")
            else:
                out.append(event)
        return out


    def status(self, problems: list[str] | None = None) -> RunStatus:
        """Where this run stands: complete, never started (``new``), or how its last invocation ended.

        A last invocation that recorded no end is ``partial``: working now, or killed.
        """
        if self.is_complete():
            return RunStatus("complete")
        if not self.exists():
            return RunStatus("new")
        ends = [e for e in self.read_events(problems) if e["event"] in START_EVENTS + END_EVENTS]
        last = ends[-1] if ends else {"event": "started"}
        if last["event"] in ("failed", "interrupted"):
            return RunStatus(last["event"], str(last.get("error") or "no reason recorded"), utc_timestamp(last["t"]))
        return RunStatus("partial")

    def invocations(self, problems: list[str] | None = None) -> list[dict]:
        """Every invocation (``run``, ``experiment``, a resume) on record in events.jsonl, oldest first.

        Each: ``started_at``, ``resumed``, ``outcome`` (``complete``, ``failed``,
        ``interrupted``, or None when it recorded no end: killed, or still working),
        ``wall_time_s`` (from its start to its last event) and ``timings_s`` (seconds per
        phase, from its ``phase`` events).
        """
        out: list[dict] = []
        for e in self.read_events(problems):
            if e["event"] in START_EVENTS:
                out.append({"started_at": utc_timestamp(e["t"]), "resumed": e["event"] == "resumed", "outcome": None,
                            "wall_time_s": 0.0, "timings_s": {}, "_t0": e["t"]})
                continue
            if not out:
                continue
            current = out[-1]
            current["wall_time_s"] = round(max(0.0, e["t"] - current["_t0"]), 1)
            if e["event"] in END_EVENTS:
                current["outcome"] = e["event"]
            elif e["event"] == "phase" and isinstance(e.get("seconds"), (int, float)):
                name = str(e.get("phase"))
                current["timings_s"][name] = round(current["timings_s"].get(name, 0.0) + e["seconds"], 2)
        return [{k: v for k, v in inv.items() if k != "_t0"} for inv in out]


def total_timings(invocations: list[dict]) -> dict[str, float]:
    """Seconds per phase summed over ``invocations`` (see :meth:`RunFolder.invocations`)."""
    total: dict[str, float] = {}
    for inv in invocations:
        for name, seconds in inv.get("timings_s", {}).items():
            total[name] = round(total.get(name, 0.0) + seconds, 2)
    return total


def _parse_event(line: bytes) -> dict | None:
    """One line of events.jsonl as an event (an object with a time and a kind), or None."""
    try:
        event = json.loads(line.decode("utf-8"))
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return None
    ok = isinstance(event, dict) and isinstance(event.get("event"), str) and isinstance(event.get("t"), (int, float))
    return event if ok else None


def _note(problems: list[str] | None, line: str) -> None:
    if problems is not None:
        problems.append(line)
