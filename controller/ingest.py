"""The heartbeat hot path: validate one message, check its subject, and update the fleet in memory."""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog
from pydantic import ValidationError

from controller.state import Fleet, Transition
from controller.stats import RateLimitedLog, Stats
from mesh.errors import InvalidTarget
from mesh.protocol.models import WIRE_VERSION, Heartbeat, Status
from mesh.protocol.subjects import Namespace
from mesh.transport.natstypes import Msg

__all__ = ["Ingest"]

log = structlog.get_logger("controller.ingest")

_NOT_REPORTABLE = frozenset({Status.STALE, Status.LOST})


class Ingest:
    """Turns heartbeat messages into fleet updates; bad ones are counted by reason, never raised."""

    def __init__(
        self,
        ns: Namespace,
        fleet: Fleet,
        stats: Stats,
        on_transition: Callable[[Transition], None],
        *,
        max_bytes: int = 64 * 1024,
        clock: Callable[[], float] = time.time,
        observer: Callable[[str, Heartbeat, float], None] | None = None,
    ) -> None:
        self.ns = ns
        self.fleet = fleet
        self.stats = stats
        self.on_transition = on_transition
        self.max_bytes = max_bytes
        self.clock = clock
        #: Told of every accepted heartbeat (the policy engine's usage samples).
        self.observer = observer
        self._head = f"{ns.prefix}.hb."
        self._head_len = len(self._head)
        self._warn = RateLimitedLog(log)

    async def on_message(self, msg: Msg) -> None:
        """The subscription callback."""
        self.handle(msg.subject, msg.data)

    def handle(self, subject: str, data: bytes) -> None:
        self.stats.received += 1
        if len(data) > self.max_bytes:
            self._bad("oversized", subject, f"{len(data)} bytes > {self.max_bytes}")
            return
        try:
            hb = Heartbeat.model_validate_json(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            reason = "malformed_json" if first.get("type") == "json_invalid" else "invalid_fields"
            where = ".".join(str(p) for p in first.get("loc", ())) or "message"
            self._bad(reason, subject, f"{where}: {first.get('msg', 'invalid')}")
            return
        if hb.v != WIRE_VERSION:
            self._bad("unknown_version", subject, f"wire version {hb.v}")
            return
        if hb.status in _NOT_REPORTABLE:
            self._bad("invalid_fields", subject, f"an instance cannot report {hb.status.value}")
            return
        key = subject[self._head_len :]
        known = self.fleet.entries.get(key)
        if known is not None:  # the subject was validated when the key was first seen
            if hb.agent_uri != known.agent_uri or hb.instance != known.instance:
                self._bad("subject_mismatch", subject, f"body says {hb.agent_uri} instance {hb.instance}")
                return
        else:
            uri = hb.agent_uri
            if not uri.startswith("agent://") or key != f"{uri[8:].replace('/', '.')}.{hb.instance}":
                self._bad("subject_mismatch", subject, f"body says {uri} instance {hb.instance}")
                return
            try:
                self.ns.parse_heartbeat_subject(subject)
            except InvalidTarget as exc:
                self._bad("invalid_name", subject, str(exc))
                return
        self.stats.heartbeats += 1
        now = self.clock()
        transition = self.fleet.heartbeat(key, hb, now)
        if transition is not None:
            self.on_transition(transition)
        observer = self.observer
        if observer is not None:
            entry = self.fleet.entries.get(key)
            if entry is not None and entry.last_seen == now:  # not a straggler the fleet ignored
                observer(key, hb, now)

    def _bad(self, reason: str, subject: str, detail: str) -> None:
        self.stats.bad[reason] += 1
        self._warn.warning("bad heartbeat", reason, subject=subject[:200], detail=detail[:300])
