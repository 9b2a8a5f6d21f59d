"""``mesh gateway`` (run the enforcing gateway) and ``mesh gateway key create|list|revoke``."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from cli.apikey_cmd import app as api_keys_app

if TYPE_CHECKING:
    from gateway.keys import KeyRecord
    from mesh.transport.connection import Connection

T = TypeVar("T")

app = typer.Typer(
    name="gateway",
    help=(
        "The enforcing gateway: agents send their LLM calls through it with a virtual key; a killed "
        "agent's calls are refused (403, in the upstream's own error format) and its streams cut.\n\n"
        "Example: mesh gateway --config gateway.toml"
    ),
    invoke_without_command=True,
    rich_markup_mode=None,
)
keys = typer.Typer(
    name="key", help="Virtual keys: one per agent (optionally per instance).", no_args_is_help=True
)
app.add_typer(keys, name="key")
app.add_typer(api_keys_app, name="api-key")

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


@app.callback()
def gateway(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="TOML config (upstreams, limits); see docs/gateway.md."),
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="Listen address (default 127.0.0.1: loopback only).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default 8790).")] = None,
    egress_port: Annotated[
        int | None, typer.Option(help="Also run the egress proxy (HTTPS_PROXY) on this port, e.g. 8791.")
    ] = None,
    fail_closed_after: Annotated[
        float | None,
        typer.Option(help="Refuse everything after this many seconds without NATS (default 10)."),
    ] = None,
    no_fail_closed: Annotated[
        bool, typer.Option("--no-fail-closed", help="Keep serving from the last known kill records.")
    ] = False,
) -> None:
    """Run the gateway in the foreground until Ctrl+C."""
    if ctx.invoked_subcommand is not None:
        return
    import asyncio
    import signal

    from gateway.config import load_config
    from gateway.service import serve
    from mesh.runtime.logs import configure_logging
    from mesh.runtime.settings import Settings

    configure_logging()
    settings = Settings.from_env()
    cfg = load_config(
        config, host=host, port=port, egress_port=egress_port, fail_closed_after=fail_closed_after
    )
    if no_fail_closed:
        cfg = cfg.model_copy(update={"fail_closed_after": None})

    def started(bound: int) -> None:
        print(
            f"gateway: http://{cfg.host}:{bound}  (OpenAI base_url .../v1, Anthropic base_url ...)",
            flush=True,
        )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, cfg, stop=stop, on_started=started)

    asyncio.run(main())


def _with_conn(fn: Callable[[Connection], Awaitable[T]]) -> T:
    import asyncio

    from cli.common import quiet_logging
    from mesh.runtime.settings import Settings
    from mesh.transport.connection import Connection

    quiet_logging()
    settings = Settings.from_env()

    async def main() -> T:
        async with Connection(settings, name="mesh-cli") as conn:
            return await fn(conn)

    return asyncio.run(main())


def _actor() -> str:
    from mesh.runtime.settings import Settings

    return Settings.from_env().resolve_actor()


def _key_json(r: KeyRecord) -> dict[str, object]:
    return json.loads(r.model_dump_json())  # type: ignore[no-any-return]


@keys.command("create")
def create(
    agent: Annotated[str, typer.Argument(help="The agent the key acts as: agent://ORG/ENV/NAME.")],
    instance: Annotated[
        str | None, typer.Option(help="Pin the key to one instance (else X-Mesh-Instance may choose).")
    ] = None,
    upstream: Annotated[str | None, typer.Option(help="The only upstream this key may use.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Mint a virtual key; it is printed once and stored only as a hash.

    Example: mesh gateway key create agent://acme/prod/mailer --instance w1
    """
    from gateway.keystore import create_key

    actor = _actor()
    key, record = _with_conn(
        lambda c: create_key(c, agent, instance=instance, upstream=upstream, actor=actor)
    )
    if json_out:
        print(json.dumps({"key": key, **_key_json(record)}))
        return
    print(key)
    typer.echo(f"key {record.id} for {record.agent_uri} (shown once: store it now)", err=True)


@keys.command("list")
def list_(json_out: JsonOpt = False) -> None:
    """List keys (by id; the keys themselves are never stored).

    Example: mesh gateway key list --json
    """
    from gateway.keystore import list_keys

    records = _with_conn(list_keys)
    if json_out:
        print(json.dumps([_key_json(r) for r in records]))
        return
    if not records:
        print("no keys")
        return
    for r in records:
        state = f"revoked {r.revoked_at:%Y-%m-%d %H:%M} by {r.revoked_by}" if r.revoked_at else "active"
        extra = "".join(
            [f" instance={r.instance}" if r.instance else "", f" upstream={r.upstream}" if r.upstream else ""]
        )
        print(f"{r.id}  {r.agent_uri}{extra}  {state}  (created by {r.created_by})")


@keys.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (from `mesh gateway key list`).")],
    json_out: JsonOpt = False,
) -> None:
    """Revoke a key: the gateway refuses it from its next request.

    Example: mesh gateway key revoke 3f2a9c0d1e4b
    """
    from gateway.keystore import revoke_key

    actor = _actor()
    record = _with_conn(lambda c: revoke_key(c, key_id, actor=actor))
    if json_out:
        print(json.dumps(_key_json(record)))
        return
    print(f"key {record.id} for {record.agent_uri} revoked")
