"""Summary statistics of latency samples, and ratios to a floor."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["percentiles", "ratio"]


def _quantile(ordered: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), on sorted data."""
    if len(ordered) == 1:
        return float(ordered[0])
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return float(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo))


def percentiles(samples: Sequence[float], digits: int = 4) -> dict[str, Any]:
    """``n, p50, p99, max, min, mean`` of ``samples`` (``None`` values when there are none)."""
    if not samples:
        return {"n": 0, "p50": None, "p99": None, "max": None, "min": None, "mean": None}
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "p50": round(_quantile(ordered, 0.50), digits),
        "p99": round(_quantile(ordered, 0.99), digits),
        "max": round(float(ordered[-1]), digits),
        "min": round(float(ordered[0]), digits),
        "mean": round(sum(ordered) / len(ordered), digits),
    }


def ratio(value: float | None, floor: float | None, digits: int = 2) -> float | None:
    """``value / floor``, or ``None`` when either is missing or the floor is zero."""
    if value is None or floor is None or floor == 0:
        return None
    return round(value / floor, digits)
