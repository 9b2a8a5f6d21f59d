"""The demo itself: NATS + controller in-process, 3 agent processes, kill, resume, verify exactly-once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cli import fmt
from cli.ops import print_kill, print_resume
from cli.views import render_event, render_list
from mesh.errors import ConfigError

if TYPE_CHECKING:
    from mesh.client.operator import AsyncMesh
    from mesh.runtime.settings import Settings

URI = "agent://myorg/production/email-campaign"
INSTANCE_IDS = [
    "us-central1-a",
    "us-central1-b",
    "us-east1-b",
    "europe-west1-b",
    "asia-east1-a",
    "us-west1-a",
    "us-west2-b",
    "europe-north1-a",
]
EMAILS = 1200
BATCH = 20
DELAY = 0.15


#: MESH_DEMO_PATIENCE multiplies every deadline of the demo's own checks (a slow or loaded
#: machine, e.g. the test suite's run of the demo); the demo's behaviour is otherwise the same.
def _patience(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value >= 1.0:
        raise ConfigError(f"MESH_DEMO_PATIENCE must be a number >= 1 (e.g. 3), not {raw!r}")
    return value


PATIENCE = _patience(os.environ.get("MESH_DEMO_PATIENCE") or "1")
DEADLINE = 55.0 * PATIENCE


def _bold(text: str) -> str:
    return f"\x1b[1m{text}\x1b[0m" if sys.stdout.isatty() else text


def _section(text: str) -> None:
    print(f"\n{_bold('── ' + text + ' ' + '─' * max(0, 66 - len(text)))}", flush=True)


def _example() -> Path:
    return Path(__file__).resolve().parent.parent / "examples" / "email_campaign.py"


@dataclass
class Run:
    """The demo's processes and checks."""

    dir: Path
    ids: list[str]
    procs: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)
    checks: list[tuple[str, bool]] = field(default_factory=list)

    def log(self, instance: str) -> Path:
        return self.dir / f"{instance}.sent"

    def sent(self, instance: str) -> list[str]:
        try:
            return self.log(instance).read_text().splitlines()
        except FileNotFoundError:
            return []

    def counts(self) -> dict[str, int]:
        return {i: len(self.sent(i)) for i in self.ids}

    def check(self, name: str, ok: bool) -> bool:
        self.checks.append((name, ok))
        mark = "✓" if ok else "✗ FAILED:"
        print(f"{fmt.clock()} {mark} {name}", flush=True)
        return ok


