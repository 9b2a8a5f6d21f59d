"""Identity -> the NATS publish/subscribe allow lists nats-server enforces for it (pure, no I/O).

The rules (docs/security.md, "Identities"): an agent acts only under its own
``ORG.ENV.NAME[.INSTANCE]`` and reads only the kill records that can match it; a person acts and
reads only under its scope. Reads go through the API forms whose *subject* names what is read
(direct get by subject, consumer create with the filter in the subject), because a permission
can only see subjects, never a request's body.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

from mesh.protocol.identity import Identity, Role, inbox_prefix
from mesh.protocol.subjects import ANY, Namespace
from mesh.protocol.target import WILDCARD

__all__ = [
    "AGENT_EVENTS",
    "Permissions",
    "may_publish",
    "may_subscribe",
    "permissions_for",
    "subject_matches",
]

#: The lifecycle events an agent reports about itself (nats.conf's AGENT_PERMISSIONS has the same).
AGENT_EVENTS = ("started", "halted", "resumed", "stopped", "crashed", "terminated")
#: What every identity is refused whatever its allow list says: the APIs that would break the
#: append-only audit log or change the deployment.
BASE_DENY = (
    "$JS.API.STREAM.DELETE.>",
    "$JS.API.STREAM.PURGE.>",
    "$JS.API.STREAM.UPDATE.>",
    "$JS.API.STREAM.MSG.DELETE.>",
    "$JS.API.STREAM.CREATE.>",
    "$JS.API.ACCOUNT.>",
    "$JS.API.SERVER.>",
    "$JS.API.META.>",
)


@dataclass(frozen=True, slots=True)
class Permissions:
    """Allow/deny lists of subjects, in nats-server's wildcard syntax."""

    pub_allow: tuple[str, ...]
    sub_allow: tuple[str, ...]
    pub_deny: tuple[str, ...] = BASE_DENY
    sub_deny: tuple[str, ...] = ()

    def to_claims(self) -> dict[str, object]:
        """The ``pub``/``sub`` part of a NATS user JWT (nats-io/jwt v2 ``Permissions``)."""
        pub: dict[str, list[str]] = {"allow": list(self.pub_allow)}
        sub: dict[str, list[str]] = {"allow": list(self.sub_allow)}
        if self.pub_deny:
            pub["deny"] = list(self.pub_deny)
        if self.sub_deny:
            sub["deny"] = list(self.sub_deny)
        return {"pub": pub, "sub": sub}


def _tok(segment: str) -> str:
    """A scope segment as a subject token: a wildcard scope matches any token, ``_`` included."""
    return "*" if segment == WILDCARD else segment


def _stream(bucket: str) -> str:
    return f"KV_{bucket}"


def _direct_get(stream: str, subject: str) -> str:
    """Direct get of the last message on ``subject``: the subject is in the API subject."""
    return f"$JS.API.DIRECT.GET.{stream}.{subject}"


def permissions_for(identity: Identity, cred_id: str, ns: Namespace | None = None) -> Permissions:
    """The permissions of ``identity`` holding credential ``cred_id`` under namespace ``ns``."""
    ns = ns or Namespace()
    if identity.role is Role.AGENT:
        return _agent(identity, cred_id, ns)
    if identity.role is Role.OPERATOR:
        return _operator_global(cred_id, ns) if identity.is_global else _operator(identity, cred_id, ns)
    return _auditor_global(cred_id, ns) if identity.is_global else _auditor(identity, cred_id, ns)


