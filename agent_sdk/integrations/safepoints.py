"""The safe points every integration shares: a guarded tool call, and a check before a model call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar, cast

from agent_sdk.async_agent import AsyncAgent
from agent_sdk.integrations.progress import RunProgress
from mesh.errors import AgentKilled

__all__ = ["any_killed", "call_guarded", "killed_in", "mode", "pass_safe_point", "with_entry"]

T = TypeVar("T")


def mode(mesh: AsyncAgent) -> str:
    """What a kill in force does to this instance now: a record's own action overrides on_kill."""
    return mesh._core.mode()


async def pass_safe_point(mesh: AsyncAgent, progress: RunProgress) -> None:
    """Publish where the run is and pass a safe point: returns at once, or pauses, or raises AgentKilled."""
    core = mesh._core
    core.metadata = progress.data  # the live dict: the ack copies it
    if core.attention.is_set() or core.stalled():
        await core.safe_point()


async def call_guarded(mesh: AsyncAgent, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """Run ``fn(*args, **kwargs)`` as ``AsyncAgent.guard`` does, and in pause mode again after resume.

    A kill refuses the call (raise) or holds it (pause) before it starts, and cancels it when it
    lands mid-call. The cancelled call did not complete, so in pause mode it waits for the resume
    at a safe point and then runs again from its start; in raise mode AgentKilled goes up.
    """
    core = mesh._core
    run = cast(Callable[..., Coroutine[Any, Any, T]], fn)  # run_guarded only awaits what fn returns
    while True:
        try:
            result: T = await core.run_guarded(run, args, kwargs)
            return result
        except AgentKilled:
            if core.mode() == "raise":
                raise
            await core.safe_point()  # pauses until resume (or raises if the kill turned to raise)


def with_entry(mesh: AsyncAgent, key: str, entry: Any) -> dict[str, Any]:
    """The instance checkpoint with this integration's ``entry`` under ``key``, the rest kept.

    The checkpoint is one state per instance: an integration owns one key of it, so that the
    program's own checkpoint (a dict) survives alongside. A checkpoint that is not a dict is
    replaced.
    """
    state = mesh._core.ckpt.state
    merged: dict[str, Any] = dict(state) if isinstance(state, dict) else {}
    merged[key] = entry
    return merged


def killed_in(exc: BaseException) -> AgentKilled | None:
    """The AgentKilled behind ``exc`` (a framework may wrap it in its own error), or None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, AgentKilled):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def any_killed(exc: BaseException) -> AgentKilled | None:
    """Like :func:`killed_in`, looking inside exception groups too."""
    found = killed_in(exc)
    if found is not None:
        return found
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = any_killed(inner)
            if found is not None:
                return found
    return None
