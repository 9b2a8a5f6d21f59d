"""The audit verifier: walks stored messages in stream order and names the first break in any chain."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from mesh.errors import MalformedMessage
from mesh.protocol.auditchain import link_hash
from mesh.protocol.codec import decode
from mesh.protocol.models import AuditEvent, ChainLink

__all__ = [
    "Anchor",
    "BreakKind",
    "ChainBreak",
    "ChainHead",
    "StoredMessage",
    "VerifyReport",
    "report_json",
    "verify",
]


@dataclass(frozen=True)
class StoredMessage:
    """One message of the audit stream as the server returned it."""

    seq: int
    subject: str
    data: bytes
    #: Not covered by the hash (only ``Nats-Msg-Id``, for dedup): kept so a copy can be republished.
    headers: Mapping[str, str] | None = None


class BreakKind(StrEnum):
    EDITED = "edited"
    REMOVED = "removed"
    REORDERED = "reordered"
    INSERTED = "inserted"


class ChainBreak(BaseModel):
    """The first place where the stream is not what its writers wrote."""

    kind: BreakKind
    #: The stream sequence of the message at fault (for ``removed``: the first one missing).
    stream_seq: int
    chain: str | None = None
    chain_seq: int | None = None
    detail: str

    def line(self) -> str:
        where = f"chain {self.chain[:12]} #{self.chain_seq}, " if self.chain else ""
        return f"audit log broken at stream seq {self.stream_seq} ({where}{self.kind.value}): {self.detail}"


class ChainHead(BaseModel):
    """What the walk saw of one chain; ``seq``/``hash``/``stream_seq`` are its last event."""

    writer: str
    first: int
    seq: int
    hash: str
    stream_seq: int
    events: int
    #: The chain's first events were not in the walk (aged out, or before ``--since``).
    partial: bool = False


class Anchor(BaseModel):
    """A chain head recorded by an earlier verify and kept elsewhere (``--json`` output)."""

    seq: int
    hash: str
    stream_seq: int


class VerifyReport(BaseModel):
    events: int = 0
    chained: int = 0
    unchained: int = 0
    #: Unchained events stored after the first chained one (old writers, or an insertion).
    unchained_after_chained: int = 0
    #: Messages that are not audit events at all.
    malformed: int = 0
    first_seq: int | None = None
    #: The last message walked (the one at fault, when broken).
    last_seq: int | None = None
    #: The stream's last sequence as the server reported it.
    stream_last_seq: int | None = None
    anchors_checked: int = 0
    chains: dict[str, ChainHead] = Field(default_factory=dict)
    broken: ChainBreak | None = None

    @property
    def ok(self) -> bool:
        return self.broken is None

    def anchors(self) -> dict[str, Anchor]:
        return {c: Anchor(seq=h.seq, hash=h.hash, stream_seq=h.stream_seq) for c, h in self.chains.items()}


def _writer(event: AuditEvent) -> str:
    if event.agent_uri:
        return f"{event.agent_uri}#{event.instance}" if event.instance else event.agent_uri
    return event.actor or "unknown"


@dataclass
class _Walk:
    complete: bool
    strict: bool = False
    report: VerifyReport = field(default_factory=VerifyReport)
    #: (chain, chain seq) -> stream seqs still ahead in the walk, to tell reordered from removed.
    ahead: dict[tuple[str, int], list[int]] = field(default_factory=lambda: defaultdict(list))
    #: (chain, chain seq) -> hash, of every chained event seen so far (to recognise copies).
    seen: dict[tuple[str, int], str] = field(default_factory=dict)
    #: Stream seqs of messages that are not audit events.
    garbage: list[int] = field(default_factory=list)
    #: stream seq -> the chained message there, for looking ahead.
    by_seq: dict[int, tuple[StoredMessage, ChainLink]] = field(default_factory=dict)

    def fail(
        self, kind: BreakKind, seq: int, detail: str, chain: str | None = None, n: int | None = None
    ) -> None:
        self.report.broken = ChainBreak(kind=kind, stream_seq=seq, chain=chain, chain_seq=n, detail=detail)

    def step(self, msg: StoredMessage, event: AuditEvent | None, prev_seq: int | None) -> None:
        r = self.report
        if prev_seq is not None and msg.seq != prev_seq + 1:
            missing = f"{prev_seq + 1}" if msg.seq == prev_seq + 2 else f"{prev_seq + 1}-{msg.seq - 1}"
            # The stream denies delete and purge, and age only removes the oldest: a hole inside it
            # means messages were removed from the store.
            return self.fail(BreakKind.REMOVED, prev_seq + 1, f"stream sequence {missing} missing")
        if event is None:
            # Anyone allowed to publish on the audit subjects can store garbage: counted, not a
            # break, or one bad message would hide every later one. A chained event made garbage
            # leaves a hole in its chain, which names this message (below).
            r.malformed += 1
            self.garbage.append(msg.seq)
            if self.strict:
                return self.fail(BreakKind.INSERTED, msg.seq, "the payload is not an audit event")
            return None
        link = event.chain
        if link is None:
            r.unchained += 1
            if r.chained:
                r.unchained_after_chained += 1
                if self.strict:
                    return self.fail(BreakKind.INSERTED, msg.seq, "an unchained event after chaining began")
            return None
        r.chained += 1
        key = (link.id, link.seq)
        self.ahead[key].pop(0)
        digest = link_hash(msg.subject, msg.data)
        if (link.seq == 1) != (link.prev is None):
            return self.fail(BreakKind.EDITED, msg.seq, "chain link malformed", link.id, link.seq)
        if key in self.seen:
            what = "a copy of" if self.seen[key] == digest else "a second event claiming"
            at = r.chains[link.id].seq
            return self.fail(
                BreakKind.INSERTED, msg.seq, f"{what} chain #{link.seq} (chain is at #{at})", *key
            )
        head = r.chains.get(link.id)
        rivals = self.ahead.get(key)
        if rivals and not self.fits(link, digest, head) and any(self.fits_at(s, head) for s in rivals):
            # Two events claim this place and the other one links both ways: this one was added.
            return self.fail(
                BreakKind.INSERTED,
                msg.seq,
                f"claims chain #{link.seq}, which stream seq {rivals[0]} holds",
                *key,
            )
        expected = head.seq + 1 if head else 1
        if head is not None and link.seq < expected:
            # Only possible in a chain whose start was not in the walk: this one belonged earlier.
            return self.fail(
                BreakKind.REORDERED,
                msg.seq,
                f"comes after chain #{head.seq} (stream seq {head.stream_seq})",
                *key,
            )
        if link.seq != expected and (head is not None or self.complete):
            later = [s for n in range(expected, link.seq) for s in self.ahead.get((link.id, n), [])]
            if later:
                return self.fail(
                    BreakKind.REORDERED,
                    msg.seq,
                    f"chain #{expected} comes later, at stream seq {min(later)}",
                    *key,
                )
            since = head.stream_seq if head else 0
            bad = [g for g in self.garbage if since < g < msg.seq]
            if bad:
                detail = (
                    f"not an audit event, where chain #{expected} (before stream seq {msg.seq}) should be"
                )
                return self.fail(BreakKind.EDITED, bad[0], detail, link.id, expected)
            after = f"after stream seq {head.stream_seq}" if head else "from the start of the stream"
            gap = f"#{expected}" if link.seq == expected + 1 else f"#{expected}-#{link.seq - 1}"
            return self.fail(BreakKind.REMOVED, msg.seq, f"chain {gap} missing ({after})", *key)
        if head is not None and link.prev != head.hash:
            # The successor recorded another hash: the predecessor's bytes (or subject) changed.
            return self.fail(
                BreakKind.EDITED,
                head.stream_seq,
                f"does not hash to what chain #{link.seq} at stream seq {msg.seq} recorded"
                " (this one was edited, or that one forged)",
                link.id,
                head.seq,
            )
        self.seen[key] = digest
        if head is None:
            r.chains[link.id] = ChainHead(
                writer=_writer(event),
                first=link.seq,
                seq=link.seq,
                hash=digest,
                stream_seq=msg.seq,
                events=1,
                partial=link.seq != 1,
            )
        else:
            head.seq, head.hash, head.stream_seq, head.events = link.seq, digest, msg.seq, head.events + 1
        return None

    def fits(self, link: ChainLink, digest: str, head: ChainHead | None) -> bool:
        """Whether an event links to the chain's head and its successor links to it."""
        if head is not None and link.prev != head.hash:
            return False
        successors = self.ahead.get((link.id, link.seq + 1), [])
        return not successors or any(self.by_seq[s][1].prev == digest for s in successors)

    def fits_at(self, stream_seq: int, head: ChainHead | None) -> bool:
        msg, link = self.by_seq[stream_seq]
        return self.fits(link, link_hash(msg.subject, msg.data), head)

    def check_anchors(self, anchors: Mapping[str, Anchor]) -> None:
        """Heads recorded earlier must still be there, with the same hash (else: rewritten or cut)."""
        r = self.report
        first = r.first_seq
        seen_upto = max((a.stream_seq for a in anchors.values()), default=0)
        if r.last_seq is not None and seen_upto > r.last_seq:
            # The stream itself was cut short (a truncated store, or a recreated shorter stream).
            r.anchors_checked = len(anchors)
            missing = f"{r.last_seq + 1}-{seen_upto}" if seen_upto > r.last_seq + 1 else f"{seen_upto}"
            ends = f"the stream ends at {r.last_seq}, an anchor saw {seen_upto}"
            detail = f"stream sequence {missing} missing: {ends}"
            return self.fail(BreakKind.REMOVED, r.last_seq + 1, detail)
        for chain, anchor in sorted(anchors.items(), key=lambda kv: kv[1].stream_seq):
            if first is not None and anchor.stream_seq < first:
                continue  # aged out (or before --since): nothing to compare
            r.anchors_checked += 1
            head = r.chains.get(chain)
            if head is None or head.seq < anchor.seq:
                have = f"now ends at #{head.seq} (stream seq {head.stream_seq})" if head else "is gone"
                detail = (
                    f"the chain was anchored at #{anchor.seq} (stream seq {anchor.stream_seq}) and {have}"
                )
                return self.fail(BreakKind.REMOVED, anchor.stream_seq, detail, chain, anchor.seq)
            if self.seen.get((chain, anchor.seq)) != anchor.hash:
                detail = "the chain's history differs from the anchor: rewritten"
                return self.fail(BreakKind.EDITED, anchor.stream_seq, detail, chain, anchor.seq)
        return None


