"""Agent: the SDK for plain synchronous code; NATS runs on a background event-loop thread."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, overload

from anyio.from_thread import BlockingPortal, start_blocking_portal

from agent_sdk.config import AgentConfig
from agent_sdk.core import AgentCore
from agent_sdk.liveness import STALL_LIMIT
from agent_sdk.outcome import outcome_of
from agent_sdk.signals import release_sigterm, stop_on_sigterm
from agent_sdk.view import InstanceView
from mesh.errors import ConfigError
from mesh.protocol.models import Status
from mesh.runtime.settings import Settings

__all__ = ["Agent"]

P = ParamSpec("P")
R = TypeVar("R")


class Agent(InstanceView):
    """One agent instance in synchronous code.

    ``with Agent("agent://acme/prod/mailer", instance="a1") as agent:`` connects, reads the
    kill records and the last checkpoint, and reports ``started``. Safe points are
    ``heartbeat()``, ``checkpoint()``, ``sleep()`` and ``@agent.guard``-ed calls; when not
    killed they only test a local flag and never wait on the network. A loop that polls
    should wait with ``agent.sleep(seconds)``: it wakes at once on a kill, and an instance
    parked there is acknowledged by the background thread within a round trip.
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
    ) -> None:
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
        self._core = AgentCore(self.config)
        self._attention = self._core.attention
        self._quota = self._core.quota
        self._portal_cm: AbstractContextManager[BlockingPortal] | None = None
        self._portal: BlockingPortal | None = None
        self._restored: Any = None
        self._started = False
        self._holds_sigterm = False

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> Agent:
        if self._started:
            raise ConfigError("this agent has already been started")
        self._started = True
        self._portal_cm = start_blocking_portal()
        self._portal = self._portal_cm.__enter__()
        try:
            self._restored = self._portal.call(functools.partial(self._core.start, own_loop=True))
        except BaseException as exc:
            self._portal_cm.__exit__(type(exc), exc, exc.__traceback__)
            self._portal = self._portal_cm = None
            raise
        self._holds_sigterm = stop_on_sigterm()
        return self

    def _close(self, outcome: Status, exc: BaseException | None = None) -> None:
        portal, cm = self._portal, self._portal_cm
        if portal is None or cm is None:
            return
        self._portal = self._portal_cm = None
        try:
            portal.call(self._core.close, outcome, exc)
        finally:
            cm.__exit__(None, None, None)
            if self._holds_sigterm:
                self._holds_sigterm = False
                release_sigterm()

    def stop(self) -> None:
        """Stop cleanly: flush the checkpoint, report ``stopped``, drain the connection."""
        self._close(Status.STOPPED)

    def __enter__(self) -> Agent:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._close(outcome_of(exc), exc)

    # -- state ---------------------------------------------------------------------------------------

    def wait_resumed(self, timeout: float | None = None) -> bool:
        """Block until no kill is in force; False if ``timeout`` passed first."""
        return self._core.clear_evt.wait(timeout)

    # -- safe points: the hot path is one flag test -------------------------------------------------
    def _slow_path(self) -> None:
        portal = self._portal
        if portal is None:
            if self._core.killed_evt.is_set():
                raise self._core.killed_error()
            return
        portal.call(self._core.safe_point)

    def _must_check(self) -> bool:
        """The hot-path test: a kill flag, or a loop too quiet to trust (frozen, see STALL_LIMIT)."""
        return self._attention.is_set() or time.monotonic() - self._core.liveness.stamp > STALL_LIMIT

    def heartbeat(self, metadata: dict[str, Any] | None = None) -> None:
        """Record progress (sent by the background timer) and pass a safe point."""
        if metadata is not None:
            self._core.metadata = dict(metadata)
        if self._must_check():
            self._slow_path()

    def checkpoint(self, state: Any) -> None:
        """Save ``state`` (JSON, ≤ 512 KiB; else InvalidCheckpoint) durably, in the background.

        The latest checkpoint is always written before a halt acknowledgement and before exit.
        """
        ckpt = self._core.ckpt
        loop = self._core.loop
        if ckpt.stage(state) and loop is not None:
            loop.call_soon_threadsafe(ckpt.wake)  # one hand-off per write, not per call
        if self._must_check():
            self._slow_path()

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, waking at once when killed (a safe point: may raise or pause)."""
        core = self._core
        if not self._attention.is_set():
            with core.sync_parked():
                # The flag is tested after we count as parked: a kill that lands in between is
                # either acknowledged by the loop or seen here, never missed.
                deadline = time.monotonic() + seconds
                wake = core.sleep_wake
                while not wake.is_set():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    wake.wait(remaining)
        if self._must_check():
            self._slow_path()

    def spend(self, **counters: float) -> None:
        """Spend from this instance's quota leases *before* the action, e.g. ``spend(emails=1)``.

        With a lease in hand it never waits on the network. When the lease is empty it asks the
        controller for more (a bounded request); when a policy's budget is gone the instance
        halts as a kill would (AgentKilled naming the policy, or a pause). With no controller
        it waits (fail-closed, a safe point) or goes on unchecked if the policy fails open.
        Spent amounts are added to the usage counters, as :meth:`record` does. A safe point.
        """
        if self._must_check():
            self._slow_path()
        if self._quota.try_spend(counters):
            return
        portal = self._portal
        if portal is None:
            raise ConfigError("spend() needs a started agent: use `with Agent(...) as agent:`")
        portal.call(self._quota.acquire, counters)

    @overload
    def guard(self, fn: Callable[P, R], /) -> Callable[P, R]: ...

    @overload
    def guard(
        self, fn: None = None, /, *, cost: Mapping[str, float]
    ) -> Callable[[Callable[P, R]], Callable[P, R]]: ...

    def guard(
        self, fn: Callable[P, R] | None = None, /, *, cost: Mapping[str, float] | None = None
    ) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorate a tool so that it never runs while this instance is killed (a safe point).

        ``@agent.guard(cost={"emails": 1})`` also spends that cost (see :meth:`spend`) before each call.
        """
        if fn is None:
            price = dict(cost or {})
            return lambda f: self._guarded(f, price)
        return self._guarded(fn, dict(cost or {}))

    def _guarded(self, fn: Callable[P, R], cost: dict[str, float]) -> Callable[P, R]:
        attention = self._attention
        slow = self._slow_path
        core = self._core
        now = time.monotonic
        spend = self.spend

        @functools.wraps(fn)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            if attention.is_set() or now() - core.liveness.stamp > STALL_LIMIT:
                slow()
            if cost:
                spend(**cost)
            return fn(*args, **kwargs)

        return guarded
