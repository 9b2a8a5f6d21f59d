"""Who may call what (pure): API roles and their rights, mirroring the NATS roles of nats.conf."""

from __future__ import annotations

from typing import Literal

from gateway.errors import Forbidden

__all__ = ["RIGHTS", "Right", "require"]

Right = Literal["agent", "kill", "resume", "read_fleet", "read_events", "read_policies", "read_usage"]

#: ``operator`` kills, resumes and reads everything an operator reads over NATS; ``auditor``
#: reads the audit log and nothing else; ``agent`` (a gateway virtual key) acts as its agent.
RIGHTS: dict[str, frozenset[str]] = {
    "operator": frozenset({"kill", "resume", "read_fleet", "read_events", "read_policies", "read_usage"}),
    "auditor": frozenset({"read_events"}),
    "agent": frozenset({"agent"}),
}

_HOW = {
    "agent": "use the agent's gateway key (mk-..., `mesh gateway key create`)",
    "read_events": "use an operator or auditor API key (`mesh gateway api-key create --role auditor`)",
}


def require(role: str, right: Right, key_id: str) -> None:
    """Raise :class:`Forbidden` naming ``right`` unless ``role`` has it."""
    if right in RIGHTS.get(role, frozenset()):
        return
    how = _HOW.get(right, "use an operator API key (`mesh gateway api-key create --role operator`)")
    raise Forbidden(f"key {key_id} (role {role}) lacks the right {right!r}: {how}", right=right, role=role)
