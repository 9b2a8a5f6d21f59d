"""The one mapping of nats-py's exceptions to mesh errors: by type and code, refusals remembered."""

from __future__ import annotations

import nats.errors
import nats.js.errors
import pytest

from mesh.errors import (
    AuthenticationFailed,
    ConnectionFailed,
    MeshError,
    MeshTimeout,
    NotProvisioned,
    PermissionDenied,
)
from mesh.transport import natserrors
from mesh.transport.natserrors import note_permission_violation, translate_error


@pytest.fixture(autouse=True)
def _no_refusals_remembered() -> None:
    natserrors._VIOLATIONS.clear()


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (nats.errors.TimeoutError(), MeshTimeout),
        (TimeoutError(), MeshTimeout),
        (nats.errors.AuthorizationError(), AuthenticationFailed),
        (nats.errors.NoServersError(), ConnectionFailed),
        (nats.errors.ConnectionClosedError(), ConnectionFailed),
        (ConnectionResetError(), ConnectionFailed),
        (nats.js.errors.BucketNotFoundError(), NotProvisioned),
        (
            nats.js.errors.NotFoundError(code=404, err_code=10059, description="stream not found"),
            NotProvisioned,
        ),
        (ValueError("something else"), MeshError),
    ],
)
def test_each_kind_of_nats_error_becomes_its_mesh_error(
    exc: BaseException, expected: type[MeshError]
) -> None:
    out = translate_error(exc, "read kill records", subject="acme.prod.mailer", timeout=2.0)
    assert type(out) is expected
    assert "\n" not in str(out)


def test_a_message_not_found_is_not_a_missing_bucket() -> None:
    missing_msg = nats.js.errors.NotFoundError(code=404, err_code=10037, description="no message found")
    assert not isinstance(translate_error(missing_msg, "read"), NotProvisioned)


def test_a_timeout_after_a_refusal_of_that_subject_is_said_as_the_refusal() -> None:
    note_permission_violation(
        'nats: permissions violation for publish to "$kv.mesh_control.acme.prod.mailer"'
    )
    out = translate_error(nats.errors.TimeoutError(), "write kill records", subject="acme.prod.mailer")
    assert isinstance(out, PermissionDenied)
    other = translate_error(nats.errors.TimeoutError(), "write kill records", subject="globex.prod.x")
    assert isinstance(other, MeshTimeout)


def test_a_mesh_error_passes_through_untouched() -> None:
    err = NotProvisioned("bucket x")
    assert translate_error(err, "anything") is err


def test_a_slow_consumer_names_its_subscription() -> None:
    dropped = nats.errors.SlowConsumerError("mesh.hb.a.b.c.i", "", 7, None)  # type: ignore[arg-type]
    assert natserrors.slow_consumer_sid(dropped) == 7
    assert natserrors.slow_consumer_sid(nats.errors.TimeoutError()) is None
    assert natserrors.slow_consumer_sid(OSError("slow consumer")) is None
