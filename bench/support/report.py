"""What a bench shows and keeps: number formats, aligned tables, verdicts and the JSON result file."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.support.machine import machine_info

__all__ = [
    "RESULTS_DIR",
    "envelope",
    "fmt_ms",
    "fmt_rate",
    "fmt_ratio",
    "print_table",
    "verdict",
    "write_json",
]

RESULTS_DIR = Path(__file__).resolve().parent.parent / "results"


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}" if value < 1 else f"{value:.2f}"


def fmt_rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}x"


def verdict(value: float | None, budget: float, *, higher_is_better: bool = False) -> str:
    """``met`` or ``MISSED`` against a budget (a ceiling, or a floor when higher is better)."""
    if value is None:
        return "not measured"
    ok = value >= budget if higher_is_better else value <= budget
    return "met" if ok else "MISSED"


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain aligned table on stdout."""
    cells = [[str(h) for h in headers], *[["-" if c is None else str(c) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(cells[0], widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print(
            "  ".join(
                c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    sys.stdout.flush()


def envelope(name: str, params: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
    """The JSON shape every script writes."""
    return {"bench": name, "schema": 1, "machine": machine_info(), "params": params, "results": results}


def write_json(name: str, data: dict[str, Any], out_dir: Path | None = None) -> Path:
    directory = out_dir or RESULTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)
    print(f"\nwrote {path}")
    return path
