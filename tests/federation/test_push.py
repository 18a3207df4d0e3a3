"""Pushes between two real nodes (alpha, beta) in-process, and from raw peer links.

A device's SendBatch to an account of another node is committed at its home node, pushed by
the outbox worker in order, stored once at the destination however often it arrives, and its
delivery row turns "accepted" (or "failed" with the destination's refusal code). A wrong pin
delivers nothing and says so; items for a destination that is not (or no longer) configured
wait for it (a changed pin is a remove and an add) and fail only when they expire.
"""

from __future__ import annotations


import pytest
import trio


from sonet.core import limits
from sonet.core.client_api import Accepted, ErrorFrame, SendBatch
from sonet.core.federation_api import Push, PushResult
from sonet.federation.errors import FederationError
from sonet.federation.ratelimit import Rate
from sonet.federation.records import OutboundItem
from sonet.node.app import now_ms
from sonet.node.store import StoreError
from tests.node.conftest import HANG_S, NodeParams, RunningNode, StartNode
from tests.node.kit import Account, access_token, opaque_envelope, wall_ms

from .net import ALPHA, BETA, NOWHERE, ask, deliveries, mailbox_ids, new_key, peer_link, pin, pin_node, queue_at, tracked, transit, until


async def pair(start_node: StartNode, **config: object) -> tuple[RunningNode, RunningNode]:
    alpha = await start_node(name=ALPHA, registration="open", **config)
    beta = await start_node(name=BETA, registration="open", **config)
    await pin_node(alpha, beta)
    await pin_node(beta, alpha)
    return alpha, beta


async def test_an_envelope_pushed_twice_is_stored_once(start_node: StartNode) -> None:
    beta = await start_node(name=BETA)
    bob = await beta.enroll("bob")
    key = new_key()
    await pin(beta, "peer.example", fingerprint=key.public.fingerprint)
    item = transit(bob.address, origin="peer.example")
    async with peer_link(beta, key, "peer.example") as link:
        first = await ask(link, Push(request=1, items=(item, item)))  # twice in one push, too
        again = await ask(link, Push(request=2, items=(item,)))
    assert first == PushResult(request=1, outcomes=("ok", "ok"))
    assert again == PushResult(request=2, outcomes=("ok",))
    assert await mailbox_ids(beta, bob.address) == [item.envelope.id]  # type: ignore[union-attr]


async def test_a_pushed_envelope_never_outlives_the_receivers_ttl(start_node: StartNode) -> None:
    beta = await start_node(name=BETA, envelope_ttl_ms=24 * 3600 * 1000)
    bob = await beta.enroll("bob")
    key = new_key()
    await pin(beta, "peer.example", fingerprint=key.public.fingerprint)
    before = wall_ms()
    item = transit(bob.address, origin="peer.example", expires=before + limits.DEFAULT_ENVELOPE_TTL_MS)
    async with peer_link(beta, key, "peer.example") as link:
        assert await ask(link, Push(request=1, items=(item,))) == PushResult(request=1, outcomes=("ok",))
    [stored] = await beta.pending(bob.address, 1)
    assert stored.expires <= wall_ms() + 24 * 3600 * 1000


async def test_fifty_messages_arrive_once_each_in_the_order_they_were_sent(start_node: StartNode) -> None:
    alpha, beta = await pair(start_node)
    alice, bob = await alpha.enroll("alice"), await beta.enroll("bob")
    async with beta.raw(bob.first) as conn:
        access = (await access_token(conn, bob.address),)  # alice is bob's contact
    sent = []
    async with alpha.raw(alice.first) as conn:
        for _ in range(50):
            env = opaque_envelope((bob.address, 1))
            answer = await conn.request(lambda n, env=env: SendBatch(request=n, envelopes=(env,), access=access))
            assert isinstance(answer, Accepted)
            sent.append(env.id)
    await until(lambda: _count(beta, bob.address, 50), "all 50 envelopes reached beta")
    assert await mailbox_ids(beta, bob.address) == sent

    async def all_accepted() -> bool:
        async with alpha.store() as store:
            rows = await store.deliveries(alice.address, 1, sent)
        return len(rows) == 50 and all(r.state == "accepted" and r.dest == BETA for r in rows)

    await until(all_accepted, "alpha saw every envelope accepted by beta")
    async with alpha.store() as store:
        assert await store.outbox_counts() == {}


