"""The gateway in a process of its own, for the bench: ``python -m bench._gw_proc URL PREFIX UPSTREAM``."""

from __future__ import annotations

import asyncio
import signal
import sys

from pydantic import SecretStr

from gateway.config import GatewayConfig, Upstream
from gateway.service import serve
from mesh.runtime.settings import Settings


async def main(url: str, prefix: str, upstream: str) -> None:
    settings = Settings(nats_url=url, prefix=prefix, actor="bench")
    config = GatewayConfig(
        port=0,
        upstreams={
            "openai": Upstream(name="openai", kind="openai", base_url=upstream, api_key=SecretStr("sk-bench"))
        },
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await serve(settings, config, stop=stop, on_started=lambda port: print(port, flush=True))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
