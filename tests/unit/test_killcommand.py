"""The pure kill and resume commands: keys, records, audit events, ack matching, plans and reports."""

from __future__ import annotations

from datetime import UTC, datetime

from mesh.protocol.codec import encode
from mesh.protocol.killcommand import (
    AckMatch,
    kill_command,
    kill_plan,
    kill_report,
    policy_kill_command,
    records_over,
    resume_command,
    resume_plan,
    resume_report,
)
from mesh.protocol.kvwire import KVEntry
from mesh.protocol.models import AuditEvent, EventType, InstanceStatus, KillRecord, Status
from mesh.protocol.reports import AckRow
from mesh.protocol.target import parse_agent_uri, parse_target

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def status(uri: str, instance: str, state: Status, kill_keys: list[str] | None = None) -> InstanceStatus:
    return InstanceStatus(
        agent_uri=uri,
        instance=instance,
        status=state,
        first_seen=NOW,
        last_seen=NOW,
        last_change=NOW,
        kill_keys=kill_keys or [],
    )


def ack(uri: str, instance: str, *, command_id: str | None = None, revision: int | None = None) -> AuditEvent:
    return AuditEvent(
        type=EventType.HALTED, agent_uri=uri, instance=instance, command_id=command_id, revision=revision
    )


def entry(key: str, record: KillRecord | bytes, revision: int) -> KVEntry:
    value = record if isinstance(record, bytes) else encode(record)
    return KVEntry(key, value, revision)


def test_a_kill_command_writes_the_target_key_and_audits_what_it_wrote() -> None:
    command = kill_command(
        parse_target("agent://acme/*/mailer"), actor="alice", reason="runaway", grace=3, action="pause"
    )
    assert command.key == "acme._.mailer"
    assert command.record.target == "agent://acme/*/mailer"
    assert (command.record.actor, command.record.action, command.record.grace) == ("alice", "pause", 3)
    event = command.event(41)
    assert event.type is EventType.KILL
    assert (event.revision, event.command_id, event.actor) == (41, command.record.command_id, "alice")
    assert event.data == {"key": "acme._.mailer", "grace": 3, "action": "pause"}


def test_an_instance_kill_names_the_instance_in_key_record_and_event() -> None:
    command = kill_command(parse_target("agent://acme/prod/mailer", "i-7"), actor="bob")
    assert command.key == "acme.prod.mailer.i-7"
    assert command.record.instance == "i-7"
    assert command.event(1).instance == "i-7"


def test_a_policy_kill_is_the_breaching_agents_own_key_and_maps_kill_to_raise() -> None:
    agent = parse_agent_uri("agent://acme/prod/mailer")
    kill = policy_kill_command(
        agent, policy="p1", policy_action="kill", actor="policy:p1", reason="r", grace=5
    )
    pause = policy_kill_command(
        agent, policy="p1", policy_action="pause", actor="policy:p1", reason="r", grace=5
    )
    assert kill.key == pause.key == "acme.prod.mailer"
    assert (kill.record.action, pause.record.action) == ("raise", "pause")
    assert kill.event(9).data == {"key": "acme.prod.mailer", "grace": 5, "action": "raise", "policy": "p1"}


def test_a_kill_accepts_its_command_id_at_once_and_its_revision_once_known() -> None:
    command = kill_command(parse_target("agent://a/b/c"), actor="x")
    match = command.acks
    mine = ack("agent://a/b/c", "i", command_id=command.record.command_id)
    by_revision = ack("agent://a/b/c", "i", revision=12)
    other = ack("agent://a/b/c", "i", command_id="someone-else", revision=11)
    assert match.accepts(mine)
    assert not match.accepts(by_revision)  # the revision is not known before the write
    known = match.at(12)
    assert known.accepts(by_revision) and known.accepts(mine)
    assert not known.accepts(other)
    assert not known.accepts(ack("agent://a/b/c", "i", revision=13))  # a kill matches its revision only


def test_a_resume_accepts_its_revision_or_later_and_the_cleared_kills_id() -> None:
    command = resume_command(parse_target("agent://a/b/c"), actor="x")
    old = KillRecord(target="agent://a/b/c")
    match = command.acks({"a.b.c": entry("a.b.c", old, 5)}).at(20)
    assert match.accepts(ack("agent://a/b/c", "i", command_id=old.command_id))
    assert match.accepts(ack("agent://a/b/c", "i", revision=21))
    assert match.accepts(ack("agent://a/b/c", "i"))  # the SDK's resumed carries no revision
    assert not match.accepts(ack("agent://a/b/c", "i", revision=19))
    assert not AckMatch(frozenset({"c"}), or_later=True).accepts(ack("agent://a/b/c", "i", revision=3))


def test_the_kill_plan_expects_live_matching_instances_and_knows_the_already_paused() -> None:
    statuses = [
        status("agent://acme/prod/mailer", "a", Status.ACTIVE),
        status("agent://acme/prod/mailer", "b", Status.PAUSED, ["acme.prod._"]),
        status("agent://acme/prod/mailer", "c", Status.STALE),
        status("agent://acme/prod/mailer", "d", Status.LOST),
        status("agent://acme/prod/mailer", "e", Status.STOPPED),
        status("agent://acme/dev/mailer", "f", Status.ACTIVE),
        status("agent://acme/prod/mailer", "g", Status.PAUSED),  # paused by its own code, no record
        status("not a uri", "h", Status.ACTIVE),
    ]
    plan = kill_plan(parse_target("agent://acme/prod/*"), statuses)
    uri = "agent://acme/prod/mailer"
    assert plan.expected == {(uri, "a"), (uri, "b"), (uri, "c"), (uri, "g")}
    assert plan.already == {(uri, "b")}


