"""The checker on small made-up histories: each rule names the violation it exists for, and a
history that keeps the contract passes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .checker import Input, check

M = "agent://acme/prod/mailer#i1"
URI, INST = M.split("#")


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def ev(etype: str, t: float, **fields: Any) -> dict[str, Any]:
    return {"id": f"{etype}-{t}", "type": etype, "time": iso(t), "agent_uri": URI, "instance": INST, **fields}


def kill(t: float, rev: int, key: str = "acme.prod.mailer") -> dict[str, Any]:
    return {
        "id": f"k{rev}",
        "type": "kill",
        "time": iso(t),
        "revision": rev,
        "command_id": f"c{rev}",
        "data": {"key": key},
    }


def resume(t: float, rev: int, key: str = "acme.prod.mailer") -> dict[str, Any]:
    return {
        "id": f"r{rev}",
        "type": "resume",
        "time": iso(t),
        "revision": rev,
        "command_id": f"c{rev}",
        "data": {"key": key},
    }


def act(t: float, n: int) -> dict[str, Any]:
    return {"ev": "act", "t": t, "uri": URI, "inst": INST, "n": n}


def start(t: float, restored: int = 0) -> dict[str, Any]:
    return {"ev": "start", "t": t, "uri": URI, "inst": INST, "restored": restored}


def halted(t: float, rev: int, n: int) -> dict[str, Any]:
    return ev("halted", t, revision=rev, data={"checkpoint": {"n": n}, "kill_key": "acme.prod.mailer"})


def base(t0: float = 1000.0) -> dict[str, Any]:
    """Start, act, killed at +2 (acked at +2.01), resumed at +4, acting again, end at +20."""
    return {
        "history": [],
        "actions": [
            start(t0),
            *(act(t0 + 0.1 * k, k) for k in range(1, 20)),
            *(act(t0 + 4.1 + 0.1 * k, 20 + k) for k in range(150)),
        ],
        "audit": [
            ev("started", t0 - 0.01, data={"kill_keys": []}),
            kill(t0 + 2.0, 1),
            halted(t0 + 2.01, 1, 20),
            resume(t0 + 4.0, 2),
            ev("resumed", t0 + 4.05),
        ],
        "control": [
            {"seq": 1, "key": "acme.prod.mailer", "op": "PUT", "t": t0 + 2.0},
            {"seq": 2, "key": "acme.prod.mailer", "op": "DEL", "t": t0 + 3.99},
        ],
        "final_keys": [],
        "instances": [M],
        "process_of": {M: "p0"},
        "end": t0 + 19.0,
        "verify": {"rc": 0, "broken": None},
    }


def rules(**changes: Any) -> list[str]:
    doc = base()
    for k, v in changes.items():
        doc[k] = v(doc[k]) if callable(v) else v
    return sorted(a.rule for a in check(Input(**doc)))


def test_a_history_that_keeps_the_contract_passes() -> None:
    assert rules() == []


def test_an_action_after_the_halt_ack_is_named() -> None:
    assert rules(actions=lambda a: [*a, act(1003.0, 21)]) == ["no-action-after-halt"]


def test_a_kill_nobody_acknowledged_is_named_unless_the_instance_was_impaired() -> None:
    no_ack = [e for e in base()["audit"] if e["type"] != "halted"]
    assert "kill-acked" not in rules(audit=no_ack)  # cleared 2 s later: no time to ack
    late_clear = [e if e["type"] != "resume" else resume(1012.0, 2) for e in no_ack]
    control = [{"seq": 1, "key": "acme.prod.mailer", "op": "PUT", "t": 1002.0}]
    assert "kill-acked" in rules(audit=late_clear, control=control)
    frozen = [{"kind": "fault", "name": "agent_freeze", "affects": ["p0"], "t": 1001.9, "healed": 1011.5}]
    assert "kill-acked" not in rules(audit=late_clear, control=control, history=frozen)


def test_a_restart_that_restores_less_than_the_acked_checkpoint_is_named() -> None:
    restart = [start(1005.0, restored=7), act(1005.1, 7)]
    assert "checkpoint-forward" in rules(actions=lambda a: [x for x in a if x["t"] < 1004] + restart)


def test_an_instance_that_never_acts_again_is_named() -> None:
    assert rules(actions=lambda a: [x for x in a if x["t"] < 1010]) == ["converged"]


def test_a_broken_chain_a_doubled_event_and_an_unaudited_write_are_named() -> None:
    assert rules(verify={"rc": 1, "broken": "edited at seq 4"}) == ["audit-verify"]
    assert rules(audit=lambda a: [*a, a[0]]) == ["audit-doubled"]
    extra = {"seq": 3, "key": "acme.prod._", "op": "PUT", "t": 1010.0}
    assert "audit-command" in rules(control=lambda c: [*c, extra])


def test_a_start_under_a_kill_that_acts_at_once_is_named() -> None:
    t = 1010.0
    kill_again = [kill(t, 3), ev("started", t + 2.0, data={"kill_keys": ["acme.prod.mailer"]})]
    acts = [start(t + 2.0, 150), act(t + 2.1, 150)]
    control = [{"seq": 3, "key": "acme.prod.mailer", "op": "PUT", "t": t}]
    found = rules(
        audit=lambda a: [*a, *kill_again],
        actions=lambda a: [x for x in a if x["t"] < t] + acts,
        control=lambda c: [*c, *control],
        final_keys=["acme.prod.mailer"],
        end=t + 9.0,
    )
    assert "no-action-after-halt" in found


def test_a_hung_request_and_a_process_that_died_are_named() -> None:
    hist = [
        {"kind": "op", "op": "kill", "target": "agent://*/*/*", "t": 1001.0, "ok": False, "error": "hung"},
        {"kind": "proc_died", "name": "p0", "rc": 1, "t": 1002.0, "tail": ["Traceback"]},
    ]
    assert rules(history=hist) == ["bounded", "process-died"]


def test_a_kill_acknowledged_by_the_server_but_no_longer_stored_is_named() -> None:
    ops = [
        {"kind": "op", "op": "kill", "target": "agent://acme/prod/mailer", "t": 1002.0, "ok": True,
         "revision": 1, "command_id": "c1"},
        {"kind": "op", "op": "kill", "target": "agent://acme/prod/mailer", "t": 1006.0, "ok": True,
         "revision": 5, "command_id": "c5"},
    ]  # fmt: skip
    kill5 = [kill(1006.0, 5), halted(1006.01, 5, 40)]
    later = {"seq": 9, "key": "acme.prod.mailer", "op": "DEL", "t": 1008.0}
    found = rules(history=ops, audit=lambda a: [*a, *kill5], control=lambda c: [*c, later])
    assert found.count("record-lost") == 1
