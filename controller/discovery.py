"""The NATS service API (``$SRV.PING/INFO/STATS``) of ``mesh-controller``: name, version, endpoint."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mesh.transport.micro import SnapshotService
from mesh.transport.natstypes import Client

__all__ = ["DESCRIPTION", "SERVICE_VERSION", "controller_service"]

SERVICE_VERSION = "0.1.0"
DESCRIPTION = "agent-mesh controller: live fleet status, stale/lost detection, audit"


def controller_service(
    nc: Client, name: str, prefix: str, snapshot: Callable[[], dict[str, Any]]
) -> SnapshotService:
    """The controller's micro service: one ``status`` endpoint on ``PREFIX.controller.status``."""
    return SnapshotService(
        nc,
        name=name,
        version=SERVICE_VERSION,
        description=DESCRIPTION,
        metadata={"prefix": prefix},
        endpoint="status",
        subject=f"{prefix}.controller.status",
        snapshot=snapshot,
    )
