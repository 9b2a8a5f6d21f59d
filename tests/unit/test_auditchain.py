"""The pure audit chain: writer state and outcomes, and the verifier on edited, removed, reordered,
inserted and untouched histories (with hypothesis over interleavings of many writers)."""

from __future__ import annotations

import dataclasses
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.protocol.auditchain import ChainState, Outcome, classify_publish, link_hash
from mesh.protocol.auditverify import Anchor, BreakKind, StoredMessage, report_json, verify
from mesh.protocol.codec import encode
from mesh.protocol.models import AuditEvent, EventType


def _event(writer: int, n: int, chain: ChainState) -> tuple[str, bytes]:
    event = AuditEvent(
        type=EventType.STARTED,
        agent_uri=f"agent://acme/prod/w{writer}",
        instance="i1",
        reason=f"event {n}",
        chain=chain.next_link(),
    )
    subject = f"mesh.audit.acme.prod.w{writer}.i1.started"
    payload = encode(event)
    assert event.chain is not None
    chain.settle(event.chain, link_hash(subject, payload), Outcome.STORED)
    return subject, payload


def history(order: list[int]) -> list[StoredMessage]:
    """Stored messages for writers taking turns as in ``order`` (each writer one chain)."""
    chains: dict[int, ChainState] = {}
    out = []
    for i, writer in enumerate(order):
        chain = chains.setdefault(writer, ChainState())
        subject, payload = _event(writer, i, chain)
        out.append(StoredMessage(i + 1, subject, payload, {"Nats-Msg-Id": json.loads(payload)["id"]}))
    return out


def renumber(msgs: list[StoredMessage]) -> list[StoredMessage]:
    """What an admin gets by recreating the stream and republishing ``msgs``: fresh sequences."""
    return [dataclasses.replace(m, seq=i + 1) for i, m in enumerate(msgs)]


def edit(msg: StoredMessage, reason: str = "nothing to see") -> StoredMessage:
    doc = json.loads(msg.data)
    doc["reason"] = reason
    return dataclasses.replace(msg, data=json.dumps(doc).encode())


def chain_of(msg: StoredMessage) -> tuple[str, int]:
    link = json.loads(msg.data)["chain"]
    return link["id"], link["seq"]


def test_untouched_history_verifies_and_counts_chains() -> None:
    msgs = history([0, 1, 0, 2, 1, 0])
    report = verify(msgs, complete=True, last_seq=6)
    assert report.ok, report.broken
    assert (report.events, report.chained, report.unchained, len(report.chains)) == (6, 6, 0, 3)
    assert sorted(h.seq for h in report.chains.values()) == [1, 2, 3]
    assert report_json(report)["ok"] is True


def test_edited_event_is_named_by_its_stream_seq() -> None:
    msgs = history([0, 1, 0, 1, 0])
    msgs[2] = edit(msgs[2])
    broken = verify(msgs, complete=True).broken
    assert broken is not None
    assert (broken.kind, broken.stream_seq, broken.chain_seq) == (BreakKind.EDITED, 3, 2)
    assert broken.chain == chain_of(msgs[2])[0]
    assert "stream seq 3" in broken.line()


def test_moving_an_event_to_another_subject_is_an_edit() -> None:
    msgs = history([0, 0])
    msgs[0] = dataclasses.replace(msgs[0], subject="mesh.audit.acme.prod.w9.i1.started")
    broken = verify(msgs, complete=True).broken
    assert broken is not None and (broken.kind, broken.stream_seq) == (BreakKind.EDITED, 1)


def test_unparseable_payload_is_an_edit_at_its_seq() -> None:
    msgs = history([0, 1, 0, 0])
    msgs[2] = dataclasses.replace(msgs[2], data=msgs[2].data[:-3])
    broken = verify(msgs, complete=True).broken
    assert broken is not None and (broken.kind, broken.stream_seq, broken.chain_seq) == (
        BreakKind.EDITED,
        3,
        2,
    )


