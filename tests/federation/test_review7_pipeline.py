"""Review of the pipelined receiver (round 7: node/store/group_commit.py ``after=``/``queued=``,
federation/inbound.py ``InboundLink``, push_sequence.py ``Receiving``), attacked where it could
lose, duplicate or reorder a link's pushes, or hold more than a window of them.

Found here: every write queued ``after`` another kept a reference to it for good, so a link's
writes formed one chain from its first push to its last, each holding its push's items: a
long-lived inbound link kept every push it ever took in memory (unbounded; now a write lets go
of the one before it once it ran)."""

from __future__ import annotations

import gc
import sqlite3
from typing import Any

import pytest
import trio
import trio.testing

from sonet.core.client_api import ErrorFrame
from sonet.core.federation_api import Push, PushResult
from sonet.federation.ports import Queued
from sonet.federation.ratelimit import Rate
from sonet.node.store import sqlite
from sonet.node.store.base import QuotaExceeded, StoreError
from sonet.node.store.group_commit import _run_group, _Write
from tests.node.store.failing_commit import FailingCommit
from tests.node.conftest import HANG_S, NodeParams, StartNode
from tests.node.kit import wall_ms
from tests.node.store.test_group_commit import Db, insert, insert_then_refuse

from .net import ALPHA, BETA, deliveries, mailbox_ids, new_key, peer_link, pin, pin_node, queue_at, tracked, transit, until
from .test_pipelined_pushes import Commits, beta_and_bob, failing_for, out_of_order, push_each

PEER = "peer.example"


@pytest.fixture
def db(tmp_path):
    d = Db(str(tmp_path / "g.sqlite"))
    yield d
    d.conn.close()


def live_writes(fn: Any) -> int:
    """The group-commit writes of ``fn`` still alive."""
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, _Write) and o.fn is fn)


def chained_insert(conn: Any, v: int) -> int:  # a write function of its own, to count its writes
    return insert(conn, v)


async def test_a_chain_of_writes_keeps_only_the_last_one_alive(db) -> None:
    """A link's writes are queued each after the one before; once they ran, holding the last
    one (as the link does, for the next push) keeps none of the earlier ones alive."""
    last: Queued | None = None

    def queued(turn: Queued) -> None:
        nonlocal last
        last = turn

    for v in range(60):
        assert await db.writes.run(chained_insert, v, after=last, queued=queued) == v
    assert last is not None and not last.failed
    assert db.values() == list(range(60))
    assert live_writes(chained_insert) <= 1


async def test_a_chain_shares_its_group_with_other_writes_one_failing_and_one_dropped(db) -> None:
    """GroupCommit's other callers beside a link's chain: a client write in the same group
    that fails is undone alone (the group runs again with savepoints: the chain's writes are
    applied once, in order), one dropped before it ran changes nothing for the chain."""
    db.gate = trio.Event()
    last: Queued | None = None
    outcomes: dict[int, object] = {}

    async def write(v: int, fn: Any = chained_insert, after: Queued | None = None, chain: bool = False) -> None:
        def queued(turn: Queued) -> None:
            nonlocal last
            last = turn

        try:
            outcomes[v] = await db.writes.run(fn, v, after=after, queued=queued if chain else None)
        except StoreError as exc:
            outcomes[v] = exc

    dropped = trio.CancelScope()

    async def dropped_write() -> None:
        with dropped:
            await write(60)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(write, 1, chained_insert, None, True)  # leads; held at the gate
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(write, 2, chained_insert, last, True)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(write, 50, insert_then_refuse)  # a client's write that fails
        nursery.start_soon(dropped_write)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(write, 3, chained_insert, last, True)
        await trio.testing.wait_all_tasks_blocked()
        dropped.cancel()
        await trio.testing.wait_all_tasks_blocked()
        db.gate.set()
    assert outcomes[1] == 1 and outcomes[2] == 2 and outcomes[3] == 3, outcomes
    assert isinstance(outcomes[50], QuotaExceeded) and 60 not in outcomes
    assert db.values() == [1, 2, 3]
    assert db.groups == [1, 3]  # 2, the failing client write and 3: one group (run twice)


