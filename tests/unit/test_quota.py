"""Grant arithmetic (mesh.protocol.quota) and the client wallet (mesh.transport.leases), without a server."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.protocol import quota
from mesh.protocol.leasewire import LeaseReply
from mesh.protocol.policy import Limit, parse_limit
from mesh.protocol.quota import Ledger
from mesh.transport.leases import Wallet

URI = "agent://acme/prod/mailer"


def ledger(limit: str) -> Ledger:
    lim = parse_limit(limit)
    return Ledger(policy="cap", agent_uri=URI, counter=lim.counter, limit=lim)


def grant(led: Ledger, rid: str, want: float = 1, live: int = 1, now: float = 0.0) -> quota.Decision:
    return quota.decide(led, request_id=rid, instance="i1", want=want, live=live, now=now)


def test_slices_shrink_as_the_budget_runs_out_and_the_last_units_go_one_by_one() -> None:
    led = ledger("emails<=100")
    sizes = []
    for i in range(200):
        d = grant(led, f"r{i}", live=2)
        if d.amount == 0:
            break
        sizes.append(d.amount)
        led = d.ledger
    assert sum(sizes) == 100
    assert sizes[0] == 25  # 1/(2 x 2 instances) of what is left
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[-4:] == [1, 1, 1, 1]
    assert quota.left(led, 0.0) == 0


def test_a_retried_request_gets_the_same_grant_and_is_not_charged_twice() -> None:
    first = grant(ledger("emails<=100"), "same", live=1)
    again = grant(first.ledger, "same", live=1)
    assert again.amount == first.amount and not again.changed
    assert quota.counted(again.ledger, 0.0) == first.amount


def test_a_request_larger_than_what_is_left_is_refused() -> None:
    d = grant(ledger("cost_usd<=1"), "a", want=0.6)
    assert 0.6 <= d.amount <= 1
    led = quota.release(d.ledger, "a", d.amount - 0.6, 0.0)  # 0.6 spent, the rest given back
    assert quota.counted(led, 0.0) == 0.6
    assert grant(led, "b", want=0.5).amount == 0
    assert grant(led, "c", want=0.4).amount == 0.4


def test_a_strict_limit_is_never_reached() -> None:
    led = ledger("emails<10")
    total = 0.0
    for i in range(20):
        d = grant(led, f"r{i}")
        led, total = d.ledger, total + d.amount
    assert total == 9


def test_release_returns_unspent_units_once() -> None:
    d = grant(ledger("emails<=100"), "a", live=1)
    assert d.amount == 50
    led = quota.release(d.ledger, "a", 30, 1.0)
    assert quota.counted(led, 1.0) == 20
    assert quota.release(led, "a", 30, 2.0) == led  # idempotent
    assert led.grants == [] and led.settled == 20  # closed total grants are folded


def test_windowed_grants_stop_counting_one_window_after_their_lease_ends() -> None:
    lim = parse_limit("emails<=10/1m")
    ttl = quota.lease_ttl(lim)
    assert ttl == 3.0
    d = grant(ledger("emails<=10/1m"), "a", want=10, now=100.0)
    assert d.amount == 10
    assert grant(d.ledger, "b", now=100.0 + 60 + ttl - 0.01).amount == 0
    assert grant(d.ledger, "c", now=100.0 + 60 + ttl + 0.01).amount >= 1
    assert quota.lease_ttl(parse_limit("emails<=10")) is None


def test_a_budget_that_does_not_enforce_grants_past_the_limit_and_says_so() -> None:
    led = grant(ledger("emails<=2"), "a", want=2).ledger
    d = quota.decide(led, request_id="b", instance="i1", want=1, live=1, now=0.0, enforce=False)
    assert d.amount == 1 and d.over and d.changed
    assert quota.left(d.ledger, 0.0) == 0


ops = st.lists(
    st.tuples(
        st.sampled_from(["grant", "release"]),
        st.integers(1, 7),  # want
        st.integers(1, 9),  # live instances
        st.floats(0, 1),  # share of a grant given back
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(limit=st.integers(0, 500), strict=st.booleans(), steps=ops)
def test_grants_never_exceed_the_limit(
    limit: int, strict: bool, steps: list[tuple[str, int, int, float]]
) -> None:
    led = Ledger(
        policy="p",
        agent_uri=URI,
        counter="emails",
        limit=Limit(counter="emails", op="<" if strict else "<=", value=limit),
    )
    open_grants: list[quota.Grant] = []
    for i, (op, want, live, back) in enumerate(steps):
        if op == "grant":
            d = grant(led, f"r{i}", want=want, live=live)
            led = d.ledger
            if d.amount:
                assert d.amount >= want
                open_grants.append(led.grants[-1])
        elif open_grants:
            g = open_grants.pop(0)
            led = quota.release(led, g.id, g.amount * back, 0.0)
        assert led.limit.allows(quota.counted(led, 0.0)) or quota.counted(led, 0.0) == 0


@settings(max_examples=200, deadline=None)
@given(
    limit=st.integers(1, 60),
    steps=st.lists(
        st.tuples(
            st.floats(0, 20),  # time to the next request
            st.integers(1, 3),  # want
            st.integers(1, 4),  # live
            st.floats(0, 1),  # when, within the lease, the units are spent
            st.floats(0, 1),  # share left unspent (given back when the lease ends)
        ),
        max_size=60,
    ),
)
def test_no_sliding_window_ever_sees_more_than_the_limit(
    limit: int, steps: list[tuple[float, int, int, float, float]]
) -> None:
    window = 60.0
    led = ledger(f"emails<={limit}/1m")
    ttl = quota.lease_ttl(led.limit)
    assert ttl is not None
    now = 0.0
    spends: list[tuple[float, float]] = []
    pending: list[tuple[float, str, float]] = []  # (release time, grant id, unspent)
    for i, (gap, want, live, when, unused) in enumerate(steps):
        now += gap
        for due in [p for p in pending if p[0] <= now]:
            pending.remove(due)
            led = quota.release(led, due[1], due[2], now)
        d = grant(led, f"r{i}", want=want, live=live, now=now)
        led = d.ledger
        if not d.amount:
            continue
        spent = round(d.amount * (1 - unused))
        spends.append((now + when * ttl, spent))  # spent before the lease expires
        pending.append((now + ttl, f"r{i}", d.amount - spent))
    for end, _ in spends:
        inside = sum(n for t, n in spends if end - window <= t <= end)
        assert inside <= limit


def reply(counter: str, amount: float, ttl: float | None = None, outcome: str = "granted") -> LeaseReply:
    return LeaseReply.model_validate(
        {"counter": counter, "outcome": outcome, "amount": amount, "grant_id": f"g-{counter}", "ttl": ttl}
    )


def test_wallet_takes_all_or_nothing_and_gives_back_what_is_left() -> None:
    now = [0.0]
    w = Wallet(clock=lambda: now[0])
    assert not w.take({"emails": 1})
    w.install(reply("emails", 3), sent_at=0.0)
    w.install(reply("cost", 1.0, ttl=2.0), sent_at=0.0)
    assert w.take({"emails": 2, "cost": 0.5})
    assert not w.take({"emails": 2, "cost": 0.1})  # emails has 1 left: nothing taken
    assert w.left("emails") == 1 and w.left("cost") == 0.5
    assert not w.take({"emails": -1}) and not w.take({"emails": True})  # for the caller to refuse
    now[0] = 2.0
    assert not w.take({"cost": 0.1})  # expired
    assert w.missing({"emails": 1, "cost": 0.1}) == ["cost"]
    w.drop_all()
    releases = {r.counter: r.unspent for r in w.pending_releases()}
    assert releases == {"emails": 1, "cost": 0.5}
    assert w.granted == {"emails": 3, "cost": 1.0} and w.released == releases


def test_wallet_unlimited_counters_are_free_until_the_recheck() -> None:
    now = [0.0]
    w = Wallet(clock=lambda: now[0])
    w.install(reply("tokens", 0, ttl=5.0, outcome="unlimited"), sent_at=0.0)
    assert all(w.take({"tokens": 1000}) for _ in range(10))
    now[0] = 5.0
    assert not w.take({"tokens": 1})
    w.drop_all()
    assert w.pending_releases() == []  # nothing to give back


def test_budget_keys_and_quota_subjects_are_prefix_aware() -> None:
    from mesh.protocol.subjects import Namespace
    from mesh.protocol.target import parse_agent_uri

    ns = Namespace("t1")
    agent = parse_agent_uri(URI)
    assert ns.quota_bucket == "t1_quota"
    assert ns.quota_subject(agent, "i1") == "t1.quota.acme.prod.mailer.i1"
    assert ns.parse_quota_subject("t1.quota.acme.prod.mailer.i1") == (agent, "i1")
    assert ns.budget_key("cap", "emails", 3600.0, agent) == "cap.emails.3600s.acme.prod.mailer"
    assert ns.budget_key("cap", "emails", 1.5, agent) == "cap.emails.1_5s.acme.prod.mailer"
    assert ns.budget_key("cap", "emails", None, agent) == "cap.emails.total.acme.prod.mailer"


def test_a_busy_window_keeps_its_ledger_small_and_still_counts_every_unit() -> None:
    led = ledger("emails<=1000000/1h")
    for i in range(2000):
        d = grant(led, f"r{i}", want=1, live=1, now=float(i))
        led = quota.release(d.ledger, f"r{i}", d.amount - 1, float(i))  # one unit spent of each
    assert len(led.grants) + len(led.buckets) <= quota.BUCKETS_PER_WINDOW + 2
    assert quota.counted(led, 2000.0) == 2000
    assert quota.counted(led, 2000.0 + 3600 + 30 + 3600 / quota.BUCKETS_PER_WINDOW + 1999) == 0


def test_a_cost_charged_after_the_fact_comes_out_of_the_next_grant() -> None:
    w = Wallet(clock=lambda: 0.0)
    w.install(reply("cost_usd", 1.0), sent_at=0.0)
    w.charge("cost_usd", 1.25)  # a response that cost more than the lease held
    assert w.missing({"cost_usd": 0.01}) == ["cost_usd"]
    w.drop("cost_usd")
    assert w.debt == {"cost_usd": 0.25}
    assert [r.unspent for r in w.pending_releases()] == [0.0]
    w.install(reply("cost_usd", 2.0), sent_at=0.0)  # asked for the debt plus the next cost
    assert w.left("cost_usd") == 1.75 and w.debt == {}