async def _count(node: RunningNode, account: str, n: int) -> bool:
    return len(await mailbox_ids(node, account)) >= n


async def test_refusals_of_the_destination_become_failed_statuses(start_node: StartNode) -> None:
    alpha, beta = await pair(start_node)
    alice, bob = await alpha.enroll("alice"), await beta.enroll("bob")
    nobody = tracked(alpha, alice, f"nobody@{BETA}")
    removed_device = tracked(alpha, alice, bob.address, device=7)
    fine = tracked(alpha, alice, bob.address)
    await queue_at(alpha, nobody, removed_device, fine)

    async def settled() -> bool:
        return all(r.state != "queued" for r in await deliveries(alpha, alice, nobody, removed_device, fine))

    await until(settled, "every delivery row settled")
    states = {r.id: (r.state, r.code) for r in await deliveries(alpha, alice, nobody, removed_device, fine)}
    assert states == {
        nobody.tracking.id: ("failed", "unknown_account"),  # type: ignore[union-attr]
        removed_device.tracking.id: ("failed", "unknown_device"),  # type: ignore[union-attr]
        fine.tracking.id: ("accepted", ""),  # type: ignore[union-attr]
    }
    assert await mailbox_ids(beta, bob.address) == [fine.tracking.id]  # type: ignore[union-attr]


async def test_a_destination_that_is_not_configured_keeps_its_items_until_it_is(start_node: StartNode) -> None:
    alpha = await start_node(name=ALPHA)
    beta = await start_node(name=BETA)
    await pin_node(beta, alpha)  # alpha does not know beta yet
    alice, bob = await alpha.enroll("alice"), await beta.enroll("bob")
    federation = alpha.node.federation
    assert federation is not None
    item = tracked(alpha, alice, bob.address)
    await queue_at(alpha, item)

    await until(lambda: federation.queued_note(BETA) is not None, "alpha notes why the item waits")
    assert federation.queued_note(BETA) == ("unroutable", f"{BETA} is not a configured peer of this node (or its relay is not)")
    assert [(r.state, r.code) for r in await deliveries(alpha, alice, item)] == [("queued", "")]
    async with alpha.store() as store:
        assert await store.outbox_counts() == {BETA: 1}

    await pin_node(alpha, beta)  # the operator adds the peer: the waiting item goes
    await until(lambda: _count(beta, bob.address, 1), "the item reached beta")
    await until(lambda: _states(alpha, alice, item, ("accepted", "")), "the item was accepted")
    assert federation.queued_note(BETA) is None


async def test_removing_and_adding_a_peer_again_keeps_its_queue(start_node: StartNode) -> None:
    # The documented way to change a pin (here: a wrong URL) is remove + add.
    alpha = await start_node(name=ALPHA)
    beta = await start_node(name=BETA)
    await pin(alpha, BETA, url=NOWHERE, fingerprint=beta.fingerprint)
    await pin_node(beta, alpha)
    alice, bob = await alpha.enroll("alice"), await beta.enroll("bob")
    federation = alpha.node.federation
    assert federation is not None
    items = [tracked(alpha, alice, bob.address) for _ in range(3)]
    await queue_at(alpha, *items)
    await until(lambda: (federation.queued_note(BETA) or ("",))[0] == "unreachable", "alpha cannot reach beta")

    async with alpha.store() as store:
        await store.remove_peer(BETA)
    await federation.routes()  # a routing decision in the gap (the node re-reads every 2 s)
    await until(lambda: (federation.queued_note(BETA) or ("",))[0] == "unroutable", "the items wait without a route")
    assert [(r.state, r.code) for r in await deliveries(alpha, alice, *items)] == [("queued", "")] * 3

    await pin_node(alpha, beta)
    await until(lambda: _count(beta, bob.address, 3), "all three items reached beta")
    assert sorted(await mailbox_ids(beta, bob.address)) == sorted(i.tracking.id for i in items)  # type: ignore[union-attr]
    await until(lambda: _states(alpha, alice, items[0], ("accepted", "")), "accepted")
    assert [(r.state, r.code) for r in await deliveries(alpha, alice, *items)] == [("accepted", "")] * 3


