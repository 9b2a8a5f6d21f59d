"""Usage counters of one instance: monotonic totals that ride on heartbeats and persist with checkpoints."""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Mapping

from mesh.errors import ConfigError

__all__ = ["UsageCounters"]

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
#: Names the policy grammar keeps for itself: a counter called so could never be limited.
_RESERVED = frozenset({"instances", "runtime", "silence"})


class UsageCounters:
    """``add`` runs on the caller's thread (no network, no allocation beyond the dict update);
    the event loop reads ``snapshot`` for heartbeats and checkpoint writes.

    ``version`` counts changes, so the writer can tell whether the stored copy is behind.
    """

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self.version = 0
        self._lock = threading.Lock()
        self._names: set[str] = set()

    def _check(self, name: str, value: object) -> float:
        if name not in self._names:
            if not _NAME.fullmatch(name) or name in _RESERVED:
                raise ConfigError(
                    f"invalid usage counter {name!r}: a letter then letters, digits or '_' (up to 64), "
                    f"not one of {', '.join(sorted(_RESERVED))}"
                )
            self._names.add(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"usage counter {name}: expected a number, not {type(value).__name__}")
        amount = float(value)
        if not math.isfinite(amount) or amount < 0:
            raise ConfigError(f"usage counter {name}: expected a finite number >= 0, not {value!r}")
        return amount

    def validate(self, counters: Mapping[str, object]) -> dict[str, float]:
        """The amounts as floats, every name and value checked (ConfigError otherwise)."""
        return {name: self._check(name, value) for name, value in counters.items()}

    def add(self, counters: Mapping[str, object]) -> None:
        """Add to the totals; every value is checked before any is applied (all or nothing)."""
        amounts = [(name, self._check(name, value)) for name, value in counters.items()]
        with self._lock:
            totals = self.totals
            for name, amount in amounts:
                totals[name] = totals.get(name, 0.0) + amount
            self.version += 1

    def restore(self, saved: Mapping[str, float]) -> None:
        """Start from totals saved by an earlier run of this instance id (kept if already higher)."""
        with self._lock:
            for name, value in saved.items():
                if _NAME.fullmatch(name) and isinstance(value, int | float) and math.isfinite(value):
                    self.totals[name] = max(self.totals.get(name, 0.0), float(value))

    def snapshot(self) -> tuple[int, dict[str, float]]:
        with self._lock:
            return self.version, dict(self.totals)
