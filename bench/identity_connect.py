"""Connect cost of identities: a token checked by the auth callout vs a static user/password.

Starts nats-server with nats-identity.conf and ``mesh callout`` in its own process, then measures
on loopback: sequential connect+close latency (p50/p99) for both, and the capacity, connects per
second with ``--concurrency`` clients connecting at once (a reconnect storm).
``python -m bench.identity_connect [--n 300] [--storm 2000] [--concurrency 50]``.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nats
import psutil

from bench.common import standard_args
from bench.support.procs import ROOT, child_env
from bench.support.report import envelope, fmt_ms, fmt_rate, print_table, write_json
from bench.support.stats import percentiles, ratio
from controller.natsjwt import IssuerKey, new_account_seed
from mesh.protocol.identity import Identity, Role
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from mesh.transport.identity_store import issue, open_bucket
from mesh.transport.provision import ProvisionOptions, provision
from mesh.transport.server import EmbeddedServer

USERS = ("admin", "controller", "gateway", "callout", "sys")


async def _quiet(_exc: Exception) -> None:
    """Refusals while the callout starts are expected; nats-py would print each one."""


async def _connect_close(url: str, **auth: str) -> float:
    start = time.perf_counter()
    nc = await nats.connect(
        url, connect_timeout=5, max_reconnect_attempts=0, allow_reconnect=False, error_cb=_quiet, **auth
    )
    elapsed = time.perf_counter() - start
    await nc.close()
    return elapsed


async def _latency(url: str, n: int, plain: dict[str, str], token: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"password": [], "token_callout": []}
    for i in range(n + 20):  # interleaved, so both see the same machine
        p = await _connect_close(url, **plain)
        t = await _connect_close(url, token=token)
        if i >= 20:  # warm-up
            out["password"].append(p)
            out["token_callout"].append(t)
    return out


async def _storm(url: str, total: int, concurrency: int, auth: dict[str, str]) -> dict[str, Any]:
    queue = iter(range(total))
    failures = 0

    async def worker() -> None:
        nonlocal failures
        for _ in queue:
            try:
                await _connect_close(url, **auth)
            except Exception:
                failures += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    return {
        "connects": total,
        "failures": failures,
        "seconds": round(wall, 3),
        "per_second": round(total / wall, 1),
    }


async def _setup(server: EmbeddedServer, passwords: dict[str, str]) -> str:
    settings = Settings(nats_url=server.url, user="admin", password=passwords["admin"])
    async with Connection(settings, name="bench-admin") as conn:
        await provision(conn.js, conn.ns, ProvisionOptions())
        kv = await open_bucket(conn.js, conn.ns, create=True)
        _, token = await issue(
            kv, Identity(role=Role.AGENT, scope="agent://acme/prod/mailer"), issued_by="bench"
        )
    return token


async def _wait_admitted(url: str, token: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            await _connect_close(url, token=token)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise SystemExit("mesh callout did not start admitting tokens within 30 s") from None
            await asyncio.sleep(0.1)


def main() -> None:
    parser = standard_args(__doc__ or "")
    parser.add_argument("--n", type=int, default=300, help="sequential connects per kind")
    parser.add_argument("--storm", type=int, default=2000, help="connects in the storm")
    parser.add_argument("--concurrency", type=int, default=50, help="clients connecting at once")
    args = parser.parse_args()
    passwords = {u: "pw-" + secrets.token_urlsafe(18) for u in USERS}
    seed = new_account_seed()
    env = {f"MESH_{u.upper()}_PASSWORD": pw for u, pw in passwords.items()}
    env["MESH_CALLOUT_ISSUER"] = IssuerKey(seed).public
    os.environ.update(env)
    with tempfile.TemporaryDirectory(prefix="mesh-bench-identity-") as tmp:
        server = EmbeddedServer(Path(tmp) / "nats", port=0, config_file=ROOT / "nats-identity.conf")
        server.start()
        callout: subprocess.Popen[bytes] | None = None
        try:
            token = asyncio.run(_setup(server, passwords))
            callout_env = child_env(
                NATS_URL=server.url,
                NATS_USER="callout",
                NATS_PASSWORD=passwords["callout"],
                MESH_CALLOUT_SEED=seed,
            )
            log = (Path(tmp) / "callout.log").open("wb")
            mesh = Path(sys.executable).with_name("mesh")
            callout = subprocess.Popen([str(mesh), "callout"], env=callout_env, cwd=ROOT, stderr=log)
            asyncio.run(_wait_admitted(server.url, token))
            plain = {"user": "controller", "password": passwords["controller"]}
            lat = asyncio.run(_latency(server.url, args.n, plain, token))
            storm_plain = asyncio.run(_storm(server.url, args.storm, args.concurrency, plain))
            proc = psutil.Process(callout.pid)
            cpu_before = sum(proc.cpu_times()[:2])
            storm_token = asyncio.run(_storm(server.url, args.storm, args.concurrency, {"token": token}))
            callout_cpu = sum(proc.cpu_times()[:2]) - cpu_before
        finally:
            if callout is not None:
                callout.terminate()
                callout.wait(15)
            server.stop()
    p = percentiles([s * 1000 for s in lat["password"]])
    t = percentiles([s * 1000 for s in lat["token_callout"]])
    print_table(
        f"connect + close on loopback, ms, sequential (N={args.n} each, interleaved)",
        ["auth", "p50", "p99", "p50 ratio to password", "p50 added"],
        [
            ["user/password (static)", fmt_ms(p["p50"]), fmt_ms(p["p99"]), "1.00", "-"],
            [
                "token via auth callout",
                fmt_ms(t["p50"]),
                fmt_ms(t["p99"]),
                f"{ratio(t['p50'], p['p50'])}",
                fmt_ms(t["p50"] - p["p50"]),
            ],
        ],
    )
    print_table(
        f"reconnect storm: {args.storm} connects, {args.concurrency} at once",
        ["auth", "connects/s", "seconds", "failures"],
        [
            [
                "user/password (static)",
                fmt_rate(storm_plain["per_second"]),
                storm_plain["seconds"],
                storm_plain["failures"],
            ],
            [
                "token via auth callout",
                fmt_rate(storm_token["per_second"]),
                storm_token["seconds"],
                storm_token["failures"],
            ],
        ],
    )
    print(
        f"the callout process used {callout_cpu:.2f} CPU s for {args.storm} connects: "
        f"{args.storm / callout_cpu:,.0f} connects per CPU second (the bench's clients share the cores)"
    )
    results = {
        "latency_ms": {"password": p, "token_callout": t, "p50_added_ms": round(t["p50"] - p["p50"], 3)},
        "storm": {"password": storm_plain, "token_callout": storm_token},
        "storm_10k_seconds_estimate": round(10_000 / storm_token["per_second"], 1),
        "callout_cpu_seconds": round(callout_cpu, 3),
        "callout_connects_per_cpu_second": round(args.storm / callout_cpu, 1) if callout_cpu else None,
    }
    write_json(
        "identity_connect",
        envelope("identity_connect", vars(args) | {"out": str(args.out)}, results),
        args.out,
    )


if __name__ == "__main__":
    main()
