"""``mesh credentials agent|operator|list|revoke|seed`` and ``mesh callout`` (the auth service)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

if TYPE_CHECKING:
    from mesh.protocol.identity import CredentialRecord, Identity
    from mesh.transport.natstypes import KeyValue

T = TypeVar("T")

app = typer.Typer(
    name="credentials",
    help=(
        "Credentials of one's own for agents and people (nats-identity.conf; docs/security.md, "
        "'Identities'). Run as the admin user. The token is printed once: hand it over as NATS_TOKEN.\n\n"
        "Example: mesh credentials agent agent://acme/prod/mailer"
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _with_bucket(fn: Callable[[KeyValue], Awaitable[T]], *, create: bool = False) -> T:
    import asyncio

    from cli.common import quiet_logging
    from mesh.runtime.settings import Settings
    from mesh.transport.connection import Connection
    from mesh.transport.identity_store import open_bucket

    quiet_logging()
    settings = Settings.from_env()

    async def main() -> T:
        async with Connection(settings, name="mesh-cli") as conn:
            return await fn(await open_bucket(conn.js, conn.ns, create=create))

    return asyncio.run(main())


def _issuer() -> str:
    from mesh.runtime.settings import Settings

    return Settings.from_env().resolve_actor()


def _issue(identity: Identity, as_json: bool) -> None:
    from mesh.transport.identity_store import issue

    record, token = _with_bucket(lambda kv: issue(kv, identity, issued_by=_issuer()), create=True)
    if as_json:
        typer.echo(json.dumps({"id": record.id, "token": token, "identity": record.identity.model_dump()}))
        return
    typer.echo(f"credential {record.id}: {identity.describe()}")
    typer.echo(f"NATS_TOKEN={token}")
    typer.echo("(shown once; only its hash is stored. Revoke: mesh credentials revoke " + record.id + ")")


def _identity(**values: object) -> Identity:
    from pydantic import ValidationError

    from mesh.errors import ConfigError
    from mesh.protocol.identity import Identity

    try:
        return Identity.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"invalid credential: {first['msg']}") from exc


@app.command("agent")
def agent(
    uri: Annotated[str, typer.Argument(help="The agent, agent://ORG/ENV/NAME (no wildcards).")],
    instance: Annotated[
        str | None, typer.Option(help="Only this instance (default: any instance of the agent).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Issue a credential for one agent: it acts only as that agent and reads only its kill records."""
    _issue(_identity(role="agent", scope=uri, instance=instance), as_json)


@app.command("operator")
def operator(
    scope: Annotated[str, typer.Option(help="What it may act on: agent://ORG/*/*, agent://ORG/ENV/*, ...")],
    name: Annotated[
        str | None, typer.Option(help="The person (the audit log's actor; default: MESH_ACTOR or OS user).")
    ] = None,
    role: Annotated[
        str, typer.Option(help="operator (kill, resume, read) or auditor (read the audit log).")
    ] = ("operator"),
    as_json: JsonOpt = False,
) -> None:
    """Issue a credential for a person: an operator or an auditor, limited to a scope."""
    if role not in ("operator", "auditor"):
        from mesh.errors import ConfigError

        raise ConfigError(f"invalid --role {role!r}: use operator or auditor")
    person = name or os.environ.get("MESH_ACTOR") or _issuer()
    _issue(_identity(role=role, scope=scope, name=person), as_json)


@app.command("list")
def list_(as_json: JsonOpt = False) -> None:
    """The credentials in force (never their secrets)."""
    from mesh.transport.identity_store import list_records

    records: list[CredentialRecord] = _with_bucket(list_records)
    if as_json:
        typer.echo(json.dumps([r.model_dump(mode="json", exclude={"secret_sha256"}) for r in records]))
        return
    if not records:
        typer.echo("no credentials")
    for r in records:
        typer.echo(
            f"{r.id}  {r.identity.describe():<60}  issued {r.issued_at:%Y-%m-%d %H:%M} by {r.issued_by}"
        )


@app.command("revoke")
def revoke(
    cred_id: Annotated[str, typer.Argument(help="The credential id (mesh credentials list).")],
) -> None:
    """Revoke a credential: its next connect is refused; a live connection ends when its JWT expires."""
    from mesh.errors import ConfigError
    from mesh.transport.identity_store import revoke as revoke_record

    if not _with_bucket(lambda kv: revoke_record(kv, cred_id)):
        raise ConfigError(f"no credential {cred_id!r}: see `mesh credentials list`")
    typer.echo(f"revoked {cred_id}")


@app.command("seed")
def seed() -> None:
    """Print a new callout signing seed (MESH_CALLOUT_SEED) and its public key (MESH_CALLOUT_ISSUER)."""
    from controller.natsjwt import IssuerKey, new_account_seed

    fresh = new_account_seed()
    typer.echo(f"MESH_CALLOUT_SEED={fresh}")
    typer.echo(f"MESH_CALLOUT_ISSUER={IssuerKey(fresh).public}")


def callout(
    ttl: Annotated[
        int, typer.Option(help="Seconds a connection's permissions last before it must re-authenticate.")
    ] = 900,
) -> None:
    """Run the auth callout service (nats-identity.conf) until Ctrl+C; connect as the `callout` user.

    MESH_CALLOUT_SEED signs; MESH_CALLOUT_KICK_PASSWORD (the `sys` user's) lets a revocation end
    live connections at once, not only at their JWT's expiry.
    """
    import asyncio

    from controller.callout import CalloutService
    from controller.natsjwt import IssuerKey
    from mesh.errors import ConfigError
    from mesh.runtime import stopsignals
    from mesh.runtime.logs import configure_logging
    from mesh.runtime.settings import Settings

    configure_logging()
    raw = os.environ.get("MESH_CALLOUT_SEED", "")
    if not raw:
        raise ConfigError("MESH_CALLOUT_SEED is not set: make a pair with `mesh credentials seed`")
    raw_ttl = os.environ.get("MESH_CALLOUT_TTL")
    if raw_ttl:
        if not raw_ttl.isdigit():
            raise ConfigError(f"invalid MESH_CALLOUT_TTL {raw_ttl!r}: a whole number of seconds, e.g. 900")
        ttl = int(raw_ttl)
    if ttl < 10:
        raise ConfigError(f"invalid callout TTL {ttl}: use at least 10 seconds")
    settings = Settings.from_env()
    kick = None
    if os.environ.get("MESH_CALLOUT_KICK_PASSWORD"):
        # The system account's user, to end a revoked credential's live connections at once.
        kick = settings.model_copy(
            update={
                "user": os.environ.get("MESH_CALLOUT_KICK_USER") or "sys",
                "password": os.environ["MESH_CALLOUT_KICK_PASSWORD"],
                "token": None,
                "creds": None,
            }
        )
    service = CalloutService(settings, IssuerKey(raw), ttl=ttl, kick_settings=kick)

    async def main() -> None:
        stop = asyncio.Event()
        stopsignals.stop_on_signals(stop)
        task = asyncio.ensure_future(service.run())
        waiter = asyncio.ensure_future(stop.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        task.cancel()
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    # Every connect of the fleet passes through here: uvloop (a dependency already, for uvicorn)
    # cuts the event loop's share of each answer.
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is not built for Windows
        asyncio.run(main())
    else:
        uvloop.run(main())