def test_garbage_is_counted_not_a_break_unless_strict() -> None:
    msgs = history([0, 0])
    msgs.insert(1, StoredMessage(2, "mesh.audit.x._._._.halted", b"not json"))
    msgs[2] = dataclasses.replace(msgs[2], seq=3)
    report = verify(msgs, complete=True)
    assert report.ok and report.malformed == 1 and report.chained == 2
    broken = verify(msgs, complete=True, strict=True).broken
    assert broken is not None and (broken.kind, broken.stream_seq) == (BreakKind.INSERTED, 2)


def test_removed_event_in_a_recreated_stream_is_named() -> None:
    msgs = history([0, 1, 0, 1, 0])
    removed = msgs.pop(2)  # chain 0 #2
    broken = verify(renumber(msgs), complete=True).broken
    assert broken is not None
    assert (broken.kind, broken.stream_seq) == (BreakKind.REMOVED, 4)  # where chain 0 #3 now sits
    assert (broken.chain, broken.chain_seq) == (chain_of(removed)[0], 3)
    assert "#2 missing" in broken.detail


def test_removed_from_the_store_is_a_sequence_hole() -> None:
    msgs = history([0, 1, 0, 1])
    del msgs[1]
    broken = verify(msgs, complete=True).broken
    assert broken is not None and (broken.kind, broken.stream_seq) == (BreakKind.REMOVED, 2)
    assert "stream sequence 2 missing" in broken.detail


def test_missing_tail_per_stream_state_and_anchor() -> None:
    msgs = history([0, 0, 0])
    first = verify(msgs, complete=True)
    anchors = first.anchors()
    broken = verify(msgs[:2], complete=True, last_seq=3).broken
    assert broken is not None and (broken.kind, broken.stream_seq) == (BreakKind.REMOVED, 3)
    # Recreated without the last event: the stream's own state agrees, the anchor does not.
    cut = verify(msgs[:2], complete=True, last_seq=2, anchors=anchors)
    assert cut.broken is not None and cut.broken.kind is BreakKind.REMOVED
    assert cut.broken.stream_seq == 3 and "the stream ends at 2, an anchor saw 3" in cut.broken.detail
    # Another writer went on, so the stream is long enough: the chain itself is short.
    longer = [*msgs[:2], *(dataclasses.replace(m, seq=3 + k) for k, m in enumerate(history([1, 1])))]
    cut = verify(longer, complete=True, anchors=anchors)
    assert cut.broken is not None and cut.broken.kind is BreakKind.REMOVED
    assert (cut.broken.stream_seq, cut.broken.chain_seq) == (3, 3) and "now ends at #2" in cut.broken.detail


def test_anchor_catches_a_consistently_rewritten_chain() -> None:
    msgs = history([0, 0])
    anchors = verify(msgs, complete=True).anchors()
    forged = history([0, 0])  # a whole new, self-consistent history under other chain ids
    (old_chain,) = anchors
    assert verify(forged, complete=True).ok
    broken = verify(forged, complete=True, anchors=anchors).broken
    assert broken is not None and broken.kind is BreakKind.REMOVED and broken.chain == old_chain
    # Same chain id, rewritten content: the hashes differ from the anchor.
    rewritten = [edit(m, "rewritten") for m in msgs]
    relinked = _relink(rewritten)
    assert verify(relinked, complete=True).ok
    broken = verify(relinked, complete=True, anchors=anchors).broken
    assert broken is not None and (broken.kind, broken.stream_seq) == (BreakKind.EDITED, 2)


def _relink(msgs: list[StoredMessage]) -> list[StoredMessage]:
    """What an attacker who knows the scheme does: recompute every prev hash."""
    prev: str | None = None
    out = []
    for m in msgs:
        doc = json.loads(m.data)
        doc["chain"]["prev"] = prev
        data = json.dumps(doc).encode()
        prev = link_hash(m.subject, data)
        out.append(dataclasses.replace(m, data=data))
    return out


