"""agent-mesh agent SDK: heartbeats, push kill, pause/resume, checkpoints, guard and escalation."""

from __future__ import annotations

from agent_sdk.async_agent import AsyncAgent
from agent_sdk.config import SDK_VERSION, TERMINATED_EXIT_CODE
from agent_sdk.sync_agent import Agent
from mesh.errors import AgentKilled, InvalidCheckpoint

#: For users porting from the reference SDK, which names it so.
AgentKilledException = AgentKilled

__version__ = SDK_VERSION

__all__ = [
    "TERMINATED_EXIT_CODE",
    "Agent",
    "AgentKilled",
    "AgentKilledException",
    "AsyncAgent",
    "InvalidCheckpoint",
    "__version__",
]
