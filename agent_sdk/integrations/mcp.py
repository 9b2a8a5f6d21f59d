"""MCP clients: every ``call_tool`` of a ClientSession (or ``mcp.Client``) becomes a guarded call."""

from __future__ import annotations

import functools
from typing import Any, TypeVar

from agent_sdk.async_agent import AsyncAgent
from agent_sdk.integrations import require
from agent_sdk.integrations.progress import RunProgress
from agent_sdk.integrations.safepoints import call_guarded
from mesh.errors import ConfigError

try:
    from mcp import Client, ClientSession
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise require("mcp", "mcp", exc) from exc

__all__ = ["guard_session"]

S = TypeVar("S", ClientSession, Client)

_GUARDED = "_agent_mesh_guarded"


def guard_session(session: S, mesh: AsyncAgent) -> S:
    """Make every ``session.call_tool(...)`` a guarded call of ``mesh``; returns the same session.

    While a kill is in force a call is refused (``raise``: AgentKilled) or held until resume
    (``pause``); a call in flight when the kill lands is cancelled (the MCP client tells the
    server with ``notifications/cancelled``). In pause mode the cancelled call is made again after
    resume; in raise mode the caller gets AgentKilled. The halted acknowledgement's metadata
    says which tool was called last and how many calls completed. Other methods are untouched.
    """
    if not isinstance(session, ClientSession | Client):
        raise ConfigError(f"guard_session takes an mcp ClientSession or Client, not {type(session).__name__}")
    if getattr(session, _GUARDED, None) is not None:
        if getattr(session, _GUARDED) is not mesh:
            raise ConfigError("this MCP session is already guarded by another agent")
        return session
    call_tool = session.call_tool
    core = mesh._core
    progress = RunProgress()
    metadata = progress.data  # updated in place: no dict per call

    @functools.wraps(call_tool)
    async def guarded_call_tool(
        name: str, arguments: dict[str, Any] | None = None, *args: Any, **kwargs: Any
    ) -> Any:
        metadata["last_tool"] = name
        metadata["at"] = f"MCP tool {name}"
        core.metadata = metadata
        result = await call_guarded(mesh, call_tool, name, arguments, *args, **kwargs)
        metadata["tool_calls"] += 1
        return result

    object.__setattr__(session, "call_tool", guarded_call_tool)
    object.__setattr__(session, _GUARDED, mesh)
    return session