async def _spawn(run: Run, settings: Settings) -> None:
    env = dict(os.environ, NATS_URL=settings.nats_url, MESH_PREFIX=settings.prefix, MESH_LOG_LEVEL="WARNING")
    env.pop("MESH_DEBUG", None)
    root = str(_example().parent.parent)  # the repo, first: the agents import agent_sdk from it
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    for instance in run.ids:
        out = open(run.dir / f"{instance}.out", "wb")  # noqa: SIM115, ASYNC230 - owned by the child
        run.procs[instance] = await asyncio.create_subprocess_exec(
            sys.executable,
            str(_example()),
            "--instance",
            instance,
            "--emails",
            str(EMAILS),
            "--batch-size",
            str(BATCH),
            "--delay",
            str(DELAY),
            "--log",
            str(run.log(instance)),
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        out.close()


def _progress(run: Run) -> str:
    return "  ·  ".join(f"{i} {fmt.number(n)}" for i, n in run.counts().items())


async def _wait_for(predicate_desc: str, check: object, timeout: float, every: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check() if callable(check) else check
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return True
        await asyncio.sleep(every)
    print(f"{fmt.clock()} timed out waiting for {predicate_desc}", flush=True)
    return False


async def _statuses(mesh: AsyncMesh) -> dict[str, str]:
    return {s.instance: s.status.value for s in await mesh.list_instances(URI)}


async def _story(run: Run, mesh: AsyncMesh, settings: Settings, kill_after: float) -> None:
    started = time.time()
    _section(f"2. Launching {len(run.ids)} instances of {URI}")
    await _spawn(run, settings)
    print(f"{fmt.clock()} processes: " + ", ".join(f"{i} (pid {p.pid})" for i, p in run.procs.items()))

    async def all_active() -> bool:
        states = await _statuses(mesh)
        return all(states.get(i) == "active" for i in run.ids) and all(n > 0 for n in run.counts().values())

    if not run.check(
        "every instance is sending and known to the controller",
        await _wait_for("the instances to start", all_active, 25.0 * PATIENCE),
    ):
        return
    _section(f"3. Sending emails for {kill_after:g}s (each batch: guarded send, then checkpoint)")
    end = time.monotonic() + kill_after
    while time.monotonic() < end:
        print(f"{fmt.clock()} sent so far: {_progress(run)}", flush=True)
        await asyncio.sleep(min(1.0, max(0.0, end - time.monotonic())))

    _section("4. Oops, the template has a broken link:  mesh kill " + URI)
    report = await mesh.kill(URI, reason="broken link in the email template", wait=5.0 * PATIENCE)
    at_kill = run.counts()
    print_kill(report, 5.0 * PATIENCE)
    run.check(f"all {len(run.ids)} instances acknowledged the kill", report.acked == len(run.ids))
    run.check("every acknowledgement says PAUSED", all(r.status == "paused" for r in report.instances))
    acked_sent = {r.instance: r.metadata.get("sent") for r in report.instances}
    run.check(
        "each report row matches what the instance had logged",
        all(acked_sent.get(i) == n for i, n in at_kill.items()),
    )

    await asyncio.sleep(1.5)
    run.check("no email was sent after the kill (1.5 s later)", run.counts() == at_kill)

    _section("5. mesh list")

    async def all_paused() -> bool:
        states = await _statuses(mesh)
        return all(states.get(i) == "paused" for i in run.ids)

    await _wait_for("the controller to show every instance paused", all_paused, 5.0)
    print("\n".join(render_list(await mesh.list_instances(URI))))

    _section(f"6. mesh events {URI}")
    async for event in mesh.events(URI, since=f"{time.time() - started + 5:.0f}s"):
        print(render_event(event))

    _section("7. Template fixed:  mesh resume " + URI)
    resumed = await mesh.resume(URI, reason="template fixed", wait=5.0 * PATIENCE)
    print_resume(resumed, 5.0 * PATIENCE)
    run.check(f"all {len(run.ids)} instances resumed", resumed.acked == len(run.ids))

    _section("8. The instances finish from where they stopped")

    async def finished() -> bool:
        print(f"{fmt.clock()} sent so far: {_progress(run)}", flush=True)
        return all(p.returncode is not None for p in run.procs.values())

    reapers = [asyncio.ensure_future(proc.wait()) for proc in run.procs.values()]
    done = await _wait_for("the campaign to finish", finished, 30.0 * PATIENCE, 1.0)
    run.check("every instance finished its campaign", done)
    for reaper in reapers:
        reaper.cancel()
    run.check("every instance exited cleanly", all(p.returncode == 0 for p in run.procs.values()))

    _section("9. The audit trail since the resume")
    async for event in mesh.events(URI, since=resumed.issued_at):
        print(render_event(event))


def _verify(run: Run) -> None:
    _section("10. Exactly once: every email id in the instances' own logs")
    total = 0
    for instance in run.ids:
        lines = run.sent(instance)
        expected = {f"{instance}:{n}" for n in range(EMAILS)}
        dupes = len(lines) - len(set(lines))
        missing = len(expected - set(lines))
        total += len(lines)
        run.check(
            f"{instance}: {fmt.number(len(lines))} sent, {dupes} duplicates, {missing} missing",
            dupes == 0 and missing == 0,
        )
    print(f"{fmt.clock()} Total: {fmt.number(total)} emails, each sent exactly once.")


async def _main(run: Run, url: str, kill_after: float) -> None:
    from controller import serve
    from mesh.client.operator import AsyncMesh
    from mesh.runtime.settings import Settings
    from mesh.transport.connection import Connection
    from mesh.transport.provision import provision

    actor = os.environ.get("MESH_ACTOR") or "demo-operator"
    settings = Settings.from_env(nats_url=url, prefix="demo", actor=actor)
    async with Connection(settings, name="mesh-demo") as conn:
        await provision(conn.js, conn.ns)
    stop = asyncio.Event()
    controller = asyncio.ensure_future(serve(settings, stop=stop))
    print(f"{fmt.clock()} controller running (in this process)")
    try:
        async with AsyncMesh(settings, name="mesh-demo") as mesh:
            await _story(run, mesh, settings, kill_after)
    finally:
        for proc in run.procs.values():
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(proc.wait(), 5.0)
        stop.set()
        try:
            await asyncio.wait_for(controller, 10.0)
        except Exception as exc:  # a controller that fails to stop must not hide the demo's result
            print(f"{fmt.clock()} controller stopped with {type(exc).__name__}: {exc}", file=sys.stderr)


def run_demo(*, instances: int, kill_after: float, keep: bool) -> int:
    """Run the whole demo; returns the exit code (0 when every check passed)."""
    from cli.common import quiet_logging
    from mesh.transport.server import EmbeddedServer

    os.environ.setdefault("MESH_LOG_LEVEL", "WARNING")
    quiet_logging()
    began = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="mesh-demo-"))
    run = Run(dir=tmp, ids=INSTANCE_IDS[:instances])
    _section("1. Starting NATS (JetStream) and the controller")
    server = EmbeddedServer(tmp / "nats", port=0)
    try:
        server.start()
        print(f"{fmt.clock()} nats-server {server.url}, store in {tmp}")
        asyncio.run(asyncio.wait_for(_main(run, server.url, kill_after), DEADLINE))
        if all(ok for _, ok in run.checks):
            _verify(run)
    except TimeoutError:
        run.check(f"the demo finished within {DEADLINE:g}s", False)
    finally:
        server.stop()
        if keep:
            print(f"{fmt.clock()} kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    failed = [name for name, ok in run.checks if not ok]
    _section("Summary")
    passed = (
        f"{len(run.checks) - len(failed)}/{len(run.checks)} checks passed in {time.monotonic() - began:.1f}s"
    )
    print(passed + (f"; FAILED: {'; '.join(failed)}" if failed else ". The kill switch works."))
    return 1 if failed or not run.checks else 0
