"""A store that fails for a while ("database is locked" after the busy timeout, a full disk)
never stops a node's federation: a peer's request is answered ``unavailable``, a lookup fails
with ``unavailable``, the background tasks (outbox workers, the expiry tick, the peer-table
upkeep, remembering peer keys) log one line and try again, and once the store works again
everything goes on (real nodes in-process, raw peer links).
"""

from __future__ import annotations

import functools
from collections import Counter
from typing import Any

import pytest
from sonet.transport.ws_errors import ConnectionClosed

from sonet.core.client_api import ErrorFrame, FetchNodeKey, Ping, Pong
from sonet.core.federation_api import Push, PushResult
from sonet.federation.errors import FederationError
from sonet.federation.link import DialError
from sonet.node.store import StoreError
from tests.node.conftest import NodeParams, RunningNode, StartNode

from .net import ALPHA, BETA, GAMMA, ask, deliveries, mailbox_ids, new_key, peer_link, pin, pin_node, queue_at, tracked, transit, until


class Failing:
    """Methods of a running node's own store connection that raise StoreError while they are
    in ``failing``; every call is counted."""

    def __init__(self, node: RunningNode, monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
        assert node.node.federation is not None
        self.failing: set[str] = set()
        self.calls: Counter[str] = Counter()
        self._monkeypatch = monkeypatch
        self.patch(node.node.federation._store, *names)

    def patch(self, obj: object, *names: str) -> None:
        for name in names:
            self._monkeypatch.setattr(obj, name, functools.partial(self._call, name, getattr(obj, name)))

    async def _call(self, name: str, real: Any, *args: Any, **kwargs: Any) -> Any:
        self.calls[name] += 1
        if name in self.failing:
            raise StoreError("database error: database is locked")
        return await real(*args, **kwargs)

    def called(self, *names: str) -> bool:
        return all(self.calls[n] for n in names)


async def test_a_request_that_hits_a_store_error_is_answered_unavailable(start_node: StartNode, monkeypatch: pytest.MonkeyPatch) -> None:
    beta = await start_node(name=BETA)
    bob = await beta.enroll("bob")
    key = new_key()
    await pin(beta, ALPHA, fingerprint=key.public.fingerprint)
    store = Failing(beta, monkeypatch, "peers", "receive")
    item = transit(bob.address, origin=ALPHA)
    async with peer_link(beta, key, ALPHA) as link:
        # the node reads the peer table once more as it starts serving the link (a read that
        # fails there closes the link): only then is the table made to fail
        federation = beta.node.federation
        assert federation is not None
        await until(lambda: federation._pool.inbound(ALPHA) == 1, "beta serving the link")
        # Pushes and relayed lookups go by the peer table read last (federation/service.py
        # _last_routes): the table being unreadable now does not stop them. gamma is no peer.
        store.failing = {"peers"}
        answer = await ask(link, FetchNodeKey(request=2, node=GAMMA))
        assert isinstance(answer, ErrorFrame) and (answer.request, answer.code) == (2, "not_relaying")
        store.failing = {"peers", "receive"}  # nothing is committed
        answer = await ask(link, Push(request=3, items=(item,)))
        assert isinstance(answer, ErrorFrame) and (answer.request, answer.code) == (3, "unavailable")
        assert answer.message == f"{BETA} cannot answer right now; try again later"
        assert beta.alive and await mailbox_ids(beta, bob.address) == []

        store.failing = {"peers"}  # the same link, the next attempt
        assert await ask(link, Push(request=4, items=(item,))) == PushResult(request=4, outcomes=("ok",))
    assert beta.alive
    assert await mailbox_ids(beta, bob.address) == [item.envelope.id]  # type: ignore[union-attr]


async def test_links_are_refused_or_closed_while_the_peer_table_cannot_be_read(start_node: StartNode, monkeypatch: pytest.MonkeyPatch) -> None:
    beta = await start_node(name=BETA)
    key = new_key()
    await pin(beta, ALPHA, fingerprint=key.public.fingerprint)
    federation = beta.node.federation
    assert federation is not None
    gate = Failing(beta, monkeypatch)
    gate.patch(federation.gate, "_load_peers")  # the store's peers(), as the gate reads it
    gate.failing = {"_load_peers"}
    with pytest.raises(DialError) as info:
        async with peer_link(beta, key, ALPHA):
            pass
    assert info.value.code == "unavailable" and beta.alive

    gate.failing = set()
    served = Failing(beta, monkeypatch, "peers")  # the gate admits, serving the link fails
    served.failing = {"peers"}
    with pytest.raises(ConnectionClosed) as closed:
        async with peer_link(beta, key, ALPHA) as link:
            await ask(link, Ping(request=1))
    assert closed.value.reason.code == 1011 and closed.value.reason.reason == "unavailable"
    assert served.called("peers") and beta.alive

    served.failing = set()
    async with peer_link(beta, key, ALPHA) as link:
        assert await ask(link, Ping(request=1)) == Pong(request=1)
    assert beta.alive


async def test_a_lookup_while_the_peer_table_cannot_be_read_is_unavailable(start_node: StartNode, monkeypatch: pytest.MonkeyPatch) -> None:
    alpha = await start_node(name=ALPHA)
    federation = alpha.node.federation
    assert federation is not None
    store = Failing(alpha, monkeypatch, "peers")
    store.failing = {"peers"}
    with pytest.raises(FederationError) as info:
        await federation.remote_devices(f"bob@{BETA}")
    assert info.value.code == "unavailable" and "\n" not in str(info.value)
    with pytest.raises(FederationError) as info:
        await federation.node_key(BETA)
    assert info.value.code == "unavailable"
    assert alpha.alive


async def test_store_errors_in_the_background_tasks_do_not_stop_the_node(
    start_node: StartNode, node_params: NodeParams, monkeypatch: pytest.MonkeyPatch
) -> None:
    node_params.federation.update(expire_interval_s=0.05, refresh_s=0.05)
    alpha = await start_node(name=ALPHA)
    beta = await start_node(name=BETA)
    alice, bob = await alpha.enroll("alice"), await beta.enroll("bob")
    store = Failing(
        alpha, monkeypatch, "outbox", "outbox_counts", "outbox_destinations", "set_peer_key", "expired_outbox", "expire_outbox"
    )
    # the outbox worker, the status upkeep, the expiry tick, the key of the first dialled link
    store.failing = {"outbox", "outbox_counts", "outbox_destinations", "set_peer_key"}
    await pin_node(beta, alpha)
    await pin_node(alpha, beta)
    item = tracked(alpha, alice, bob.address)
    await queue_at(alpha, item)
    await until(lambda: store.called(*store.failing), "every background task hit the store error")
    await until(lambda: store.calls["outbox_destinations"] >= 2, "the expiry tick came again")
    assert alpha.alive
    # (a worker woken by the queueing may still be on its way to its read, which would
    # succeed below: it would push the item before any expiry tick asked it to expire first)
    outboxes = alpha.node.federation._outboxes  # type: ignore[union-attr]
    await until(lambda: BETA not in outboxes._workers, "the outbox worker stopped")

    # the expiry tick gets further: each worker settling its expired items, and the dedup keys
    store.failing = {"expired_outbox", "expire_outbox"}
    await until(lambda: store.calls["expired_outbox"] >= 2 and store.calls["expire_outbox"] >= 2, "expiry hit the store error twice")
    assert alpha.alive
    assert [r.state for r in await deliveries(alpha, alice, item)] == ["queued"]

    store.failing = set()  # the store works again: the item goes at the next tick
    await until(lambda: _accepted(alpha, alice, item), "the item went to beta")
    assert await mailbox_ids(beta, bob.address) == [item.tracking.id]  # type: ignore[union-attr]
    async with alpha.store() as other:
        assert await other.outbox_counts() == {}
    assert alpha.alive and beta.alive


async def _accepted(node: RunningNode, sender: Any, item: Any) -> bool:
    return [r.state for r in await deliveries(node, sender, item)] == ["accepted"]


async def test_the_status_counts_come_back_after_a_store_error(
    start_node: StartNode, node_params: NodeParams, monkeypatch: pytest.MonkeyPatch
) -> None:
    node_params.federation.update(refresh_s=0.05)
    alpha = await start_node(name=ALPHA)
    alice = await alpha.enroll("alice")
    federation = alpha.node.federation
    assert federation is not None
    await pin(alpha, BETA, fingerprint=new_key().public.fingerprint)  # nobody listens there
    store = Failing(alpha, monkeypatch, "outbox_counts")
    store.failing = {"outbox_counts"}
    await until(lambda: store.calls["outbox_counts"] >= 2, "the upkeep hit the store error twice")
    await queue_at(alpha, tracked(alpha, alice, f"bob@{BETA}"))
    store.failing = set()
    await until(lambda: federation.snapshot()["outbox"] == 1, "the status counts the queued item")
    assert alpha.alive


async def test_a_settle_that_fails_after_the_push_is_pushed_again_and_stored_once(
    start_node: StartNode, node_params: NodeParams, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The settle (outbox_done) runs beside the next push: when it fails, the items beta took
    # stay queued at alpha, go again, and beta's deduplication keeps one copy.
    node_params.federation.update(expire_interval_s=0.05, refresh_s=0.05)
    alpha = await start_node(name=ALPHA)
    beta = await start_node(name=BETA)
    alice, bob = await alpha.enroll("alice"), await beta.enroll("bob")
    store = Failing(alpha, monkeypatch, "outbox_done")
    store.failing = {"outbox_done"}
    await pin_node(beta, alpha)
    await pin_node(alpha, beta)
    item = tracked(alpha, alice, bob.address)
    await queue_at(alpha, item)
    await until(lambda: store.calls["outbox_done"] >= 2, "the settle failed twice (the item went twice)")
    assert alpha.alive
    assert [r.state for r in await deliveries(alpha, alice, item)] == ["queued"]

    store.failing = set()
    await until(lambda: _accepted(alpha, alice, item), "the item was settled")
    assert await mailbox_ids(beta, bob.address) == [item.tracking.id]  # type: ignore[union-attr]
    async with alpha.store() as other:
        assert await other.outbox_counts() == {}
