"""Review of the pipelined receiver (round 7: node/store/group_commit.py ``after=``/``queued=``,
federation/inbound.py ``InboundLink``, push_sequence.py ``Receiving``), attacked where it could
lose, duplicate or reorder a link's pushes, or hold more than a window of them.

Found here: every write queued ``after`` another kept a reference to it for good, so a link's
writes formed one chain from its first push to its last, each holding its push's items: a
long-lived inbound link kept every push it ever took in memory (unbounded; now a write lets go
of the one before it once it ran)."""

from __future__ import annotations

import gc
from typing import Any

import pytest
import trio

from sonet.core.federation_api import Push, PushResult
from sonet.federation.ports import Queued
from sonet.node.store import sqlite
from sonet.node.store.group_commit import _Write
from tests.node.conftest import HANG_S, StartNode
from tests.node.store.test_group_commit import Db, insert

from .net import BETA, mailbox_ids, new_key, peer_link, pin, transit

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


async def test_a_long_lived_link_does_not_keep_the_pushes_it_took(start_node: StartNode) -> None:
    """A real beta: 40 sequenced pushes on one link, all answered ok and stored, the link still
    open: at most the last push's write (the next one's ``after``) is still alive."""
    beta = await start_node(name=BETA)
    bob = (await beta.enroll("bob")).address
    key = new_key()
    await pin(beta, PEER, fingerprint=key.public.fingerprint)
    items = [transit(bob, origin=PEER) for _ in range(40)]
    async with peer_link(beta, key, PEER) as link:
        with trio.fail_after(HANG_S):
            for n, item in enumerate(items, start=1):
                await link.send(Push(request=n, items=(item,), seq=n))
                if n % 3 == 0:  # a window of pushes on their way at a time
                    for m in range(n - 2, n + 1):
                        assert await link.receive() == PushResult(request=m, outcomes=("ok",))
            for m in range(len(items) - len(items) % 3 + 1, len(items) + 1):
                assert await link.receive() == PushResult(request=m, outcomes=("ok",))
        assert live_writes(sqlite._receive) <= 1
    assert await mailbox_ids(beta, bob) == [i.envelope.id for i in items]  # type: ignore[union-attr]
