"""Policies: limits that make the mesh kill for you. The grammar, the model and pure evaluation.

A limit is one of::

    COUNTER <= NUMBER            total of a usage counter across all instances of an agent
    COUNTER <= NUMBER/WINDOW     the same, counted over a sliding window (s, m, h, d)
    instances <= N               live instances of the agent
    runtime <= DURATION          time since an instance started
    silence <= DURATION          time since an instance's last heartbeat

``<`` is accepted as well as ``<=``. Examples: ``emails<=10000/1h``, ``cost_usd<=50/1d``,
``instances<=3``, ``runtime<=2h``, ``silence<=60s``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mesh.errors import ConfigError
from mesh.protocol.models import utcnow
from mesh.protocol.target import parse_target

__all__ = [
    "GRAMMAR",
    "Breach",
    "InstanceUsage",
    "Limit",
    "Policy",
    "evaluate",
    "observe",
    "parse_duration",
    "parse_limit",
]

GRAMMAR = (
    "COUNTER<=NUMBER[/WINDOW] | instances<=N | runtime<=DURATION | silence<=DURATION, "
    "where WINDOW and DURATION are a number with s, m, h or d (e.g. emails<=10000/1h, cost_usd<=50/1d)"
)
SPECIAL = ("instances", "runtime", "silence")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_LIMIT = re.compile(
    r"\s*(?P<counter>[A-Za-z][A-Za-z0-9_]{0,63})\s*(?P<op><=|<)\s*(?P<value>[0-9][0-9_]*(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|[0-9]+(?:\.[0-9]+)?[smhd])"
    r"\s*(?:/\s*(?P<window>\d+(?:\.\d+)?[smhd]))?\s*"
)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def parse_duration(text: str) -> float:
    """``90s``, ``15m``, ``1h``, ``1d`` -> seconds; ConfigError otherwise."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise ConfigError(f"invalid duration {text!r}: use a number with s, m, h or d (e.g. 30s, 1h)")
    return float(match.group(1)) * _UNITS[match.group(2)]


class Limit(BaseModel):
    """One limit of a policy."""

    model_config = ConfigDict(frozen=True)

    counter: str
    op: Literal["<=", "<"] = "<="
    value: float
    window: float | None = Field(default=None, gt=0)

    def allows(self, observed: float) -> bool:
        return observed <= self.value if self.op == "<=" else observed < self.value

    def __str__(self) -> str:
        if self.counter in ("runtime", "silence"):
            return f"{self.counter}{self.op}{_fmt_duration(self.value)}"
        value = f"{self.value:g}"
        return f"{self.counter}{self.op}{value}" + (f"/{_fmt_duration(self.window)}" if self.window else "")


