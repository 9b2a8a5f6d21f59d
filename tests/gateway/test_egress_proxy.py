"""httpx through the egress proxy (HTTPS_PROXY style) to a local HTTPS server, and plain HTTP."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from mesh.client.operator import AsyncMesh
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from tests.conftest import missing_tool
from tests.gateway.conftest import AGENT, HeartbeatWatch, Running, eventually, gateway_config, start_gateway
from tests.gateway.upstream import FakeUpstream, serving

pytestmark = pytest.mark.timeout(60)


@dataclass
class Site:
    port: int = 0
    hits: list[float] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    ca: Path = Path()

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"


def _cert(tmp: Path) -> tuple[Path, Path]:
    if subprocess.run(["which", "openssl"], capture_output=True).returncode != 0:
        missing_tool("openssl is needed to make a test certificate")
    key, cert = tmp / "key.pem", tmp / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return key, cert


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    s = Site()
    key, cert = _cert(tmp_path)
    s.ca = cert

    async def index(_r: Request) -> Response:
        s.hits.append(time.monotonic())
        return PlainTextResponse("secret page")

    async def slow(_r: Request) -> Response:
        s.hits.append(time.monotonic())

        async def body() -> AsyncIterator[bytes]:
            yield b"first part\n"
            await s.release.wait()
            yield b"rest\n"

        return StreamingResponse(body(), media_type="text/plain")

    app = Starlette(routes=[Route("/", index), Route("/slow", slow)])
    async with serving(app, "the HTTPS site", ssl_keyfile=str(key), ssl_certfile=str(cert)) as port:
        s.port = port
        try:
            yield s
        finally:
            s.release.set()


@pytest.fixture
async def egress_gateway(
    settings: Settings, conn: Connection, upstream: FakeUpstream
) -> AsyncIterator[Running]:
    async with start_gateway(settings, conn, gateway_config(upstream, egress_port=0)) as g:
        yield g


def proxied(gw: Running, key: str, site: Site) -> httpx.AsyncClient:
    ctx = ssl.create_default_context(cafile=str(site.ca))
    return httpx.AsyncClient(proxy=f"http://{key}@127.0.0.1:{gw.gw.egress_port}", verify=ctx, timeout=20)


async def test_https_through_the_proxy_until_killed_and_open_tunnels_closed(
    egress_gateway: Running, site: Site, mesh: AsyncMesh, heartbeats: HeartbeatWatch
) -> None:
    key = await egress_gateway.key()
    async with proxied(egress_gateway, key, site) as c:
        assert (await c.get(site.url + "/")).text == "secret page"
        # A tunnel open when the kill lands is closed.
        async with c.stream("GET", site.url + "/slow") as resp:
            chunks = resp.aiter_raw()
            assert (await chunks.__anext__()).startswith(b"first part")
            assert (await egress_gateway.health()).json()["tunnels_open"] >= 1
            await mesh.kill(AGENT, reason="no more web", wait=0)
            with pytest.raises(httpx.HTTPError):
                async for _ in chunks:
                    pass
    cut_at = time.monotonic()
    async with proxied(egress_gateway, key, site) as c:
        with pytest.raises(httpx.ProxyError) as info:
            await c.get(site.url + "/")
        assert "403" in str(info.value)
    assert [t for t in site.hits if t > cut_at] == []
    usage = await eventually(lambda: (u := heartbeats.usage()).get("egress_connections") and u)
    assert usage["egress_connections"] == 1  # httpx kept the one tunnel alive for both requests


async def test_plain_http_and_bad_credentials(
    egress_gateway: Running, upstream: FakeUpstream, site: Site
) -> None:
    key = await egress_gateway.key()
    proxy = f"http://{key}@127.0.0.1:{egress_gateway.gw.egress_port}"
    async with httpx.AsyncClient(proxy=proxy, timeout=20) as c:
        resp = await c.get(upstream.url + "/v1/models")
        assert resp.status_code == 200 and resp.json()["data"][0]["id"] == "gpt-4o-mini"
        resp = await c.get(upstream.url + "/v1/models")  # a second request: a fresh, checked connection
        assert resp.status_code == 200
    assert [s.path for s in upstream.seen] == ["/v1/models", "/v1/models"]
    ctx = ssl.create_default_context(cafile=str(site.ca))
    for bad in ("", "mk-nope@"):
        url = f"http://{bad}127.0.0.1:{egress_gateway.gw.egress_port}"
        async with httpx.AsyncClient(proxy=url, verify=ctx, timeout=20) as c:
            with pytest.raises(httpx.ProxyError) as info:
                await c.get(site.url + "/")
            assert "407" in str(info.value)
    # Garbage on the proxy port gets a 400 and the proxy keeps serving.
    reader, writer = await asyncio.open_connection("127.0.0.1", egress_gateway.gw.egress_port)
    writer.write(b"NONSENSE\r\n\r\n")
    assert (await asyncio.wait_for(reader.read(100), 10)).startswith(b"HTTP/1.1 400")
    writer.close()
    assert site.hits == []
    async with proxied(egress_gateway, key, site) as c:
        assert (await c.get(site.url + "/")).status_code == 200


async def test_instance_as_proxy_password(
    egress_gateway: Running, site: Site, mesh: AsyncMesh, heartbeats: HeartbeatWatch
) -> None:
    key = await egress_gateway.key()
    ctx = ssl.create_default_context(cafile=str(site.ca))
    port = egress_gateway.gw.egress_port
    w1 = httpx.AsyncClient(proxy=f"http://{key}:w1@127.0.0.1:{port}", verify=ctx, timeout=20)
    w2 = httpx.AsyncClient(proxy=f"http://{key}:w2@127.0.0.1:{port}", verify=ctx, timeout=20)
    async with w1, w2:
        assert (await w1.get(site.url + "/")).status_code == 200
        await mesh.kill(AGENT, instance="w1", reason="only w1", wait=0)

        async def w1_refused() -> bool:
            async with httpx.AsyncClient(proxy=f"http://{key}:w1@127.0.0.1:{port}", verify=ctx) as c:
                try:
                    await c.get(site.url + "/")
                except httpx.ProxyError:
                    return True
                return False

        await eventually(w1_refused)
        assert (await w2.get(site.url + "/")).status_code == 200
    await eventually(lambda: heartbeats.usage(instance="w2").get("egress_connections"))
