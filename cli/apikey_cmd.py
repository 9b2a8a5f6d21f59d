"""``mesh gateway api-key create|list|revoke``: operator and auditor keys for the gateway's HTTP API."""

from __future__ import annotations

import json
from typing import Annotated

import typer

app = typer.Typer(
    name="api-key",
    help="Operator and auditor keys (mo-...) for the gateway's HTTP API (docs/http-api.md).",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _record_json(record: object) -> dict[str, object]:
    from pydantic import BaseModel

    assert isinstance(record, BaseModel)
    return json.loads(record.model_dump_json())  # type: ignore[no-any-return]


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Who the key is for; recorded as the actor (api:NAME).")],
    role: Annotated[
        str, typer.Option(help="operator (kill, resume, read) or auditor (audit log only).")
    ] = "operator",
    json_out: JsonOpt = False,
) -> None:
    """Mint an API key; it is printed once and stored only as a hash.

    Example: mesh gateway api-key create ci-bot --role operator
    """
    from cli.gateway_cmd import _actor, _with_conn
    from gateway.api.apikeys import create_api_key
    from mesh.errors import ConfigError

    if role not in ("operator", "auditor"):
        raise ConfigError(f"invalid --role {role!r}: use operator or auditor")
    actor = _actor()
    key, record = _with_conn(lambda c: create_api_key(c, role, name, actor=actor))  # type: ignore[arg-type]
    if json_out:
        print(json.dumps({"key": key, **_record_json(record)}))
        return
    print(key)
    typer.echo(f"API key {record.id} ({record.role}) for {record.name} (shown once: store it now)", err=True)


@app.command("list")
def list_(json_out: JsonOpt = False) -> None:
    """List API keys by id (the keys themselves are never stored)."""
    from cli.gateway_cmd import _with_conn
    from gateway.api.apikeys import list_api_keys

    records = _with_conn(list_api_keys)
    if json_out:
        print(json.dumps([_record_json(r) for r in records]))
        return
    for r in records:
        state = f"revoked {r.revoked_at:%Y-%m-%d %H:%M} by {r.revoked_by}" if r.revoked_at else "active"
        print(f"{r.id}  {r.name}  {r.role}  {state}  (created by {r.created_by})")
    if not records:
        print("no API keys")


@app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (from `mesh gateway api-key list`).")],
) -> None:
    """Revoke an API key: every gateway refuses it from its next request."""
    from cli.gateway_cmd import _actor, _with_conn
    from gateway.api.apikeys import revoke_api_key

    actor = _actor()
    record = _with_conn(lambda c: revoke_api_key(c, key_id, actor=actor))
    print(f"API key {record.id} ({record.name}) revoked")