async def test_a_long_lived_link_does_not_keep_the_pushes_it_took(start_node: StartNode) -> None:
    """A real beta: 40 sequenced pushes on one link, all answered ok and stored, the link still
    open: at most the last push's write (the next one's ``after``) is still alive."""
    beta = await start_node(name=BETA)
    bob = (await beta.enroll("bob")).address
    key = new_key()
    await pin(beta, PEER, fingerprint=key.public.fingerprint)
    items = [transit(bob, origin=PEER) for _ in range(40)]
    earlier = live_writes(sqlite._receive)  # (none, unless a test before this one left some)
    async with peer_link(beta, key, PEER) as link:
        with trio.fail_after(HANG_S):
            for n, item in enumerate(items, start=1):
                await link.send(Push(request=n, items=(item,), seq=n))
                if n % 3 == 0:  # a window of pushes on their way at a time
                    for m in range(n - 2, n + 1):
                        assert await link.receive() == PushResult(request=m, outcomes=("ok",))
            for m in range(len(items) - len(items) % 3 + 1, len(items) + 1):
                assert await link.receive() == PushResult(request=m, outcomes=("ok",))
        assert live_writes(sqlite._receive) - earlier <= 1
    assert await mailbox_ids(beta, bob) == [i.envelope.id for i in items]  # type: ignore[union-attr]