def _agent(identity: Identity, cred_id: str, ns: Namespace) -> Permissions:
    org, env, name = identity.segments
    inst = identity.instance or "*"
    own = f"{org}.{env}.{name}.{inst}"
    p = ns.prefix
    control, checkpoints = ns.control_bucket, ns.checkpoints_bucket
    # The 8 record keys that can match this agent (every mix of its segments and `_`), and its own
    # instance key(s): Namespace.matching_control_keys, with the instance possibly a wildcard.
    keys = [".".join(c) for c in product((org, ANY), (env, ANY), (name, ANY))] + [own]
    pub = [
        f"{p}.hb.{own}",
        f"{p}.quota.{own}",
        *(f"{p}.audit.{own}.{event}" for event in AGENT_EVENTS),
        f"$KV.{checkpoints}.{own}",
        "$JS.API.INFO",
        f"$JS.API.STREAM.INFO.{_stream(control)}",
        f"$JS.API.STREAM.INFO.{_stream(checkpoints)}",
        *(_direct_get(_stream(control), f"$KV.{control}.{k}") for k in keys),
        _direct_get(_stream(checkpoints), f"$KV.{checkpoints}.{own}"),
    ]
    sub = [f"{inbox_prefix(cred_id)}.>", *(f"{p}.ctl.{k}" for k in keys)]
    return Permissions(tuple(pub), tuple(sub))


def _scoped_reads(cred_id: str, stream: str, subjects: list[str], *, consumers: bool = True) -> list[str]:
    """Direct get by subject, and one consumer named after the credential filtered on the subject.

    The consumer's name is pinned to the credential so that it can neither pull from another
    identity's consumer (which may see more) nor redefine one (a create on an existing name is
    an update).
    """
    out = [_direct_get(stream, s) for s in subjects]
    if consumers:
        out += [f"$JS.API.CONSUMER.CREATE.{stream}.{cred_id}.{s}" for s in subjects]
        out += [f"$JS.API.CONSUMER.{verb}.{stream}.{cred_id}" for verb in ("INFO", "DELETE", "MSG.NEXT")]
        out += [f"$JS.ACK.{stream}.{cred_id}.>", f"$JS.FC.{stream}.>"]
    return out


def _operator(identity: Identity, cred_id: str, ns: Namespace) -> Permissions:
    org, env, name = (_tok(s) for s in identity.segments)
    scope = f"{org}.{env}.{name}"
    p = ns.prefix
    control, instances, checkpoints = ns.control_bucket, ns.instances_bucket, ns.checkpoints_bucket
    audit = ns.audit_stream
    streams = (_stream(control), _stream(instances), _stream(checkpoints), audit)
    record_keys = [scope, f"{scope}.*"]
    pub = [
        # kill and resume: write and delete kill records inside the scope, and record the command
        *(f"$KV.{control}.{k}" for k in record_keys),
        f"{p}.audit.{scope}.*.kill",
        f"{p}.audit.{scope}.*.resume",
        "$JS.API.INFO",
        *(f"$JS.API.STREAM.INFO.{s}" for s in streams),
        *_scoped_reads(cred_id, _stream(control), [f"$KV.{control}.{k}" for k in record_keys]),
        *_scoped_reads(cred_id, _stream(instances), [f"$KV.{instances}.{scope}.*"]),
        *_scoped_reads(cred_id, _stream(checkpoints), [f"$KV.{checkpoints}.{scope}.*"]),
        *_scoped_reads(cred_id, audit, [f"{p}.audit.{scope}.*.*"]),
    ]
    sub = [
        f"{inbox_prefix(cred_id)}.>",
        f"{p}.audit.{scope}.*.*",
        f"{p}.hb.{scope}.*",
        *(f"{p}.ctl.{k}" for k in record_keys),
    ]
    return Permissions(_unique(pub), _unique(sub))


def _auditor(identity: Identity, cred_id: str, ns: Namespace) -> Permissions:
    org, env, name = (_tok(s) for s in identity.segments)
    events = f"{ns.prefix}.audit.{org}.{env}.{name}.*.*"
    audit = ns.audit_stream
    pub = ["$JS.API.INFO", f"$JS.API.STREAM.INFO.{audit}", *_scoped_reads(cred_id, audit, [events])]
    sub = [f"{inbox_prefix(cred_id)}.>", events]
    return Permissions(tuple(pub), tuple(sub))


