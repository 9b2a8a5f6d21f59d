"""Roles enforced by nats-server: authentication, and the admin who provisions but cannot tamper."""

from __future__ import annotations

import pytest

from mesh.errors import AuthenticationFailed
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from mesh.transport.provision import ProvisionOptions, bucket_configs, provision

from .conftest import SecureServer
from .permissions_helpers import (
    AUDIT,
    DENY_TIMEOUT,
    NS,
    assert_denied,
    kill_record,
    kv_subject,
)

pytestmark = pytest.mark.timeout(120)


async def test_wrong_password_and_no_credentials_are_refused(secure_server: SecureServer) -> None:
    with pytest.raises(AuthenticationFailed):
        await secure_server.connect("operator", password="not-the-password")
    with pytest.raises(AuthenticationFailed):
        await secure_server.connect("nobody", password="whatever")
    with pytest.raises(AuthenticationFailed):
        await Connection.open(Settings(nats_url=secure_server.url, connect_timeout=5.0))


async def test_admin_provisions_idempotently_and_cannot_tamper(secure_server: SecureServer) -> None:
    conn = await secure_server.connect("admin")
    try:
        result = await provision(conn.js, conn.ns, ProvisionOptions())
        assert not result.created
        assert sorted(result.existing) == sorted(
            [kv.bucket for kv in bucket_configs(NS, ProvisionOptions())] + [AUDIT]
        )
        js = conn.nc.jetstream(timeout=DENY_TIMEOUT)
        await assert_denied(
            js.delete_stream(AUDIT), "delete the audit stream", f"$JS.API.STREAM.DELETE.{AUDIT}"
        )
        await assert_denied(js.purge_stream(AUDIT), "purge the audit stream", f"$JS.API.STREAM.PURGE.{AUDIT}")
        # admin may not write kill records either: provisioning is not operating
        await assert_denied(
            js.publish(
                kv_subject(NS.control_bucket, "acme.prod.mailer"),
                kill_record("agent://acme/prod/mailer", "admin"),
            ),
            "write kill records",
            kv_subject(NS.control_bucket, "acme.prod.mailer"),
        )
    finally:
        await conn.close()
