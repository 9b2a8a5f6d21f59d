"""Browser-test fixtures: real nats-server, controller, dashboard and agents on a background loop,
and Debian's headless Chromium driven by Playwright (never a downloaded browser)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal

from controller import ControllerOptions, serve
from controller.dashboard.config import DashboardConfig
from controller.dashboard.server import run_dashboard
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from mesh.transport.provision import provision
from tests.conftest import missing_tool

#: Whatever `chromium` is on PATH: what .ci/run checks for (`command -v chromium`) and installs.
CHROMIUM = shutil.which("chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "browser-test-token-0123456789"
AGENT = "agent://acme/prod/mailer"
#: Another agent, in another environment: a kill of AGENT must leave it alone.
BYSTANDER = "agent://acme/staging/summarizer"
#: The controller, tuned so that a test sees transitions quickly.
FAST = ControllerOptions(lost_after=30.0, refresh_every=0.5, sweep_every=0.2, flush_every=0.05, lease_ttl=3.0)


@dataclass
class Stack:
    """What a browser test talks to: the dashboard's URL, plus a way to run code on the backend loop."""

    url: str
    settings: Settings
    portal: BlockingPortal
    token: str | None
    agents: list[Any] = field(default_factory=list)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.portal.call(fn, *args)


async def _agent_loop(agent: Any) -> None:
    """A small agent: a batch of "emails" per step, a checkpoint and a heartbeat (safe points)."""
    batch = 0
    while True:
        batch += 1
        await agent.checkpoint({"batch": batch, "sent": batch * 25})
        await agent.heartbeat({"batch": batch, "sent": batch * 25, "template": "spring-sale"})
        await agent.sleep(0.25)


class _Backend:
    """Runs on the portal's event loop: provision, controller, dashboard, agents; then tears down."""

    def __init__(self, settings: Settings, token: str | None, instances: int, bystanders: int) -> None:
        self.settings = settings
        self.token = token
        self.instances = instances
        self.bystanders = bystanders
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[Any]] = []
        self.agents: list[Any] = []
        self.url = ""

    async def start(self) -> str:
        async with Connection(self.settings, name="browser-test-setup") as conn:
            await provision(conn.js, conn.ns)
        self.tasks.append(asyncio.create_task(serve(self.settings, stop=self.stop, options=FAST)))
        started: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        config = DashboardConfig(
            settings=self.settings,
            port=0,
            token=self.token,
            health_interval=2.0,  # bound, then read back
        )
        self.tasks.append(
            asyncio.create_task(run_dashboard(config, stop=self.stop, on_started=started.set_result))
        )
        self.url = await asyncio.wait_for(started, 15)
        from agent_sdk import AsyncAgent

        fleet = [(AGENT, f"us-central1-{'abc'[n % 3]}{n // 3 or ''}") for n in range(self.instances)]
        fleet += [(BYSTANDER, f"eu-west1-{n}") for n in range(self.bystanders)]
        for uri, instance in fleet:
            agent = AsyncAgent(
                uri,
                instance=instance,
                settings=self.settings,
                heartbeat_interval=0.5,
                on_kill="pause",
                metadata={"region": instance.rsplit("-", 1)[0]},
            )
            await agent.start()
            self.agents.append(agent)
            self.tasks.append(asyncio.create_task(_agent_loop(agent)))
        return self.url

    async def close(self) -> None:
        for task in self.tasks[2:]:
            task.cancel()
        for agent in self.agents:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(agent.stop(), 10)
        self.stop.set()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 15)


@contextlib.contextmanager
def running_stack(
    settings: Settings, *, token: str | None, instances: int, bystanders: int = 0
) -> Iterator[Stack]:
    with start_blocking_portal("asyncio") as portal:
        backend = _Backend(settings, token, instances, bystanders)
        try:
            url = portal.call(backend.start)
            yield Stack(url=url, settings=settings, portal=portal, token=token, agents=backend.agents)
        finally:
            portal.call(backend.close)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's chromium under Playwright; a missing one fails the test, naming how to install it."""
    if CHROMIUM is None:
        missing_tool("chromium is not on PATH (apt-get install -y chromium; .ci/run does it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class PageErrors:
    """Console errors and uncaught page errors seen by a page: the test fails on any."""

    messages: list[str] = field(default_factory=list)

    def check(self) -> None:
        assert not self.messages, "browser errors:\n" + "\n".join(self.messages)


@pytest.fixture
def page_factory(chromium: Any) -> Iterator[Callable[[], tuple[Any, PageErrors]]]:
    contexts: list[Any] = []

    def make() -> tuple[Any, PageErrors]:
        context = chromium.new_context(viewport={"width": 1440, "height": 900}, device_scale_factor=1)
        contexts.append(context)
        page = context.new_page()
        errors = PageErrors()
        page.on(
            "console",
            lambda msg: (
                errors.messages.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None
            ),
        )
        page.on("pageerror", lambda exc: errors.messages.append(f"page error: {exc}"))
        return page, errors

    yield make
    for context in contexts:
        context.close()
