"""Pure parts of the HTTP API: rate limits, rights, AXME address ids and metrics, the [api] config,
and the OpenAPI document's coverage of every route."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from starlette.routing import Route

from gateway.api.axme import address_of, agent_rows, health_of, metrics_to_usage, parse_address
from gateway.api.openapi import openapi_document
from gateway.api.ratelimit import RateLimiter
from gateway.api.rights import require
from gateway.config import load_config
from gateway.errors import Forbidden
from mesh.errors import ConfigError, InvalidTarget
from mesh.protocol.models import InstanceStatus, KillRecord, Status, utcnow
from mesh.protocol.reports import HeldBy
from mesh.runtime.settings import Settings


def test_rate_limiter_refills_per_key() -> None:
    now = [0.0]
    rl = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    assert [rl.allow("a") for _ in range(4)] == [True, True, True, False]
    assert rl.allow("b")  # another key has its own bucket
    assert rl.retry_after("a") == pytest.approx(0.5)
    now[0] = 0.5
    assert rl.allow("a") and not rl.allow("a")
    now[0] = 100.0
    assert [rl.allow("a") for _ in range(4)] == [True, True, True, False]  # capped at the burst


def test_rate_limiter_is_bounded() -> None:
    rl = RateLimiter(rate=1.0, burst=1, clock=lambda: 0.0, max_keys=10)
    for i in range(100):
        rl.allow(str(i))
    assert len(rl._buckets) == 10


def test_rights_mirror_the_nats_roles() -> None:
    require("operator", "kill", "k")
    require("auditor", "read_events", "k")
    require("agent", "agent", "k")
    for role, right in [
        ("auditor", "kill"),
        ("auditor", "read_fleet"),
        ("agent", "resume"),
        ("operator", "agent"),
    ]:
        with pytest.raises(Forbidden) as exc:
            require(role, right, "abc123")  # type: ignore[arg-type]
        assert exc.value.detail["right"] == right and f"role {role}" in str(exc.value)


def test_axme_addresses() -> None:
    assert str(parse_address("acme.prod.mailer")) == "agent://acme/prod/mailer"
    assert str(parse_address("acme.prod.mailer.w1")) == "agent://acme/prod/mailer#w1"
    assert address_of("agent://acme/prod/mailer", "w1") == "acme.prod.mailer.w1"
    for bad in ("acme.prod", "acme.*.mailer", "a.b.c.d.e", "ac me.prod.x"):
        with pytest.raises(InvalidTarget):
            parse_address(bad)


def test_axme_metrics_are_summed_counters_and_metadata() -> None:
    totals: dict[str, float] = {"cost_usd": 1.0}
    usage, meta = metrics_to_usage(
        {"cost_usd": 0.5, "intents_total": 2, "avg_latency_ms": 9.5, "x": [1]}, totals
    )
    assert usage == {"cost_usd": 1.5, "intents_total": 2.0}
    assert meta == {"avg_latency_ms": 9.5}
    usage, _ = metrics_to_usage({"intents_total": -3, "cost_usd": True}, totals)
    assert usage == {"cost_usd": 1.5, "intents_total": 2.0}  # negative or boolean counters ignored


def _inst(uri: str, instance: str, status: Status) -> InstanceStatus:
    now = utcnow()
    return InstanceStatus(agent_uri=uri, instance=instance, status=status, first_seen=now, last_seen=now,
                          last_change=now, usage={"cost_usd": 1.0})  # fmt: skip


def test_axme_rows_health() -> None:
    uri = "agent://acme/prod/mailer"
    rows = agent_rows([_inst(uri, "a", Status.STALE), _inst(uri, "b", Status.ACTIVE)], [])
    assert rows[0]["health_status"] == "healthy" and rows[0]["metrics"] == {"cost_usd": 2.0}
    held = [HeldBy(key="acme.prod.mailer.b", target=f"{uri}#b", revision=1, record=KillRecord(target=uri))]
    (row,) = agent_rows([_inst(uri, "a", Status.STALE), _inst(uri, "b", Status.ACTIVE)], held)
    assert [i["health_status"] for i in row["instances"]] == ["degraded", "killed"]
    assert row["health_status"] == "degraded"
    whole = [HeldBy(key="acme.prod.mailer", target=uri, revision=2, record=KillRecord(target=uri))]
    assert agent_rows([_inst(uri, "a", Status.ACTIVE)], whole)[0]["health_status"] == "killed"
    assert health_of(Status.LOST, False) == "unreachable" and health_of(Status.PAUSED, False) == "killed"


def test_api_config_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text('[api]\nrate = 5\nburst = 7\n\n[api.nats.agent]\nuser = "agent"\npassword_env = "PW"\n')
    cfg = load_config(path, env={})
    assert (cfg.api.rate, cfg.api.burst, cfg.api.nats["agent"].user) == (5.0, 7, "agent")
    settings = cfg.api.nats["agent"].settings(Settings(), env={"PW": "s3cret"})
    assert (settings.user, settings.password) == ("agent", "s3cret")
    with pytest.raises(ConfigError, match="PW"):
        cfg.api.nats["agent"].settings(Settings(), env={})
    path.write_text("[api]\nrat = 5\n")
    with pytest.raises(ConfigError, match=r"api\.rat"):
        load_config(path, env={})


def test_every_route_is_in_the_openapi_document() -> None:
    from gateway.api.config import ApiConfig
    from gateway.api.routes import api_routes

    # Building the routes reads only the config and the rejection counter.
    fake = SimpleNamespace(config=ApiConfig(), gw=SimpleNamespace(rejected=lambda _exc: None))
    doc = openapi_document()
    routes = [r for r in api_routes(fake) if isinstance(r, Route)]  # type: ignore[arg-type]
    assert len(routes) > 15
    for route in routes:
        for method in route.methods or ():
            if method != "HEAD":
                assert method.lower() in doc["paths"].get(route.path, {}), (method, route.path)