async def test_pushes_queued_behind_a_commit_when_the_link_closes_are_stored_once_when_pushed_again(
    start_node: StartNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pusher's link goes while push 1's commit is on the disk and pushes 2 and 3 are
    queued behind it, none answered: push 1 still commits, 2 and 3 are dropped (nobody is
    left to tell), and the pusher's retransmission of all three on a new link stores each
    exactly once, answered ok."""
    beta, bob, key = await beta_and_bob(start_node)
    commits = Commits(beta, monkeypatch)
    items = [transit(bob, origin=PEER) for _ in range(3)]
    async with peer_link(beta, key, PEER) as link:
        with trio.fail_after(HANG_S):
            await push_each(link, items)
            await until(lambda: commits.groups == [1] and commits.queued() == 2, "pushes 2 and 3 queued behind push 1's commit")
    with trio.fail_after(HANG_S):
        await until(lambda: commits.queued() == 0, "the closed link's queued writes dropped")
        commits.gate.set()
        await until(lambda: mailbox_ids(beta, bob), "push 1 committed")
    assert commits.groups == [1]  # 2 and 3 never ran
    assert await mailbox_ids(beta, bob) == [items[0].envelope.id]  # type: ignore[union-attr]
    async with peer_link(beta, key, PEER) as link:
        with trio.fail_after(HANG_S):
            await push_each(link, items)
            answers = [await link.receive() for _ in range(3)]
    assert answers == [PushResult(request=n + 1, outcomes=("ok",)) for n in range(3)]
    assert await mailbox_ids(beta, bob) == [i.envelope.id for i in items]  # type: ignore[union-attr]


@pytest.mark.parametrize("failing_group", [0, 1])
async def test_a_failed_commit_leaves_every_push_behind_it_unstored_and_the_next_round_is_taken(
    start_node: StartNode, monkeypatch: pytest.MonkeyPatch, failing_group: int
) -> None:
    """Push 1's group (0) or the next group, holding pushes 2 and 3 (1), fails at its COMMIT:
    the pushes in it are answered unavailable (the first) or out_of_order, those queued behind
    it out_of_order, none of them stored; what committed before stays; the pusher's next round
    (from the failed push) is taken and stored once."""
    beta, bob, key = await beta_and_bob(start_node)
    commits = Commits(beta, monkeypatch)
    real = commits._real
    calls: list[int] = []

    async def call(fn: Any, *args: Any) -> Any:
        if fn is _run_group and Commits._pushes(args[0]):
            calls.append(1)
            if len(calls) - 1 == failing_group:
                return await real(lambda conn, group, observers: _run_group(FailingCommit(conn), group, observers), *args)
        return await real(fn, *args)

    commits._real = call
    items = [transit(bob, origin=PEER) for _ in range(3)]
    async with peer_link(beta, key, PEER) as link:
        with trio.fail_after(HANG_S):
            await push_each(link, items)
            await until(lambda: commits.groups == [1] and commits.queued() == 2, "pushes 2 and 3 queued behind push 1's commit")
            commits.gate.set()
            answers = [await link.receive() for _ in range(3)]
            failed = failing_group  # the index of the first push refused
            assert answers[:failed] == [PushResult(request=1, outcomes=("ok",))][:failed]
            refused = answers[failed]
            assert isinstance(refused, ErrorFrame) and refused.code == "unavailable", answers
            assert all(out_of_order(answers[n], n + 1) for n in range(failed + 1, 3)), answers
            assert commits.groups == [1, 2]
            assert await mailbox_ids(beta, bob) == [i.envelope.id for i in items[:failed]]  # type: ignore[union-attr]
            for n in range(failed, 3):  # the next round starts at the failed push
                await link.send(Push(request=10 + n, items=(items[n],), seq=n + 1))
            again = [await link.receive() for _ in range(failed, 3)]
    assert again == [PushResult(request=10 + n, outcomes=("ok",)) for n in range(failed, 3)]
    assert await mailbox_ids(beta, bob) == [i.envelope.id for i in items]  # type: ignore[union-attr]


async def test_a_hostile_pusher_never_has_more_than_the_window_of_writes_queued(
    start_node: StartNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A peer sends 12 sequenced pushes without reading an answer while beta's commits are
    held: beta takes pushes_in_flight (3) of them, one on the disk and two queued, and no more
    until answers go; then all are answered ok in order, no group ever holding more."""
    beta, bob, key = await beta_and_bob(start_node)
    commits = Commits(beta, monkeypatch)
    depth: list[int] = []  # push writes on the disk or queued, at each group's start
    real = commits._real

    async def call(fn: Any, *args: Any) -> Any:
        if fn is _run_group and Commits._pushes(args[0]):
            depth.append(Commits._pushes(args[0]) + commits.queued())
        return await real(fn, *args)

    commits._real = call
    items = [transit(bob, origin=PEER) for _ in range(12)]
    async with peer_link(beta, key, PEER) as link:
        with trio.fail_after(HANG_S):
            for n, item in enumerate(items, start=1):
                await link.send(Push(request=n, items=(item,), seq=n))
            await until(lambda: commits.groups == [1] and commits.queued() == 2, "three pushes taken")
            await trio.sleep(0.3)  # room for a fourth to be taken, if the window let it
            assert commits.groups == [1] and commits.queued() == 2
            commits.gate.set()
            answers = [await link.receive() for _ in items]
    assert answers == [PushResult(request=n, outcomes=("ok",)) for n in range(1, 13)]
    assert max(depth) <= 3, depth
    assert await mailbox_ids(beta, bob) == [i.envelope.id for i in items]  # type: ignore[union-attr]


async def test_a_push_held_for_its_rate_behind_one_that_then_fails_is_answered_out_of_order(
    start_node: StartNode, monkeypatch: pytest.MonkeyPatch, node_params: NodeParams
) -> None:
    """Push 1's write is on the disk (and will fail), push 2's queued behind it, push 3 over
    the peer's rate (held: nothing after it taken), push 4 behind it: push 1 unavailable, the
    rest out_of_order (3's rate_limited belongs to a round that push 1 ended), nothing stored;
    the next round from push 1 is taken whole."""
    clock = [wall_ms()]
    node_params.clock_ms = lambda: clock[0]
    node_params.federation.update(push_rate=Rate(per_second=0.1, burst=2))  # refills only when the clock moves
    beta, bob, key = await beta_and_bob(start_node)
    commits = Commits(beta, monkeypatch)
    items = [transit(bob, origin=PEER) for _ in range(4)]
    failing = {items[0].envelope.id}  # type: ignore[union-attr]
    failing_for(monkeypatch, failing)
    async with peer_link(beta, key, PEER) as link:
        with trio.fail_after(HANG_S):
            await push_each(link, items)
            await until(lambda: commits.groups == [1] and commits.queued() == 1, "push 2 queued behind push 1's commit")
            commits.gate.set()
            answers = [await link.receive() for _ in range(4)]
            assert isinstance(answers[0], ErrorFrame) and answers[0].code == "unavailable", answers
            assert all(out_of_order(answers[n], n + 1) for n in (1, 2, 3)), answers
            assert await mailbox_ids(beta, bob) == []
            failing.clear()
            again = []
            for n in range(2):  # the next round, from push 1
                clock[0] += 60_000  # the bucket refills
                await link.send(Push(request=10 + n, items=(items[2 * n], items[2 * n + 1]), seq=n + 1))
                again.append(await link.receive())
    assert again == [PushResult(request=10 + n, outcomes=("ok", "ok")) for n in range(2)]
    assert await mailbox_ids(beta, bob) == [i.envelope.id for i in items]  # type: ignore[union-attr]


async def test_two_small_pushes_lost_with_their_link_are_delivered_once(start_node: StartNode, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real alpha and beta: alpha's second small push goes beside the first (SMALL_IN_FLIGHT),
    beta queues its write behind the first's commit, held "on the disk"; then alpha's link to
    beta breaks before either answer. Beta commits the first and drops the second; alpha pushes
    both again on a new link: bob has each envelope once, both deliveries accepted."""
    # alpha tries again within a second of the loss (full jitter: possibly at once; and a lookup,
    # e.g. a witness round, dials at once and a dial resets the backoff): its pushes again on the
    # new link may be queued behind the held commit at once (_lose_two_pushes watches its own write)
    alpha = await start_node(name=ALPHA, registration="open", federation_retry_base_s=1.0, federation_retry_max_s=1.0)
    beta = await start_node(name=BETA, registration="open")
    await pin_node(alpha, beta)
    await pin_node(beta, alpha)
    alice, bob = await alpha.enroll("alice"), await beta.enroll("bob")
    commits = Commits(beta, monkeypatch)
    first, second = tracked(alpha, alice, bob.address), tracked(alpha, alice, bob.address)
    with trio.fail_after(HANG_S):
        try:
            await _lose_two_pushes(alpha, beta, commits, first, second)
        finally:
            commits.gate.set()  # (a failed step must not leave beta's writer held at teardown)
        await until(lambda: _states(alpha, alice, first, second), "both deliveries settled")
    assert [r.state for r in await deliveries(alpha, alice, first, second)] == ["accepted", "accepted"]
    assert await mailbox_ids(beta, bob.address) == [first.tracking.id, second.tracking.id]  # type: ignore[union-attr]
    assert commits.groups == [1, 1]  # the first push's, then both again in one push: the second never ran
    async with alpha.store() as store:
        assert await store.outbox_counts() == {}


async def _lose_two_pushes(alpha: Any, beta: Any, commits: Commits, first: Any, second: Any) -> None:
    """Two pushes in flight, beta's commit of the first held and the second queued behind it;
    alpha's link to beta cut; back once beta dropped the queued write (the first one's commit
    still held: it ends the link's tasks only after it)."""
    # alpha's worker reads again as soon as the first push is handed over: that read waits
    # until the second envelope is committed, so it goes as a second small push beside the first
    store = alpha.node.federation._outboxes._store
    read, second_queued = store.outbox, trio.Event()
    reads: list[object] = []

    async def outbox(*args: Any, **kwargs: Any) -> Any:
        if reads:
            await second_queued.wait()
        items = await read(*args, **kwargs)
        if items:
            reads.append(items)
        return items

    store.outbox = outbox
    try:
        await queue_at(alpha, first)
        await until(lambda: commits.groups == [1], "the first push's commit on the disk")
        await queue_at(alpha, second)
        second_queued.set()
        await until(lambda: commits.queued() == 1, "the second push queued behind it, beside it in flight")
    finally:
        second_queued.set()
        del store.outbox
    (dropped,) = [w for w in commits.writes._queue if w.fn is sqlite._receive]  # the second push's
    link = alpha.node.federation._pool._state(BETA).link
    assert link is not None
    link.close("cut by the test")
    # that write, not the queue's length: alpha's pushes again on a new link may be queued
    # behind the held commit before a poll saw the queue empty
    await until(dropped.done.is_set, "beta's side of the link gone, the second write dropped")
    assert not dropped.taken and dropped.failed  # dropped before it ran, never applied


async def _states(node: Any, sender: Any, *items: Any) -> bool:
    return all(r.state != "queued" for r in await deliveries(node, sender, *items))
