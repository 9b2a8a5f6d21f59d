"""Terminal formatting for reports, tables and events: times, numbers, metadata, alignment."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any


def clock(when: datetime | None = None) -> str:
    """``[09:00:12]`` in local time."""
    moment = (when or datetime.now(UTC)).astimezone()
    return f"[{moment:%H:%M:%S}]"


def number(value: float) -> str:
    """``6074`` -> ``6,074``; floats keep up to two decimals."""
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}".rstrip("0").rstrip(".")
    return f"{int(value):,}"


def metadata(values: Mapping[str, Any], *, limit: int = 6) -> str:
    """``batch 22, sent 2147``: the scalar metadata fields, in order."""
    parts = []
    for name, value in values.items():
        if isinstance(value, bool) or value is None:
            parts.append(f"{name} {str(value).lower()}")
        elif isinstance(value, int | float | str):
            parts.append(f"{name} {value}")
        if len(parts) == limit:
            break
    return ", ".join(parts)


def ago(when: datetime | None, now: datetime | None = None) -> str:
    if when is None:
        return "never"
    seconds = max(0.0, ((now or datetime.now(UTC)) - when).total_seconds())
    if seconds < 1:
        return "just now"
    if seconds < 90:
        return f"{seconds:.0f}s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m ago"
    if seconds < 172800:
        return f"{seconds / 3600:.0f}h ago"
    return f"{seconds / 86400:.0f}d ago"


def short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns separated by two spaces; the last column is not padded."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in [list(headers), *[list(r) for r in rows]]:
        cells = [cell.ljust(widths[i]) if i < len(row) - 1 else cell for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
    return lines


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(", ", ": "), default=str)
