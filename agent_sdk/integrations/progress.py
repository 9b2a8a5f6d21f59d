"""Where a framework run stands (turn, last tool, tool calls made): the metadata of its acknowledgement."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["RunProgress"]


@dataclass(slots=True)
class RunProgress:
    """Counted at the safe points; sent as the instance's metadata, so a halted ack says where it stopped."""

    turn: int = 0
    last_tool: str | None = None
    tool_calls: int = 0
    #: The framework's own name for the place the run is at (a node, a model call...).
    at: str | None = None

    def metadata(self) -> dict[str, Any]:
        return {"turn": self.turn, "last_tool": self.last_tool, "tool_calls": self.tool_calls, "at": self.at}

    def restore(self, saved: Any) -> None:
        """Continue the counts of a checkpointed run (unknown or missing fields are left as they are)."""
        if not isinstance(saved, dict):
            return
        if isinstance(saved.get("turn"), int):
            self.turn = saved["turn"]
        if isinstance(saved.get("tool_calls"), int):
            self.tool_calls = saved["tool_calls"]
        if isinstance(saved.get("last_tool"), str):
            self.last_tool = saved["last_tool"]
