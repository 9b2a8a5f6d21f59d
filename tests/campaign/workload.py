"""The operator: random kills and resumes at random scopes, and now and then a policy breach."""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

from mesh.client.operator import AsyncMesh
from mesh.protocol.subjects import key_to_target
from mesh.runtime.settings import Settings

from .history import History
from .topology import FLEET

#: An operator request that takes longer than this is a hang (every request must be bounded).
OP_BOUND = 30.0
SCOPES = ("instance", "agent", "env", "org", "everything")


def targets_by_scope() -> dict[str, list[str]]:
    members = [m for ms in FLEET.values() for m in ms]
    uris = sorted({m.split("#")[0] for m in members})
    envs = sorted({u.rsplit("/", 1)[0] + "/*" for u in uris})
    orgs = sorted({"agent://" + u.removeprefix("agent://").split("/")[0] + "/*/*" for u in uris})
    return {
        "instance": sorted(members),
        "agent": uris,
        "env": envs,
        "org": orgs,
        "everything": ["agent://*/*/*"],
    }


class Operator:
    def __init__(self, settings: Settings, history: History, rng: random.Random) -> None:
        self.settings, self.history, self.rng = settings, history, rng
        self.targets = targets_by_scope()
        self.mesh: AsyncMesh | None = None
        self.in_force: set[str] = set()  # targets this operator believes killed
        self.policies: set[str] = set()
        self._policy_seq = 0

    async def _mesh(self) -> AsyncMesh:
        if self.mesh is None:
            self.mesh = await AsyncMesh(self.settings, name="campaign-operator").connect()
        return self.mesh

    async def close(self) -> None:
        if self.mesh is not None:
            await self.mesh.close()
            self.mesh = None

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(self.rng.uniform(0.2, 1.2))
            roll = self.rng.random()
            if roll < 0.05:
                await self.breach()
            elif roll < 0.55 or not self.in_force:
                scope = self.rng.choice(SCOPES)
                await self.kill(scope, self.rng.choice(self.targets[scope]))
            else:
                target = self.rng.choice(sorted(self.in_force)) if self.rng.random() < 0.8 else None
                if target is None:
                    scope = self.rng.choice(SCOPES)
                    target = self.rng.choice(self.targets[scope])
                await self.resume(target)

    async def _bounded(self, entry: dict[str, Any], call: Any) -> Any:
        bound = asyncio.timeout(OP_BOUND)
        try:
            async with bound:
                result = await call
        except TimeoutError as exc:
            if not bound.expired():  # the call's own timeout (a MeshTimeout is a TimeoutError): bounded
                entry.update(ok=False, error=repr(exc)[:300], end=_now())
                return None
            entry.update(ok=False, error="hung", end=_now())
            await self._reset()
            return None
        except Exception as exc:
            entry.update(ok=False, error=repr(exc)[:300], end=_now())
            if "closed" in repr(exc).lower():
                await self._reset()
            return None
        entry.update(ok=True, end=_now())
        return result

    async def _reset(self) -> None:
        mesh, self.mesh = self.mesh, None
        if mesh is not None:
            with contextlib.suppress(Exception):  # a wedged connection is dropped, not waited on
                await asyncio.wait_for(mesh.close(), 5)

    async def kill(self, scope: str, target: str) -> None:
        entry = self.history.add("op", op="kill", scope=scope, target=target)

        async def call() -> Any:
            return await (await self._mesh()).kill(target, reason="campaign", grace=30.0, wait=1.0)

        report = await self._bounded(entry, call())
        if report is not None:
            entry.update(revision=report.revision, command_id=report.command_id)
            self.in_force.add(target)

    async def resume(self, target: str) -> None:
        entry = self.history.add("op", op="resume", scope=_scope_of(target), target=target)

        async def call() -> Any:
            return await (await self._mesh()).resume(target, reason="campaign", wait=1.0)

        report = await self._bounded(entry, call())
        if report is not None:
            entry.update(revision=report.revision, command_id=report.command_id, cleared=report.cleared)
            self.in_force.discard(target)

    async def breach(self) -> None:
        """A policy every instance of one agent has already breached: the controller pauses it."""
        self._policy_seq += 1
        name = f"breach{self._policy_seq}"
        uri = self.rng.choice(self.targets["agent"])
        entry = self.history.add("op", op="policy", target=uri, policy=name)

        async def call() -> Any:
            return await (await self._mesh()).set_policy(
                name, uri, ["actions<=1"], action="pause", grace=30.0
            )

        if await self._bounded(entry, call()) is not None:
            self.policies.add(name)
            self.in_force.add(uri)  # the controller's kill is on the agent's own key
            asyncio.get_running_loop().call_later(3.0, lambda: asyncio.ensure_future(self.unbreach(name)))

    async def unbreach(self, name: str) -> None:
        entry = self.history.add("op", op="unpolicy", policy=name)

        async def call() -> Any:
            await (await self._mesh()).remove_policy(name)
            return True

        if await self._bounded(entry, call()) is not None:
            self.policies.discard(name)

    async def clear_all(self) -> None:
        """The end state: no record in force, so every instance must be acting again."""
        entry = self.history.add("op", op="records", target="agent://*/*/*")
        held = await self._bounded(entry, self._records())
        for key in held or []:
            await self.resume(str(key_to_target(key)))

    async def _records(self) -> list[str]:
        return [h.key for h in await (await self._mesh()).records()]

    async def remove_policies(self) -> None:
        for name in sorted(self.policies):
            await self.unbreach(name)


def _scope_of(target: str) -> str:
    for scope, targets in targets_by_scope().items():
        if target in targets:
            return scope
    return "?"


def _now() -> float:
    import time

    return time.time()
