"""Several pushes in flight on one link (federation/push_sequence.py): the receiver applies the
sequenced ones one at a time in the order sent, refuses a gap or an old number with
``out_of_order``, takes nothing after a push it refused until that push comes again, and the
dialler numbers its pushes in wire order and starts a new round after a refusal."""

from __future__ import annotations

import tomllib

import pytest
import trio

from sonet.core.client_api import ErrorFrame, Ping, Pong
from sonet.core.federation_api import Push, PushResult
from sonet.core.wire import Frame
from sonet.federation.link import LinkLost, serve_link
from sonet.federation.push_sequence import OUT_OF_ORDER, Receiving, Sending
from sonet.federation.ratelimit import Rate
from sonet.federation.settings import MAX_PUSHES_IN_FLIGHT, FederationSettings
from sonet.node.app import federation_settings
from sonet.node.config import ConfigError, NodeConfig
from tests.node.conftest import HANG_S, NodeParams, StartNode
from tests.node.kit import wall_ms

from .net import BETA, ask, mailbox_ids, new_key, peer_link, pin, transit
from .test_mux import start


def out_of_order(answer: Frame, request: int) -> bool:
    return isinstance(answer, ErrorFrame) and answer.code == OUT_OF_ORDER and answer.request == request


async def test_sequenced_pushes_in_flight_are_taken_in_order_and_a_gap_or_old_number_is_refused(start_node: StartNode) -> None:
    beta = await start_node(name=BETA)
    bob = await beta.enroll("bob")
    key = new_key()
    await pin(beta, "peer.example", fingerprint=key.public.fingerprint)
    items = [transit(bob.address, origin="peer.example") for _ in range(6)]
    async with peer_link(beta, key, "peer.example") as link:
        with trio.fail_after(HANG_S):
            for n in range(3):  # three in flight before any answer is read
                await link.send(Push(request=n + 1, items=(items[n],), seq=n + 1))
            answers = [await link.receive() for _ in range(3)]
        assert answers == [PushResult(request=n + 1, outcomes=("ok",)) for n in range(3)]  # answered in order
        gap = await ask(link, Push(request=4, items=(items[3],), seq=5))
        old = await ask(link, Push(request=5, items=(items[4],), seq=2))
        assert out_of_order(gap, 4) and "a gap" in gap.message and "next one taken is 4" in gap.message  # type: ignore[attr-defined]
        assert out_of_order(old, 5) and "old or replayed" in old.message  # type: ignore[attr-defined]
        assert await ask(link, Push(request=6, items=(items[5],), seq=4)) == PushResult(request=6, outcomes=("ok",))
        # an unsequenced push (0) is taken as it comes, beside the sequence
        assert await ask(link, Push(request=7, items=(items[3],))) == PushResult(request=7, outcomes=("ok",))
    stored = await mailbox_ids(beta, bob.address)
    assert stored == [items[n].envelope.id for n in (0, 1, 2, 5, 3)]  # type: ignore[union-attr]


async def test_nothing_after_a_refused_push_is_taken_until_it_comes_again(start_node: StartNode, node_params: NodeParams) -> None:
    clock = [wall_ms()]
    node_params.clock_ms = lambda: clock[0]
    node_params.federation.update(push_rate=Rate(per_second=0.1, burst=2))  # refills only when the clock moves
    beta = await start_node(name=BETA)
    bob = await beta.enroll("bob")
    key = new_key()
    await pin(beta, "peer.example", fingerprint=key.public.fingerprint)
    first, second, third = (transit(bob.address, origin="peer.example") for _ in range(3))
    async with peer_link(beta, key, "peer.example") as link:
        with trio.fail_after(HANG_S):
            await link.send(Push(request=1, items=(first, second), seq=1))  # takes the whole bucket
            await link.send(Push(request=2, items=(third,), seq=2))  # refused: rate_limited
            await link.send(Push(request=3, items=(third,), seq=3))  # on its way before the refusal is known
            answers = [await link.receive() for _ in range(3)]
        assert answers[0] == PushResult(request=1, outcomes=("ok", "ok"))
        assert isinstance(answers[1], ErrorFrame) and answers[1].code == "rate_limited" and answers[1].request == 2
        assert out_of_order(answers[2], 3)  # behind push 2, which was not taken
        assert await mailbox_ids(beta, bob.address) == [first.envelope.id, second.envelope.id]  # type: ignore[union-attr]
        clock[0] += 60_000  # the bucket refills
        assert out_of_order(await ask(link, Push(request=4, items=(third,), seq=3)), 4)  # still behind push 2
        # the new round starts with the refused number again
        assert await ask(link, Push(request=5, items=(third,), seq=2)) == PushResult(request=5, outcomes=("ok",))
    assert await mailbox_ids(beta, bob.address) == [e.envelope.id for e in (first, second, third)]  # type: ignore[union-attr]


