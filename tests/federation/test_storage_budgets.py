"""Stored-bytes budgets across nodes (issue 13, item 3) and reports only about what was handed
on (item 10a), on real in-process nodes:

- the outbox towards a node that is down refuses new envelopes at its budget with
  ``outbox_full`` (nothing stored, so the device keeps them), while local sends go on, and takes
  them again once the node drains it;
- a relay holds at most its budget for each origin node: past it a push is answered
  ``relay_full`` and nothing of it is taken (the pusher keeps the items), another origin has its
  own share;
- a report about an envelope the origin still has queued does not settle its delivery row.
"""

from __future__ import annotations

import pytest

from sonet.core import limits
from sonet.core.access import ACCESS_TOKEN_LEN
from sonet.core.client_api import AccessToken, Accepted, ErrorFrame, FetchStatus, SendBatch, Statuses
from sonet.core.envelope import Envelope
from sonet.core.federation_api import Push, PushResult, Report, Transit
from sonet.core.wire import Frame
from sonet.federation.errors import FederationError
from tests.node.conftest import StartNode
from tests.node.kit import NodeError, opaque_envelope, wall_ms

from .net import ALPHA, BETA, GAMMA, ask, new_key, peer_link, pin, queue_at, tracked, triangle, until

BUDGET = 1 << 20  # the smallest budget node.toml allows
BODY = 200 * 1024


def batch(n: int, env: Envelope) -> SendBatch:
    """``env`` with an access token for its recipient (only their node checks it): a contact's
    message, not a message request with its small allowance."""
    return SendBatch(request=n, envelopes=(env,), access=(AccessToken(account=env.to, token=bytes(ACCESS_TOKEN_LEN)),))


def _unreachable(monkeypatch: pytest.MonkeyPatch, node) -> None:  # noqa: ANN001
    """Every request ``node`` makes to another node fails, as when that node is down."""
    federation = node.node.federation
    assert federation is not None

    async def request(hop, frame: Frame, **_: object) -> Frame:  # noqa: ANN001
        raise FederationError("unreachable", f"{hop.name} is down (simulated)")

    monkeypatch.setattr(federation._pool, "request", request)


