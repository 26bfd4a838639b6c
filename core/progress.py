"""Progress reporting for long work: the ``Emit`` callback type, a throughput printer, durations."""

from __future__ import annotations

import time
from typing import Callable

Emit = Callable[[str], None]
"""Where a long operation reports progress: one line of text per call (``print`` by default)."""


class Throughput:
    """Progress printer with rate and ETA for long loops."""

    def __init__(self, label: str, emit: Callable[[str], None], every_s: float = 5.0):
        self.label, self.emit, self.every_s = label, emit, every_s
        self.start = time.monotonic()
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self.last < self.every_s:
            return
        self.last = now
        rate = done / max(now - self.start, 1e-9)
        eta = (total - done) / rate if rate > 0 else float("nan")
        self.emit(f"{self.label}: {done}/{total} images, {rate:.1f}/s, ETA {format_seconds(eta)}")


def format_seconds(seconds: float) -> str:
    """``75`` -> ``1m15s``."""
    if seconds != seconds:  # NaN
        return "?"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")
