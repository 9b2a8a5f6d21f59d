"""Where a framework run stands (turn, last tool, tool calls made): the metadata of its acknowledgement."""

from __future__ import annotations

from typing import Any

__all__ = ["RunProgress"]


class RunProgress:
    """Counted at the safe points and sent as the instance's metadata, so a halted ack says where it stopped.

    The counts live in one dict (``data``) that becomes the instance's metadata and is updated in
    place: a safe point costs no new dict (the acknowledgement copies it when it is sent).
    """

    __slots__ = ("data",)

    def __init__(self) -> None:
        #: turn (model calls, or LangGraph's step), last_tool, tool_calls (completed), at (where).
        self.data: dict[str, Any] = {"turn": 0, "last_tool": None, "tool_calls": 0, "at": None}

    @property
    def turn(self) -> int:
        return int(self.data["turn"])

    @turn.setter
    def turn(self, value: int) -> None:
        self.data["turn"] = value

    @property
    def last_tool(self) -> str | None:
        value = self.data["last_tool"]
        return None if value is None else str(value)

    @last_tool.setter
    def last_tool(self, value: str | None) -> None:
        self.data["last_tool"] = value

    @property
    def tool_calls(self) -> int:
        return int(self.data["tool_calls"])

    @tool_calls.setter
    def tool_calls(self, value: int) -> None:
        self.data["tool_calls"] = value

    @property
    def at(self) -> str | None:
        value = self.data["at"]
        return None if value is None else str(value)

    @at.setter
    def at(self, value: str | None) -> None:
        self.data["at"] = value

    def metadata(self) -> dict[str, Any]:
        """A copy of the counts (for a checkpoint: the live dict keeps changing)."""
        return dict(self.data)

    def restore(self, saved: Any) -> None:
        """Continue the counts of a checkpointed run (unknown or missing fields are left as they are)."""
        if not isinstance(saved, dict):
            return
        for key in ("turn", "tool_calls"):
            if isinstance(saved.get(key), int):
                self.data[key] = saved[key]
        if isinstance(saved.get("last_tool"), str):
            self.data["last_tool"] = saved["last_tool"]