def _decode(msg: StoredMessage) -> AuditEvent | None:
    try:
        return decode(AuditEvent, msg.data)
    except MalformedMessage:
        return None


def verify(
    messages: Iterable[StoredMessage],
    *,
    complete: bool,
    last_seq: int | None = None,
    anchors: Mapping[str, Anchor] | None = None,
    strict: bool = False,
) -> VerifyReport:
    """Walk ``messages`` (stream order) and report the first break, if any.

    ``complete``: the walk starts at the stream's very first message (nothing aged out, no
    ``--since``), so every chain must start at #1. ``last_seq``: the stream's last sequence as the
    server reports it, so that missing messages at the end are noticed too. ``anchors``: heads
    from an earlier run, which must still be there unchanged. ``strict``: once chained events
    appear, an unchained one is a break (for a fleet whose writers are all upgraded), and so is
    a message that is not an audit event.
    """
    msgs = list(messages)
    events = [_decode(m) for m in msgs]
    walk = _Walk(complete, strict)
    for msg, event in zip(msgs, events, strict=True):
        if event is not None and event.chain is not None:
            walk.ahead[(event.chain.id, event.chain.seq)].append(msg.seq)
            walk.by_seq[msg.seq] = (msg, event.chain)
    r = walk.report
    r.stream_last_seq = last_seq
    prev: int | None = None
    for msg, event in zip(msgs, events, strict=True):
        if r.first_seq is None:
            r.first_seq = msg.seq
        r.events += 1
        r.last_seq = msg.seq
        walk.step(msg, event, prev)
        if r.broken is not None:
            return r
        prev = msg.seq
    if last_seq is not None and (prev or 0) < last_seq and r.first_seq is not None:
        walk.fail(BreakKind.REMOVED, (prev or 0) + 1, f"the stream says it ends at {last_seq}")
        return r
    if anchors:
        walk.check_anchors(anchors)
    return r


def report_json(report: VerifyReport) -> dict[str, Any]:
    """The report as JSON, with ``anchors`` that a later ``verify --anchor`` can read back."""
    out = report.model_dump(mode="json")
    out["ok"] = report.ok
    out["anchors"] = {c: a.model_dump() for c, a in report.anchors().items()}
    return out
