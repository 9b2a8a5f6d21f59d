"""``mesh policy set/list/rm`` and ``mesh usage`` through the real entry point, against a real server."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from mesh.protocol.codec import encode
from mesh.protocol.models import InstanceStatus, Status
from mesh.protocol.policy import GRAMMAR, parse_limit
from mesh.protocol.quota import Grant, Ledger
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from mesh.transport.kvscan import put_key
from tests.cli.test_cli_commands import env_for, mesh_cli
from tests.operator_support import MESH, URI

pytestmark = pytest.mark.timeout(120)


def run(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MESH, *args], env=env_for(settings), capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    "limit", ["emails>=5", "emails<=ten", "emails<=5/1y", "runtime<=5", "instances<=3/1h", "emails<=5/0s", ""]
)
def test_bad_expressions_exit_2_with_the_grammar(settings: Settings, limit: str) -> None:
    result = run(settings, "policy", "set", "cap", "agent://acme/prod/*", "--limit", limit)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith("mesh: error: invalid limit")
    assert GRAMMAR in lines[0]


def test_bad_action_name_and_target_exit_2(settings: Settings) -> None:
    for args in (
        ["cap", URI, "-l", "emails<=5", "--action", "explode"],
        ["bad name", URI, "-l", "emails<=5"],
        ["cap", "agent://acme/prod", "-l", "emails<=5"],
        ["cap", f"{URI}#i1", "-l", "emails<=5"],
    ):
        result = run(settings, "policy", "set", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1


def test_help_has_examples(settings: Settings) -> None:
    for command in (["policy"], ["policy", "set"], ["policy", "list"], ["policy", "rm"], ["usage"]):
        result = run(settings, *command, "--help")
        assert result.returncode == 0 and "Example: mesh" in result.stdout, command


async def test_set_list_rm(conn: Connection, settings: Settings) -> None:
    code, out, err = await mesh_cli(
        settings, "policy", "set", "mail-cap", "agent://acme/prod/*",
        "--limit", "emails<=10000/1h", "--limit", "cost_usd <= 50/1d", "--action", "pause", "--grace", "5",
    )  # fmt: skip
    assert code == 0, err
    assert "Policy mail-cap set on agent://acme/prod/*: emails<=10000/1h, cost_usd<=50/1d -> pause" in out
    code, out, _ = await mesh_cli(settings, "policy", "list", "--json")
    assert code == 0
    (policy,) = json.loads(out)
    assert policy["name"] == "mail-cap" and policy["target"] == "agent://acme/prod/*"
    assert policy["limits"] == ["emails<=10000/1h", "cost_usd<=50/1d"]
    assert policy["action"] == "pause" and policy["grace"] == 5 and policy["created_by"] == "alice"
    code, out, _ = await mesh_cli(settings, "policy", "list")
    assert code == 0 and "mail-cap" in out and out.strip().endswith("1 policy")

    code, out, _ = await mesh_cli(settings, "policy", "rm", "mail-cap")
    assert code == 0 and "removed" in out
    code, out, _ = await mesh_cli(settings, "policy", "list", "--json")
    assert json.loads(out) == []
    code, _, err = await mesh_cli(settings, "policy", "rm", "mail-cap")
    assert code == 1 and err.startswith("mesh: error: no policy named 'mail-cap'")


async def test_usage_json(conn: Connection, settings: Settings) -> None:
    now = datetime.now(UTC)
    for instance, usage, age in (("i1", {"emails": 100.0}, 0), ("i2", {"emails": 50.0, "cost_usd": 1.5}, 0)):
        seen = now - timedelta(seconds=age)
        record = InstanceStatus(
            agent_uri=URI,
            instance=instance,
            status=Status.ACTIVE,
            first_seen=seen - timedelta(hours=1),
            last_seen=seen,
            last_change=seen,
            usage=usage,
        )
        await put_key(conn, conn.ns.instances_bucket, f"acme.prod.mailer.{instance}", encode(record))
    old = InstanceStatus(
        agent_uri="agent://acme/prod/old",
        instance="z1",
        status=Status.STOPPED,
        first_seen=now - timedelta(days=3),
        last_seen=now - timedelta(days=2),
        last_change=now - timedelta(days=2),
        usage={"emails": 7.0},
    )
    await put_key(conn, conn.ns.instances_bucket, "acme.prod.old.z1", encode(old))

    code, out, err = await mesh_cli(settings, "usage", "agent://acme/*/*", "--since", "1d", "--json")
    assert code == 0, err
    report = json.loads(out)
    (agent,) = report["agents"]  # the old agent was last heard from 2 days ago
    assert agent["agent_uri"] == URI
    assert agent["totals"] == {"emails": 150.0, "cost_usd": 1.5}
    assert {i["instance"]: i["totals"] for i in agent["instances"]} == {
        "i1": {"emails": 100.0},
        "i2": {"emails": 50.0, "cost_usd": 1.5},
    }
    assert round(agent["instances"][0]["per_hour"]["emails"]) == 100

    code, out, _ = await mesh_cli(settings, "usage")
    assert code == 0 and "agent://acme/prod/old" in out and "emails 150" in out and "2 agents" in out


async def test_policy_actions_and_usage_budgets(conn: Connection, settings: Settings) -> None:
    code, out, err = await mesh_cli(
        settings, "policy", "set", "cap", URI, "-l", "emails<=100", "-l", "emails<=50/1h",
        "--action", "alert", "--dry-run", "--on-unreachable", "proceed", "--json",
    )  # fmt: skip
    assert code == 0, err
    saved = json.loads(out)
    assert (saved["action"], saved["dry_run"], saved["on_unreachable"]) == ("alert", True, "proceed")
    code, _, err = await mesh_cli(
        settings, "policy", "set", "x", URI, "-l", "e<=1", "--on-unreachable", "maybe"
    )
    assert code == 2 and "on_unreachable" in err

    now = datetime.now(UTC)
    record = InstanceStatus(
        agent_uri=URI, instance="i1", status=Status.ACTIVE, first_seen=now, last_seen=now, last_change=now,
        usage={"emails": 30.0},
    )  # fmt: skip
    await put_key(conn, conn.ns.instances_bucket, "acme.prod.mailer.i1", encode(record))
    t = now.timestamp()
    for key, lim, amount, spent in (
        ("cap.emails.total.acme.prod.mailer", "emails<=100", 40.0, 0.0),
        ("cap.emails.3600s.acme.prod.mailer", "emails<=50/1h", 25.0, 20.0),
    ):
        limit = parse_limit(lim)
        ledger = Ledger(
            policy="cap", agent_uri=URI, counter="emails", limit=limit, spent=spent,
            grants=[Grant(id="g1", instance="i1", amount=amount, at=t,
                          counts_until=None if limit.window is None else t + 3630)],
        )  # fmt: skip
        await put_key(conn, conn.ns.quota_bucket, key, encode(ledger))

    code, out, err = await mesh_cli(settings, "usage", URI, "--json")
    assert code == 0, err
    (agent,) = json.loads(out)["agents"]
    rows = {b["limit"]: (b["spent"], b["leased_out"], b["left"]) for b in agent["budgets"]}
    assert rows == {"emails<=100": (30.0, 10.0, 60.0), "emails<=50/1h": (20.0, 5.0, 25.0)}
    code, out, _ = await mesh_cli(settings, "usage", URI)
    assert code == 0
    assert any(line.split()[-4:] == ["emails<=50/1h", "20", "5", "25"] for line in out.splitlines()), out
