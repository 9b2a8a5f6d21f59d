"""Everything a request handler needs, in one object: config, kill tracker, keys, meter, clients."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from gateway.config import GatewayConfig, Kind, Upstream
from gateway.errors import GatewayError, InstanceNotAllowed, NoUpstream, Refused
from gateway.keys import Identity, KeyRecord, check_key_shape, resolve_identity
from gateway.meter import Meter
from gateway.prices import PriceTable
from gateway.recordcache import RecordCache
from gateway.streams import StreamRegistry
from gateway.tracker import KillTracker
from gateway.upstream import UpstreamClient

__all__ = ["Counters", "Gateway"]

log = structlog.get_logger("gateway")

#: Seconds between two log lines about rejected requests of one kind.
LOG_EVERY = 1.0


@dataclass(slots=True)
class Counters:
    """What /healthz reports besides the kill state: requests by outcome."""

    proxied: int = 0
    refused: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    upstream_errors: int = 0


class Gateway:
    def __init__(
        self,
        config: GatewayConfig,
        tracker: KillTracker,
        keys: RecordCache[KeyRecord],
        meter: Meter,
        prices: PriceTable,
    ) -> None:
        self.config = config
        self.tracker = tracker
        self.keys = keys
        self.meter = meter
        self.prices = prices
        self.counters = Counters()
        self.streams = StreamRegistry(lambda ident: tracker.check(ident.agent, ident.instance))
        tracker.on_kill.append(self.streams.on_kill)
        tracker.on_fail_closed.append(self.streams.recheck)
        self.clients = {
            name: UpstreamClient(
                name, connect_timeout=config.connect_timeout, read_timeout=config.read_timeout
            )
            for name in config.upstreams
        }
        self._unpriced: set[str] = set()
        self._logged: dict[str, float] = {}
        self._quiet: dict[str, int] = {}
        #: The egress proxy's bound port and open tunnels (when it runs).
        self.egress_port: int | None = None
        self.open_tunnels: Callable[[], int] = lambda: 0

    async def aclose(self) -> None:
        for client in self.clients.values():
            await client.aclose()

    # -- the checks every request passes ---------------------------------------------------------
    async def identify(self, key: str | None, instance_header: str | None) -> Identity:
        key = check_key_shape(key)
        record = await self.keys.verify(key, "virtual key")
        return resolve_identity(record, instance_header, self.config.default_instance)

    async def admit(self, ident: Identity, route: str) -> None:
        """Refuse (and count, and audit in aggregate) an instance a kill record covers."""
        try:
            await self.tracker.admit(ident.agent, ident.instance)
        except Refused as exc:
            self.refused(ident, route, exc)
            raise
        if not self.meter.touch(ident):
            raise InstanceNotAllowed(
                f"agent {ident.agent_uri} already has {self.meter.max_instances} instances in use "
                "through this gateway; reuse instance ids (X-Mesh-Instance)"
            )

    def refused(self, ident: Identity, route: str, exc: Refused) -> None:
        self.counters.refused += 1
        self.meter.refusals.add(
            ident.agent_uri,
            ident.instance,
            route,
            str(exc),
            record_key=exc.key,
            command_id=exc.record.command_id if exc.record else None,
        )

    def rejected(self, exc: GatewayError) -> None:
        """Count it; log it, at most once a second per kind (a flood of bad keys is one line a second)."""
        self.counters.rejected[exc.kind] = self.counters.rejected.get(exc.kind, 0) + 1
        now = time.monotonic()
        if now - self._logged.get(exc.kind, -LOG_EVERY) < LOG_EVERY:
            self._quiet[exc.kind] = self._quiet.get(exc.kind, 0) + 1
            return
        self._logged[exc.kind] = now
        log.info(
            "request rejected",
            kind=exc.kind,
            status=exc.status,
            error=str(exc)[:300],
            unlogged_since_last=self._quiet.pop(exc.kind, 0),
        )

    def upstream_for(self, ident: Identity, kind: Kind) -> Upstream:
        if ident.upstream is not None:
            up = self.config.upstreams.get(ident.upstream)
            if up is None or up.kind != kind:
                raise NoUpstream(
                    f"key {ident.key_id} may only use upstream {ident.upstream!r}, "
                    f"which is not a {kind} upstream here"
                )
            return up
        found = self.config.default_upstream(kind)
        if found is None:
            raise NoUpstream(f"no {kind} upstream is configured on this gateway")
        return found

    # -- metering -----------------------------------------------------------------------------
    def meter_llm(
        self, ident: Identity, model: str, input_tokens: int, output_tokens: int, cached: int
    ) -> None:
        counters: dict[str, float] = {
            "llm_requests": 1,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
        }
        cost = self.prices.cost(model, input_tokens, output_tokens, cached) if model else None
        if cost is not None:
            counters["cost_usd"] = cost
        elif model and model not in self._unpriced and (input_tokens or output_tokens):
            self._unpriced.add(model)
            log.warning("model has no price: tokens counted, cost not", model=model)
        self.meter.add(ident, counters)
