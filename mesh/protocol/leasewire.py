"""Wire models of quota leases: an instance's request for a slice, and the controller's answer."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mesh.protocol.models import WIRE_VERSION, new_id

__all__ = ["LeaseReply", "LeaseRequest", "Outcome", "Release"]

#: granted: ``amount`` may be spent; unlimited: no budget covers the counter (ask again after
#: ``ttl``); denied: the budget is gone (``policy``, ``reason``); released: releases applied only.
Outcome = Literal["granted", "unlimited", "denied", "released"]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)


class Release(BaseModel):
    """A lease given up: ``unspent`` of grant ``grant_id`` on ``counter`` goes back to its budgets."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    counter: str = Field(max_length=64)
    grant_id: str = Field(min_length=1, max_length=64)
    unspent: float = Field(ge=0)


class LeaseRequest(_Wire):
    """Sent to ``mesh.quota.ORG.ENV.NAME.INSTANCE``; ``want == 0`` only gives leases back."""

    v: int = WIRE_VERSION
    agent_uri: str = Field(max_length=256)
    instance: str = Field(max_length=64)
    counter: str = Field(default="", max_length=64)
    want: float = Field(default=0.0, ge=0, le=1e15)
    #: Kept across retries of one request, so that a retry never gets a second grant.
    request_id: str = Field(default_factory=new_id, min_length=1, max_length=64)
    releases: list[Release] = Field(default_factory=list, max_length=256)


class LeaseReply(_Wire):
    """The controller's answer to a :class:`LeaseRequest`."""

    v: int = WIRE_VERSION
    counter: str = ""
    outcome: Outcome
    amount: float = Field(default=0.0, ge=0)
    grant_id: str | None = None
    #: Seconds the lease may be spent (None: until given back). For ``unlimited``: when to ask again.
    ttl: float | None = None
    #: With the controller unreachable later: spend on unchecked (True) or wait (False).
    fail_open: bool = False
    policy: str | None = None
    reason: str | None = None
