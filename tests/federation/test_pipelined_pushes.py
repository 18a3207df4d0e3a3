"""The receiver takes a link's next push while the one before it is still waiting for its commit
(federation/inbound.py ``InboundLink``, link.py ``serve_link(pipelined=)``): the next pushes'
writes are queued behind it and share the next group commit; answers go in the order read, each
after its own commit; a push whose write fails leaves the ones queued behind it unstored and
answered ``out_of_order``, and the pusher's next round is taken. A real beta in-process, raw
peer links; beta's group commits held at a gate to make "while the first is on the disk"."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from sonet.core.client_api import ErrorFrame
from sonet.core.errors import ProtocolError, RemoteProtocolError
from sonet.core.federation_api import Push, PushResult
from sonet.core.wire import Frame
from sonet.federation.link import serve_link
from sonet.federation.push_sequence import OUT_OF_ORDER
from sonet.node.store import StoreError, sqlite
from sonet.node.store.group_commit import _run_group
from tests.node.conftest import HANG_S, RunningNode, StartNode

from .net import BETA, mailbox_ids, new_key, peer_link, pin, transit, until
from .test_push_sequence import LaneLink

PEER = "peer.example"


class Commits:
    """Beta's group commits seen: how many pushes' writes each group held; while ``gate`` is
    not set, a group holding one waits before it runs (its commit "on the disk")."""

    def __init__(self, node: RunningNode, monkeypatch: pytest.MonkeyPatch) -> None:
        federation = node.node.federation
        assert federation is not None
        self.writes = federation._store._writes  # type: ignore[attr-defined]
        self._real = self.writes._call
        self.gate = trio.Event()
        self.groups: list[int] = []
        monkeypatch.setattr(self.writes, "_call", self._call)

    @staticmethod
    def _pushes(writes: Any) -> int:
        return sum(1 for w in writes if w.fn is sqlite._receive)

    async def _call(self, fn: Any, *args: Any) -> Any:
        if fn is _run_group and self._pushes(args[0]):
            self.groups.append(self._pushes(args[0]))
            await self.gate.wait()
        return await self._real(fn, *args)

    def queued(self) -> int:
        """Pushes' writes waiting in the queue (not in a group yet)."""
        return self._pushes(self.writes._queue)


def failing_for(monkeypatch: pytest.MonkeyPatch, bad: set[bytes]) -> None:
    """Beta's push writes fail (after writing) for envelopes with an id in ``bad``."""
    real = sqlite._receive

    def receive(conn: Any, items: list[Any], *args: Any) -> list[str]:
        outcomes = real(conn, items, *args)
        if any(getattr(item, "id", None) in bad for item in items):
            raise StoreError("database error: disk I/O error")  # after its rows went in: undone
        return outcomes

    monkeypatch.setattr(sqlite, "_receive", receive)


def out_of_order(answer: Frame, request: int) -> bool:
    return isinstance(answer, ErrorFrame) and answer.code == OUT_OF_ORDER and answer.request == request


async def push_each(link: Any, items: list[Any]) -> None:
    """One Push per item, in turn: request and link sequence number 1, 2, ..."""
    for n, item in enumerate(items):
        await link.send(Push(request=n + 1, items=(item,), seq=n + 1))


async def beta_and_bob(start_node: StartNode) -> tuple[RunningNode, str, Any]:
    beta = await start_node(name=BETA)
    bob = await beta.enroll("bob")
    key = new_key()
    await pin(beta, PEER, fingerprint=key.public.fingerprint)
    return beta, bob.address, key