class LaneLink:
    """A link for ``serve_link``: frames to read, answers sent."""

    def __init__(self, frames: list[Frame]) -> None:
        self.frames = frames
        self.sent: list[Frame] = []
        self.done = trio.Event()

    async def receive(self) -> Frame:
        if self.frames:
            return self.frames.pop(0)
        await self.done.wait()
        from sonet.transport.ws_errors import ConnectionClosed

        raise ConnectionClosed(None)

    async def send(self, frame: Frame) -> None:
        self.sent.append(frame)


async def test_sequenced_pushes_are_handled_one_at_a_time_in_the_order_read_others_beside_them() -> None:
    pushes = [Push(request=n, items=(transit("bob@beta.example", origin="peer.example"),), seq=n) for n in range(1, 7)]
    link = LaneLink([*pushes[:3], Ping(request=50), *pushes[3:]])
    handled: list[int] = []
    busy = 0

    async def handle(frame: Frame) -> Frame:
        nonlocal busy
        if isinstance(frame, Ping):
            return Pong(request=frame.request)
        assert isinstance(frame, Push)
        busy += 1
        assert busy == 1  # never two sequenced pushes at once
        await trio.sleep(0.01 * (7 - frame.seq))  # the first ones take longest
        handled.append(frame.seq)
        busy -= 1
        if frame.seq == 6:
            link.done.set()
        return PushResult(request=frame.request, outcomes=("ok",))

    with trio.fail_after(HANG_S):
        await serve_link(link, handle)  # type: ignore[arg-type]
    assert handled == [1, 2, 3, 4, 5, 6]
    assert [f.request for f in link.sent if isinstance(f, PushResult)] == [1, 2, 3, 4, 5, 6]  # answered in order
    assert link.sent[0] == Pong(request=50)  # the ping did not wait behind the pushes


def push(request: int) -> Push:
    return Push(request=request, items=(transit("bob@beta.example", origin="peer.example"),))


def refusal(request: int, code: str = "rate_limited") -> ErrorFrame:
    return ErrorFrame(request=request, code=code, message="no")


def test_the_dialler_numbers_in_order_and_starts_a_new_round_with_the_refused_number() -> None:
    sending = Sending()
    assert [sending.number(push(r)).seq for r in (1, 2, 3)] == [1, 2, 3]
    assert sending.answered(PushResult(request=1, outcomes=("ok",))) is None
    assert sending.answered(refusal(2)) is None  # push 2 refused as a whole: the next is 2 again
    assert sending.number(push(4)).seq == 2
    assert sending.answered(refusal(3, OUT_OF_ORDER)) is None  # sent before the refusal was known
    assert sending.answered(PushResult(request=4, outcomes=("ok",))) is None
    assert sending.number(push(5)).seq == 3
    assert sending.answered(Pong(request=9)) is None  # no push's answer: not followed


@pytest.mark.parametrize(
    "answer, why",
    [
        (refusal(2, OUT_OF_ORDER), "out of step"),  # refused behind nothing the dialler knows of
        (Pong(request=2), "answered push 2 with Pong"),
    ],
)
def test_an_answer_that_shows_the_sides_out_of_step_closes_the_link(answer: Frame, why: str) -> None:
    sending = Sending()
    sending.number(push(1))
    sending.number(push(2))
    assert sending.answered(PushResult(request=1, outcomes=("ok",))) is None
    reason = sending.answered(answer)
    assert reason is not None and why in reason


def test_a_refusal_of_a_push_of_an_earlier_round_closes_the_link() -> None:
    sending = Sending()
    sending.number(push(1))
    sending.number(push(2))
    assert sending.answered(refusal(1)) is None
    reason = sending.answered(refusal(2, "unavailable"))  # the receiver should have said out_of_order
    assert reason is not None and "should not have considered" in reason


