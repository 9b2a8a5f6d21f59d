"""The recorded history: every operation, fault and process event, timestamped on one clock."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class History:
    entries: list[dict[str, Any]] = field(default_factory=list)

    def add(self, kind: str, **fields: Any) -> dict[str, Any]:
        entry = {"t": time.time(), "kind": kind, **fields}
        self.entries.append(entry)
        return entry

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.entries if e["kind"] == kind]