def test_anchor_before_the_walk_is_skipped_not_a_break() -> None:
    msgs = history([0, 0, 0])
    anchors = {"gone": Anchor(seq=5, hash="0" * 64, stream_seq=0)}
    report = verify(msgs, complete=True, anchors=anchors)
    assert report.ok and report.anchors_checked == 0


def test_reordered_events_of_one_chain_are_named() -> None:
    msgs = history([0, 1, 0, 1, 0])
    msgs[2], msgs[4] = msgs[4], msgs[2]  # chain 0: #1, #3, #2
    broken = verify(renumber(msgs), complete=True).broken
    assert broken is not None and (broken.kind, broken.stream_seq) == (BreakKind.REORDERED, 3)
    assert "stream seq 5" in broken.detail


def test_reordering_across_writers_is_not_a_break() -> None:
    msgs = history([0, 1, 0, 1])
    msgs[0], msgs[1] = msgs[1], msgs[0]
    assert verify(renumber(msgs), complete=True).ok


def test_inserted_copy_and_forged_claim_are_named() -> None:
    msgs = history([0, 0, 0])
    copy = [*msgs[:2], msgs[0], msgs[2]]
    broken = verify(renumber(copy), complete=True).broken
    assert broken is not None and (broken.kind, broken.stream_seq) == (BreakKind.INSERTED, 3)
    assert "a copy of" in broken.detail
    # A forged event claiming chain #2, placed before the real #2: the real one links both ways.
    forged = edit(msgs[1], "forged")
    broken = verify(renumber([msgs[0], forged, *msgs[1:]]), complete=True).broken
    assert broken is not None and (broken.kind, broken.stream_seq) == (BreakKind.INSERTED, 2)


def test_unchained_events_are_counted_and_strict_refuses_them_after_chaining() -> None:
    old = AuditEvent(type=EventType.KILL, target="agent://acme/prod/mailer")
    payload = encode(old).replace(b',"chain":null', b"")  # as written before chaining
    legacy = StoredMessage(1, "mesh.audit.acme.prod.mailer._.kill", payload)
    msgs = [legacy, *(dataclasses.replace(m, seq=m.seq + 1) for m in history([0, 0]))]
    report = verify(msgs, complete=True)
    assert report.ok and (report.unchained, report.chained, report.unchained_after_chained) == (1, 2, 0)
    late = [*msgs, dataclasses.replace(legacy, seq=4)]
    assert verify(late, complete=True).unchained_after_chained == 1
    broken = verify(late, complete=True, strict=True).broken
    assert broken is not None and (broken.kind, broken.stream_seq) == (BreakKind.INSERTED, 4)


def test_partial_chains_are_accepted_only_when_the_walk_is_incomplete() -> None:
    msgs = history([0, 1, 0, 0])
    tail = msgs[2:]  # chain 0 from #2 on: its start aged out, or --since
    report = verify(tail, complete=False)
    assert report.ok and next(iter(report.chains.values())).partial
    broken = verify(tail, complete=True).broken
    assert broken is not None and broken.kind is BreakKind.REMOVED and broken.stream_seq == 3


def test_publish_outcomes() -> None:
    assert classify_publish(attempt=0, duplicate=False, failed=False) is Outcome.STORED
    assert classify_publish(attempt=2, duplicate=False, failed=False) is Outcome.STORED
    assert classify_publish(attempt=0, duplicate=True, failed=False) is Outcome.NOT_OURS
    assert classify_publish(attempt=1, duplicate=True, failed=False) is Outcome.UNKNOWN
    assert classify_publish(attempt=0, duplicate=None, failed=True) is Outcome.UNKNOWN


def test_chain_state_advances_holds_and_rotates() -> None:
    state = ChainState()
    first = state.next_link()
    assert (first.seq, first.prev) == (1, None)
    state.settle(first, "h1", Outcome.STORED)
    second = state.next_link()
    assert (second.id, second.seq, second.prev) == (first.id, 2, "h1")
    state.settle(second, "h2", Outcome.NOT_OURS)  # deduped: #2 is free again
    assert state.next_link() == second
    state.settle(second, "h2", Outcome.UNKNOWN)  # maybe stored: a new chain, explicitly at #1
    third = state.next_link()
    assert third.id != first.id and (third.seq, third.prev) == (1, None) and state.started == 2
    state.settle(second, "late", Outcome.STORED)  # out of turn: never continue
    assert state.started == 3


