"""The nemesis: one fault at a time, chosen at random, each healed before the next."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable

from .history import History
from .topology import PROXIED, System

#: Faults by name, with their relative weights.
SINGLE_FAULTS = {
    "server_kill9": 2,
    "controller_kill9": 2,
    "agent_freeze": 2,
    "agent_restart": 2,
    "proxy_cut": 1,
    "proxy_stall": 1,
    "proxy_blackhole": 1,
}
CLUSTER_FAULTS = {**{k: v for k, v in SINGLE_FAULTS.items() if k != "server_kill9"}, "node_kill9": 3}


class Nemesis:
    def __init__(self, system: System, history: History, rng: random.Random) -> None:
        self.system, self.history, self.rng = system, history, rng
        self.faults = CLUSTER_FAULTS if system.kind == "cluster" else SINGLE_FAULTS
        self.actions: dict[str, Callable[[], Awaitable[None]]] = {
            "server_kill9": self.server_kill9,
            "node_kill9": self.node_kill9,
            "controller_kill9": self.controller_kill9,
            "agent_freeze": self.agent_freeze,
            "agent_restart": self.agent_restart,
            "proxy_cut": self.proxy_cut,
            "proxy_stall": self.proxy_stall,
            "proxy_blackhole": self.proxy_blackhole,
        }

    async def run(self, stop: asyncio.Event) -> None:
        names, weights = list(self.faults), list(self.faults.values())
        while not stop.is_set():
            await _sleep_unless(stop, self.rng.uniform(1.0, 4.0))
            if stop.is_set():
                return
            await self.actions[self.rng.choices(names, weights)[0]]()

    def _fault(self, name: str, affects: list[str], **fields: object) -> dict[str, object]:
        return self.history.add("fault", name=name, affects=affects, **fields)

    def _healed(self, entry: dict[str, object]) -> None:
        entry["healed"] = self.history.add("heal", name=entry["name"])["t"]

    async def server_kill9(self) -> None:
        server = self.system.servers[0]
        entry = self._fault(
            "server_kill9", sorted(self.system.agents), down=round(self.rng.uniform(0.5, 4), 2)
        )
        await asyncio.to_thread(server.kill)
        # sleep-ok: the fault's own duration ("down"), healed right after
        await asyncio.sleep(float(entry["down"]))  # type: ignore[arg-type]
        await asyncio.to_thread(server.restart_after_exit)
        self._healed(entry)

    async def node_kill9(self) -> None:
        k = self.rng.randrange(len(self.system.servers))
        server = self.system.servers[k]
        entry = self._fault(
            "node_kill9", sorted(self.system.agents), node=k, down=round(self.rng.uniform(1, 8), 2)
        )
        await asyncio.to_thread(server.kill)
        # sleep-ok: the fault's own duration ("down"), healed right after
        await asyncio.sleep(float(entry["down"]))  # type: ignore[arg-type]
        await asyncio.to_thread(server.restart_after_exit, 30.0)
        self._healed(entry)

    async def controller_kill9(self) -> None:
        ctl = self.system.controller
        assert ctl is not None
        entry = self._fault("controller_kill9", [], down=round(self.rng.uniform(0.2, 3), 2))
        await asyncio.to_thread(ctl.kill9)
        # sleep-ok: the fault's own duration ("down"), healed right after
        await asyncio.sleep(float(entry["down"]))  # type: ignore[arg-type]
        ctl.start()
        self._healed(entry)

    def _pick_agent(self) -> str:
        return self.rng.choice(sorted(self.system.agents))

    async def agent_freeze(self) -> None:
        name = self._pick_agent()
        proc = self.system.agents[name]
        entry = self._fault("agent_freeze", [name], down=round(self.rng.uniform(0.5, 6), 2), pid=proc.pid)
        proc.freeze()
        # sleep-ok: the fault's own duration ("down"), healed right after
        await asyncio.sleep(float(entry["down"]))  # type: ignore[arg-type]
        proc.thaw()
        self._healed(entry)

    async def agent_restart(self) -> None:
        name = self._pick_agent()
        proc = self.system.agents[name]
        entry = self._fault("agent_restart", [name], down=round(self.rng.uniform(0.2, 2), 2), pid=proc.pid)
        await asyncio.to_thread(proc.kill9)
        # sleep-ok: the fault's own duration ("down"), healed right after
        await asyncio.sleep(float(entry["down"]))  # type: ignore[arg-type]
        proc.start()
        self.history.add("proc_start", name=name, pid=proc.pid, why="nemesis restart")
        self._healed(entry)

    async def proxy_cut(self) -> None:
        proxy = self.system.proxy
        assert proxy is not None
        entry = self._fault("proxy_cut", [PROXIED], down=round(self.rng.uniform(0.5, 4), 2))
        proxy.cut()
        # sleep-ok: the fault's own duration ("down"), healed right after
        await asyncio.sleep(float(entry["down"]))  # type: ignore[arg-type]
        proxy.restore()
        self._healed(entry)

    async def proxy_stall(self) -> None:
        proxy = self.system.proxy
        assert proxy is not None
        entry = self._fault("proxy_stall", [PROXIED], down=round(self.rng.uniform(0.5, 6), 2))
        proxy.stall()
        # sleep-ok: the fault's own duration ("down"), healed right after
        await asyncio.sleep(float(entry["down"]))  # type: ignore[arg-type]
        proxy.flow()
        self._healed(entry)

    async def proxy_blackhole(self) -> None:
        """Half-open links: the client must notice by itself (pings) and reconnect."""
        proxy = self.system.proxy
        assert proxy is not None
        entry = self._fault("proxy_blackhole", [PROXIED])
        entry["links"] = proxy.blackhole()
        self._healed(entry)

    async def heal_all(self) -> None:
        """Before the final checks: every process thawed and running, every server up."""
        for proc in self.system.agents.values():
            proc.thaw()
        if self.system.proxy is not None:
            self.system.proxy.flow()
            self.system.proxy.restore()
        for server in self.system.servers:
            if not server.running:
                await asyncio.to_thread(server.restart_after_exit, 30.0)


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
