"""``mesh init``: create the mesh's KV buckets and audit stream on an existing NATS server."""

from __future__ import annotations

from typing import Annotated

import typer


def init(
    audit_days: Annotated[
        float, typer.Option("--audit-days", min=1, help="How long the audit log keeps events.")
    ] = 90,
    replicas: Annotated[
        int, typer.Option("--replicas", min=1, max=5, help="JetStream replicas (clusters).")
    ] = 1,
) -> None:
    """Provision the buckets and the audit stream on the server at NATS_URL (idempotent).

    Example: mesh init --replicas 3   (with NATS_URL=nats://nats.internal:4222)
    """
    import asyncio

    from cli.common import quiet_logging
    from mesh.runtime.settings import Settings
    from mesh.transport.connection import Connection
    from mesh.transport.provision import ProvisionOptions, provision

    quiet_logging()
    settings = Settings.from_env()
    options = ProvisionOptions(replicas=replicas, audit_max_age=audit_days * 86400)

    async def run() -> tuple[list[str], list[str]]:
        async with Connection(settings, name="mesh-init") as conn:
            result = await provision(conn.js, conn.ns, options)
            return result.created, result.existing

    created, existing = asyncio.run(run())
    for name in created:
        print(f"created  {name}")
    for name in existing:
        print(f"exists   {name}")
    print(f"mesh {settings.prefix!r} is ready at {settings.nats_url}")