async def test_items_without_a_route_fail_only_when_they_expire(start_node: StartNode, node_params: NodeParams) -> None:
    node_params.federation.update(expire_interval_s=0.05)
    clock = Clock(node_params)
    alpha = await start_node(name=ALPHA)
    alice = await alpha.enroll("alice")
    lasting = tracked(alpha, alice, "zed@zeta.example")
    brief = tracked(alpha, alice, "zed@zeta.example", expires=wall_ms() + 60_000)
    await queue_at(alpha, lasting, brief)
    federation = alpha.node.federation
    assert federation is not None
    await until(lambda: federation.queued_note("zeta.example") is not None, "the items wait without a route")

    clock.advance(120_000)
    await until(lambda: _states(alpha, alice, brief, ("failed", "expired")), "the short-lived item expired")
    assert [(r.state, r.code) for r in await deliveries(alpha, alice, lasting)] == [("queued", "")]
    async with alpha.store() as store:
        assert await store.outbox_counts() == {"zeta.example": 1}
    assert federation.queued_note("zeta.example") == ("unroutable", "zeta.example is not a configured peer of this node (or its relay is not)")


async def _states(node: RunningNode, sender: Account, item: OutboundItem, state: tuple[str, str]) -> bool:
    return [(r.state, r.code) for r in await deliveries(node, sender, item)] == [state]


class Clock:
    """The wall clock of the nodes started after it, moved forward by the test: expiry without
    waiting for it."""

    def __init__(self, node_params: NodeParams) -> None:
        self.offset = 0
        node_params.clock_ms = lambda: now_ms() + self.offset

    def advance(self, ms: int) -> None:
        self.offset += ms


async def test_a_wrong_pin_delivers_nothing_and_says_why(start_node: StartNode) -> None:
    alpha = await start_node(name=ALPHA)
    beta = await start_node(name=BETA)
    await pin(alpha, BETA, url=beta.url, fingerprint=new_key().public.fingerprint)
    await pin_node(beta, alpha)
    alice, bob = await alpha.enroll("alice"), await beta.enroll("bob")
    federation = alpha.node.federation
    assert federation is not None
    item = tracked(alpha, alice, bob.address)
    await queue_at(alpha, item)

    def beta_entry() -> dict:
        return next((p for p in federation.snapshot()["peers"] if p["name"] == BETA), {})

    await until(lambda: (beta_entry().get("last_error") or {}).get("code") == "wrong_identity", "the snapshot shows wrong_identity")
    await until(lambda: beta_entry().get("queued") == 1, "the status counts the waiting item")
    entry = beta_entry()
    assert entry["link"] in ("backoff", "idle", "connecting") and entry["route"] == [BETA]
    assert beta.fingerprint not in str(entry)
    note = federation.queued_note(BETA)
    assert note is not None and note[0] == "wrong_identity"
    assert [r.state for r in await deliveries(alpha, alice, item)] == ["queued"]
    assert await mailbox_ids(beta, bob.address) == []
    with pytest.raises(FederationError) as info:
        await federation.remote_devices(bob.address)
    assert info.value.code == "wrong_identity" and "\n" not in str(info.value)


async def test_backoff_ends_when_the_peer_dials_in(start_node: StartNode) -> None:
    # Retries an hour apart: only the reset can explain a delivery within the test.
    alpha = await start_node(name=ALPHA, federation_retry_base_s=3600.0, federation_retry_max_s=3600.0)
    beta = await start_node(name=BETA)
    await pin_node(alpha, beta)  # beta does not know alpha yet: it refuses alpha's links
    alice, bob = await alpha.enroll("alice"), await beta.enroll("bob")
    federation = alpha.node.federation
    assert federation is not None
    item = tracked(alpha, alice, bob.address)
    await queue_at(alpha, item)

    def beta_entry() -> dict:
        return next((p for p in federation.snapshot()["peers"] if p["name"] == BETA), {})

    await until(lambda: (beta_entry().get("last_error") or {}).get("code") == "unknown_peer", "beta refused alpha")
    assert beta_entry()["link"] == "refused" and beta_entry()["next_attempt_at"] > wall_ms()
    await pin_node(beta, alpha)  # beta now greets alpha, which retries at once
    await until(lambda: _count(beta, bob.address, 1), "the item reached beta")
    await until(lambda: beta_entry()["link"] == "connected" and beta_entry()["next_attempt_at"] is None, "alpha's link to beta is up")
    assert await mailbox_ids(beta, bob.address) == [item.tracking.id]  # type: ignore[union-attr]


