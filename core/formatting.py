"""Plain formatting shared by the command line, the audit summary and the report: text tables, stored numbers."""

from __future__ import annotations

from typing import Sequence


def format_table(rows: Sequence[Sequence[object]], headers: Sequence[str]) -> str:
    """Render rows as a fixed-width text table with a header rule."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def finite_number(value) -> float | None:
    """A stored number as float; None when missing, not a number, or NaN."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if value == value else None
