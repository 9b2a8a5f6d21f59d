"""AsyncAgent: the SDK for asyncio agents; the NATS client runs on the agent's own loop."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable, Coroutine, Mapping
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, overload

from agent_sdk.config import AgentConfig
from agent_sdk.core import AgentCore
from agent_sdk.outcome import outcome_of
from agent_sdk.signals import release_sigterm, stop_on_sigterm
from agent_sdk.view import InstanceView
from mesh.errors import ConfigError, MeshTimeout
from mesh.protocol.models import Status
from mesh.runtime.aio import cancelling, raise_if_cancelling
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection

__all__ = ["AsyncAgent"]

P = ParamSpec("P")
R = TypeVar("R")


async def _outlast_cancels(closing: asyncio.Future[None]) -> None:
    """Wait for ``closing`` (bounded by its own timeouts) however often we are cancelled meanwhile.

    asyncio.run's Ctrl+C handler cancels the main task from a signal handler, which may run in
    the middle of the task's step: we then see the request (``cancelling()``) before the task
    is thrown its CancelledError, which lands on our next await. Left to a plain shield, that
    await ended and asyncio.run cancelled the report with the rest of the leftover tasks.
    """
    while not closing.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(closing)
    closing.result()


class AsyncAgent(InstanceView):
    """One agent instance in an asyncio program.

    ``async with AsyncAgent("agent://acme/prod/mailer") as agent:`` connects, reads the kill
    records and the last checkpoint, and reports ``started``. The safe points are
    ``await agent.heartbeat()``, ``await agent.checkpoint()``, ``await agent.sleep()`` and every
    ``@agent.guard``-ed call. Guarded coroutines that are running when a kill arrives are
    cancelled at once and their caller gets :class:`AgentKilled`, in ``pause`` mode too: the
    interrupted call did not complete, so after ``await agent.wait_resumed()`` re-run it.
    Agents that poll should wait with ``await agent.sleep(seconds)``, which wakes on a kill.

    ``connection=``: a :class:`mesh.transport.connection.Connection` (opened, on the same loop) shared by
    many agents of one process: each instance keeps its own kill state, checkpoint and audit
    chain; the connection's agents share one subscription per control subject, one batched
    re-read of the kill records and one pipeline of acknowledged publishes
    (``agent_sdk/router.py``, ``mesh/transport/ackpipe.py``). Stopping an agent never closes the
    shared connection (its owner closes it).
    """

    def __init__(
        self,
        uri: str,
        *,
        instance: str | None = None,
        servers: str | list[str] | None = None,
        heartbeat_interval: float = 2.0,
        on_kill: str = "raise",
        hard_kill: bool = True,
        fail_closed_after: float | None = None,
        metadata: dict[str, Any] | None = None,
        settings: Settings | None = None,
        resync_interval: float | None = None,
        quota_timeout: float | None = None,
        connection: Connection | None = None,
    ) -> None:
        if connection is not None:
            if servers is not None:
                raise ConfigError("give either servers or a shared connection, not both")
            settings = settings or connection.settings
            if settings.namespace != connection.ns:
                raise ConfigError("the shared connection is for another namespace (MESH_PREFIX)")
        self.config = AgentConfig.build(
            uri,
            instance=instance,
            servers=servers,
            settings=settings,
            heartbeat_interval=heartbeat_interval,
            on_kill=on_kill,
            hard_kill=hard_kill,
            fail_closed_after=fail_closed_after,
            metadata=metadata,
            resync_interval=resync_interval,
            quota_timeout=quota_timeout,
        )
        self._core = AgentCore(self.config, connection)
        self._restored: Any = None
        self._started = False
        self._sigterm_task: asyncio.Task[object] | None = None
        self._cancel_checked = 0.0

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> AsyncAgent:
        if self._started:
            raise ConfigError("this agent has already been started")
        self._started = True
        self._restored = await self._core.start(own_loop=False)
        task = asyncio.current_task()
        if task is not None and stop_on_sigterm(task):
            self._sigterm_task = task
        return self

    async def stop(self) -> None:
        """Stop cleanly: flush the checkpoint, report ``stopped``, drain the connection."""
        await self._close(Status.STOPPED)

    async def _close(self, outcome: Status, exc: BaseException | None = None) -> None:
        if self._sigterm_task is not None:
            release_sigterm(self._sigterm_task)
            self._sigterm_task = None
        if cancelling():
            # Stopping because we were cancelled (Ctrl+C under asyncio.run, SIGTERM): report it from a
            # task of its own, whose steps are not taken for a second cancel.
            await _outlast_cancels(asyncio.ensure_future(self._core.close(outcome, exc)))
            return
        await self._core.close(outcome, exc)

    async def __aenter__(self) -> AsyncAgent:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._close(outcome_of(exc), exc)

    # -- state ---------------------------------------------------------------------------------------

    async def wait_resumed(self, timeout: float | None = None) -> bool:
        """Wait until no kill is in force; False if ``timeout`` passed first."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while self._core.killed_evt.is_set():
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return False
            await self._core.wait_change(remaining)
        return True

    # -- safe points ---------------------------------------------------------------------------------
    async def heartbeat(self, metadata: dict[str, Any] | None = None) -> None:
        """Record progress (sent by the background timer) and pass a safe point."""
        if metadata is not None:
            self._core.metadata = dict(metadata)
        self._check_cancel()
        if self._core.attention.is_set() or self._core.stalled():
            await self._core.safe_point()

    async def checkpoint(self, state: Any) -> None:
        """Save ``state`` (JSON, ≤ 512 KiB; else InvalidCheckpoint) durably, in the background."""
        core = self._core
        if core.ckpt.stage(state):
            core.ckpt.wake()
        self._check_cancel()
        if core.attention.is_set() or core.stalled():
            await core.safe_point()

    def _check_cancel(self) -> None:
        """Re-raise a cancel that a library swallowed (mesh.runtime.aio.cancelling), once per liveness tick.

        Asking the task costs about 0.3 µs, half of a heartbeat; the ticker's stamp changes every
        0.1 s, so a loop that lost its cancel still stops within a tick, at a float comparison a call.
        """
        stamp = self._core.liveness.stamp
        if stamp != self._cancel_checked:
            self._cancel_checked = stamp
            raise_if_cancelling()

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, waking at once when killed (a safe point: may raise or pause)."""
        await self._core.sleep(seconds)

    async def spend(self, **counters: float) -> None:
        """Spend from this instance's quota leases *before* the action, e.g. ``await spend(emails=1)``.

        With a lease in hand it never waits on the network. When the lease is empty it asks the
        controller for more (a bounded request); when a policy's budget is gone the instance
        halts as a kill would (AgentKilled naming the policy, or a pause). With no controller
        it waits (fail-closed, a safe point) or goes on unchecked if the policy fails open.
        Spent amounts are added to the usage counters, as :meth:`record` does. A safe point.
        """
        core = self._core
        if core.attention.is_set() or core.stalled():
            await core.safe_point()
        if core.quota.try_spend(counters):
            return
        await core.quota.acquire(counters)

    @overload
    def guard(self, fn: Callable[P, R], /) -> Callable[P, R]: ...

    @overload
    def guard(
        self, fn: None = None, /, *, cost: Mapping[str, float]
    ) -> Callable[[Callable[P, R]], Callable[P, R]]: ...

    def guard(
        self, fn: Callable[P, R] | None = None, /, *, cost: Mapping[str, float] | None = None
    ) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorate a tool so that it never runs while this instance is killed.

        Coroutine functions are safe points (pause mode blocks before the call) and are
        cancelled when a kill arrives mid-call. Plain functions can only refuse: they raise
        AgentKilled whatever ``on_kill`` says, as they cannot wait without blocking the loop.
        ``@agent.guard(cost={"emails": 1})`` on a coroutine function also spends that cost
        (see :meth:`spend`) before each call; a plain function cannot wait for a refill, so it
        spends only from the lease in hand and raises MeshTimeout when that is empty.
        """
        if fn is None:
            price = dict(cost or {})
            return lambda f: self._guarded(f, price)
        return self._guarded(fn, dict(cost or {}))

    def _guarded(self, fn: Callable[P, R], cost: dict[str, float]) -> Callable[P, R]:
        core = self._core
        if asyncio.iscoroutinefunction(fn):
            run = core.run_guarded
            afn: Callable[..., Coroutine[Any, Any, Any]] = fn
            spend = self.spend

            @functools.wraps(fn)
            async def guarded_async(*args: Any, **kwargs: Any) -> Any:
                if cost:
                    await spend(**cost)
                return await run(afn, args, kwargs)

            return guarded_async  # type: ignore[return-value]

        @functools.wraps(fn)
        def guarded_sync(*args: P.args, **kwargs: P.kwargs) -> R:
            if core.killed_evt.is_set():
                core.spawn(core.halt())
                raise core.killed_error()
            if cost and not core.quota.try_spend(cost):
                raise MeshTimeout(f"spend {sorted(cost)} from the lease in hand (it is empty)", 0.0)
            return fn(*args, **kwargs)

        return guarded_sync