async def test_a_rate_limited_push_keeps_its_items_and_backs_off(start_node: StartNode, node_params: NodeParams) -> None:
    # beta takes one pushed item, then hardly any more
    node_params.federation.update(push_rate=Rate(per_second=0.001, burst=1))
    alpha, beta = await pair(start_node)
    alice, bob = await alpha.enroll("alice"), await beta.enroll("bob")
    federation = alpha.node.federation
    assert federation is not None
    first, second, third = (tracked(alpha, alice, bob.address) for _ in range(3))
    await queue_at(alpha, first)
    await until(lambda: _count(beta, bob.address, 1), "the first item arrived")
    await queue_at(alpha, second, third)  # one push of two: more than a full bucket, still refused

    def beta_entry() -> dict:
        return next((p for p in federation.snapshot()["peers"] if p["name"] == BETA), {})

    await until(lambda: (beta_entry().get("last_error") or {}).get("code") == "rate_limited", "alpha saw rate_limited")
    assert federation.queued_note(BETA) is not None and federation.queued_note(BETA)[0] == "rate_limited"  # type: ignore[index]
    assert [r.state for r in await deliveries(alpha, alice, first, second, third)].count("queued") == 2
    async with alpha.store() as store:
        assert await store.outbox_counts() == {BETA: 2}  # nothing deleted without a PushResult
    assert await mailbox_ids(beta, bob.address) == [first.tracking.id]  # type: ignore[union-attr]


async def test_a_successful_push_ends_the_backoff(start_node: StartNode, monkeypatch: pytest.MonkeyPatch) -> None:
    base = 0.01
    alpha, beta = await pair(start_node, federation_retry_base_s=base, federation_retry_max_s=10.0)
    alice, bob = await alpha.enroll("alice"), await beta.enroll("bob")
    federation, inbound = alpha.node.federation, beta.node.federation._inbound  # type: ignore[union-attr]
    assert federation is not None
    pool = federation._pool
    # Both greetings are done (each resets the backoff): from now on only pushes touch it.
    await until(lambda: pool.inbound(BETA) == 1 and pool.describe(BETA)["link"] == "connected", "alpha and beta greeted")
    backoff = pool._state(BETA).backoff
    ceilings: list[float] = []  # the largest delay each failure could draw
    draw = backoff.next_delay

    def recorded() -> float:
        ceilings.append(backoff.ceiling())
        return draw()

    monkeypatch.setattr(backoff, "next_delay", recorded)
    refusing = True
    receive = inbound._store.receive

    async def refuse_while_told(*args: object, **kwargs: object) -> object:
        if refusing:  # beta answers its pushes "unavailable"
            raise StoreError("database error: database is locked")
        return await receive(*args, **kwargs)

    monkeypatch.setattr(inbound._store, "receive", refuse_while_told)
    first = tracked(alpha, alice, bob.address)
    await queue_at(alpha, first)
    await until(lambda: len(ceilings) >= 3, "three refusals in a row")
    assert ceilings[:3] == [base * 2.0**n for n in range(3)]  # growing

    refusing = False
    await until(lambda: _states(alpha, alice, first, ("accepted", "")), "the item went through")
    assert backoff.failures == 0
    seen = len(ceilings)

    refusing = True
    await queue_at(alpha, tracked(alpha, alice, bob.address))
    await until(lambda: len(ceilings) > seen, "the next refusal")
    assert ceilings[seen] == base  # from the beginning again