async def test_the_outbox_towards_a_node_that_is_down_refuses_at_its_budget(start_node: StartNode, monkeypatch: pytest.MonkeyPatch) -> None:
    net = await triangle(start_node, storage_outbox_max_bytes=BUDGET)
    federation = net.alpha.node.federation
    assert federation is not None
    await federation.remote_devices(net.bob.address)  # cached: sends to bob go on while beta is down
    _unreachable(monkeypatch, net.alpha)
    dave = await net.alpha.enroll("dave")

    accepted: list[bytes] = []
    refusal: NodeError | None = None
    async with net.alpha.raw(net.alice.first) as conn:
        for _ in range(2 * BUDGET // BODY):
            env = opaque_envelope((net.bob.address, 1), body=b"x" * BODY)
            try:
                await conn.request(lambda n, env=env: batch(n, env))
            except NodeError as exc:
                refusal = exc
                break
            accepted.append(env.id)

        assert refusal is not None and refusal.code == "outbox_full", refusal
        assert "outbox towards beta.example is full" in str(refusal)
        assert BUDGET // BODY - 1 <= len(accepted) <= BUDGET // BODY
        async with net.alpha.store() as store:
            assert await store.outbox_counts() == {BETA: len(accepted)}

        # A local recipient is not affected.
        local = opaque_envelope((dave.address, 1), body=b"x" * BODY)
        assert isinstance(await conn.request(lambda n: SendBatch(request=n, envelopes=(local,))), Accepted)

        # What was accepted is queued, with the reason it waits.
        answer = await conn.request(lambda n: FetchStatus(request=n, ids=tuple(accepted)))
        assert isinstance(answer, Statuses)
        assert {(s.state, s.code) for s in answer.items} == {("queued", "unreachable")}

        # beta is back: the outbox drains and takes new envelopes again.
        monkeypatch.undo()
        federation.wake({BETA})
        await until(lambda: _outbox_empty(net.alpha), "alpha's outbox towards beta drained")
        again = opaque_envelope((net.bob.address, 1), body=b"x" * BODY)
        assert isinstance(await conn.request(lambda n: batch(n, again)), Accepted)


async def _outbox_empty(node) -> bool:  # noqa: ANN001
    async with node.store() as store:
        return not (await store.outbox_counts()).get(BETA)


async def test_a_relay_holds_at_most_its_budget_for_each_origin(start_node: StartNode, monkeypatch: pytest.MonkeyPatch) -> None:
    net = await triangle(start_node, storage_relay_origin_max_bytes=BUDGET)
    _unreachable(monkeypatch, net.beta)  # gamma "down": beta keeps what it relays
    first, second = new_key(), new_key()
    await pin(net.beta, "one.example", fingerprint=first.public.fingerprint)
    await pin(net.beta, "two.example", fingerprint=second.public.fingerprint)

    def item(origin: str) -> Transit:
        env = opaque_envelope((net.carol.address, 1), body=b"x" * BODY)
        return Transit(origin=origin, dest=GAMMA, hops=limits.MAX_HOPS, envelope=env, report=None)

    taken = 0
    async with peer_link(net.beta, first, "one.example") as link:
        for n in range(1, 2 * BUDGET // BODY):
            answer = await ask(link, Push(request=n, items=(item("one.example"),)))
            if isinstance(answer, ErrorFrame):
                assert answer.code == "relay_full", answer
                assert "relay for one.example" in answer.message
                break
            assert answer == PushResult(request=n, outcomes=("ok",))
            taken += 1
        else:
            raise AssertionError("the relay never refused")
    assert BUDGET // BODY - 1 <= taken <= BUDGET // BODY
    async with net.beta.store() as store:
        assert (await store.outbox_counts())[GAMMA] == taken

    async with peer_link(net.beta, second, "two.example") as link:  # its own share
        assert await ask(link, Push(request=1, items=(item("two.example"),))) == PushResult(request=1, outcomes=("ok",))


async def test_a_report_about_an_envelope_still_queued_here_does_not_settle_it(start_node: StartNode) -> None:
    alpha = await start_node(name=ALPHA, registration="open")
    alice = await alpha.enroll("alice")
    key = new_key()
    await pin(alpha, "delta.example", fingerprint=key.public.fingerprint)  # down: nothing is pushed
    item = tracked(alpha, alice, "rita@delta.example")
    await queue_at(alpha, item)
    assert item.tracking is not None

    report = Report(id=item.tracking.id, account="rita@delta.example", device=1, outcome="ok", at=wall_ms())
    async with peer_link(alpha, key, "delta.example") as link:
        push = Push(request=1, items=(Transit(origin="delta.example", dest=ALPHA, hops=limits.MAX_HOPS, envelope=None, report=report),))
        assert await ask(link, push) == PushResult(request=1, outcomes=("ok",))

    async with alpha.store() as store:
        [row] = await store.deliveries(alice.address, 1, [item.tracking.id])
    assert row.state == "queued"  # delta never received it from alpha: its report changes nothing


async def test_a_relay_out_of_room_for_one_destination_holds_back_only_that_outbox(start_node: StartNode, monkeypatch: pytest.MonkeyPatch) -> None:
    net = await triangle(start_node, storage_relay_origin_max_bytes=BUDGET)
    federation = net.alpha.node.federation
    assert federation is not None
    await federation.remote_devices(net.carol.address)  # cached before gamma goes down
    _unreachable(monkeypatch, net.beta)  # gamma "down" for beta: it keeps what it relays

    sent: list[bytes] = []
    async with net.alpha.raw(net.alice.first) as conn:
        for _ in range(2 * BUDGET // BODY):
            env = opaque_envelope((net.carol.address, 1), body=b"x" * BODY)
            await conn.request(lambda n, env=env: batch(n, env))
            sent.append(env.id)

        async def relay_full() -> bool:
            answer = await conn.request(lambda n: FetchStatus(request=n, ids=tuple(sent)))
            assert isinstance(answer, Statuses)
            return any(s.code == "relay_full" for s in answer.items)

        await until(relay_full, "alice's envelopes wait at alpha because beta has no room for them")
        async with net.alpha.store() as store:
            assert 0 < (await store.outbox_counts()).get(GAMMA, 0) < len(sent)  # the rest stay queued here

        # beta is not backed off: alice's envelopes to bob (on beta) still go at once.
        to_bob = opaque_envelope((net.bob.address, 1))
        assert isinstance(await conn.request(lambda n: batch(n, to_bob)), Accepted)
    await until(lambda: _in_mailbox(net.beta, net.bob.address, to_bob.id), "the envelope to bob reached beta")


async def _in_mailbox(node, account: str, msg_id: bytes) -> bool:  # noqa: ANN001
    return msg_id in [item.id for item in await node.pending(account, 1)]
