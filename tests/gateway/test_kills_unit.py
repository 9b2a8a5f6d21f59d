"""KillBook alone: revision order, confirmed clears, scope matching, a forged push never wins."""

from __future__ import annotations

from gateway.kills import KillBook
from mesh.protocol.controlupdate import ControlUpdate
from mesh.protocol.models import KillRecord
from mesh.protocol.subjects import Namespace
from mesh.protocol.target import parse_agent_uri

NS = Namespace("mesh")
MAILER = parse_agent_uri("agent://acme/prod/mailer")
OTHER = parse_agent_uri("agent://acme/dev/mailer")


def rec(target: str, reason: str = "r") -> KillRecord:
    return KillRecord(target=target, actor="ops", reason=reason)


def test_scopes_match_the_right_agents_and_instances() -> None:
    book = KillBook(NS)
    book.apply([ControlUpdate("acme._._", 5, rec("agent://acme/*/*"))], from_kv=True)
    assert book.matching(MAILER, "i1") is not None
    assert book.matching(parse_agent_uri("agent://beta/prod/mailer"), "i1") is None
    book.apply([ControlUpdate("acme.dev.mailer.i2", 6, rec("agent://acme/dev/mailer#i2"))])
    assert book.matching(OTHER, "i2") is not None
    held = book.matching(MAILER, "i2")
    assert held is not None and held.key == "acme._._"


def test_oldest_record_in_force_is_named() -> None:
    book = KillBook(NS)
    book.apply([ControlUpdate("acme.prod.mailer", 9, rec("agent://acme/prod/mailer", "second"))])
    book.apply([ControlUpdate("_._._", 3, rec("agent://*/*/*", "first"))])
    held = book.matching(MAILER, "x")
    assert held is not None and held.record.reason == "first"


def test_older_revision_never_overwrites_newer() -> None:
    book = KillBook(NS)
    book.apply([ControlUpdate("acme.prod.mailer", 10, None)], from_kv=True)
    out = book.apply([ControlUpdate("acme.prod.mailer", 7, rec("agent://acme/prod/mailer"))])
    assert out.killed == [] and book.matching(MAILER, "x") is None


def test_pushed_clear_needs_a_kv_read() -> None:
    book = KillBook(NS)
    book.apply([ControlUpdate("acme.prod.mailer", 4, rec("agent://acme/prod/mailer"))])
    out = book.apply([ControlUpdate("acme.prod.mailer", 5, None)])
    assert out.confirm == ["acme.prod.mailer"]
    assert book.matching(MAILER, "x") is not None  # still refused until the KV says so
    out = book.apply([ControlUpdate("acme.prod.mailer", 5, None)], from_kv=True)
    assert out.cleared == ["acme.prod.mailer"] and book.matching(MAILER, "x") is None


def test_kv_read_that_finds_nothing_never_lifts_a_kill() -> None:
    book = KillBook(NS)
    book.apply([ControlUpdate("acme.prod.mailer", 4, rec("agent://acme/prod/mailer"))])
    book.apply([ControlUpdate("acme.prod.mailer", 0, None)], from_kv=True)
    assert book.matching(MAILER, "x") is not None


def test_kv_wins_over_a_forged_high_revision_after_two_reads() -> None:
    book = KillBook(NS)
    # A forged push claims a huge revision for a clear-looking record; the KV says revision 3 is a kill.
    book.apply([ControlUpdate("acme.prod.mailer", 1000, rec("agent://acme/prod/mailer", "forged"))])
    real = ControlUpdate("acme.prod.mailer", 3, rec("agent://acme/prod/mailer", "real"))
    book.apply([real], from_kv=True)
    held = book.matching(MAILER, "x")
    assert held is not None and held.record.reason == "forged"
    book.apply([real], from_kv=True)
    held = book.matching(MAILER, "x")
    assert held is not None and held.record.reason == "real" and book.revision("acme.prod.mailer") == 3


def test_same_record_rewritten_is_not_a_new_kill() -> None:
    book = KillBook(NS)
    r = rec("agent://acme/prod/mailer")
    assert book.apply([ControlUpdate("acme.prod.mailer", 1, r)]).killed == ["acme.prod.mailer"]
    assert book.apply([ControlUpdate("acme.prod.mailer", 1, r)], from_kv=True).killed == []
