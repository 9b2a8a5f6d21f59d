"""The blocking operator API: ``Mesh`` runs an ``AsyncMesh`` on a background event loop (anyio portal)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Literal, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal

from mesh.client.operator import ALL, AsyncMesh
from mesh.protocol.models import AuditEvent, InstanceStatus, Status
from mesh.protocol.policy import Limit, Policy
from mesh.protocol.reports import AgentStatus, HeldBy, KillReport, ResumeReport
from mesh.protocol.target import Target
from mesh.protocol.usage import UsageReport
from mesh.runtime.settings import Settings

__all__ = ["Mesh", "get", "kill", "list_instances", "resume", "status"]

T = TypeVar("T")


class Mesh:
    """Blocking operator client: ``with Mesh() as mesh: mesh.kill("agent://acme/prod/mailer")``.

    Settings come from the environment unless given; keyword overrides (``nats_url=``,
    ``prefix=`` ...) are applied on top.
    """

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        self.settings = settings or Settings.from_env(**overrides)
        self._portal_cm: AbstractContextManager[BlockingPortal] = start_blocking_portal("asyncio")
        self._portal = self._portal_cm.__enter__()
        self._mesh = AsyncMesh(self.settings)
        try:
            self._portal.call(self._mesh.connect)
        except BaseException:
            self._portal_cm.__exit__(None, None, None)
            raise
        self._closed = False

    def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        if self._closed:
            raise RuntimeError("this Mesh is closed")

        async def run() -> T:
            return await fn()

        return self._portal.call(run)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._portal.call(self._mesh.close)
        finally:
            self._portal_cm.__exit__(None, None, None)

    def __enter__(self) -> Mesh:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def kill(
        self,
        target: str | Target,
        *,
        instance: str | None = None,
        reason: str | None = None,
        grace: float = 10.0,
        wait: float = 2.0,
        action: Literal["raise", "pause"] | None = None,
        actor: str | None = None,
    ) -> KillReport:
        """See :meth:`AsyncMesh.kill`."""
        return self._call(
            lambda: self._mesh.kill(
                target, instance=instance, reason=reason, grace=grace, wait=wait, action=action, actor=actor
            )
        )

    def resume(
        self,
        target: str | Target,
        *,
        instance: str | None = None,
        reason: str | None = None,
        wait: float = 2.0,
        actor: str | None = None,
    ) -> ResumeReport:
        """See :meth:`AsyncMesh.resume`."""
        return self._call(
            lambda: self._mesh.resume(target, instance=instance, reason=reason, wait=wait, actor=actor)
        )

    def list_instances(
        self, pattern: str | Target = ALL, status: Status | str | None = None
    ) -> list[InstanceStatus]:
        return self._call(lambda: self._mesh.list_instances(pattern, status))

    def get(self, uri: str, instance: str | None = None) -> InstanceStatus:
        return self._call(lambda: self._mesh.get(uri, instance))

    def status(self, uri: str, instance: str | None = None) -> AgentStatus:
        return self._call(lambda: self._mesh.status(uri, instance))

    def records(self, pattern: str | Target = ALL) -> list[HeldBy]:
        return self._call(lambda: self._mesh.records(pattern))

    def set_policy(
        self,
        name: str,
        target: str | Target,
        limits: list[str] | list[Limit],
        action: Literal["kill", "pause", "alert"] = "kill",
        grace: float = 10.0,
        *,
        dry_run: bool = False,
        on_unreachable: Literal["wait", "proceed"] = "wait",
        actor: str | None = None,
    ) -> Policy:
        """See :meth:`AsyncMesh.set_policy`."""
        return self._call(
            lambda: self._mesh.set_policy(
                name,
                target,
                limits,
                action,
                grace,
                dry_run=dry_run,
                on_unreachable=on_unreachable,
                actor=actor,
            )
        )

    def list_policies(self) -> list[Policy]:
        return self._call(self._mesh.list_policies)

    def remove_policy(self, name: str) -> None:
        """See :meth:`AsyncMesh.remove_policy`."""
        self._call(lambda: self._mesh.remove_policy(name))

    def usage(
        self, pattern: str | Target = ALL, since: datetime | timedelta | str | None = None
    ) -> UsageReport:
        """See :meth:`AsyncMesh.usage`."""
        return self._call(lambda: self._mesh.usage(pattern, since))

    def _iterate(self, make: Callable[[], Any]) -> Iterator[AuditEvent]:
        iterator = self._call(self._make_async(make))
        try:
            while True:
                try:
                    yield self._call(iterator.__anext__)
                except StopAsyncIteration:
                    return
        finally:
            if not self._closed:
                self._call(iterator.aclose)

    @staticmethod
    def _make_async(make: Callable[[], Any]) -> Callable[[], Awaitable[Any]]:
        async def run() -> Any:
            return make()

        return run

    def events(
        self,
        pattern: str | Target = ALL,
        since: datetime | timedelta | str | None = None,
        follow: bool = False,
    ) -> Iterator[AuditEvent]:
        """See :meth:`AsyncMesh.events`."""
        return self._iterate(lambda: self._mesh.events(pattern, since, follow))

    def subscribe_audit(self, pattern: str | Target = ALL, *, durable: str) -> Iterator[AuditEvent]:
        """See :meth:`AsyncMesh.subscribe_audit`."""
        return self._iterate(lambda: self._mesh.subscribe_audit(pattern, durable=durable))


def kill(
    target: str | Target,
    *,
    instance: str | None = None,
    reason: str | None = None,
    grace: float = 10.0,
    wait: float = 2.0,
    action: Literal["raise", "pause"] | None = None,
    settings: Settings | None = None,
) -> KillReport:
    """One-shot :meth:`Mesh.kill` with settings from the environment."""
    with Mesh(settings) as m:
        return m.kill(target, instance=instance, reason=reason, grace=grace, wait=wait, action=action)


def resume(
    target: str | Target,
    *,
    instance: str | None = None,
    reason: str | None = None,
    wait: float = 2.0,
    settings: Settings | None = None,
) -> ResumeReport:
    """One-shot :meth:`Mesh.resume`."""
    with Mesh(settings) as m:
        return m.resume(target, instance=instance, reason=reason, wait=wait)


def list_instances(
    pattern: str | Target = ALL, status: Status | str | None = None, *, settings: Settings | None = None
) -> list[InstanceStatus]:
    """One-shot :meth:`Mesh.list_instances`."""
    with Mesh(settings) as m:
        return m.list_instances(pattern, status)


def get(uri: str, instance: str | None = None, *, settings: Settings | None = None) -> InstanceStatus:
    """One-shot :meth:`Mesh.get`."""
    with Mesh(settings) as m:
        return m.get(uri, instance)


def status(uri: str, instance: str | None = None, *, settings: Settings | None = None) -> AgentStatus:
    """One-shot :meth:`Mesh.status`."""
    with Mesh(settings) as m:
        return m.status(uri, instance)
