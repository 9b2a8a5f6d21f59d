"""Per-writer audit hash chains: the bytes an event's hash covers, and a writer's chain state."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum

from mesh.protocol.models import ChainLink, new_id

__all__ = ["DOMAIN", "ChainState", "Outcome", "classify_publish", "link_hash"]

#: Domain separation, and the version of what the hash covers: change it if the covered bytes change.
DOMAIN = b"mesh-audit-chain/1\n"


def link_hash(subject: str, payload: bytes) -> str:
    """The hash a successor records as ``prev``: the subject and the exact payload bytes stored.

    Hashing the stored bytes (not a re-serialisation) means there is no canonical form to
    disagree on: the writer hashes what it publishes, the verifier hashes what it reads. The
    subject is covered because it carries the agent and type that ``mesh events`` filters on.
    """
    h = hashlib.sha256(DOMAIN)
    h.update(subject.encode())
    h.update(b"\n")
    h.update(payload)
    return h.hexdigest()


class Outcome(StrEnum):
    """What one publish did to the stream, as far as the writer can know."""

    #: Our bytes are in the stream: the chain advances.
    STORED = "stored"
    #: Another event with the same id was there already (the first attempt was a duplicate):
    #: ours was dropped, so the chain must not advance.
    NOT_OURS = "not_ours"
    #: Maybe stored, maybe not (a timeout, a duplicate on a retry, a cancel): the chain ends here.
    UNKNOWN = "unknown"


def classify_publish(*, attempt: int, duplicate: bool | None, failed: bool) -> Outcome:
    """The outcome of a publish that ended on ``attempt`` (0-based) with an ack or an error.

    A duplicate on a retry is ambiguous: our earlier attempt may have been stored (its ack lost)
    or someone else's event with the same id may be there. Guessing either way would make the
    verifier see a false gap or a fork, so the writer starts a new chain instead.
    """
    if failed:
        return Outcome.UNKNOWN
    if not duplicate:
        return Outcome.STORED
    return Outcome.NOT_OURS if attempt == 0 else Outcome.UNKNOWN


@dataclass
class ChainState:
    """One writer's chain: its id, the last stored event's chain sequence and hash.

    A new state (a new process, a new connection) is always a new chain starting at 1: a writer
    never continues a chain it cannot prove it wrote the head of, so chains never fork.
    """

    id: str = field(default_factory=new_id)
    seq: int = 0
    head: str | None = None
    #: Chains this state has started (1 + rotations), for logs.
    started: int = 1

    def next_link(self) -> ChainLink:
        return ChainLink(id=self.id, seq=self.seq + 1, prev=self.head)

    def settle(self, link: ChainLink, digest: str, outcome: Outcome) -> None:
        """Record the outcome of publishing the event that carried ``link`` (hashing to ``digest``)."""
        if link.id != self.id or link.seq != self.seq + 1:
            # Settling out of turn means two publishes overlapped: never continue such a chain.
            outcome = Outcome.UNKNOWN
        if outcome is Outcome.STORED:
            self.seq, self.head = link.seq, digest
        elif outcome is Outcome.UNKNOWN:
            self.rotate()

    def rotate(self) -> None:
        """End this chain and start a new one (explicitly: the next event has seq 1, no prev)."""
        self.id, self.seq, self.head = new_id(), 0, None
        self.started += 1