def test_the_receiver_takes_the_next_push_ahead_and_goes_back_to_one_that_failed() -> None:
    receiving = Receiving()
    first, second, third = (Push(request=n, items=push(0).items, seq=n) for n in (1, 2, 3))
    write_1, write_2 = object(), object()
    assert receiving.refusal(first) is None
    round_1 = receiving.take(first, write_1)  # type: ignore[arg-type]
    assert receiving.expected == 2 and receiving.after is write_1  # taken before its answer
    round_2 = receiving.take(second, write_2)  # type: ignore[arg-type]
    assert receiving.after is write_2
    # push 1's write failed: its answer stands, push 2 (behind it) is refused out_of_order
    assert receiving.answer(first, round_1, refusal(1, "unavailable")) == refusal(1, "unavailable")
    assert out_of_order(receiving.answer(second, round_2, PushResult(request=2, outcomes=("ok",))), 2)
    assert receiving.expected == 1 and receiving.after is None  # the new round starts at 1 again
    assert out_of_order(receiving.refusal(second), 2)  # type: ignore[arg-type]
    round_3 = receiving.take(first, None)
    assert receiving.answer(first, round_3, PushResult(request=1, outcomes=("ok",))) == PushResult(request=1, outcomes=("ok",))
    assert receiving.expected == 2 and receiving.refusal(second) is None
    assert receiving.refusal(push(3)) is None  # unsequenced


def test_a_push_refused_before_its_write_holds_the_sequence_until_its_answer() -> None:
    receiving = Receiving()
    first, second = (Push(request=n, items=push(0).items, seq=n) for n in (1, 2))
    held = receiving.hold(first)  # rate limited: nothing of it queued
    refused = receiving.refusal(Push(request=9, items=push(0).items, seq=1))  # the same number again
    assert out_of_order(refused, 9) and "behind push 1" in refused.message  # type: ignore[arg-type, union-attr]
    assert out_of_order(receiving.refusal(second), 2)  # type: ignore[arg-type]
    assert receiving.answer(first, held, refusal(1)) == refusal(1)
    assert receiving.refusal(first) is None  # the new round: push 1 again


def test_pushes_in_flight_is_set_in_node_toml_and_bounded() -> None:
    base = {"name": "alpha.example", "listen": "127.0.0.1:0"}
    config = NodeConfig.from_dict(base)
    assert federation_settings(config).pushes_in_flight == 3
    assert "# pushes_in_flight = 3" in config.to_toml()  # documented, not set
    tuned = NodeConfig.from_dict(tomllib.loads(config.to_toml() + "\n[federation]\npushes_in_flight = 1\n"))
    assert federation_settings(tuned).pushes_in_flight == 1
    assert NodeConfig.from_dict(tomllib.loads(tuned.to_toml())) == tuned
    for bad in (0, MAX_PUSHES_IN_FLIGHT + 1, 2.5, "3"):
        with pytest.raises(ConfigError) as info:
            NodeConfig.from_dict({**base, "federation": {"pushes_in_flight": bad}}, source="node.toml")
        assert f"federation.pushes_in_flight = {bad!r} is not allowed" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ValueError):
        FederationSettings(pushes_in_flight=0)


async def test_a_link_numbers_its_pushes_in_wire_order_and_closes_when_out_of_step(nursery: trio.Nursery) -> None:
    mux, fake = await start(nursery)
    results: dict[str, object] = {}
    sent: list[Push] = []

    async def call(label: str) -> None:
        try:
            results[label] = await mux.request(push(0))
        except LinkLost as exc:
            results[label] = str(exc)

    async with trio.open_nursery() as callers:
        for label in ("a", "b", "c"):
            callers.start_soon(call, label)
            sent.append(await fake.sent.receive())  # type: ignore[arg-type]
        assert [p.seq for p in sent] == [1, 2, 3]
        await fake.incoming.send(refusal(sent[0].request, "unavailable"))  # push 1 not taken
        await fake.incoming.send(refusal(sent[1].request, OUT_OF_ORDER))  # sent before that was known
        callers.start_soon(call, "d")
        again: Push = await fake.sent.receive()  # type: ignore[assignment]
        assert again.seq == 1 and mux.closed is None  # a new round from the refused number
        await fake.incoming.send(refusal(again.request, OUT_OF_ORDER))  # of the current round: out of step
    assert mux.closed is not None and "out of step" in mux.closed
    assert isinstance(results["a"], ErrorFrame) and results["a"].code == "unavailable"
    assert isinstance(results["b"], ErrorFrame) and results["b"].code == OUT_OF_ORDER
    assert all(isinstance(results[x], str) and "out of step" in results[x] for x in ("c", "d"))  # type: ignore[operator]