def _operator_global(cred_id: str, ns: Namespace) -> Permissions:
    """Everything nats.conf's shared ``operator`` user may do, with an inbox of its own."""
    p = ns.prefix
    pub = (
        f"$KV.{ns.control_bucket}.>",
        f"$KV.{ns.policies_bucket}.>",
        f"$KV.{ns.gateway_keys_bucket}.>",
        f"{p}.audit.*.*.*.*.kill",
        f"{p}.audit.*.*.*.*.resume",
        "$SRV.>",
        f"{p}.controller.>",
        "$JS.API.INFO",
        "$JS.API.STREAM.NAMES",
        "$JS.API.STREAM.LIST",
        "$JS.API.STREAM.INFO.*",
        "$JS.API.DIRECT.GET.*",
        "$JS.API.DIRECT.GET.*.>",
        "$JS.API.STREAM.MSG.GET.*",
        "$JS.API.CONSUMER.CREATE.*",
        "$JS.API.CONSUMER.CREATE.*.>",
        f"$JS.API.CONSUMER.DURABLE.CREATE.{ns.audit_stream}.*",
        "$JS.API.CONSUMER.INFO.*.*",
        "$JS.API.CONSUMER.DELETE.*.*",
        "$JS.API.CONSUMER.MSG.NEXT.*.*",
        "$JS.ACK.>",
        "$JS.FC.>",
    )
    deny = (
        *BASE_DENY,
        f"$KV.{ns.instances_bucket}.>",
        f"$KV.{ns.checkpoints_bucket}.>",
        f"$KV.{ns.leases_bucket}.>",
        f"$KV.{ns.quota_bucket}.>",
    )
    sub = (f"{inbox_prefix(cred_id)}.>", f"{p}.audit.>", f"{p}.hb.>", f"{p}.ctl.>")
    return Permissions(pub, sub, pub_deny=deny)


def _auditor_global(cred_id: str, ns: Namespace) -> Permissions:
    """nats.conf's shared ``auditor``: the whole audit stream (``mesh audit verify`` needs it all)."""
    audit = ns.audit_stream
    pub = (
        "$JS.API.INFO",
        "$JS.API.STREAM.NAMES",
        f"$JS.API.STREAM.INFO.{audit}",
        f"$JS.API.DIRECT.GET.{audit}",
        f"$JS.API.DIRECT.GET.{audit}.>",
        f"$JS.API.STREAM.MSG.GET.{audit}",
        f"$JS.API.CONSUMER.CREATE.{audit}",
        f"$JS.API.CONSUMER.CREATE.{audit}.>",
        f"$JS.API.CONSUMER.DURABLE.CREATE.{audit}.*",
        f"$JS.API.CONSUMER.INFO.{audit}.*",
        f"$JS.API.CONSUMER.DELETE.{audit}.*",
        f"$JS.API.CONSUMER.MSG.NEXT.{audit}.*",
        f"$JS.ACK.{audit}.>",
        f"$JS.FC.{audit}.>",
    )
    sub = (f"{inbox_prefix(cred_id)}.>", f"{ns.prefix}.audit.>")
    return Permissions(pub, sub, pub_deny=(*BASE_DENY, "$KV.>", f"{ns.prefix}.>"))


def _unique(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS wildcard matching: ``*`` is one token, ``>`` one or more trailing tokens."""
    pat, sub = pattern.split("."), subject.split(".")
    for i, token in enumerate(pat):
        if token == ">":
            return len(sub) > i
        if i >= len(sub) or (token != "*" and token != sub[i]):
            return False
        if token == "*" and sub[i] == ">":  # a `>` subscription is wider than one `*` token
            return False
    return len(pat) == len(sub)


def may_publish(perms: Permissions, subject: str) -> bool:
    """What nats-server decides for a publish: allowed by some allow pattern and no deny pattern."""
    return _decide(perms.pub_allow, perms.pub_deny, subject)


def may_subscribe(perms: Permissions, subject: str) -> bool:
    return _decide(perms.sub_allow, perms.sub_deny, subject)


def _decide(allow: tuple[str, ...], deny: tuple[str, ...], subject: str) -> bool:
    return any(subject_matches(p, subject) for p in allow) and not any(
        subject_matches(p, subject) for p in deny
    )