def _fmt_duration(seconds: float) -> str:
    for unit in ("d", "h", "m"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def parse_limit(text: str) -> Limit:
    """Parse one limit expression; every ConfigError is one line that shows the accepted grammar."""
    try:
        return _parse_limit(text)
    except ConfigError as exc:
        message = str(exc)
    except ValueError as exc:  # pydantic's checks on Limit (e.g. a zero window)
        errors = getattr(exc, "errors", None)
        detail = errors()[0].get("msg", "invalid") if callable(errors) else str(exc)
        message = f"invalid limit {text!r}: {detail}"
    if GRAMMAR not in message:
        message = (
            f"invalid limit {text!r}: {message.removeprefix(f'invalid limit {text!r}: ')}; expected {GRAMMAR}"
        )
    raise ConfigError(message) from None


def _parse_limit(text: str) -> Limit:
    match = _LIMIT.fullmatch(text)
    if not match:
        raise ConfigError(f"invalid limit {text!r}: expected {GRAMMAR}")
    counter, op, raw, window = match.group("counter", "op", "value", "window")
    if counter in ("runtime", "silence"):
        if window:
            raise ConfigError(f"invalid limit {text!r}: {counter} takes a duration, not a window")
        return Limit(counter=counter, op=op, value=parse_duration(raw))
    if raw[-1] in _UNITS:
        raise ConfigError(
            f"invalid limit {text!r}: {counter} takes a number (durations are for runtime/silence)"
        )
    if counter == "instances" and window:
        raise ConfigError(f"invalid limit {text!r}: instances takes no window")
    return Limit(
        counter=counter,
        op=op,
        value=float(raw.replace("_", "")),
        window=parse_duration(window) if window else None,
    )


class Policy(BaseModel):
    """A named set of limits on a target pattern, stored in the policies bucket under its name."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str
    target: str
    limits: list[Limit] = Field(min_length=1)
    #: What a breach does: kill or pause the agent, or only ``alert`` (an audit event and a metric).
    action: Literal["kill", "pause", "alert"] = "kill"
    #: Evaluate and report what the action would have been, and do nothing (try a limit on live traffic).
    dry_run: bool = False
    #: With the controller unreachable, an instance spends what its lease holds, then ``wait``s
    #: (fail-closed) or ``proceed``s unchecked (fail-open).
    on_unreachable: Literal["wait", "proceed"] = "wait"
    grace: float = Field(default=10.0, ge=0)
    created_by: str = "unknown"
    created_at: datetime = Field(default_factory=utcnow)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError("a policy name holds letters, digits, '_' and '-' (up to 64)")
        return value

    @field_validator("target")
    @classmethod
    def _target(cls, value: str) -> str:
        parse_target(value)
        return value

    @property
    def actor(self) -> str:
        return f"policy:{self.name}"

    @property
    def enforces(self) -> bool:
        """Whether a breach halts the agent (kill or pause, not a dry run)."""
        return self.action != "alert" and not self.dry_run

    def budgets(self) -> list[Limit]:
        """The limits that quota leases enforce before the action: the usage counters."""
        return [lim for lim in self.limits if lim.counter not in SPECIAL]


@dataclass(frozen=True, slots=True)
class InstanceUsage:
    """What evaluation needs to know of one instance of the agent."""

    instance: str
    live: bool
    started_at: float
    last_seen: float
    #: (time, monotonic totals) samples, oldest first; the last one is the current total.
    samples: Sequence[tuple[float, Mapping[str, float]]]


@dataclass(frozen=True, slots=True)
class Breach:
    policy: str
    limit: Limit
    observed: float

    @property
    def reason(self) -> str:
        shown = (
            _fmt_duration(self.observed)
            if self.limit.counter in ("runtime", "silence")
            else f"{self.observed:g}"
        )
        return f"policy {self.policy}: {self.limit} exceeded (observed {shown})"


def _total(instance: InstanceUsage, counter: str) -> float:
    return float(instance.samples[-1][1].get(counter, 0.0)) if instance.samples else 0.0


def _at(instance: InstanceUsage, counter: str, when: float) -> float:
    """The instance's total at ``when``: the newest sample not after it (0 before the first)."""
    value = 0.0
    for t, totals in instance.samples:
        if t > when:
            break
        value = float(totals.get(counter, 0.0))
    return value


def _observe(limit: Limit, instances: Iterable[InstanceUsage], now: float) -> float:
    items = list(instances)
    if limit.counter == "instances":
        return float(sum(1 for i in items if i.live))
    if limit.counter == "runtime":
        return max((now - i.started_at for i in items if i.live), default=0.0)
    if limit.counter == "silence":
        return max((now - i.last_seen for i in items if i.live), default=0.0)
    if limit.window is None:
        return sum(_total(i, limit.counter) for i in items)
    start = now - limit.window
    return sum(_total(i, limit.counter) - _at(i, limit.counter, start) for i in items)


def observe(limit: Limit, instances: Iterable[InstanceUsage], now: float) -> float:
    """What ``limit`` measures at ``now`` (a counter's total, or its increase over the window)."""
    return _observe(limit, instances, now)


def evaluate(policy: Policy, instances: Iterable[InstanceUsage], now: float) -> list[Breach]:
    """Every limit of ``policy`` the agent's instances break at ``now`` (pure: no I/O)."""
    items = list(instances)
    breaches = []
    for limit in policy.limits:
        observed = _observe(limit, items, now)
        if not limit.allows(observed):
            breaches.append(Breach(policy.name, limit, observed))
    return breaches
