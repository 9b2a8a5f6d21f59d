"""KV wire details: delete markers (including server-made limit markers) and direct-get replies."""

from __future__ import annotations

import pytest

from mesh.protocol.kvwire import KVLatest, Reply, is_delete, is_delete_operation, parse_direct_reply

PREFIX = "$KV.mesh_control."


@pytest.mark.parametrize(
    ("headers", "deleted"),
    [
        (None, False),
        ({}, False),
        ({"KV-Operation": "DEL"}, True),
        ({"KV-Operation": "PURGE"}, True),
        ({"Nats-Marker-Reason": "MaxAge"}, True),
        ({"Nats-Marker-Reason": "Purge"}, True),
        ({"Nats-Marker-Reason": "Remove"}, True),
        ({"Nats-Marker-Reason": "Something-New"}, False),
        ({"KV-Operation": "PUT"}, False),
    ],
)
def test_what_counts_as_a_delete(headers: dict[str, str] | None, deleted: bool) -> None:
    assert is_delete(headers) is deleted


def test_entry_operations() -> None:
    assert is_delete_operation("DEL") and is_delete_operation("PURGE")
    assert not is_delete_operation(None) and not is_delete_operation("PUT")


def test_a_value_and_a_delete_marker_in_a_direct_get_reply() -> None:
    value = parse_direct_reply(PREFIX, {"Nats-Subject": PREFIX + "acme.prod.x", "Nats-Sequence": "12"}, b"{}")
    assert value.kind is Reply.ENTRY and value.entry == KVLatest("acme.prod.x", b"{}", 12)
    marker = parse_direct_reply(
        PREFIX,
        {"Nats-Subject": PREFIX + "acme.prod.x", "Nats-Sequence": "13", "Nats-Marker-Reason": "MaxAge"},
        b"",
    )
    assert marker.kind is Reply.ENTRY and marker.entry == KVLatest("acme.prod.x", None, 13)


@pytest.mark.parametrize(
    ("headers", "kind"),
    [
        ({"Status": "204", "Description": "EOB"}, Reply.END),
        ({"Status": "204", "Nats-Num-Pending": "0"}, Reply.END),
        ({"Status": "204", "Nats-Num-Pending": "3"}, Reply.TRUNCATED),
        ({"Status": "404"}, Reply.EMPTY),
        ({"Status": "503"}, Reply.UNAVAILABLE),
        ({"Status": "408"}, Reply.UNKNOWN),
        ({"Nats-Subject": "$KV.other.k", "Nats-Sequence": "1"}, Reply.UNKNOWN),
        ({"Nats-Subject": PREFIX + "k", "Nats-Sequence": "x"}, Reply.UNKNOWN),
        ({"Nats-Subject": PREFIX + "k"}, Reply.UNKNOWN),
    ],
)
def test_status_and_foreign_replies(headers: dict[str, str], kind: Reply) -> None:
    reply = parse_direct_reply(PREFIX, headers, b"")
    assert reply.kind is kind and reply.entry is None