async def test_an_item_that_expires_during_its_push_gets_the_pushs_outcome(
    start_node: StartNode, node_params: NodeParams, monkeypatch: pytest.MonkeyPatch
) -> None:
    node_params.federation.update(expire_interval_s=0.05)
    clock = Clock(node_params)
    alpha, beta = await pair(start_node)
    alice, bob = await alpha.enroll("alice"), await beta.enroll("bob")
    alpha_store = alpha.node.federation._store  # type: ignore[union-attr]
    ticks = 0
    expire_outbox = alpha_store.expire_outbox

    async def counted(*, now: int) -> object:
        nonlocal ticks
        ticks += 1
        return await expire_outbox(now=now)

    monkeypatch.setattr(alpha_store, "expire_outbox", counted)
    # beta stores the pushed item at once but holds back its answer until told
    beta_store = beta.node.federation._inbound._store  # type: ignore[union-attr]
    receive, stored, answer = beta_store.receive, trio.Event(), trio.Event()
    answers: list[object] = []

    async def answer_when_told(*args: object, **kwargs: object) -> object:
        answers.append(await receive(*args, **kwargs))  # committed: the push's answer waits
        stored.set()
        await answer.wait()
        return answers[-1]

    monkeypatch.setattr(beta_store, "receive", answer_when_told)
    # An ordinary envelope (the default TTL): a disappearing message's id is forgotten at its
    # expiry even while its item is queued (vanishing.py), so alpha's purge loop, waking within
    # EXPIRY CHECK_S of the clock's move, would race the answer and leave no row to settle.
    item = tracked(alpha, alice, bob.address)
    await queue_at(alpha, item)
    with trio.fail_after(HANG_S):
        await stored.wait()
    assert answers == [["ok"]]
    # Read before the clock moves: after it, beta's own purge loop drops the expired envelope.
    stored_at_beta = await beta.pending(bob.address, 1)
    assert [i.id for i in stored_at_beta] == [item.tracking.id]  # type: ignore[union-attr]

    clock.advance(limits.DEFAULT_ENVELOPE_TTL_MS + 60_000)  # it expires at alpha while its push is in flight
    before = ticks
    await until(lambda: ticks >= before + 2, "two expiry ticks with the item expired")
    answer.set()
    await until(lambda: _states(alpha, alice, item, ("accepted", "")), "beta's answer settled the item")
    async with alpha.store() as store:
        assert await store.outbox_counts() == {}
    assert len(answers) == 1  # pushed once: not again, nor settled as expired, behind the answer


async def test_the_next_push_goes_while_the_last_one_is_still_being_settled(
    start_node: StartNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    alpha = await start_node(name=ALPHA)
    beta = await start_node(name=BETA)
    alice, bob = await alpha.enroll("alice"), await beta.enroll("bob")
    federation = alpha.node.federation
    assert federation is not None
    real_done = federation._store.outbox_done
    release = trio.Event()
    settles: list[int] = []

    async def slow_done(dest, seqs, **kwargs):
        settles.append(len(seqs))
        if len(settles) == 1:
            await release.wait()  # the first settle hangs until the second push was taken
        return await real_done(dest, seqs, **kwargs)

    monkeypatch.setattr(federation._store, "outbox_done", slow_done)
    await pin_node(beta, alpha)
    await pin_node(alpha, beta)
    first = tracked(alpha, alice, bob.address)
    await queue_at(alpha, first)
    await until(lambda: settles == [1], "the first push was taken and its settle started")
    second = tracked(alpha, alice, bob.address)
    await queue_at(alpha, second)
    await until(
        _holds(beta, bob.address, [first.tracking.id, second.tracking.id]),  # type: ignore[union-attr]
        "the second push reached beta while the first settle still hangs",
    )
    assert [r.state for r in await deliveries(alpha, alice, first)] == ["queued"]  # not settled yet
    assert len(settles) == 1  # one settle at a time: the second waits for the first
    release.set()
    for item in (first, second):
        await until(lambda item=item: _states(alpha, alice, item, ("accepted", "")), "both settled")
    assert await mailbox_ids(beta, bob.address) == [first.tracking.id, second.tracking.id]  # type: ignore[union-attr]
    async with alpha.store() as other:
        assert await other.outbox_counts() == {}


def _holds(node: RunningNode, account: str, ids: list[bytes]):
    async def check() -> bool:
        return await mailbox_ids(node, account) == ids

    return check
