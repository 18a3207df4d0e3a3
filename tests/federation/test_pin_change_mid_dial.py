"""A pin that changes while a dial under the old one is still on its way: the link that dial
gives is never used. (In the e2e federation, alpha dialling beta through a TCP proxy that holds
a connection while beta restarts, the old-pin dial completed after ``peer remove`` + ``peer add``
and the message queued for the re-pinned beta went to the node the operator had just un-pinned.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import os

import pytest
import trio

from sonet.core.crypto import CryptoPolicy
from sonet.core.client_api import Ping, Pong
from sonet.federation import pool as pool_module
from sonet.federation.errors import FederationError
from sonet.federation.peers import Peer
from sonet.federation.pool import LinkPool
from sonet.federation.routes import Routes
from sonet.federation.settings import FederationSettings
from tests.node.conftest import HANG_S, RunningNode, StartNode
from tests.node.kit import wall_ms

from .net import ALPHA, BETA, NOWHERE, deliveries, mailbox_ids, new_key, pin, pin_node, queue_at, tracked, until


class HeldDials:
    """Dials to ``url`` wait until ``release`` is set (then go on as usual)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.held = trio.Event()
        self.release = trio.Event()
        self.fingerprints: list[str] = []
        self._real = pool_module.dial_peer

    @asynccontextmanager
    async def dial_peer(self, url: str, **kwargs: Any) -> AsyncIterator[Any]:
        if url == self.url and not self.release.is_set():
            self.fingerprints.append(kwargs["fingerprint"])
            self.held.set()
            await self.release.wait()
        async with self._real(url, **kwargs) as link:
            yield link


async def test_a_dial_under_a_pin_changed_meanwhile_delivers_nothing(start_node: StartNode, monkeypatch: pytest.MonkeyPatch) -> None:
    alpha = await start_node(name=ALPHA)
    beta = await start_node(name=BETA)
    await pin(alpha, BETA, url=NOWHERE, fingerprint=beta.fingerprint)
    await pin_node(beta, alpha)
    alice, bob = await alpha.enroll("alice"), await beta.enroll("bob")
    federation = alpha.node.federation
    assert federation is not None
    item = tracked(alpha, alice, bob.address)
    await queue_at(alpha, item)
    await until(lambda: (federation.queued_note(BETA) or ("",))[0] == "unreachable", "alpha cannot reach beta yet")

    # The operator points alpha at the real beta: alpha dials it, and that dial is slow.
    dials = HeldDials(beta.url)
    monkeypatch.setattr(pool_module, "dial_peer", dials.dial_peer)
    async with alpha.store() as store:
        await store.remove_peer(BETA)
    await pin(alpha, BETA, url=beta.url, fingerprint=beta.fingerprint)
    await federation.routes()
    await until(dials.held.is_set, "alpha dials beta under its real pin")

    # Before that dial is through, the operator pins "beta" to another key and alpha reads it.
    async with alpha.store() as store:
        await store.remove_peer(BETA)
    await pin(alpha, BETA, url=beta.url, fingerprint=new_key().public.fingerprint)
    await federation.routes()
    dials.release.set()

    # The old dial's link is dropped; the next dial is under the new pin and refused.
    await until(lambda: (federation.queued_note(BETA) or ("",))[0] == "wrong_identity", "alpha says beta's key is not the pinned one")
    assert dials.fingerprints and set(dials.fingerprints) == {beta.fingerprint}
    assert await mailbox_ids(beta, bob.address) == []
    assert [r.state for r in await deliveries(alpha, alice, item)] == ["queued"]


def pool_of(node: RunningNode) -> LinkPool:
    """A link pool of ``node``'s identity, on its own (``run`` it, ``update`` its peers)."""

    async def remember_key(peer: Peer, key: object) -> None:
        pass

    return LinkPool(
        name=node.config.name, identity=node.identity, policy=CryptoPolicy(), remember_key=remember_key,
        clock_ms=wall_ms, rng=os.urandom, settings=FederationSettings(),
    )  # fmt: skip


async def test_the_link_pool_never_hands_out_a_link_dialled_under_a_superseded_pin(
    start_node: StartNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The pool alone (no outbox, witness or hello tasks to race with): the request that
    # started the dial must not get the old-pin link either.
    alpha = await start_node(name=ALPHA)
    beta = await start_node(name=BETA)
    await pin_node(beta, alpha)
    dials = HeldDials(beta.url)
    monkeypatch.setattr(pool_module, "dial_peer", dials.dial_peer)
    pinned = Peer(name=BETA, url=beta.url, fingerprint=beta.fingerprint, via=None, added_at=wall_ms())
    repinned = Peer(name=BETA, url=beta.url, fingerprint=new_key().public.fingerprint, via=None, added_at=wall_ms())

    pool = pool_of(alpha)
    answers: list[object] = []

    async def ask(peer: Peer) -> None:
        try:
            answers.append(await pool.request(peer, Ping(request=0)))
        except FederationError as exc:
            answers.append(exc)

    with trio.fail_after(HANG_S):
        async with trio.open_nursery() as nursery:
            await nursery.start(pool.run)
            pool.update(Routes(ALPHA, [pinned]))
            async with trio.open_nursery() as asking:
                asking.start_soon(ask, pinned)  # dials under the real pin...
                await dials.held.wait()
                asking.start_soon(ask, pinned)  # ...and one more waits for that dial
                await trio.sleep(0.05)
                pool.update(Routes(ALPHA, [repinned]))  # the operator re-pins meanwhile
                dials.release.set()
            assert [type(a) for a in answers] == [FederationError, FederationError], answers
            assert all("changed" in str(a) for a in answers), answers
            assert pool.describe(BETA)["link"] != "connected"
            # a request under the new pin dials again, and is refused for the key
            await ask(repinned)
            assert isinstance(answers[-1], FederationError) and answers[-1].code == "wrong_identity", answers[-1]
            # the same pool with the real pin back reaches beta (the dial itself was fine)
            pool.update(Routes(ALPHA, [pinned]))
            await ask(pinned)
            assert isinstance(answers[-1], Pong), answers[-1]
            nursery.cancel_scope.cancel()
