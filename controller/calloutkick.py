"""Revocation of live connections: the callout remembers whom it admitted, and when a credential's
record is deleted it asks each server (system account, ``$SYS.REQ.SERVER.<id>.KICK``) to drop them."""

from __future__ import annotations

import json
from collections import OrderedDict

import structlog

from mesh.protocol.kvwire import is_delete_operation
from mesh.transport.connection import Connection
from mesh.transport.natstypes import KeyValue

__all__ = ["LiveConnections", "kick_revoked"]

log = structlog.get_logger("controller.callout")

#: Connections remembered per credential (a restarting agent leaves old ones behind; a kick of a
#: connection that is gone is harmless). Bounds memory whatever the reconnect rate.
PER_CREDENTIAL = 64


class LiveConnections:
    """Credential id -> the (server id, client id) pairs this callout admitted it on (pure)."""

    def __init__(self, per_credential: int = PER_CREDENTIAL) -> None:
        self._by_cred: dict[str, OrderedDict[tuple[str, int], None]] = {}
        self._limit = per_credential

    def note(self, cred_id: str, server_id: str, client_id: int) -> None:
        seen = self._by_cred.setdefault(cred_id, OrderedDict())
        seen[(server_id, client_id)] = None
        seen.move_to_end((server_id, client_id))
        while len(seen) > self._limit:
            seen.popitem(last=False)

    def pop(self, cred_id: str) -> list[tuple[str, int]]:
        return list(self._by_cred.pop(cred_id, {}))


async def kick_revoked(kv: KeyValue, system: Connection, live: LiveConnections) -> None:
    """Until cancelled: for every credential deleted from ``kv``, kick its live connections."""
    watcher = await kv.watchall(include_history=False)
    try:
        async for entry in watcher:
            if entry is None or not is_delete_operation(entry.operation):
                continue
            victims = live.pop(entry.key)
            for server_id, client_id in victims:
                try:
                    await system.nc.request(
                        f"$SYS.REQ.SERVER.{server_id}.KICK",
                        json.dumps({"cid": client_id}).encode(),
                        timeout=2.0,
                    )
                except Exception as exc:  # a server gone or slow: its JWT expiry still ends the connection
                    log.warning(
                        "kick failed", credential=entry.key, server=server_id, cid=client_id, error=str(exc)
                    )
            if victims:
                log.info(
                    "revoked credential's connections kicked", credential=entry.key, connections=len(victims)
                )
    finally:
        await watcher.stop()  # type: ignore[no-untyped-call]