@settings(max_examples=150, deadline=None)
@given(
    order=st.lists(st.integers(0, 4), min_size=2, max_size=30),
    pick=st.integers(0, 10_000),
    mutation=st.sampled_from(["edit", "garble", "remove", "swap", "copy", "none"]),
)
def test_any_single_tampering_with_a_chain_is_found(order: list[int], pick: int, mutation: str) -> None:
    msgs = history(order)
    assert verify(msgs, complete=True, last_seq=len(msgs)).ok
    # Only events with a successor in their chain can be caught without an anchor.
    with_next = [i for i, w in enumerate(order) if w in order[i + 1 :]]
    if mutation == "none" or not with_next:
        assert verify(renumber(msgs), complete=True).ok
        return
    i = with_next[pick % len(with_next)]
    j = order.index(order[i], i + 1)  # the same writer's next event
    tampered = list(msgs)
    if mutation == "edit":
        tampered[i] = edit(msgs[i])
    elif mutation == "garble":
        tampered[i] = dataclasses.replace(msgs[i], data=msgs[i].data[:-2])
    elif mutation == "remove":
        del tampered[i]
    elif mutation == "swap":
        tampered[i], tampered[j] = tampered[j], tampered[i]
    else:
        tampered.insert(j + 1, msgs[i])
    broken = verify(renumber(tampered), complete=True).broken
    assert broken is not None, mutation
    expected = {
        "edit": BreakKind.EDITED,
        "garble": BreakKind.EDITED,
        "remove": BreakKind.REMOVED,
        "swap": BreakKind.REORDERED,
        "copy": BreakKind.INSERTED,
    }[mutation]
    assert broken.kind is expected
    assert broken.chain == chain_of(msgs[i])[0]
    if mutation in ("edit", "garble", "swap"):
        assert broken.stream_seq == i + 1
    if mutation == "copy":
        assert broken.stream_seq == j + 2


@settings(max_examples=200, deadline=None)
@given(
    script=st.lists(
        st.tuples(
            st.integers(0, 3),  # which writer publishes
            st.booleans(),  # reuses an id another writer may have stored (controllers do)
            st.lists(st.sampled_from(["lost", "stored, ack lost", "acked"]), min_size=1, max_size=3),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_publish_outcomes_never_make_a_false_break(script: list[tuple[int, bool, list[str]]]) -> None:
    """Model of publish_event's retry loop over a deduplicating stream: whatever is lost, stored
    without an ack, deduplicated or retried, the stream the writers leave behind verifies."""
    chains = [ChainState() for _ in range(4)]
    stream: list[StoredMessage] = []
    stored_ids: set[str] = set()
    shared = [f"shared-{k}" for k in range(3)]
    for step, (w, reuse, fates) in enumerate(script):
        chain = chains[w]
        event_id = shared[step % 3] if reuse else f"own-{step}"
        link = chain.next_link()
        event = AuditEvent(id=event_id, type=EventType.STALE, actor=f"w{w}", chain=link)
        subject = "mesh.audit._._._._.stale"
        payload = encode(event)
        outcome = Outcome.UNKNOWN  # every attempt timed out
        for attempt, fate in enumerate(fates):
            if event_id in stored_ids:  # the duplicate window answers, stores nothing
                outcome = classify_publish(attempt=attempt, duplicate=True, failed=False)
                break
            if fate != "lost":
                stored_ids.add(event_id)
                stream.append(StoredMessage(len(stream) + 1, subject, payload))
            if fate == "acked":
                outcome = classify_publish(attempt=attempt, duplicate=False, failed=False)
                break
        chain.settle(link, link_hash(subject, payload), outcome)
    report = verify(stream, complete=True, last_seq=len(stream))
    assert report.ok, report.broken
    assert report.events == len(stream) == len(stored_ids)