async def test_pushes_taken_while_the_first_is_on_the_disk_share_the_next_commit_answered_in_order(
    start_node: StartNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    beta, bob, key = await beta_and_bob(start_node)
    commits = Commits(beta, monkeypatch)
    items = [transit(bob, origin=PEER) for _ in range(3)]
    async with peer_link(beta, key, PEER) as link:
        with trio.fail_after(HANG_S):
            await push_each(link, items)
            await until(lambda: commits.groups == [1] and commits.queued() == 2, "pushes 2 and 3 queued behind push 1's commit")
            commits.gate.set()
            answers = [await link.receive() for _ in range(3)]
    assert answers == [PushResult(request=n + 1, outcomes=("ok",)) for n in range(3)]
    assert commits.groups == [1, 2]  # pushes 2 and 3: one transaction, one fsync
    assert await mailbox_ids(beta, bob) == [i.envelope.id for i in items]  # type: ignore[union-attr]


async def test_a_push_that_fails_with_the_next_queued_behind_it_leaves_that_one_unstored(
    start_node: StartNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    beta, bob, key = await beta_and_bob(start_node)
    commits = Commits(beta, monkeypatch)
    first, bad, behind, later = (transit(bob, origin=PEER) for _ in range(4))
    failing = {bad.envelope.id}  # type: ignore[union-attr]
    failing_for(monkeypatch, failing)
    async with peer_link(beta, key, PEER) as link:
        with trio.fail_after(HANG_S):
            await link.send(Push(request=1, items=(first,), seq=1))
            await link.send(Push(request=2, items=(bad,), seq=2))
            await link.send(Push(request=3, items=(behind,), seq=3))
            await until(lambda: commits.groups == [1] and commits.queued() == 2, "pushes 2 and 3 queued behind push 1's commit")
            commits.gate.set()
            answers = [await link.receive() for _ in range(3)]
            assert answers[0] == PushResult(request=1, outcomes=("ok",))
            assert isinstance(answers[1], ErrorFrame) and (answers[1].request, answers[1].code) == (2, "unavailable")
            assert out_of_order(answers[2], 3)  # queued behind push 2 in the same group: not applied
            assert commits.groups == [1, 2]
            assert await mailbox_ids(beta, bob) == [first.envelope.id]  # type: ignore[union-attr]
            # the pusher's next round starts at 2 again; the store works again
            failing.clear()
            await link.send(Push(request=4, items=(bad, behind), seq=2))
            await link.send(Push(request=5, items=(later,), seq=3))
            answers = [await link.receive() for _ in range(2)]
    assert answers == [PushResult(request=4, outcomes=("ok", "ok")), PushResult(request=5, outcomes=("ok",))]
    assert await mailbox_ids(beta, bob) == [t.envelope.id for t in (first, bad, behind, later)]  # type: ignore[union-attr]


async def test_a_failed_push_leaves_every_push_taken_behind_it_unstored_whatever_the_groups(
    start_node: StartNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    beta, bob, key = await beta_and_bob(start_node)
    bad, *behind = (transit(bob, origin=PEER) for _ in range(3))
    failing_for(monkeypatch, {bad.envelope.id})  # type: ignore[union-attr]
    async with peer_link(beta, key, PEER) as link:
        with trio.fail_after(HANG_S):
            for n, item in enumerate((bad, *behind), start=1):
                await link.send(Push(request=n, items=(item,), seq=n))
            answers = [await link.receive() for _ in range(3)]
    assert isinstance(answers[0], ErrorFrame) and answers[0].code == "unavailable"
    assert out_of_order(answers[1], 2) and out_of_order(answers[2], 3)
    assert await mailbox_ids(beta, bob) == []


async def test_an_answer_ready_first_still_goes_after_the_answers_before_it(start_node: StartNode, monkeypatch: pytest.MonkeyPatch) -> None:
    beta, bob, key = await beta_and_bob(start_node)
    commits = Commits(beta, monkeypatch)
    first, third = (transit(bob, origin=PEER) for _ in range(2))
    elsewhere = transit("carol@gamma.example", origin=PEER)  # beta relays nothing for this peer: no write
    async with peer_link(beta, key, PEER) as link:
        with trio.fail_after(HANG_S):
            await link.send(Push(request=1, items=(first,), seq=1))
            await link.send(Push(request=2, items=(elsewhere,), seq=2))  # answered at once ...
            await link.send(Push(request=3, items=(third,), seq=3))
            await until(lambda: commits.groups == [1] and commits.queued() == 1, "push 3 queued behind push 1's commit")
            commits.gate.set()
            answers = [await link.receive() for _ in range(3)]
    assert answers == [  # ... but only after push 1's
        PushResult(request=1, outcomes=("ok",)),
        PushResult(request=2, outcomes=("not_relaying",)),
        PushResult(request=3, outcomes=("ok",)),
    ]


class Lane:
    """A ``Pipelined`` whose frames finish when the test says; records what it started."""

    def __init__(self, ahead: int) -> None:
        self.ahead = ahead
        self.started: list[int] = []
        self.finish: dict[int, trio.Event] = {}

    async def start(self, frame: Frame) -> Any:
        assert isinstance(frame, Push)
        if frame.seq == 9:
            raise RemoteProtocolError("push 9 closes the link", code="out_of_order")
        self.started.append(frame.seq)
        done = self.finish.setdefault(frame.seq, trio.Event())
        lane = self

        class Taken:
            async def wait(self, queued: Any) -> None:
                queued()
                await done.wait()

            def answer(self) -> Frame:
                assert lane  # noqa: S101 - keeps the closure
                return PushResult(request=frame.request, outcomes=("ok",))

        return Taken()


async def test_the_lane_takes_at_most_ahead_answers_in_order_and_a_protocol_error_goes_after_the_answers_before_it() -> None:
    pushes = [Push(request=n, items=(transit("bob@beta.example", origin=PEER),), seq=n) for n in (1, 2, 3, 9)]
    link = LaneLink(list(pushes))
    failed: list[ProtocolError] = []

    async def fail(exc: ProtocolError) -> None:
        failed.append(exc)
        link.done.set()

    link.fail = fail  # type: ignore[attr-defined]
    lane = Lane(ahead=2)

    async def handle(frame: Frame) -> Frame:
        raise AssertionError("ordered frames go to the lane")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: serve_link(link, handle, pipelined=lane))  # type: ignore[arg-type]
        with trio.fail_after(HANG_S):
            await until(lambda: lane.started == [1, 2], "two taken")
            await trio.testing.wait_all_tasks_blocked()
            assert lane.started == [1, 2]  # the third waits for the first answer
            lane.finish[2].set()  # the second is done first: its answer waits for the first's
            await trio.testing.wait_all_tasks_blocked()
            assert link.sent == []
            lane.finish[1].set()
            await until(lambda: lane.started == [1, 2, 3], "the third taken once the first answer went")
            lane.finish[3].set()
            await until(lambda: failed, "push 9's error")
    assert [f.request for f in link.sent] == [1, 2, 3]  # in order, before the link was failed
    assert "push 9 closes the link" in str(failed[0])
