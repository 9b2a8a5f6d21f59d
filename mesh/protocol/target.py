"""Parsing and matching of agent URIs (``agent://ORG/ENV/NAME``), kill targets and instance ids."""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass

from mesh.errors import InvalidTarget

__all__ = [
    "WILDCARD",
    "AgentURI",
    "Target",
    "as_target",
    "default_instance_id",
    "parse_agent_uri",
    "parse_target",
    "validate_instance",
]

SCHEME = "agent://"
WILDCARD = "*"
MAX_SEGMENT = 64
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_SEGMENT_NAMES = ("org", "env", "name")


def _check_segment(value: str, part: str, segment: str, *, allow_wildcard: bool) -> str:
    if segment == WILDCARD:
        if allow_wildcard:
            return segment
        raise InvalidTarget(value, part, "`*` is only allowed in kill/resume targets")
    if segment == "":
        raise InvalidTarget(value, part, "is empty")
    if not segment.isascii():
        raise InvalidTarget(value, part, f"{segment!r} has non-ASCII characters")
    if any(c.isspace() for c in segment):
        raise InvalidTarget(value, part, f"{segment!r} contains whitespace")
    if len(segment) > MAX_SEGMENT:
        raise InvalidTarget(value, part, f"is {len(segment)} characters, the limit is {MAX_SEGMENT}")
    if "." in segment or ">" in segment or WILDCARD in segment:
        raise InvalidTarget(
            value, part, f"{segment!r} contains '.', '>' or '*' (a wildcard must be a whole segment)"
        )
    if not _SEGMENT.fullmatch(segment):
        raise InvalidTarget(
            value,
            part,
            f"{segment!r} must start with a letter or digit and hold only letters, digits, '_' and '-'",
        )
    return segment


def validate_instance(instance: str) -> str:
    """Return ``instance`` if it is a valid instance id, else raise :class:`InvalidTarget`."""
    if not isinstance(instance, str):
        raise InvalidTarget(repr(instance), "instance", "must be a string")
    return _check_segment(instance, "instance", instance, allow_wildcard=False)


def default_instance_id() -> str:
    """A sanitised ``hostname-pid``: unique per process, but not stable across restarts."""
    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname().split(".")[0])
    host = host.lstrip("_-") or "host"
    suffix = f"-{os.getpid()}"
    return host[: MAX_SEGMENT - len(suffix)] + suffix


def _split(value: str) -> list[str]:
    if not isinstance(value, str):
        raise InvalidTarget(repr(value), "uri", "must be a string")
    if not value.startswith(SCHEME):
        raise InvalidTarget(value, "scheme", "must start with 'agent://' (agent://ORG/ENV/NAME)")
    segments = value[len(SCHEME) :].split("/")
    if len(segments) != 3:
        raise InvalidTarget(
            value, "path", f"has {len(segments)} segment(s), expected 3 (agent://ORG/ENV/NAME)"
        )
    return segments


@dataclass(frozen=True, slots=True)
class AgentURI:
    """One concrete agent: ``agent://ORG/ENV/NAME`` with no wildcard."""

    org: str
    env: str
    name: str

    def __str__(self) -> str:
        return f"{SCHEME}{self.org}/{self.env}/{self.name}"

    @property
    def tokens(self) -> tuple[str, str, str]:
        return (self.org, self.env, self.name)


@dataclass(frozen=True, slots=True)
class Target:
    """What a kill or resume applies to: segments may be ``*``; ``instance`` narrows to one."""

    org: str
    env: str
    name: str
    instance: str | None = None

    def __str__(self) -> str:
        base = f"{SCHEME}{self.org}/{self.env}/{self.name}"
        return f"{base}#{self.instance}" if self.instance else base

    @property
    def uri(self) -> str:
        """The target's URI without the instance."""
        return f"{SCHEME}{self.org}/{self.env}/{self.name}"

    @property
    def tokens(self) -> tuple[str, str, str]:
        return (self.org, self.env, self.name)

    @property
    def is_exact(self) -> bool:
        return WILDCARD not in self.tokens

    def matches(self, agent: AgentURI, instance: str | None = None) -> bool:
        """Whether this target covers ``agent`` (and ``instance``, when the target names one)."""
        for mine, theirs in zip(self.tokens, agent.tokens, strict=True):
            if mine != WILDCARD and mine != theirs:
                return False
        return self.instance is None or self.instance == instance

    def overlaps(self, other: Target) -> bool:
        """Whether some instance could be covered by both targets."""
        for a, b in zip(self.tokens, other.tokens, strict=True):
            if a != WILDCARD and b != WILDCARD and a != b:
                return False
        return self.instance is None or other.instance is None or self.instance == other.instance

    def with_instance(self, instance: str | None) -> Target:
        if instance is None:
            return Target(self.org, self.env, self.name)
        validate_instance(instance)
        if not self.is_exact:
            raise InvalidTarget(
                str(self), "instance", "an instance can only narrow an exact agent URI, not a pattern"
            )
        return Target(self.org, self.env, self.name, instance)


def parse_agent_uri(value: str) -> AgentURI:
    """Parse an exact agent URI; wildcards are refused."""
    segments = _split(value)
    checked = [
        _check_segment(value, part, seg, allow_wildcard=False)
        for part, seg in zip(_SEGMENT_NAMES, segments, strict=True)
    ]
    return AgentURI(*checked)


def parse_target(value: str, instance: str | None = None) -> Target:
    """Parse a kill/resume target: an agent URI whose whole segments may be ``*``.

    ``agent://ORG/ENV/NAME#INSTANCE`` is accepted as a shorthand for ``instance=``.
    """
    if isinstance(value, str) and "#" in value:
        value, _, inline = value.partition("#")
        if instance is not None and instance != inline:
            raise InvalidTarget(value, "instance", f"given twice: {inline!r} and {instance!r}")
        instance = inline
    segments = _split(value)
    checked = [
        _check_segment(value, part, seg, allow_wildcard=True)
        for part, seg in zip(_SEGMENT_NAMES, segments, strict=True)
    ]
    return Target(*checked).with_instance(instance)


def as_target(target: str | Target, instance: str | None = None) -> Target:
    """``target`` as a :class:`Target` (parsed if a string), narrowed to ``instance`` if given."""
    if isinstance(target, Target):
        return target.with_instance(instance) if instance is not None else target
    return parse_target(target, instance)