def test_the_kill_report_separates_silent_from_already_halted() -> None:
    uri = "agent://acme/prod/mailer"
    command = kill_command(parse_target(uri), actor="alice", reason="why")
    plan = kill_plan(
        command.target,
        [
            status(uri, "a", Status.ACTIVE),
            status(uri, "b", Status.PAUSED, ["acme._._"]),
            status(uri, "c", Status.ACTIVE),
        ],
    )
    rows = {(uri, "a"): AckRow(agent_uri=uri, instance="a", status="paused", metadata={"sent": 3})}
    report = kill_report(command, 7, plan, rows)
    assert (report.revision, report.expected, report.actor, report.reason) == (7, 3, "alice", "why")
    assert [r.instance for r in report.instances] == ["a"]
    assert [m.instance for m in report.missing] == ["c"]
    assert [m.instance for m in report.already_halted] == ["b"]
    assert report.command_id == command.record.command_id


def test_records_over_treats_an_unreadable_record_as_in_force_and_skips_foreign_keys() -> None:
    entries = {
        "acme.prod.mailer": entry("acme.prod.mailer", b"{not json", 3),
        "globex.prod.mailer": entry("globex.prod.mailer", KillRecord(target="agent://globex/prod/mailer"), 4),
        "not-a-control-key": entry("not-a-control-key", b"{}", 5),
        "_._._": entry("_._._", KillRecord(target="agent://*/*/*"), 6),
    }
    held = records_over(entries, parse_target("agent://acme/*/*"))
    assert [(h.key, h.revision) for h in held] == [("_._._", 6), ("acme.prod.mailer", 3)]
    assert "treated as in force" in (held[1].record.reason or "")


def test_a_resume_under_a_broader_kill_expects_nobody_and_names_what_still_holds() -> None:
    uri = "agent://acme/prod/mailer"
    command = resume_command(parse_target(uri), actor="alice")
    records = {
        "acme.prod.mailer": entry("acme.prod.mailer", KillRecord(target=uri), 8),
        "acme._._": entry("acme._._", KillRecord(target="agent://acme/*/*"), 9),
    }
    plan = resume_plan(command, records, [status(uri, "a", Status.PAUSED, ["acme.prod.mailer", "acme._._"])])
    assert plan.cleared
    assert plan.free == () and not plan.wait
    assert [h.key for h in plan.held] == ["acme._._"]
    report = resume_report(command, 10, plan, {})
    assert not report.complete and report.expected == 0 and report.missing == []


def test_a_resume_expects_the_paused_instances_no_other_record_holds() -> None:
    uri = "agent://acme/prod/mailer"
    command = resume_command(parse_target("agent://acme/prod/*"), actor="alice")
    records = {"acme.prod._": entry("acme.prod._", KillRecord(target="agent://acme/prod/*"), 8)}
    statuses = [
        status(uri, "a", Status.PAUSED, ["acme.prod._"]),
        status("agent://acme/prod/other", "b", Status.ACTIVE),
        status("agent://acme/dev/mailer", "c", Status.PAUSED),
    ]
    plan = resume_plan(command, records, statuses)
    assert plan.expected == {(uri, "a")} and plan.wait and plan.cleared
    report = resume_report(command, 11, plan, {})
    assert [m.instance for m in report.missing] == ["a"] and report.still_held_by == []


def test_a_resume_of_a_target_never_killed_still_waits_for_stray_acks_and_says_not_cleared() -> None:
    command = resume_command(parse_target("agent://acme/prod/mailer"), actor="alice")
    plan = resume_plan(command, {}, [])
    assert plan.wait and not plan.cleared
    assert command.event(3, cleared=False).data == {"key": "acme.prod.mailer", "cleared": False}


def test_a_resume_that_cleared_nothing_expects_nobody_though_the_controller_still_lists_paused() -> None:
    uri = "agent://acme/prod/mailer"
    command = resume_command(parse_target("agent://acme/*/*"), actor="alice")
    # An earlier resume cleared the record; the controller has not yet written the instance active.
    plan = resume_plan(command, {}, [status(uri, "a", Status.PAUSED, ["acme._._"])])
    assert not plan.cleared and plan.free == () and plan.expected == set()
    report = resume_report(command, 12, plan, {})
    assert report.complete and report.missing == [] and report.expected == 0


def test_scoped_control_filters_cover_every_record_in_the_org_that_can_overlap() -> None:
    from mesh.protocol.killcommand import scoped_control_filters

    assert scoped_control_filters(parse_target("agent://acme/prod/mailer")) == [
        "acme.prod.mailer", "acme.prod.mailer.*",
        "acme.prod._", "acme.prod._.*",
        "acme._.mailer", "acme._.mailer.*",
        "acme._._", "acme._._.*",
    ]  # fmt: skip
    assert scoped_control_filters(parse_target("agent://acme/*/*")) == ["acme.*.*", "acme.*.*.*"]
    assert scoped_control_filters(parse_target("agent://acme/prod/mailer", "i-1"))[:2] == [
        "acme.prod.mailer",
        "acme.prod.mailer.i-1",
    ]
